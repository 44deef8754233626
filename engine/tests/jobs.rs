//! The container jobs through the library API: `Engine` methods called directly, no CLI
//! process and no HTTP. One test per option group; each has a data root of its own (a
//! tempdir under /tmp with busybox imported), runs its containers with network mode
//! `none` (no bridge, no host network state), and removes them in a Drop guard, so a
//! failing assertion leaves nothing behind either.
//!
//! A custom harness (`harness = false`): the engine starts every container's monitor by
//! re-executing the current program, so `main` (the shared harness) calls
//! `run_if_monitor` first.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use longshore_engine::containers::ZERO_TIME;
use longshore_engine::{
    AttachStreams, Attached, CreateRequest, Engine, EngineOptions, Error, EventsOptions,
    ExecRequest, Frame, ListOptions, LogLine, LogsOptions, RemoveOptions, StartOptions,
    StopOptions, UpdateRequest, WaitCondition, attach_to,
};
use longshore_test_support::{busybox_rootfs, require_root, unique_name};

mod common;

// ---------------------------------------------------------------------------------------
// Fixtures

/// A data root of its own with busybox imported. Dropping it removes every container
/// (killing running ones) and volume, then closes the engine and deletes the directory.
struct Root {
    engine: Option<Engine>,
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Root {
        let dir = tempfile::Builder::new()
            .prefix("longshore-jobs-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let engine = Engine::open(dir.path().join("root"), EngineOptions::default())
            .expect("open the engine");
        let root = Root {
            engine: Some(engine),
            dir,
        };
        root.import("busybox:latest", &[], &["CMD [\"sh\"]"]);
        root
    }

    /// Imports busybox plus `files` (path, content, mode; mode 0: a symlink to the
    /// content) as `reference`, with `changes`.
    fn import(&self, reference: &str, files: &[(&str, &str, u32)], changes: &[&str]) -> String {
        let rootfs = tempfile::Builder::new()
            .prefix("longshore-jobs-rootfs-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        busybox_rootfs(rootfs.path()).expect("busybox rootfs");
        for (path, data, mode) in files {
            let p = rootfs.path().join(path);
            fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
            if *mode == 0 {
                std::os::unix::fs::symlink(data, &p).expect("symlink");
                continue;
            }
            fs::write(&p, data).expect("write");
            fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).expect("chmod");
        }
        let mut b = tar::Builder::new(Vec::new());
        b.follow_symlinks(false);
        b.append_dir_all(".", rootfs.path())
            .expect("tar the rootfs");
        let bytes = b.into_inner().expect("tar");
        let changes: Vec<String> = changes.iter().map(|s| s.to_string()).collect();
        self.e()
            .import_image(&bytes[..], Some(reference), None, &changes)
            .unwrap_or_else(|e| panic!("import {reference}: {e}"))
    }

    fn e(&self) -> &Engine {
        self.engine.as_ref().expect("the engine is open")
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Drops the engine and opens a new one on the same root (a process that ended and a
    /// new one).
    fn reopen(&mut self) {
        self.engine = None;
        self.engine =
            Some(Engine::open(self.path(), EngineOptions::default()).expect("reopen the engine"));
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let engine = match self.engine.take() {
            Some(e) => e,
            None => match Engine::open(self.path(), EngineOptions::default()) {
                Ok(e) => e,
                Err(_) => return,
            },
        };
        let mut all = ListOptions::default();
        all.all = true;
        let mut force = RemoveOptions::default();
        force.force = true;
        force.volumes = true;
        if let Ok(list) = engine.list_containers(&all) {
            for c in list {
                if let Err(e) = engine.remove_container(&c.id, &force) {
                    eprintln!("cleanup: rm -f {}: {e}", c.id);
                }
            }
        }
        if let Ok(vols) = engine.volumes() {
            for v in vols {
                let _ = engine.remove_volume(&v.name, true);
            }
        }
        drop(engine);
    }
}

/// A `create` request for busybox running `cmd`, with a unique name, on network `none`.
/// Every container of `e`'s root as id -> (name, status).
fn listing_rows(e: &Engine) -> BTreeMap<String, (String, String)> {
    let mut all = ListOptions::default();
    all.all = true;
    e.list_containers(&all)
        .unwrap()
        .into_iter()
        .map(|s| (s.id, (s.names[0].clone(), s.status)))
        .collect()
}

/// What another engine (another process) does to a root of 40 containers in the listing
/// tests: renames the first, runs the second to its exit, removes the third and creates
/// one labelled `new=yes`. Returns the new name and the new container's ID.
fn change_four(other: &Engine, ids: &[String], prefix: &str) -> (String, String) {
    let renamed = unique_name(prefix);
    other.rename_container(&ids[0], &renamed).unwrap();
    other
        .start_container(&ids[1], &StartOptions::default())
        .unwrap();
    other
        .wait_container(&ids[1], WaitCondition::NotRunning)
        .unwrap();
    other.remove_container(&ids[2], &force()).unwrap();
    let mut q = busybox(&["true"]);
    q.labels.insert("new".into(), "yes".into());
    let added = create(other, &q);
    (renamed, added)
}

/// `e` lists what [`change_four`] did, a label filter included.
fn assert_four_changed(e: &Engine, ids: &[String], renamed: &str, added: &str) {
    let r = listing_rows(e);
    assert_eq!(r.len(), 40, "{r:?}");
    assert_eq!(r[&ids[0]].0, format!("/{renamed}"));
    assert!(r[&ids[1]].1.starts_with("Exited (0)"), "{:?}", r[&ids[1]]);
    assert!(!r.contains_key(&ids[2]));
    assert_eq!(r[added].1, "Created");
    let mut o = ListOptions::default();
    o.all = true;
    o.filters = vec![("label".into(), "new=yes".into())];
    let l = e.list_containers(&o).unwrap();
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].id, added);
}

/// Pids of live monitor processes of container `id` (their arguments in the environment
/// name it).
fn monitors_of(id: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|d| d.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                env.split(|b| *b == 0).any(|v| {
                    v.starts_with(b"LONGSHORE_MONITOR=")
                        && v.windows(id.len()).any(|w| w == id.as_bytes())
                })
            })
        })
        .collect()
}

fn busybox(cmd: &[&str]) -> CreateRequest {
    let mut r = CreateRequest::default();
    r.image = "busybox".into();
    r.cmd = strings(cmd);
    r.name = Some(unique_name("lsj"));
    r.network = Some("none".into());
    r
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn name_of(req: &CreateRequest) -> String {
    req.name.clone().expect("the request has a name")
}

fn create(e: &Engine, req: &CreateRequest) -> String {
    e.create_container(req)
        .unwrap_or_else(|err| panic!("create {:?}: {err}", req.cmd))
        .id()
        .to_string()
}

fn start(e: &Engine, id: &str) -> longshore_engine::Container {
    e.start_container(id, &StartOptions::default())
        .unwrap_or_else(|err| panic!("start {id}: {err}"))
}

/// Creates and starts a container (detached); its ID.
fn run_detached(e: &Engine, req: &CreateRequest) -> String {
    let id = create(e, req);
    let c = start(e, &id);
    assert!(
        c.state.is_alive(),
        "{id} is not running after its start: {:?}",
        c.state
    );
    id
}

/// What a container that ran to its end did.
struct Ran {
    id: String,
    code: i32,
    out: String,
    err: String,
}

/// Creates, starts and waits for a container; its exit code and its logs.
fn run(e: &Engine, req: &CreateRequest) -> Ran {
    let id = create(e, req);
    start(e, &id);
    let code = e
        .wait_container(&id, WaitCondition::NotRunning)
        .unwrap_or_else(|err| panic!("wait {id}: {err}"));
    let (out, err) = logs(e, &id, &LogsOptions::default());
    Ran { id, code, out, err }
}

/// The container's log, stdout and stderr apart.
fn logs(e: &Engine, id: &str, opts: &LogsOptions) -> (String, String) {
    let lines = log_lines(e, id, opts);
    let mut out = String::new();
    let mut err = String::new();
    for l in lines {
        if l.stream == 2 {
            err.push_str(&l.data);
        } else {
            out.push_str(&l.data);
        }
    }
    (out, err)
}

fn log_lines(e: &Engine, id: &str, opts: &LogsOptions) -> Vec<LogLine> {
    let mut lines = Vec::new();
    e.container_logs(id, opts, &mut |l| {
        lines.push(l);
        true
    })
    .unwrap_or_else(|err| panic!("logs {id}: {err}"));
    lines
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn exec_req(cmd: &[&str]) -> ExecRequest {
    let mut r = ExecRequest::default();
    r.cmd = strings(cmd);
    r
}

/// Runs `req` in container `id` with pipes for stdout and stderr (stdin /dev/null);
/// its exit code and output.
fn exec(
    e: &Engine,
    id: &str,
    req: &ExecRequest,
) -> longshore_engine::Result<(i32, String, String)> {
    let (mut out_r, out_w) = std::io::pipe().expect("pipe");
    let (mut err_r, err_w) = std::io::pipe().expect("pipe");
    let stdio = longshore_container::Stdio::Fds {
        stdin: fs::File::open("/dev/null").expect("/dev/null").into(),
        stdout: out_w.into(),
        stderr: err_w.into(),
    };
    let mut p = e.exec(id, req, stdio)?;
    let errs = thread::spawn(move || {
        let mut s = String::new();
        let _ = err_r.read_to_string(&mut s);
        s
    });
    let mut out = String::new();
    let _ = out_r.read_to_string(&mut out);
    let code = p.wait()?;
    Ok((code, out, errs.join().expect("the stderr reader")))
}

/// The content of `file` in container `id`'s cgroup of `controller`.
fn cgroup_file(root: &Path, id: &str, controller: &str, file: &str) -> String {
    let rc = longshore_container::Container::load(root.join("runtime"), id)
        .unwrap_or_else(|e| panic!("the runtime state of {id}: {e}"));
    let dir = rc
        .cgroup_paths()
        .get(controller)
        .unwrap_or_else(|| panic!("no {controller} cgroup: {:?}", rc.cgroup_paths()))
        .clone();
    fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()))
        .trim()
        .to_string()
}

/// The actions of container `id`'s events so far.
fn events_of(e: &Engine, id: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let mut opts = EventsOptions::default();
    opts.since = Some(0);
    // cancelled from the start: the events on disk, without following
    opts.cancel = Some(std::sync::Arc::new(std::sync::atomic::AtomicBool::new(
        true,
    )));
    opts.filters = vec![("container".into(), id.into())];
    let mut out = Vec::new();
    e.events(&opts, &mut |ev| {
        out.push((ev.action, ev.actor.attributes));
        true
    })
    .expect("events");
    out
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs() as i64
}

