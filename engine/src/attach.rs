//! Attaching to a running container's stdio through its monitor's socket (see
//! [`crate::monitor`] for the framing), and `exec`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::monitor::attach_socket;

/// What arrives from an attached container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Output on stdout (or the terminal).
    Stdout(Vec<u8>),
    /// Output on stderr.
    Stderr(Vec<u8>),
    /// The container exited with this code; nothing follows.
    Exit(i32),
}

/// A connection to a container's stdio. Cloneable halves come from [`Attached::try_clone`].
#[derive(Debug)]
pub struct Attached {
    stream: UnixStream,
}

/// Connects to container `id`'s monitor (no engine needed: a client that holds no store).
/// Returns once the monitor has registered the connection: every byte the container
/// writes after that comes on it.
pub fn attach_to(id: &str, stdin: bool, stdout: bool, stderr: bool) -> Result<Attached> {
    let stream = request_attach(id, stdin, stdout, stderr)?;
    registered(id, stream)
}

/// Connects to container `id`'s monitor and sends the attach request, without waiting for
/// the monitor to take it: a monitor that has not started its container yet finds it
/// queued on its socket (see [`registered`]).
pub(crate) fn request_attach(
    id: &str,
    stdin: bool,
    stdout: bool,
    stderr: bool,
) -> Result<UnixStream> {
    let path = attach_socket(id);
    let mut stream = UnixStream::connect(&path).map_err(|e| {
        Error::WrongState(format!(
            "cannot attach to container {id}: its monitor is not running ({}: {e})",
            path.display()
        ))
    })?;
    let header = serde_json::json!({"stdin": stdin, "stdout": stdout, "stderr": stderr});
    // one write: formatting into the socket sends each piece of the JSON on its own
    stream
        .write_all(format!("{header}\n").as_bytes())
        .map_err(Error::io("send the attach request"))?;
    Ok(stream)
}

/// Waits for the monitor's acknowledgement of a [`request_attach`].
pub(crate) fn registered(id: &str, mut stream: UnixStream) -> Result<Attached> {
    // the monitor answers from its poll loop; a monitor that is gone closes the connection
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(30)));
    let mut ack = [0u8; 8];
    match stream.read_exact(&mut ack) {
        Ok(()) if ack == crate::monitor::ATTACH_ACK => {}
        Ok(()) => {
            return Err(Error::WrongState(format!(
                "cannot attach to container {id}: its monitor answered {ack:?}"
            )));
        }
        Err(e) => {
            return Err(Error::WrongState(format!(
                "cannot attach to container {id}: its monitor did not register the connection ({e})"
            )));
        }
    }
    let _ = stream.set_read_timeout(None);
    Ok(Attached { stream })
}

impl Attached {
    /// Another handle on the same connection (one thread writes stdin, another reads).
    pub fn try_clone(&self) -> Result<Attached> {
        Ok(Attached {
            stream: self
                .stream
                .try_clone()
                .map_err(Error::io("clone the attach connection"))?,
        })
    }

    fn send(&mut self, kind: u8, data: &[u8]) -> Result<()> {
        let mut f = Vec::with_capacity(8 + data.len());
        f.extend_from_slice(&[kind, 0, 0, 0]);
        f.extend_from_slice(&(data.len() as u32).to_be_bytes());
        f.extend_from_slice(data);
        self.stream
            .write_all(&f)
            .map_err(Error::io("write to the container"))
    }

    /// Sends bytes to the container's stdin.
    pub fn write_stdin(&mut self, data: &[u8]) -> Result<()> {
        self.send(0, data)
    }

    /// Closes the container's stdin (pipes only).
    pub fn close_stdin(&mut self) -> Result<()> {
        self.send(4, &[])
    }

    /// Resizes the container's terminal.
    pub fn resize(&mut self, rows: u16, cols: u16) -> Result<()> {
        self.send(3, format!("{rows} {cols}").as_bytes())
    }

