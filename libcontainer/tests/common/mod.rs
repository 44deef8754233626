//! What the root tests share: a busybox bundle fixture and helpers to run and exec.
#![allow(dead_code)]

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use longshore_container::{Container, Stdio};
use longshore_test_support::{busybox_bundle_dir, unique_name};
use oci_spec::runtime::Spec;

/// A bundle with a busybox rootfs, a spec to tweak, a private state root, and cleanup.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub id: String,
    pub spec: Spec,
}

impl Fixture {
    pub fn new(args: &[&str]) -> Fixture {
        let dir = busybox_bundle_dir().expect("busybox rootfs");
        let mut spec = longshore_container::spec::default_spec();
        let p = spec.process_mut().as_mut().unwrap();
        p.set_terminal(Some(false));
        p.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
        Fixture {
            dir,
            id: unique_name("lsct"),
            spec,
        }
    }

    pub fn bundle(&self) -> &Path {
        self.dir.path()
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn builder(&self) -> longshore_container::ContainerBuilder {
        Container::builder(&self.id)
            .bundle(self.bundle())
            .root(self.root())
            .spec(self.spec.clone())
    }

    /// Runs to completion; returns (exit code, stdout+stderr).
    pub fn run(&self) -> (i32, String) {
        let (r, w) = nix::unistd::pipe().unwrap();
        let b = self.builder().stdio(all_to(&w));
        let res = b.run();
        drop(w);
        let out = read_all(r);
        match res {
            Ok(code) => (code, out),
            Err(e) => panic!("run failed: {e}\noutput: {out}"),
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Ok(mut c) = Container::load(self.root(), &self.id) {
            let _ = c.delete(true);
        }
    }
}

/// Stdio whose three descriptors are duplicates of `fd` (the caller keeps `fd`).
pub fn all_to(fd: &impl std::os::fd::AsFd) -> Stdio {
    let dup = || fd.as_fd().try_clone_to_owned().unwrap();
    Stdio::Fds {
        stdin: dup(),
        stdout: dup(),
        stderr: dup(),
    }
}

/// Runs `p` in the container, waits for it, returns (exit code, stdout+stderr).
pub fn exec_capture(c: &Container, p: &oci_spec::runtime::Process) -> (i32, String) {
    let (r, w) = nix::unistd::pipe().unwrap();
    let mut proc = c.exec(p, all_to(&w), None).unwrap();
    drop(w);
    let code = proc.wait().unwrap();
    (code, read_all(r))
}

pub fn read_all(fd: OwnedFd) -> String {
    let mut s = String::new();
    std::fs::File::from(fd).read_to_string(&mut s).unwrap();
    s
}

/// Creates and starts `f` with `process.terminal` on a console socket, reads the
/// terminal until `marker` appears (or the pty closes), waits for the container and
/// deletes it; returns what the terminal showed.
pub fn run_on_console(f: &mut Fixture, marker: &str) -> String {
    f.spec
        .process_mut()
        .as_mut()
        .unwrap()
        .set_terminal(Some(true));
    let sock_dir = tempfile::Builder::new()
        .prefix("longshore-console-")
        .tempdir()
        .unwrap();
    let sock_path = sock_dir.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let accept = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        longshore_container::receive_console(std::os::fd::AsFd::as_fd(&conn)).unwrap()
    });
    let mut c = f.builder().console_socket(&sock_path).create().unwrap();
    let master = accept.join().unwrap();
    c.start().unwrap();
    let mut out = Vec::new();
    let mut file = std::fs::File::from(master);
    let mut buf = [0u8; 4096];
    // the pty reports EIO once the slave side is closed by the exited process
    while !String::from_utf8_lossy(&out).contains(marker) {
        match file.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    c.wait().unwrap();
    c.delete(true).unwrap();
    String::from_utf8_lossy(&out).into_owned()
}