/// Reads frames until the exit frame (or the end of the connection), on a thread, for at
/// most 30 s: stdout, stderr and the exit code.
fn collect(mut a: Attached) -> (String, String, Option<i32>) {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut code = None;
        while let Ok(Some(f)) = a.next_frame() {
            match f {
                Frame::Stdout(d) => out.extend(d),
                Frame::Stderr(d) => err.extend(d),
                Frame::Exit(c) => {
                    code = Some(c);
                    break;
                }
            }
        }
        let _ = tx.send((text(&out), text(&err), code));
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the container did not end within 30 s")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn force() -> RemoveOptions {
    let mut o = RemoveOptions::default();
    o.force = true;
    o
}

// ---------------------------------------------------------------------------------------
// Tests

/// create/start/wait/rm: the exit code, the states on the way, Docker's 127 and 126 for a
/// command that is missing or not executable, a name conflict that names the name, rm of a
/// running container refused without force, and the events of a life.
fn create_start_wait_rm() {
    require_root!();
    let root = Root::new();
    let e = root.e();
    let req = busybox(&["sh", "-c", "echo hello; echo oops >&2; exit 3"]);
    let name = name_of(&req);
    let id = create(e, &req);
    assert_eq!(id.len(), 64, "{id}");
    let c = e.container(&name).expect("found by name");
    assert_eq!(c.id(), id);
    assert_eq!(e.container(&id[..12]).expect("found by prefix").id(), id);
    assert_eq!(c.live_status(), "created");
    assert_eq!((c.state.pid, c.state.running), (0, false));
    assert_eq!(c.record.path, "sh");
    assert_eq!(c.record.args, ["-c", "echo hello; echo oops >&2; exit 3"]);

    // the name is taken: a conflict naming the name and its owner, and nothing created
    let err = e.create_container(&req).unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("\"/{name}\"")) && msg.contains(&id),
        "{msg}"
    );
    let mut all = ListOptions::default();
    all.all = true;
    assert_eq!(e.list_containers(&all).unwrap().len(), 1);

    let started = start(e, &name);
    assert_ne!(started.state.started_at, ZERO_TIME);
    assert_eq!(
        e.wait_container(&name, WaitCondition::NotRunning).unwrap(),
        3
    );
    let c = e.container(&name).unwrap();
    assert_eq!(c.live_status(), "exited");
    assert_eq!(
        (c.state.exit_code, c.state.pid, c.state.running),
        (3, 0, false)
    );
    assert_ne!(c.state.finished_at, ZERO_TIME);
    assert_eq!(
        logs(e, &id, &LogsOptions::default()),
        ("hello\n".to_string(), "oops\n".to_string())
    );
    // listed with -a only, as exited with its code
    let rows = e.list_containers(&all).unwrap();
    let row = rows.iter().find(|r| r.id == id).expect("listed with all");
    assert_eq!(row.state, "exited");
    assert!(row.status.starts_with("Exited (3)"), "{}", row.status);
    assert!(
        !e.list_containers(&ListOptions::default())
            .unwrap()
            .iter()
            .any(|r| r.id == id)
    );
    // a second wait of a stopped container returns at once with its code
    assert_eq!(e.wait_container(&id, WaitCondition::NotRunning).unwrap(), 3);

    e.remove_container(&name, &RemoveOptions::default())
        .expect("rm of an exited container");
    assert!(matches!(e.container(&name), Err(Error::NoSuchContainer(_))));
    assert!(!root.path().join("containers").join(&id).exists());
    assert!(matches!(
        e.remove_container(&name, &RemoveOptions::default()),
        Err(Error::NoSuchContainer(_))
    ));
    let actions: Vec<String> = events_of(e, &id).into_iter().map(|(a, _)| a).collect();
    assert_eq!(actions, ["create", "start", "die", "destroy"]);
    let die = events_of(e, &id)
        .into_iter()
        .find(|(a, _)| a == "die")
        .unwrap();
    assert_eq!(die.1.get("exitCode").map(String::as_str), Some("3"));
    assert_eq!(die.1.get("name"), Some(&name));
    // the name is free again
    let again = create(e, &req);
    e.remove_container(&again, &RemoveOptions::default())
        .unwrap();

    // a command that cannot run: the start fails with Docker's codes, recorded in the state
    for (cmd, code, says) in [
        ("nosuchcmd", 127, "executable file not found"),
        ("/etc/passwd", 126, "/etc/passwd"),
    ] {
        let id = create(e, &busybox(&[cmd]));
        let err = e
            .start_container(&id, &StartOptions::default())
            .expect_err("a start of a command that cannot run");
        assert!(matches!(err, Error::Exec { .. }), "{cmd}: {err:?}");
        assert_eq!(err.exit_code(), code, "{cmd}: {err}");
        assert!(err.to_string().contains(says), "{cmd}: {err}");
        let c = e.container(&id).unwrap();
        assert_eq!(c.state.exit_code, code, "{cmd}: {:?}", c.state);
        assert!(!c.state.error.is_empty(), "{cmd}: {:?}", c.state);
        assert!(!c.state.running && c.live_status() != "running");
        e.remove_container(&id, &RemoveOptions::default())
            .unwrap_or_else(|err| panic!("rm after a failed start of {cmd}: {err}"));
    }

    // a start that fails before the container's process is made (joining the network of
    // a container that does not run): the monitor spawned ahead of it has left when the
    // start returns, and holds no lock that would refuse the next start
    let stopped = create(e, &busybox(&["true"]));
    let mut req = busybox(&["echo", "joined"]);
    req.network = Some(format!("container:{stopped}"));
    let id = create(e, &req);
    let err = e
        .start_container(&id, &StartOptions::default())
        .expect_err("a start joining a stopped container's network");
    assert!(err.to_string().contains("non running container"), "{err}");
    assert!(
        monitors_of(&id).is_empty(),
        "a monitor outlived the failed start: {:?}",
        monitors_of(&id)
    );
    assert_eq!(e.container(&id).unwrap().live_status(), "created");
    // the monitor listened on the container's attach socket before the go: gone with it
    let socket = longshore_engine::monitor::attach_socket(&id);
    assert!(!socket.exists(), "{} was left", socket.display());
    // the same with clients to attach (the monitor says its socket listens first)
    let only_out = AttachStreams {
        stdout: true,
        ..Default::default()
    };
    let err = e
        .start_attached(&id, &[only_out])
        .expect_err("an attached start joining a stopped container's network");
    assert!(err.to_string().contains("non running container"), "{err}");
    assert!(monitors_of(&id).is_empty(), "{:?}", monitors_of(&id));
    assert!(!socket.exists(), "{} was left", socket.display());
    e.start_container(&stopped, &StartOptions::default())
        .expect("the other container starts");
    e.remove_container(&stopped, &force()).unwrap();
    e.remove_container(&id, &RemoveOptions::default()).unwrap();

    // rm of a running container: refused without force, and it runs on
    let id = run_detached(e, &busybox(&["sleep", "1000"]));
    let running = e.container(&id).unwrap();
    let err = e
        .remove_container(&id, &RemoveOptions::default())
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("You cannot remove a running container")
            && err.to_string().contains(&id),
        "{err}"
    );
    assert!(e.container(&id).unwrap().state.is_alive());
    e.remove_container(&id, &force()).expect("rm -f");
    assert!(!running.state.is_alive(), "rm -f left the process");
    assert!(matches!(e.container(&id), Err(Error::NoSuchContainer(_))));
    assert!(
        e.list_containers(&all).unwrap().is_empty(),
        "containers are left"
    );
}

/// The command, environment, working directory and user as the image config gives them
/// and as a create request overrides them (Docker's rules: `--entrypoint` drops the image's
/// `Cmd`, `-e` overrides one variable and keeps the others, a missing working directory is
/// created).
fn image_config_and_overrides() {
    require_root!();
    let root = Root::new();
    let e = root.e();
    let show = "#!/bin/sh\n\
                echo \"args=$*\"\n\
                echo \"foo=$FOO bar=$BAR new=$NEW\"\n\
                echo \"pwd=$(pwd) uid=$(id -u) gid=$(id -g) home=$HOME\"\n";
    root.import(
        "showcfg:1",
        &[("bin/show", show, 0o755)],
        &[
            "ENTRYPOINT [\"/bin/show\"]",
            "CMD [\"from-image\"]",
            "ENV FOO=image-foo",
            "ENV BAR=image-bar",
            "WORKDIR /home/user",
            "USER user",
        ],
    );
    let req = |cmd: &[&str]| {
        let mut r = busybox(cmd);
        r.image = "showcfg:1".into();
        r
    };

    // the image's config as it is
    let r = run(e, &req(&[]));
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "args=from-image\nfoo=image-foo bar=image-bar new=\npwd=/home/user uid=1000 gid=1000 home=/home/user\n"
    );
    let c = e.container(&r.id).unwrap();
    assert_eq!(c.record.path, "/bin/show");
    assert_eq!(c.record.args, ["from-image"]);
    assert_eq!(
        c.record.config.entrypoint.as_deref(),
        Some(&["/bin/show".to_string()][..])
    );
    assert_eq!(c.record.config.cmd, ["from-image"]);
    assert_eq!(c.record.config.user, "user");
    assert_eq!(c.record.config.working_dir, "/home/user");

    // arguments replace the image's Cmd and keep its Entrypoint; -e overrides one variable
    let mut q = req(&["x", "y z"]);
    q.env = strings(&["FOO=run-foo", "NEW=1"]);
    let r = run(e, &q);
    assert_eq!(
        r.out,
        "args=x y z\nfoo=run-foo bar=image-bar new=1\npwd=/home/user uid=1000 gid=1000 home=/home/user\n"
    );
    let env = e.container(&r.id).unwrap().record.config.env;
    assert!(
        env.contains(&"FOO=run-foo".to_string())
            && env.contains(&"BAR=image-bar".to_string())
            && !env.contains(&"FOO=image-foo".to_string()),
        "{env:?}"
    );

    // --entrypoint drops the image's Cmd
    let mut q = req(&[]);
    q.entrypoint = Some("/bin/echo".into());
    let r = run(e, &q);
    assert_eq!((r.code, r.out.as_str()), (0, "\n"));
    let mut q = req(&["with", "args"]);
    q.entrypoint = Some("/bin/echo".into());
    assert_eq!(run(e, &q).out, "with args\n");
    // an empty --entrypoint clears the image's: the arguments are the whole command
    let mut q = req(&["/bin/show", "alone"]);
    q.entrypoint = Some(String::new());
    let r = run(e, &q);
    assert!(r.out.starts_with("args=alone\n"), "{}", r.out);
    assert_eq!(e.container(&r.id).unwrap().record.config.entrypoint, None);

    // -u and -w over the image's; a user by number; a working directory that is not there
    let mut q = req(&[]);
    q.user = Some("root".into());
    q.workdir = Some("/tmp".into());
    let r = run(e, &q);
    assert!(
        r.out.ends_with("pwd=/tmp uid=0 gid=0 home=/root\n"),
        "{}",
        r.out
    );
    let mut q = req(&[]);
    q.user = Some("1000:10".into());
    q.workdir = Some("/not/there/yet".into());
    let r = run(e, &q);
    assert_eq!(r.code, 0, "{} {}", r.out, r.err);
    assert!(
        r.out
            .ends_with("pwd=/not/there/yet uid=1000 gid=10 home=/home/user\n"),
        "{}",
        r.out
    );
    // a working directory through a symlink of the image that names a host directory: made
    // inside the container, never on the host
    let host = root.dir.path().join("host-dir");
    fs::create_dir(&host).unwrap();
    root.import(
        "linkcfg:1",
        &[("escape", host.to_str().unwrap(), 0)],
        &["CMD [\"pwd\"]"],
    );
    let mut q = busybox(&[]);
    q.image = "linkcfg:1".into();
    q.workdir = Some("/escape/made/here".into());
    let r = run(e, &q);
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.out, format!("{}/made/here\n", host.display()));
    assert_eq!(
        fs::read_dir(&host).unwrap().count(),
        0,
        "the working directory was made on the host"
    );
    // an unknown user fails the start, in Docker's words
    let mut q = req(&[]);
    q.user = Some("nosuchuser".into());
    let id = create(e, &q);
    let err = e
        .start_container(&id, &StartOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("nosuchuser"), "{err}");
    assert_ne!(e.container(&id).unwrap().live_status(), "running");
}