    /// The next frame; `None` when the monitor closed the connection without an exit
    /// frame (the monitor was killed).
    pub fn next_frame(&mut self) -> Result<Option<Frame>> {
        let mut h = [0u8; 8];
        match self.stream.read_exact(&mut h) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(Error::io("read from the container")(e)),
        }
        let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
        let mut data = vec![0u8; len];
        self.stream
            .read_exact(&mut data)
            .map_err(Error::io("read from the container"))?;
        Ok(Some(match h[0] {
            2 => Frame::Stderr(data),
            5 if len == 4 => Frame::Exit(i32::from_be_bytes([data[0], data[1], data[2], data[3]])),
            _ => Frame::Stdout(data),
        }))
    }

    /// Stops reading and writing (a detach).
    pub fn detach(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// A `docker exec` request.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ExecRequest {
    /// The command and its arguments.
    pub cmd: Vec<String>,
    /// `-e`.
    pub env: Vec<String>,
    /// `-u`.
    pub user: Option<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-t`.
    pub tty: bool,
    /// `--privileged`.
    pub privileged: bool,
}

/// A process started by [`Engine::exec`].
#[derive(Debug)]
pub struct ExecProcess {
    /// Its host pid (a child of the calling process).
    pub pid: i32,
    /// The pty master with `tty`.
    pub terminal: Option<std::fs::File>,
    /// The runtime's handle: wait for it, signal it.
    pub process: longshore_container::ExecProcess,
}

impl ExecProcess {
    /// Waits for it; returns its exit code (128+signal).
    pub fn wait(&mut self) -> Result<i32> {
        self.process
            .wait()
            .map_err(Error::runtime("wait for the exec'd process"))
    }
}

impl Engine {
    /// Runs a command in a running container (`docker exec`), with the caller's stdio (or
    /// a new terminal with `tty`). The process is a child of the caller.
    pub fn exec(
        &self,
        name_or_id: &str,
        req: &ExecRequest,
        stdio: longshore_container::Stdio,
    ) -> Result<ExecProcess> {
        let c = self.container(name_or_id)?;
        // paused first: a paused container's live status is "paused", not "running"
        match c.live_status() {
            "running" => {}
            "paused" => {
                return Err(Error::WrongState(format!(
                    "Container {} is paused, unpause the container before exec",
                    c.record.id
                )));
            }
            _ => {
                return Err(Error::WrongState(format!(
                    "Container {} is not running",
                    c.record.id
                )));
            }
        }
        if req.cmd.is_empty() {
            return Err(Error::InvalidArgument("no command specified".into()));
        }
        let spec_bytes = std::fs::read(c.dir.join("bundle/config.json"))
            .map_err(Error::io("read the container's spec"))?;
        let spec: serde_json::Value = serde_json::from_slice(&spec_bytes).unwrap_or_default();
        let mut p = spec["process"].clone();
        p["args"] = req.cmd.clone().into();
        p["terminal"] = req.tty.into();
        if let Some(w) = &req.workdir {
            p["cwd"] = w.clone().into();
        }
        if let Some(u) = &req.user {
            let root = spec["root"]["path"].as_str().unwrap_or("/");
            let (uid, gid, extra, _) =
                crate::containers::resolve_user(std::path::Path::new(root), u)?;
            p["user"] = serde_json::json!({"uid": uid, "gid": gid, "additionalGids": extra});
        }
        let mut env: Vec<serde_json::Value> = p["env"].as_array().cloned().unwrap_or_default();
        for e in &req.env {
            let k = e.split('=').next().unwrap_or_default();
            env.retain(|x| x.as_str().and_then(|s| s.split('=').next()) != Some(k));
            env.push(e.clone().into());
        }
        p["env"] = env.into();
        if req.privileged {
            let all = crate::containers::kernel_capabilities();
            p["capabilities"] =
                serde_json::json!({"bounding": all, "effective": all, "permitted": all});
        }
        let process: oci_spec::runtime::Process = serde_json::from_value(p)
            .map_err(|e| Error::InvalidArgument(format!("exec process: {e}")))?;
        let rc = longshore_container::Container::load(self.runtime_root(), &c.record.id)
            .map_err(Error::runtime(format!("load container {}", c.record.name)))?;
        let (console, listener) = if req.tty {
            std::fs::create_dir_all(crate::monitor::SOCKET_DIR).map_err(Error::io("socket dir"))?;
            let path = std::path::Path::new(crate::monitor::SOCKET_DIR).join(format!(
                "{}.exec{}",
                &c.record.id[..16],
                std::process::id()
            ));
            let _ = std::fs::remove_file(&path);
            let l = std::os::unix::net::UnixListener::bind(&path)
                .map_err(Error::io("console socket"))?;
            (Some(path), Some(l))
        } else {
            (None, None)
        };
        let res = rc.exec(&process, stdio, console.as_deref());
        let terminal = match (&listener, &res) {
            (Some(l), Ok(_)) => {
                let (conn, _) = l.accept().map_err(Error::io("accept the console"))?;
                let fd = longshore_container::receive_console(std::os::fd::AsFd::as_fd(&conn))
                    .map_err(Error::runtime("receive the exec terminal"))?;
                Some(std::fs::File::from(fd))
            }
            _ => None,
        };
        if let Some(p) = &console {
            let _ = std::fs::remove_file(p);
        }
        let process = res.map_err(Error::runtime(format!(
            "exec in container {}",
            c.record.name
        )))?;
        self.event(
            "container",
            "exec_start",
            &c.record.id,
            c.event_attributes(),
        );
        Ok(ExecProcess {
            pid: process.pid(),
            terminal,
            process,
        })
    }
}