/// Logs: the json-file on disk in Docker's format, stdout/stderr apart, tail, since and
/// until, rotation by max-size and max-file, and the none driver.
fn logs_json_file_rotation_and_none() {
    require_root!();
    let root = Root::new();
    let e = root.e();
    let r = run(
        e,
        &busybox(&[
            "sh",
            "-c",
            "echo out-1; echo err-1 >&2; sleep 1; echo out-2; echo err-2 >&2",
        ]),
    );
    assert_eq!(r.code, 0);
    assert_eq!(r.out, "out-1\nout-2\n");
    assert_eq!(r.err, "err-1\nerr-2\n");
    // on disk, one JSON object per line
    let path = root
        .path()
        .join("containers")
        .join(&r.id)
        .join(format!("{}-json.log", r.id));
    let disk = fs::read_to_string(&path).expect("the json-file log");
    let entries: Vec<serde_json::Value> = disk
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(entries.len(), 4, "{disk}");
    for en in &entries {
        let t = en["time"].as_str().expect("time");
        humantime::parse_rfc3339(t).unwrap_or_else(|err| panic!("time {t}: {err}"));
        let want = if en["log"].as_str().unwrap().starts_with("out") {
            "stdout"
        } else {
            "stderr"
        };
        assert_eq!(en["stream"], want, "{en}");
    }
    let time_of = |log: &str| {
        entries
            .iter()
            .find(|en| en["log"] == log)
            .and_then(|en| en["time"].as_str())
            .expect("the line")
            .to_string()
    };
    let mut o = LogsOptions::default();
    o.stdout = true;
    assert_eq!(
        logs(e, &r.id, &o),
        ("out-1\nout-2\n".to_string(), String::new())
    );
    let mut o = LogsOptions::default();
    o.stderr = true;
    assert_eq!(
        logs(e, &r.id, &o),
        (String::new(), "err-1\nerr-2\n".to_string())
    );
    let mut o = LogsOptions::default();
    o.stdout = true;
    o.tail = Some(1);
    assert_eq!(logs(e, &r.id, &o).0, "out-2\n");
    o.tail = Some(0);
    assert_eq!(logs(e, &r.id, &o).0, "");
    let mut o = LogsOptions::default();
    o.stdout = true;
    o.since = Some(time_of("out-2\n"));
    assert_eq!(logs(e, &r.id, &o).0, "out-2\n");
    let mut o = LogsOptions::default();
    o.stdout = true;
    o.until = Some(time_of("out-1\n"));
    assert_eq!(logs(e, &r.id, &o).0, "out-1\n");
    let mut o = LogsOptions::default();
    o.since = Some((now_secs() + 60).to_string());
    assert_eq!(logs(e, &r.id, &o), (String::new(), String::new()));
    let mut o = LogsOptions::default();
    o.since = Some("not a time".into());
    assert!(matches!(
        e.container_logs(&r.id, &o, &mut |_| true),
        Err(Error::InvalidArgument(_))
    ));
    // follow returns once the container has stopped
    let mut o = LogsOptions::default();
    o.follow = true;
    assert_eq!(log_lines(e, &r.id, &o).len(), 4);

    // rotation: three files of at most 1 KiB, the oldest lines gone, the rest in order
    let mut q = busybox(&["sh", "-c", "for i in $(seq 1 300); do echo line-$i; done"]);
    q.log_opts = strings(&["max-size=1k", "max-file=3"]);
    let r = run(e, &q);
    assert_eq!(r.code, 0);
    let main = root
        .path()
        .join("containers")
        .join(&r.id)
        .join(format!("{}-json.log", r.id));
    let rotated = |n: u32| PathBuf::from(format!("{}.{n}", main.display()));
    for p in [main.clone(), rotated(1), rotated(2)] {
        let len = fs::metadata(&p)
            .unwrap_or_else(|err| panic!("{}: {err}", p.display()))
            .len();
        assert!(len > 0 && len <= 1024, "{}: {len} bytes", p.display());
    }
    assert!(!rotated(3).exists(), "max-file=3 kept a fourth file");
    let kept: Vec<u32> = r
        .out
        .lines()
        .map(|l| l.strip_prefix("line-").expect("a line").parse().unwrap())
        .collect();
    assert_eq!(*kept.last().unwrap(), 300, "{}", r.out);
    assert!(kept[0] > 1, "nothing was rotated away: {}", r.out);
    assert!(
        kept.windows(2).all(|w| w[1] == w[0] + 1),
        "the kept lines are not one run: {kept:?}"
    );
    // the files hold exactly those lines: .2 oldest, then .1, then the current one
    let on_disk: String = [rotated(2), rotated(1), main.clone()]
        .iter()
        .flat_map(|p| {
            fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).unwrap()["log"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(on_disk, r.out);

    // the none driver: nothing written, and logs says it cannot read
    let mut q = busybox(&["echo", "unlogged"]);
    q.log_driver = Some("none".into());
    let id = create(e, &q);
    start(e, &id);
    assert_eq!(e.wait_container(&id, WaitCondition::NotRunning).unwrap(), 0);
    let dir = root.path().join("containers").join(&id);
    assert!(!dir.join(format!("{id}-json.log")).exists());
    let err = e
        .container_logs(&id, &LogsOptions::default(), &mut |_| true)
        .unwrap_err();
    assert!(
        err.to_string().contains("does not support reading"),
        "{err}"
    );
    // an unknown driver or option is refused at create
    let mut q = busybox(&["true"]);
    q.log_driver = Some("syslog".into());
    assert!(matches!(
        e.create_container(&q),
        Err(Error::InvalidArgument(_))
    ));
    let mut q = busybox(&["true"]);
    q.log_opts = strings(&["max-file=0"]);
    assert!(matches!(
        e.create_container(&q),
        Err(Error::InvalidArgument(_))
    ));
}

/// exec: exit code and streams, the container's environment with the exec's over it,
/// user and working directory, 127, a TTY, top, and refusals while paused, stopped or
/// never started.
fn exec_options_and_refusals() {
    require_root!();
    let root = Root::new();
    let e = root.e();
    let mut req = busybox(&["sleep", "1000"]);
    req.env = strings(&["FROM_RUN=run", "SHARED=run"]);
    let id = run_detached(e, &req);

    let (code, out, err) = exec(
        e,
        &id,
        &exec_req(&["sh", "-c", "echo out; echo err >&2; exit 5"]),
    )
    .unwrap();
    assert_eq!((code, out.as_str(), err.as_str()), (5, "out\n", "err\n"));

    let mut r = exec_req(&["sh", "-c", "echo $FROM_RUN $SHARED $ONLY"]);
    r.env = strings(&["SHARED=exec", "ONLY=exec"]);
    assert_eq!(exec(e, &id, &r).unwrap().1, "run exec exec\n");

    let mut r = exec_req(&["sh", "-c", "id -u; id -g; pwd"]);
    r.user = Some("user".into());
    r.workdir = Some("/home/user".into());
    assert_eq!(exec(e, &id, &r).unwrap().1, "1000\n1000\n/home/user\n");
    let mut r = exec_req(&["id", "-u"]);
    r.user = Some("nobody".into());
    assert_eq!(exec(e, &id, &r).unwrap().1, "65534\n");
    // the container's own user is root
    assert_eq!(exec(e, &id, &exec_req(&["id", "-u"])).unwrap().1, "0\n");
    let mut r = exec_req(&["true"]);
    r.user = Some("nosuchuser".into());
    assert!(exec(e, &id, &r).is_err(), "an unknown user was accepted");

    // a missing command: 127, refused by the runtime or as the process's status
    let code = match exec(e, &id, &exec_req(&["nosuchcmd"])) {
        Ok((code, _, _)) => code,
        Err(err) => err.exit_code(),
    };
    assert_eq!(code, 127);
    assert!(matches!(
        exec(e, &id, &exec_req(&[])),
        Err(Error::InvalidArgument(_))
    ));

    // without a terminal `tty` says so; with one, the output comes through the terminal
    let (code, out, _) = exec(e, &id, &exec_req(&["tty"])).unwrap();
    assert_eq!((code, out.as_str()), (1, "not a tty\n"));
    let mut r = exec_req(&["sh", "-c", "tty; echo tty-$((6*7)); exit 2"]);
    r.tty = true;
    let mut p = e
        .exec(&id, &r, longshore_container::Stdio::Null)
        .expect("exec -t");
    let mut term = p.terminal.take().expect("exec -t gives a terminal");
    let reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n) = term.read(&mut chunk) {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        text(&buf)
    });
    assert_eq!(p.wait().unwrap(), 2);
    let out = reader.join().unwrap();
    assert!(
        out.contains("/dev/pts/") && out.contains("tty-42\r\n"),
        "{out:?}"
    );

    // top lists the container's processes, an exec'd one too while it runs
    let top = e.top_container(&id, "").expect("top");
    assert!(
        top.processes
            .iter()
            .any(|p| p.last().is_some_and(|c| c.contains("sleep 1000"))),
        "{:?}",
        top.processes
    );

    e.pause_container(&id).unwrap();
    let err = exec(e, &id, &exec_req(&["true"])).unwrap_err();
    assert!(
        matches!(err, Error::WrongState(_)) && err.to_string().contains("is paused"),
        "{err}"
    );
    e.unpause_container(&id).unwrap();
    assert_eq!(
        exec(e, &id, &exec_req(&["echo", "again"])).unwrap().1,
        "again\n"
    );

    e.stop_container(&id, &StopOptions::timeout(0)).unwrap();
    let err = exec(e, &id, &exec_req(&["true"])).unwrap_err();
    assert!(
        matches!(err, Error::WrongState(_)) && err.to_string().contains("is not running"),
        "{err}"
    );
    assert!(matches!(
        e.top_container(&id, ""),
        Err(Error::WrongState(_))
    ));
    let never = create(e, &busybox(&["sleep", "1000"]));
    let err = exec(e, &never, &exec_req(&["true"])).unwrap_err();
    assert!(err.to_string().contains("is not running"), "{err}");
}

/// stop: the stop signal (the container's, or the request's over it), SIGKILL after the
/// timeout when it is ignored; kill -s delivers a signal and leaves the container running;
/// kill without a signal is SIGKILL; restart runs the container again.
fn stop_signals_timeout_kill_and_restart() {
    require_root!();
    let root = Root::new();
    let e = root.e();
    let ready = |id: &str, word: &str| {
        let id = id.to_string();
        let word = word.to_string();
        wait_until(&format!("{word} in the logs of {id}"), || {
            logs(e, &id, &LogsOptions::default()).0.contains(&word)
        });
    };

    // SIGTERM by default: the container's handler runs and its code is the exit code
    let id = run_detached(
        e,
        &busybox(&[
            "sh",
            "-c",
            "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 1; done",
        ]),
    );
    ready(&id, "ready");
    let t = Instant::now();
    e.stop_container(&id, &StopOptions::timeout(10)).unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let c = e.container(&id).unwrap();
    assert_eq!((c.live_status(), c.state.exit_code), ("exited", 7));
    assert!(logs(e, &id, &LogsOptions::default()).0.contains("got-term"));
    // stopping a stopped container is no error
    e.stop_container(&id, &StopOptions::timeout(1)).unwrap();

    // the container's stop signal, and the request's over it; restart starts it again
    let mut q = busybox(&[
        "sh",
        "-c",
        "trap 'exit 9' USR1; trap 'exit 11' USR2; echo ready; while :; do sleep 1; done",
    ]);
    q.stop_signal = Some("SIGUSR1".into());
    let id = run_detached(e, &q);
    assert_eq!(
        e.container(&id)
            .unwrap()
            .record
            .config
            .stop_signal
            .as_deref(),
        Some("SIGUSR1")
    );
    ready(&id, "ready");
    let mut o = StopOptions::timeout(10);
    o.signal = Some("USR2".into());
    e.stop_container(&id, &o).unwrap();
    assert_eq!(e.container(&id).unwrap().state.exit_code, 11);
    let first = e.container(&id).unwrap().state.started_at;
    e.restart_container(&id, &StopOptions::timeout(10)).unwrap();
    let c = e.container(&id).unwrap();
    assert!(
        c.state.is_alive() && c.state.started_at != first,
        "{:?}",
        c.state
    );
    wait_until("the second run's ready", || {
        logs(e, &id, &LogsOptions::default())
            .0
            .matches("ready")
            .count()
            == 2
    });
    e.stop_container(&id, &StopOptions::timeout(10)).unwrap();
    assert_eq!(e.container(&id).unwrap().state.exit_code, 9);

    // a process 1 without a handler ignores SIGTERM: SIGKILL after the timeout
    let id = run_detached(e, &busybox(&["sleep", "1000"]));
    let t = Instant::now();
    e.stop_container(&id, &StopOptions::timeout(1)).unwrap();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(8),
        "{took:?}"
    );
    let c = e.container(&id).unwrap();
    assert_eq!((c.live_status(), c.state.exit_code), ("exited", 137));
    assert!(c.state.error.is_empty(), "{}", c.state.error);

    // kill -s: the signal reaches the handler, the container runs on
    let id = run_detached(
        e,
        &busybox(&[
            "sh",
            "-c",
            "trap 'echo got-usr1' USR1; echo ready; while :; do sleep 1; done",
        ]),
    );
    ready(&id, "ready");
    let pid = e.container(&id).unwrap().state.pid;
    e.kill_container(&id, Some("SIGUSR1")).unwrap();
    ready(&id, "got-usr1");
    let c = e.container(&id).unwrap();
    assert_eq!((c.live_status(), c.state.pid), ("running", pid));
    let err = e.kill_container(&id, Some("SIGNOPE")).unwrap_err();
    assert!(err.to_string().contains("Invalid signal"), "{err}");
    assert!(e.container(&id).unwrap().state.is_alive());
    e.kill_container(&id, None).unwrap();
    assert_eq!(
        e.wait_container(&id, WaitCondition::NotRunning).unwrap(),
        137
    );
    let err = e.kill_container(&id, None).unwrap_err();
    assert!(
        matches!(err, Error::WrongState(_)) && err.to_string().contains("is not running"),
        "{err}"
    );
    let kills: Vec<String> = events_of(e, &id)
        .into_iter()
        .filter(|(a, _)| a == "kill")
        .filter_map(|(_, at)| at.get("signal").cloned())
        .collect();
    assert_eq!(kills, ["10", "9"]);
}

/// pause/unpause: the state, the freezer cgroup, the refusals, and a stop of a paused
/// container.
fn pause_and_unpause() {
    require_root!();
    let root = Root::new();
    let e = root.e();
    let id = run_detached(e, &busybox(&["sleep", "1000"]));
    let err = e.unpause_container(&id).unwrap_err();
    assert!(err.to_string().contains("is not paused"), "{err}");
    e.pause_container(&id).unwrap();
    let c = e.container(&id).unwrap();
    assert!(c.state.paused && c.state.running, "{:?}", c.state);
    assert_eq!(c.live_status(), "paused");
    assert_eq!(
        cgroup_file(&root.path(), &id, "freezer", "freezer.state"),
        "FROZEN"
    );
    let row = e.list_containers(&ListOptions::default()).unwrap();
    assert_eq!(row[0].state, "paused");
    assert!(row[0].status.contains("(Paused)"), "{}", row[0].status);
    let err = e.pause_container(&id).unwrap_err();
    assert!(err.to_string().contains("is already paused"), "{err}");
    e.unpause_container(&id).unwrap();
    let c = e.container(&id).unwrap();
    assert!(!c.state.paused);
    assert_eq!(c.live_status(), "running");
    assert_eq!(
        cgroup_file(&root.path(), &id, "freezer", "freezer.state"),
        "THAWED"
    );
    // a paused container stops (thawed for the signals)
    e.pause_container(&id).unwrap();
    e.stop_container(&id, &StopOptions::timeout(0)).unwrap();
    let c = e.container(&id).unwrap();
    assert_eq!((c.live_status(), c.state.exit_code), ("exited", 137));
    assert!(!c.state.paused, "{:?}", c.state);
    let err = e.pause_container(&id).unwrap_err();
    assert!(err.to_string().contains("is not running"), "{err}");
}

/// Restart policies: on-failure:N restarts N times and counts them; on-failure leaves a
/// success alone; always restarts a container that exits by itself until a user stops it.
fn restart_policies() {
    require_root!();
    let root = Root::new();
    let e = root.e();
    let mut q = busybox(&["sh", "-c", "echo run; exit 1"]);
    q.restart = Some("on-failure:2".into());
    let id = create(e, &q);
    start(e, &id);
    wait_until("two restarts", || {
        let c = e.container(&id).unwrap();
        c.live_status() == "exited" && c.state.restart_count == 2
    });
    assert_eq!(e.wait_container(&id, WaitCondition::NotRunning).unwrap(), 1);
    let c = e.container(&id).unwrap();
    assert_eq!(c.state.restart_count, 2);
    assert_eq!(e.inspect_container(&id).unwrap()["RestartCount"], 2);
    assert_eq!(logs(e, &id, &LogsOptions::default()).0, "run\nrun\nrun\n");
    let dies = events_of(e, &id)
        .into_iter()
        .filter(|(a, _)| a == "die")
        .count();
    assert_eq!(dies, 3);
    // a user's start counts afresh
    start(e, &id);
    wait_until("two restarts again", || {
        let c = e.container(&id).unwrap();
        c.live_status() == "exited" && c.state.restart_count == 2
    });
    assert_eq!(e.wait_container(&id, WaitCondition::NotRunning).unwrap(), 1);
    assert_eq!(
        logs(e, &id, &LogsOptions::default())
            .0
            .matches("run")
            .count(),
        6
    );

    let mut q = busybox(&["echo", "fine"]);
    q.restart = Some("on-failure:5".into());
    let r = run(e, &q);
    assert_eq!((r.code, r.out.as_str()), (0, "fine\n"));
    assert_eq!(e.container(&r.id).unwrap().state.restart_count, 0);

    let mut q = busybox(&["sh", "-c", "echo up; exit 0"]);
    q.restart = Some("always".into());
    let id = create(e, &q);
    start(e, &id);
    wait_until("always restarts", || {
        e.container(&id).unwrap().state.restart_count >= 2
    });
    e.stop_container(&id, &StopOptions::timeout(1)).unwrap();
    let c = e.container(&id).unwrap();
    assert_eq!(c.live_status(), "exited", "{:?}", c.state);
    let count = c.state.restart_count;
    thread::sleep(Duration::from_millis(800));
    let c = e.container(&id).unwrap();
    assert_eq!(
        (c.live_status(), c.state.restart_count),
        ("exited", count),
        "restarted after a user's stop"
    );

    // bad policies are refused at create
    for bad in ["sometimes", "always:3", "on-failure:-1"] {
        let mut q = busybox(&["true"]);
        q.restart = Some(bad.into());
        assert!(
            matches!(e.create_container(&q), Err(Error::InvalidArgument(_))),
            "{bad}"
        );
    }
    let mut q = busybox(&["true"]);
    q.restart = Some("always".into());
    q.auto_remove = true;
    let err = e.create_container(&q).unwrap_err();
    assert!(
        err.to_string()
            .contains("Conflicting options: --restart and --rm"),
        "{err}"
    );
}

/// Supervision: a detached container outlives the engine that started it; a new engine on
/// the same root finds its process, runs jobs on it and gets its real exit code from the
/// monitor. After a crash of everything (monitor and process killed), restore records the
/// exit and restarts what the policy says.
fn supervision_across_an_engine_restart() {
    require_root!();
    let mut root = Root::new();
    let q = busybox(&["sh", "-c", "echo up; exec sleep 1000"]);
    let name = name_of(&q);
    let id = run_detached(root.e(), &q);
    let before = root.e().container(&id).unwrap().state;
    assert!(before.monitor_pid > 0);

    root.reopen();
    let e = root.e();
    let c = e.container(&name).unwrap();
    assert_eq!(c.state.pid, before.pid);
    assert_eq!(c.state.pid_start_time, before.pid_start_time);
    assert_eq!(c.state.monitor_pid, before.monitor_pid);
    assert!(c.state.is_alive());
    assert_eq!(c.live_status(), "running");
    assert_eq!(
        e.inspect_container(&name).unwrap()["State"]["Pid"],
        before.pid
    );
    let rep = e.restore_containers().unwrap();
    assert!(
        rep.settled.is_empty() && rep.restarted.is_empty() && rep.failed.is_empty(),
        "{rep:?}"
    );
    assert_eq!(exec(e, &id, &exec_req(&["echo", "hi"])).unwrap().1, "hi\n");
    wait_until("the log", || {
        logs(e, &id, &LogsOptions::default()).0 == "up\n"
    });
    e.stop_container(&id, &StopOptions::timeout(0)).unwrap();
    let c = e.container(&id).unwrap();
    // the monitor recorded it: the real status, not the unknown one (255)
    assert_eq!((c.live_status(), c.state.exit_code), ("exited", 137));
    assert!(c.state.error.is_empty(), "{}", c.state.error);

    // a crash of everything: the monitor and the container's process are killed
    let mut q = busybox(&["sleep", "1000"]);
    q.restart = Some("always".into());
    let id = run_detached(root.e(), &q);
    let old = root.e().container(&id).unwrap().state;
    let kill = |pid: i32| {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap_or_else(|e| panic!("kill {pid}: {e}"))
    };
    kill(old.monitor_pid);
    kill(old.pid);
    wait_until("the process gone", || !old.is_alive());
    root.reopen();
    let e = root.e();
    let rep = e.restore_containers().unwrap();
    assert_eq!(rep.settled, [id.as_str()], "{rep:?}");
    assert_eq!(rep.restarted, [id.as_str()], "{rep:?}");
    let c = e.container(&id).unwrap();
    assert!(c.state.is_alive(), "{:?}", c.state);
    assert_ne!(c.state.pid, old.pid);
    assert_ne!(c.state.monitor_pid, old.monitor_pid);
    assert_eq!(
        exec(e, &id, &exec_req(&["echo", "back"])).unwrap().1,
        "back\n"
    );
    // a restore now leaves the running container alone
    let rep = e.restore_containers().unwrap();
    assert!(
        rep.settled.is_empty() && rep.restarted.is_empty(),
        "{rep:?}"
    );
    e.remove_container(&id, &force()).unwrap();
    assert!(!c.state.is_alive());
}

/// Volumes: a named volume keeps what a container wrote and cannot be removed while a
/// container uses it (nor by rm -v); an anonymous volume is kept by rm and removed by rm -v.
fn volumes_in_use_and_anonymous() {
    require_root!();
    let root = Root::new();
    let e = root.e();
    let vname = unique_name("lsjv");
    let v = e.create_volume(Some(&vname), BTreeMap::new()).unwrap();
    let mut q = busybox(&["sh", "-c", "echo kept > /data/f; exec sleep 1000"]);
    q.volumes = vec![format!("{vname}:/data")];
    let id = run_detached(e, &q);
    wait_until("the file in the volume", || {
        fs::read_to_string(v.mountpoint.join("f")).is_ok_and(|s| s == "kept\n")
    });
    let err = e.remove_volume(&vname, false).unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert!(
        err.to_string().contains("volume is in use") && err.to_string().contains(&id),
        "{err}"
    );
    // a stopped container still uses it
    e.stop_container(&id, &StopOptions::timeout(0)).unwrap();
    assert!(matches!(
        e.remove_volume(&vname, false),
        Err(Error::Conflict(_))
    ));
    assert!(v.mountpoint.join("f").exists());
    // rm -v removes anonymous volumes only
    let mut rmv = RemoveOptions::default();
    rmv.volumes = true;
    e.remove_container(&id, &rmv).unwrap();
    assert_eq!(e.volume(&vname).unwrap().name, vname);
    // another container sees what the first wrote
    let mut q = busybox(&["cat", "/data/f"]);
    q.volumes = vec![format!("{vname}:/data:ro")];
    let r = run(e, &q);
    assert_eq!(r.out, "kept\n");
    e.remove_container(&r.id, &RemoveOptions::default())
        .unwrap();
    e.remove_volume(&vname, false).unwrap();
    assert!(matches!(e.volume(&vname), Err(Error::NoSuchVolume(_))));
    assert!(!v.mountpoint.exists());

    // anonymous volumes (-v /path): one per container, in use while it exists
    let anon_of = |id: &str| {
        e.volumes()
            .unwrap()
            .into_iter()
            .filter(|v| v.name.starts_with(&format!("anon-{}-", &id[..12])))
            .collect::<Vec<_>>()
    };
    let mut q = busybox(&["sh", "-c", "echo anon > /anon/f"]);
    q.volumes = strings(&["/anon"]);
    let kept = run(e, &q);
    assert_eq!(kept.code, 0, "{}", kept.err);
    let vols = anon_of(&kept.id);
    assert_eq!(vols.len(), 1, "{vols:?}");
    assert_eq!(
        fs::read_to_string(vols[0].mountpoint.join("f")).unwrap(),
        "anon\n"
    );
    assert!(matches!(
        e.remove_volume(&vols[0].name, false),
        Err(Error::Conflict(_))
    ));
    // rm without -v keeps it (dangling, as Docker)
    e.remove_container(&kept.id, &RemoveOptions::default())
        .unwrap();
    assert_eq!(anon_of(&kept.id).len(), 1);
    e.remove_volume(&vols[0].name, false).unwrap();
    assert!(anon_of(&kept.id).is_empty());
    // rm -v removes it with the container
    let gone = run(e, &q);
    let vols = anon_of(&gone.id);
    assert_eq!(vols.len(), 1, "{vols:?}");
    e.remove_container(&gone.id, &rmv).unwrap();
    assert!(anon_of(&gone.id).is_empty());
    assert!(!vols[0].mountpoint.exists());
}

/// cp into a container never writes outside its root: a destination through a symlink to
/// `/` or to a host path, a symlink in the container replaced by a file of the archive, a
/// symlink entry followed by a file through it, and a `..` entry, into a running and a
/// stopped container. The host file they aim at stays untouched; what lands, lands inside.
fn cp_stays_inside_the_container() {
    require_root!();
    let root = Root::new();
    let e = root.e();
    // a host directory outside the container's root, holding the file the attacks aim at
    let host = root.dir.path().join("host-victim");
    fs::create_dir(&host).unwrap();
    fs::write(host.join("target"), "host original\n").unwrap();
    let hp = host.display().to_string();
    let untouched = || {
        assert_eq!(
            fs::read_to_string(host.join("target")).unwrap(),
            "host original\n",
            "cp wrote to the host"
        );
        assert_eq!(
            fs::read_dir(&host).unwrap().count(),
            1,
            "cp created a file on the host"
        );
    };
    // the same path exists inside the container, so that paths through the symlinks
    // resolve (inside) rather than fail
    let script = format!(
        "mkdir -p /data {hp} && echo inside > {hp}/target && ln -s / /data/hostroot && \
         ln -s {hp}/target /data/victim && ln -s {hp} /data/victimdir && echo ready && \
         exec sleep 1000"
    );
    let id = run_detached(e, &busybox(&["sh", "-c", &script]));
    wait_until("the container's files", || {
        logs(e, &id, &LogsOptions::default()).0 == "ready\n"
    });
    let cat = |path: &str| exec(e, &id, &exec_req(&["cat", path])).unwrap().1;

    // through a symlink to / : lands in the container's own copy of the path
    e.copy_to_container(
        &id,
        &format!("/data/hostroot{hp}"),
        &common::files_tar(&[("target", b"evil-1\n")])[..],
    )
    .expect("cp through a symlink to /");
    untouched();
    assert_eq!(cat(&format!("{hp}/target")), "evil-1\n");

    // through a symlink to a host path (absolute, read inside the container)
    e.copy_to_container(
        &id,
        "/data/victimdir",
        &common::files_tar(&[("target", b"evil-2\n")])[..],
    )
    .expect("cp through a symlink to a directory");
    untouched();
    assert_eq!(cat(&format!("{hp}/target")), "evil-2\n");

    // onto a symlink that names the host file
    e.copy_to_container(
        &id,
        "/data",
        &common::files_tar(&[("victim", b"evil-3\n")])[..],
    )
    .expect("cp onto a symlink");
    untouched();
    assert_eq!(cat("/data/victim"), "evil-3\n");

    // an archive with a symlink to the host directory, then a file through it
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "esc", &host).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(7);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "esc/target", &b"evil-4\n"[..])
        .unwrap();
    let _ = e.copy_to_container(&id, "/data", &b.into_inner().unwrap()[..]);
    untouched();

    // an entry climbing out with `..` (written raw: tar builders refuse such names)
    let climb = format!("{}{hp}/target", "../".repeat(10));
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..climb.len()].copy_from_slice(climb.as_bytes());
    h.set_size(7);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, &b"evil-5\n"[..]).unwrap();
    let _ = e.copy_to_container(&id, "/data", &b.into_inner().unwrap()[..]);
    untouched();

    // the container was frozen for the copies only
    let c = e.container(&id).unwrap();
    assert_eq!(c.live_status(), "running");
    assert_eq!(
        cgroup_file(&root.path(), &id, "freezer", "freezer.state"),
        "THAWED"
    );

    // out: a path through the symlink reads the container's file, never the host's
    let inside = cat(&format!("{hp}/target"));
    assert_ne!(inside, "host original\n");
    let mut out = Vec::new();
    e.copy_from_container(&id, &format!("/data/hostroot{hp}/target"), &mut out)
        .unwrap();
    let mut ar = tar::Archive::new(&out[..]);
    let mut entry = ar.entries().unwrap().next().expect("one entry").unwrap();
    let mut content = String::new();
    entry.read_to_string(&mut content).unwrap();
    assert_eq!(content, inside);

    // a stopped container: the store mounts its root; the same attack stays inside
    e.stop_container(&id, &StopOptions::timeout(0)).unwrap();
    e.copy_to_container(
        &id,
        &format!("/data/hostroot{hp}"),
        &common::files_tar(&[("target", b"evil-6\n")])[..],
    )
    .expect("cp into a stopped container");
    untouched();
    let mut out = Vec::new();
    e.copy_from_container(&id, "/data/victimdir/target", &mut out)
        .unwrap();
    let mut ar = tar::Archive::new(&out[..]);
    let mut content = String::new();
    ar.entries()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .read_to_string(&mut content)
        .unwrap();
    assert_eq!(content, "evil-6\n");
    let err = e
        .copy_to_container(&id, "/nosuchdir", &common::files_tar(&[("f", b"x")])[..])
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

/// update: memory, CPU and pids limits of a running container reach its cgroups at once;
/// of a stopped one, its next start; stats reads the cgroups.
fn update_resources_and_stats() {
    require_root!();
    let root = Root::new();
    let e = root.e();
    let mut q = busybox(&["sleep", "1000"]);
    q.memory = Some("64m".into());
    let id = run_detached(e, &q);
    let cg = |ctl: &str, file: &str| cgroup_file(&root.path(), &id, ctl, file);
    assert_eq!(cg("memory", "memory.limit_in_bytes"), "67108864");
    let s = e.container_stats(&id).unwrap();
    assert_eq!(s.memory_limit, 67108864);
    assert!(s.pids >= 1 && s.memory_usage > 0, "{s:?}");
    assert_eq!(s.id, id);

    let mut u = UpdateRequest::default();
    u.memory = Some("256m".into());
    u.cpus = Some(0.5);
    u.pids_limit = Some(50);
    e.update_container(&id, &u).expect("update");
    assert_eq!(cg("memory", "memory.limit_in_bytes"), "268435456");
    assert_eq!(cg("cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(cg("cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(cg("pids", "pids.max"), "50");
    let hc = e.container(&id).unwrap().record.host_config;
    assert_eq!(
        (hc.memory, hc.nano_cpus, hc.pids_limit),
        (268435456, 500_000_000, 50)
    );
    assert_eq!(e.container_stats(&id).unwrap().memory_limit, 268435456);
    // CPU time is counted
    let before = e.container_stats(&id).unwrap().cpu_usage_ns;
    exec(
        e,
        &id,
        &exec_req(&[
            "sh",
            "-c",
            "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done",
        ]),
    )
    .unwrap();
    assert!(e.container_stats(&id).unwrap().cpu_usage_ns > before);

    // refused, and nothing changed
    let mut bad = UpdateRequest::default();
    bad.memory = Some("1m".into());
    let err = e.update_container(&id, &bad).unwrap_err();
    assert!(err.to_string().contains("Minimum memory limit"), "{err}");
    let mut bad = UpdateRequest::default();
    bad.cpus = Some(1.0);
    bad.cpu_period = Some(50000);
    assert!(matches!(
        e.update_container(&id, &bad),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(cg("memory", "memory.limit_in_bytes"), "268435456");
    assert_eq!(
        e.container(&id).unwrap().record.host_config.memory,
        268435456
    );

    // a stopped container: recorded, applied at its next start
    e.stop_container(&id, &StopOptions::timeout(0)).unwrap();
    assert!(matches!(e.container_stats(&id), Err(Error::WrongState(_))));
    let mut u = UpdateRequest::default();
    u.memory = Some("96m".into());
    u.restart = Some("on-failure:3".into());
    e.update_container(&id, &u).unwrap();
    start(e, &id);
    assert_eq!(cg("memory", "memory.limit_in_bytes"), "100663296");
    let hc = e.container(&id).unwrap().record.host_config;
    assert_eq!(hc.restart_policy.name, "on-failure");
    assert_eq!(hc.restart_policy.maximum_retry_count, 3);
}

/// commit, diff and export give what a container changed.
fn commit_diff_export() {
    require_root!();
    let root = Root::new();
    let e = root.e();
    // a container that changes nothing shows nothing: the stubs the runtime made in its
    // layer to mount /etc/hosts, /etc/hostname and /etc/resolv.conf on (the image has
    // none) are left out, as Docker keeps them in an init layer
    let r = run(e, &busybox(&["true"]));
    let raw: Vec<String> = e
        .graph()
        .unwrap()
        .container_changes(&r.id)
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert!(raw.iter().any(|c| c == "A /etc/hosts"), "{raw:?}");
    let none = e.container_changes(&r.id).unwrap();
    assert!(
        none.is_empty(),
        "a container that changed nothing shows changes: {none:?}"
    );

    let r = run(
        e,
        &busybox(&[
            "sh",
            "-c",
            "echo new > /newfile && rm /etc/group && echo extra >> /etc/passwd && \
             mkdir /root/dir && echo x > /root/dir/f",
        ]),
    );
    assert_eq!(r.code, 0, "{}", r.err);
    let changes: Vec<String> = e
        .container_changes(&r.id)
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert!(
        !changes.iter().any(|c| c.contains("/etc/hosts")),
        "{changes:?}"
    );
    for want in [
        "A /newfile",
        "D /etc/group",
        "C /etc/passwd",
        "C /etc",
        "C /root",
        "A /root/dir",
        "A /root/dir/f",
    ] {
        assert!(
            changes.iter().any(|c| c == want),
            "{want} missing from {changes:?}"
        );
    }
    assert!(!changes.iter().any(|c| c.contains("/bin/")), "{changes:?}");

    // export: the whole filesystem as the container sees it
    let mut tar_bytes = Vec::new();
    e.graph()
        .unwrap()
        .export_container(&r.id, &mut tar_bytes)
        .unwrap();
    let mut files = BTreeMap::new();
    for entry in tar::Archive::new(&tar_bytes[..]).entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let mut data = String::new();
        if entry.header().entry_type().is_file() {
            let _ = entry.read_to_string(&mut data);
        }
        files.insert(path, data);
    }
    assert_eq!(files.get("newfile").map(String::as_str), Some("new\n"));
    assert_eq!(files.get("root/dir/f").map(String::as_str), Some("x\n"));
    assert!(files.get("etc/passwd").unwrap().ends_with("extra\n"));
    assert!(!files.contains_key("etc/group"));
    assert!(files.contains_key("bin/busybox"));

    // commit: an image with the changes, the container's config with the --change
    // instructions applied, and the author; the runtime's mount points stay out
    let mut o = longshore_engine::CommitRequest::default();
    o.reference = Some("jobs-committed:1".into());
    o.author = Some("Jobs Test <jobs@example.com>".into());
    o.message = Some("from the jobs test".into());
    o.changes = vec![
        "ENV COMMITTED=yes".into(),
        "LABEL stage=committed".into(),
        "EXPOSE 8080".into(),
    ];
    let image = e.commit_container(&r.id, &o).unwrap();
    let inspect = e.inspect_image("jobs-committed:1").unwrap();
    assert_eq!(inspect["Id"], image);
    assert_eq!(inspect["Author"], "Jobs Test <jobs@example.com>");
    // the container's command (not the image's `sh`) is the new image's
    assert_eq!(inspect["Config"]["Cmd"][0], "sh");
    assert_eq!(inspect["Config"]["Cmd"][1], "-c");
    let env = inspect["Config"]["Env"].to_string();
    assert!(env.contains("COMMITTED=yes"), "{env}");
    assert_eq!(inspect["Config"]["Labels"]["stage"], "committed");
    assert!(inspect["Config"]["ExposedPorts"]["8080/tcp"].is_object());
    let bad = e.commit_container(&r.id, &{
        let mut b = longshore_engine::CommitRequest::default();
        b.changes = vec!["RUN rm -rf /".into()];
        b
    });
    assert!(matches!(bad, Err(Error::InvalidArgument(_))), "{bad:?}");
    // the layer holds the changes and none of the mount points
    let mut layer = Vec::new();
    e.graph()
        .unwrap()
        .save(
            &["jobs-committed:1"],
            longshore_graph::ArchiveFormat::Docker,
            &mut layer,
        )
        .unwrap();
    let top = inspect["RootFS"]["Layers"]
        .as_array()
        .and_then(|l| l.last())
        .and_then(|d| d.as_str())
        .expect("the image's layers");
    let names = longshore_test_support::archive_layer_names(&layer, top);
    assert!(names.iter().any(|n| n.ends_with("newfile")), "{names:?}");
    assert!(
        !names
            .iter()
            .any(|n| n.contains("etc/hosts") || n.contains("resolv.conf")),
        "{names:?}"
    );

    // a running container is paused while it is committed (pause/unpause events), and
    // not with pause off
    let up = run_detached(e, &busybox(&["sleep", "1000"]));
    let mut p = longshore_engine::CommitRequest::default();
    p.reference = Some("jobs-committed:2".into());
    e.commit_container(&up, &p).unwrap();
    p.pause = false;
    e.commit_container(&up, &p).unwrap();
    let actions: Vec<String> = events_of(e, &up).into_iter().map(|(a, _)| a).collect();
    let from_commit: Vec<&str> = actions
        .iter()
        .map(String::as_str)
        .filter(|a| matches!(*a, "pause" | "unpause" | "commit"))
        .collect();
    assert_eq!(
        from_commit,
        ["pause", "unpause", "commit", "commit"],
        "{actions:?}"
    );
    assert_eq!(e.container(&up).unwrap().live_status(), "running");
    e.remove_container(&up, &force()).unwrap();
    let mut q = busybox(&["sh"]);
    q.image = "jobs-committed:1".into();
    assert!(
        run(e, &{
            let mut q = q.clone();
            q.cmd = strings(&["sh", "-c", "test \"$COMMITTED\" = yes"]);
            q
        })
        .code
            == 0
    );
    let mut q = busybox(&[
        "sh",
        "-c",
        "cat /newfile /root/dir/f; tail -1 /etc/passwd; test -e /etc/group || echo no-group",
    ]);
    q.image = "jobs-committed:1".into();
    let from = run(e, &q);
    assert_eq!(from.out, "new\nx\nextra\nno-group\n", "{}", from.err);
    // a container of the committed image starts from the committed changes
    let again: Vec<String> = e
        .container_changes(&from.id)
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert!(
        !again
            .iter()
            .any(|c| c.contains("newfile") || c.contains("/root")),
        "{again:?}"
    );
}

/// attach with a TTY (one stream, the terminal's echo) and without (stdout and stderr
/// apart, stdin closed on request), before the start and to a running container.
fn attach_with_and_without_a_tty() {
    require_root!();
    let root = Root::new();
    let e = root.e();
    let mut wait_attach = StartOptions::default();
    wait_attach.wait_for_attach = true;

    // with a TTY: the shell reads the terminal; everything comes as one stream
    let mut q = busybox(&["sh"]);
    q.tty = true;
    q.interactive = true;
    let id = create(e, &q);
    e.start_container(&id, &wait_attach).unwrap();
    let mut a = attach_to(&id, true, true, true).unwrap();
    a.resize(40, 100).unwrap();
    a.write_stdin(b"stty size; echo tty-$((6*7)); echo err-$((5+5)) >&2; exit 3\n")
        .unwrap();
    let (out, err, code) = collect(a);
    assert_eq!(code, Some(3), "{out:?}");
    assert!(out.contains("tty-42\r\n"), "{out:?}");
    assert!(out.contains("err-10\r\n"), "{out:?}");
    assert!(
        out.contains("40 100\r\n"),
        "the resize did not reach the terminal: {out:?}"
    );
    assert_eq!(err, "", "a TTY has no separate stderr");
    assert_eq!(e.wait_container(&id, WaitCondition::NotRunning).unwrap(), 3);

    // without: two streams; stdin closed ends `cat`
    let mut q = busybox(&[
        "sh",
        "-c",
        "read x; echo got-$x; echo err-$x >&2; cat; exit 4",
    ]);
    q.interactive = true;
    let id = create(e, &q);
    e.start_container(&id, &wait_attach).unwrap();
    let mut a = attach_to(&id, true, true, true).unwrap();
    a.write_stdin(b"hello\n").unwrap();
    a.write_stdin(b"rest\n").unwrap();
    a.close_stdin().unwrap();
    let (out, err, code) = collect(a);
    assert_eq!(
        (out.as_str(), err.as_str(), code),
        ("got-hello\nrest\n", "err-hello\n", Some(4))
    );
    // the log has what the client saw
    assert_eq!(
        logs(e, &id, &LogsOptions::default()),
        ("got-hello\nrest\n".to_string(), "err-hello\n".to_string())
    );

    // clients the start attaches itself (connected while the container is set up): each
    // gets its stream from the first byte, and the process starts once both are there
    let id = create(
        e,
        &busybox(&["sh", "-c", "echo first; echo early >&2; exit 5"]),
    );
    let only = |stdout, stderr| AttachStreams {
        stdin: false,
        stdout,
        stderr,
    };
    let (c, made) = e
        .start_attached(&id, &[only(true, false), only(false, true)])
        .unwrap();
    assert_eq!(c.id(), id);
    let mut made = made.into_iter().map(Result::unwrap);
    let (out, err, code) = collect(made.next().unwrap());
    assert_eq!((out.as_str(), err.as_str(), code), ("first\n", "", Some(5)));
    let (out, err, code) = collect(made.next().unwrap());
    assert_eq!((out.as_str(), err.as_str(), code), ("", "early\n", Some(5)));
    assert!(made.next().is_none());
    // a container that runs already is not started again: no connection
    let running = run_detached(e, &busybox(&["sleep", "30"]));
    let (_, none) = e.start_attached(&running, &[only(true, true)]).unwrap();
    assert!(none.is_empty());
    e.remove_container(&running, &force()).unwrap();

    // to a running container: a second client that wants stdout only, and a detach that
    // leaves the container running
    let mut q = busybox(&[
        "sh",
        "-c",
        "while read l; do echo out:$l; echo err:$l >&2; done",
    ]);
    q.interactive = true;
    let id = run_detached(e, &q);
    let mut writer = attach_to(&id, true, true, true).unwrap();
    let watcher = attach_to(&id, false, true, false).unwrap();
    writer.write_stdin(b"a\n").unwrap();
    let mut reader = writer.try_clone().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut seen = (String::new(), String::new());
        while !(seen.0.contains("out:a\n") && seen.1.contains("err:a\n")) {
            match reader.next_frame() {
                Ok(Some(Frame::Stdout(d))) => seen.0.push_str(&text(&d)),
                Ok(Some(Frame::Stderr(d))) => seen.1.push_str(&text(&d)),
                _ => break,
            }
        }
        let _ = tx.send(seen);
    });
    let seen = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("no answer within 30 s");
    assert_eq!(seen, ("out:a\n".to_string(), "err:a\n".to_string()));
    writer.detach();
    assert!(
        e.container(&id).unwrap().state.is_alive(),
        "a detach stopped it"
    );
    let mut closer = attach_to(&id, true, false, false).unwrap();
    closer.close_stdin().unwrap();
    let (out, err, code) = collect(watcher);
    assert_eq!((out.as_str(), err.as_str(), code), ("out:a\n", "", Some(0)));
    assert_eq!(e.wait_container(&id, WaitCondition::NotRunning).unwrap(), 0);
    // no monitor: no attach
    assert!(matches!(
        attach_to(&id, false, true, true),
        Err(Error::WrongState(_))
    ));
}

/// wait's conditions (next-exit waits for the next run; removed for the removal) and
/// auto-remove (`--rm`): stopping such a container succeeds and leaves nothing, its
/// anonymous volumes included.
fn wait_conditions_and_auto_remove() {
    require_root!();
    let root = Root::new();
    let e = root.e();
    let waiter = |id: &str, cond: WaitCondition| {
        let path = root.path();
        let id = id.to_string();
        thread::spawn(move || {
            let e = Engine::open(&path, EngineOptions::default()).expect("open");
            e.wait_container(&id, cond).map_err(|err| err.to_string())
        })
    };
    // next-exit on an exited container waits for its next run to end
    let r = run(e, &busybox(&["sh", "-c", "sleep 1; exit 5"]));
    assert_eq!(r.code, 5);
    let next = waiter(&r.id, WaitCondition::NextExit);
    thread::sleep(Duration::from_millis(300));
    assert!(
        !next.is_finished(),
        "next-exit returned before the next run"
    );
    start(e, &r.id);
    assert_eq!(next.join().unwrap().unwrap(), 5);
    // removed: waits for the rm
    let gone = waiter(&r.id, WaitCondition::Removed);
    thread::sleep(Duration::from_millis(300));
    assert!(!gone.is_finished(), "removed returned before the rm");
    e.remove_container(&r.id, &RemoveOptions::default())
        .unwrap();
    assert_eq!(gone.join().unwrap().unwrap(), 5);

    // auto-remove: a stop returns once the monitor has removed the container
    for round in 0..5 {
        let mut q = busybox(&["sleep", "1000"]);
        q.auto_remove = true;
        q.volumes = strings(&["/anon"]);
        let id = run_detached(e, &q);
        let anon = format!("anon-{}-", &id[..12]);
        assert!(
            e.volumes()
                .unwrap()
                .iter()
                .any(|v| v.name.starts_with(&anon)),
            "no anonymous volume"
        );
        let removed = waiter(&id, WaitCondition::Removed);
        e.stop_container(&id, &StopOptions::timeout(0))
            .unwrap_or_else(|err| panic!("round {round}: stop of a --rm container: {err}"));
        assert_eq!(removed.join().unwrap().unwrap(), 137, "round {round}");
        assert!(
            longshore_engine::containers::wait_removed(&root.path(), &id, Duration::from_secs(10)),
            "round {round}: the --rm container is still there"
        );
        assert!(matches!(e.container(&id), Err(Error::NoSuchContainer(_))));
        assert!(
            !e.volumes()
                .unwrap()
                .iter()
                .any(|v| v.name.starts_with(&anon)),
            "round {round}: its anonymous volume is left"
        );
    }
    // one that exits by itself is removed too; not-running then says how it ended
    let mut q = busybox(&["sh", "-c", "sleep 1; exit 3"]);
    q.auto_remove = true;
    let id = run_detached(e, &q);
    assert_eq!(e.wait_container(&id, WaitCondition::NotRunning).unwrap(), 3);
    assert!(longshore_engine::containers::wait_removed(
        &root.path(),
        &id,
        Duration::from_secs(10)
    ));
}

/// rename and ps's filters: the new name finds the container and the old one is free; a
/// taken, unchanged or invalid name is refused; ps filters by name, label, status, exit
/// code, ID prefix and ancestor, newest first.
fn rename_and_list_filters() {
    require_root!();
    let root = Root::new();
    let e = root.e();
    let mut q = busybox(&["sleep", "1000"]);
    q.labels.insert("tier".into(), "front".into());
    let old = name_of(&q);
    let up = run_detached(e, &q);
    let new = unique_name("lsjn");
    e.rename_container(&old, &new).unwrap();
    assert!(matches!(e.container(&old), Err(Error::NoSuchContainer(_))));
    assert_eq!(e.container(&new).unwrap().id(), up);
    assert_eq!(e.inspect_container(&up).unwrap()["Name"], format!("/{new}"));
    // the old name is free for another container
    let mut q2 = busybox(&["sh", "-c", "exit 2"]);
    q2.name = Some(old.clone());
    let down = run(e, &q2);
    assert_eq!(down.code, 2);
    assert_eq!(e.container(&old).unwrap().id(), down.id);
    let err = e.rename_container(&old, &new).unwrap_err();
    assert!(
        matches!(err, Error::Conflict(_)) && err.to_string().contains(&new),
        "{err}"
    );
    assert!(matches!(
        e.rename_container(&new, &new),
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        e.rename_container(&new, "bad name!"),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(e.container(&old).unwrap().id(), down.id);
    // the running container works on under its new name
    assert_eq!(
        exec(e, &new, &exec_req(&["echo", "renamed"])).unwrap().1,
        "renamed\n"
    );

    let ids = |filters: &[(&str, &str)], all: bool| -> Vec<String> {
        let mut o = ListOptions::default();
        o.all = all;
        o.filters = filters
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        e.list_containers(&o)
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect()
    };
    let none: Vec<String> = Vec::new();
    assert_eq!(ids(&[], false), [up.as_str()]);
    assert_eq!(ids(&[], true), [down.id.clone(), up.clone()]);
    assert_eq!(ids(&[("name", new.as_str())], true), [up.as_str()]);
    assert_eq!(ids(&[("label", "tier=front")], true), [up.as_str()]);
    assert_eq!(ids(&[("label", "tier")], true), [up.as_str()]);
    assert_eq!(ids(&[("label", "tier=back")], true), none);
    assert_eq!(ids(&[("status", "exited")], false), [down.id.as_str()]);
    assert_eq!(ids(&[("status", "running")], false), [up.as_str()]);
    assert_eq!(ids(&[("exited", "2")], false), [down.id.as_str()]);
    assert_eq!(ids(&[("exited", "0")], false), none);
    assert_eq!(ids(&[("id", &up[..10])], true), [up.as_str()]);
    assert_eq!(ids(&[("ancestor", "busybox")], true).len(), 2);
    let mut o = ListOptions::default();
    o.filters = vec![("nope".into(), "x".into())];
    assert!(matches!(
        e.list_containers(&o),
        Err(Error::InvalidArgument(_))
    ));
    let mut o = ListOptions::default();
    o.limit = Some(1);
    let last = e.list_containers(&o).unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].id, down.id);
}

/// `ps` reads what it needs of each container from a cache (in memory, and on disk in
/// `containers/.ps-index` for the next process) while the container's directory is
/// unchanged: every change made by another engine (another process) shows at once, in a
/// warm engine and in a new one, and a damaged index is only a slower listing.
fn the_listing_cache_follows_every_change() {
    require_root!();
    let mut root = Root::new();
    let mut ids = Vec::new();
    for _ in 0..40 {
        ids.push(create(root.e(), &busybox(&["true"])));
    }
    let rows = listing_rows;
    // settled (older than the file system's clock tick): cached and written out
    thread::sleep(Duration::from_millis(150));
    assert_eq!(rows(root.e()).len(), 40);
    let index = root.path().join("containers/.ps-index");
    assert!(index.exists(), "40 containers read: the index is written");
    // another engine on the root (another process) changes four containers
    let other = Engine::open(root.path(), EngineOptions::default()).unwrap();
    let (renamed, added) = change_four(&other, &ids, "lsjc");
    let check = |e: &Engine| {
        assert_four_changed(e, &ids, &renamed, &added);
        assert_eq!(rows(e)[&ids[3]].1, "Created");
    };
    // the warm engine: its memory cache
    check(root.e());
    // a change at once after a listing cached the container is seen too
    thread::sleep(Duration::from_millis(150));
    rows(root.e());
    let again = unique_name("lsjc");
    other.rename_container(&ids[3], &again).unwrap();
    assert_eq!(rows(root.e())[&ids[3]].0, format!("/{again}"));
    let last = unique_name("lsjc");
    other.rename_container(&ids[3], &last).unwrap();
    // a new engine: the index on disk
    drop(other);
    root.reopen();
    let r = rows(root.e());
    assert_eq!(r[&ids[3]].0, format!("/{last}"));
    assert_eq!(r[&ids[0]].0, format!("/{renamed}"));
    check(root.e());
    // a damaged index (cut short, then garbage) is read around
    let whole = fs::read(&index).unwrap();
    for bad in [&whole[..whole.len() / 2], b"\x00not json".as_slice()] {
        fs::write(&index, bad).unwrap();
        root.reopen();
        check(root.e());
    }
}

/// A watching engine (the daemon's: `Engine::watch_containers`) lists what another engine
/// (another process) changes, at once, also after listings it served from its watch
/// without looking at the containers: renamed, started and exited, removed, created, and
/// renamed right after a listing. Its API rows (`list_containers_json`) are the JSON of
/// its summaries.
fn a_watching_engine_lists_every_change() {
    require_root!();
    let root = Root::new();
    let mut ids = Vec::new();
    for _ in 0..40 {
        ids.push(create(root.e(), &busybox(&["true"])));
    }
    let w = Engine::open(root.path(), EngineOptions::default()).unwrap();
    w.watch_containers();
    let rows = listing_rows;
    let mut all = ListOptions::default();
    all.all = true;
    let first = rows(&w);
    assert_eq!(first.len(), 40);
    // settled: the next listing finds every container current and keeps the listing
    thread::sleep(Duration::from_millis(150));
    assert_eq!(rows(&w), first);
    assert_eq!(rows(&w), first);
    // every row is Created (no time in its status): the same bytes both ways
    assert_eq!(
        String::from_utf8(w.list_containers_json(&all).unwrap()).unwrap(),
        serde_json::to_string(&w.list_containers(&all).unwrap()).unwrap()
    );
    let other = Engine::open(root.path(), EngineOptions::default()).unwrap();
    let (renamed, added) = change_four(&other, &ids, "lsjw");
    assert_four_changed(&w, &ids, &renamed, &added);
    // a change right after a listing, twice, and after listings kept
    for _ in 0..2 {
        rows(&w);
        let again = unique_name("lsjw");
        other.rename_container(&ids[3], &again).unwrap();
        assert_eq!(rows(&w)[&ids[3]].0, format!("/{again}"));
    }
    thread::sleep(Duration::from_millis(150));
    rows(&w);
    rows(&w);
    let last = unique_name("lsjw");
    other.rename_container(&ids[3], &last).unwrap();
    other.remove_container(&ids[4], &force()).unwrap();
    let r = rows(&w);
    assert_eq!(r[&ids[3]].0, format!("/{last}"));
    assert!(!r.contains_key(&ids[4]));
    assert_eq!(r.len(), 39);
    // the same as an engine without a watch (which stats every container)
    let fresh = Engine::open(root.path(), EngineOptions::default()).unwrap();
    let names = |r: BTreeMap<String, (String, String)>| -> Vec<(String, String)> {
        r.into_iter().map(|(id, (name, _))| (id, name)).collect()
    };
    assert_eq!(names(rows(&w)), names(rows(&fresh)));
}

/// Several engines (as several processes would) on one root at once: each creates, starts,
/// execs into and removes its containers; one name is taken by exactly one of them; nothing
/// is left.
fn parallel_engines_on_one_root() {
    require_root!();
    let root = Root::new();
    let path = root.path();
    let contested = unique_name("lsjp");
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let path = path.clone();
            let contested = contested.clone();
            thread::spawn(move || -> bool {
                let e = Engine::open(&path, EngineOptions::default()).expect("open");
                for round in 0..2 {
                    let q = busybox(&["sleep", "1000"]);
                    let name = name_of(&q);
                    let id = run_detached(&e, &q);
                    assert!(
                        e.list_containers(&ListOptions::default())
                            .unwrap()
                            .iter()
                            .any(|r| r.id == id),
                        "{name} not listed"
                    );
                    let word = format!("w{w}r{round}");
                    let (code, out, err) = exec(&e, &name, &exec_req(&["echo", &word])).unwrap();
                    assert_eq!((code, out), (0, format!("{word}\n")), "{err}");
                    let st = e.container(&id).unwrap().state;
                    e.remove_container(&name, &force()).unwrap();
                    assert!(!st.is_alive());
                }
                let mut q = busybox(&["true"]);
                q.name = Some(contested.clone());
                match e.create_container(&q) {
                    Ok(_) => true,
                    Err(Error::Conflict(m)) => {
                        assert!(m.contains(&contested), "{m}");
                        false
                    }
                    Err(err) => panic!("create {contested}: {err}"),
                }
            })
        })
        .collect();
    // every worker is joined before any assertion: none runs on during the cleanup
    let results: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
    let winners = results
        .iter()
        .map(|r| *r.as_ref().expect("a worker failed"))
        .filter(|won| *won)
        .count();
    assert_eq!(winners, 1, "the name went to {winners} creates");
    let e = root.e();
    let mut all = ListOptions::default();
    all.all = true;
    let left = e.list_containers(&all).unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].names, [format!("/{contested}")]);
    e.remove_container(&contested, &RemoveOptions::default())
        .unwrap();
    let runtime: Vec<_> = fs::read_dir(path.join("runtime"))
        .unwrap()
        .flatten()
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 64)
        .collect();
    assert!(runtime.is_empty(), "runtime state left: {runtime:?}");
}

/// Set in the environment of this binary run as a worker of
/// [`parallel_processes_on_one_root`]: the data root, then the contested name.
const WORKER_ROOT: &str = "LONGSHORE_JOBS_WORKER_ROOT";
const WORKER_NAME: &str = "LONGSHORE_JOBS_WORKER_NAME";

/// This binary run as a worker process: an engine of its own on the given root creates,
/// starts, execs into and removes two containers, then tries to create the contested name;
/// prints `won` or `lost`. A failure is a panic (exit status 101).
fn worker(root: &str) -> ExitCode {
    let e = Engine::open(root, EngineOptions::default()).expect("open");
    for round in 0..2 {
        let q = busybox(&["sleep", "1000"]);
        let name = name_of(&q);
        let id = run_detached(&e, &q);
        let word = format!("p{}r{round}", std::process::id());
        let (code, out, err) = exec(&e, &name, &exec_req(&["echo", &word])).unwrap();
        assert_eq!((code, out), (0, format!("{word}\n")), "{err}");
        let st = e.container(&id).unwrap().state;
        e.remove_container(&name, &force()).unwrap();
        assert!(!st.is_alive());
    }
    let contested = std::env::var(WORKER_NAME).expect("the contested name");
    let mut q = busybox(&["true"]);
    q.name = Some(contested.clone());
    match e.create_container(&q) {
        Ok(_) => println!("won"),
        Err(Error::Conflict(m)) if m.contains(&contested) => println!("lost"),
        Err(err) => panic!("create {contested}: {err}"),
    }
    ExitCode::SUCCESS
}

/// Several processes (this binary run again as workers) on one root at once: each
/// creates, starts, execs into and removes its containers; one name is taken by exactly one
/// of them; nothing is left.
fn parallel_processes_on_one_root() {
    require_root!();
    let root = Root::new();
    let contested = unique_name("lsjq");
    let exe = std::env::current_exe().expect("this test binary");
    let workers: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new(&exe)
                .env(WORKER_ROOT, root.path())
                .env(WORKER_NAME, &contested)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("start a worker")
        })
        .collect();
    let outputs: Vec<_> = workers
        .into_iter()
        .map(|w| w.wait_with_output().expect("a worker's output"))
        .collect();
    for o in &outputs {
        assert!(
            o.status.success(),
            "a worker failed ({:?}): {}",
            o.status,
            text(&o.stderr)
        );
    }
    let won: Vec<String> = outputs.iter().map(|o| text(&o.stdout)).collect();
    assert_eq!(won.iter().filter(|w| *w == "won\n").count(), 1, "{won:?}");
    assert_eq!(won.iter().filter(|w| *w == "lost\n").count(), 3, "{won:?}");
    let e = root.e();
    let mut all = ListOptions::default();
    all.all = true;
    let left = e.list_containers(&all).unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].names, [format!("/{contested}")]);
    e.remove_container(&contested, &RemoveOptions::default())
        .unwrap();
    let runtime: Vec<_> = fs::read_dir(root.path().join("runtime"))
        .unwrap()
        .flatten()
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 64)
        .collect();
    assert!(runtime.is_empty(), "runtime state left: {runtime:?}");
}

fn main() -> ExitCode {
    let tests: Vec<(&str, fn())> = vec![
        ("create_start_wait_rm", create_start_wait_rm),
        ("image_config_and_overrides", image_config_and_overrides),
        (
            "logs_json_file_rotation_and_none",
            logs_json_file_rotation_and_none,
        ),
        ("exec_options_and_refusals", exec_options_and_refusals),
        (
            "stop_signals_timeout_kill_and_restart",
            stop_signals_timeout_kill_and_restart,
        ),
        ("pause_and_unpause", pause_and_unpause),
        ("restart_policies", restart_policies),
        (
            "supervision_across_an_engine_restart",
            supervision_across_an_engine_restart,
        ),
        ("volumes_in_use_and_anonymous", volumes_in_use_and_anonymous),
        (
            "cp_stays_inside_the_container",
            cp_stays_inside_the_container,
        ),
        ("update_resources_and_stats", update_resources_and_stats),
        ("commit_diff_export", commit_diff_export),
        (
            "attach_with_and_without_a_tty",
            attach_with_and_without_a_tty,
        ),
        (
            "wait_conditions_and_auto_remove",
            wait_conditions_and_auto_remove,
        ),
        ("rename_and_list_filters", rename_and_list_filters),
        (
            "the_listing_cache_follows_every_change",
            the_listing_cache_follows_every_change,
        ),
        (
            "a_watching_engine_lists_every_change",
            a_watching_engine_lists_every_change,
        ),
        ("parallel_engines_on_one_root", parallel_engines_on_one_root),
        (
            "parallel_processes_on_one_root",
            parallel_processes_on_one_root,
        ),
    ];
    // a container's monitor first (this binary is the monitor program), then a worker of
    // parallel_processes_on_one_root
    longshore_engine::monitor::run_if_monitor();
    if let Ok(root) = std::env::var(WORKER_ROOT) {
        return worker(&root);
    }
    common::daemon::harness("jobs", false, || (), &tests, |t, _| t())
}
