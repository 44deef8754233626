//! The `longshore-runtime` binary against runc's: the same lifecycle on the same busybox
//! bundle, the same state documents, status strings, exit codes and error behaviour.
//! Needs root and Debian's `runc` (for the side-by-side comparisons) and `busybox-static`.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use longshore_test_support::{busybox_bundle_dir, require_root, unique_name};
use serde_json::Value;

const RT: &str = env!("CARGO_BIN_EXE_longshore-runtime");
const RUNC: &str = "/usr/sbin/runc";

/// A busybox bundle whose config.json comes from `longshore-runtime spec`, with
/// `terminal: false` and the given process arguments.
fn bundle(args: &[&str]) -> tempfile::TempDir {
    let dir = busybox_bundle_dir().expect("busybox bundle (apt-get install -y busybox-static)");
    let out = Command::new(RT)
        .args(["spec", "--bundle"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "spec: {}", text(&out.stderr));
    let path = dir.path().join("config.json");
    let mut spec: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    spec["process"]["terminal"] = false.into();
    // writable, so that containers can leave marks in /tmp
    spec["root"]["readonly"] = false.into();
    spec["process"]["args"] = args.iter().map(|a| Value::from(*a)).collect();
    std::fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    dir
}

fn read_back(mut f: std::fs::File) -> Vec<u8> {
    use std::io::{Read, Seek};
    let mut v = Vec::new();
    f.seek(std::io::SeekFrom::Start(0)).unwrap();
    f.read_to_end(&mut v).unwrap();
    v
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// One runtime binary with its own state root; force-deletes its containers on drop.
struct Runtime {
    bin: &'static str,
    root: tempfile::TempDir,
    ids: std::cell::RefCell<Vec<String>>,
}

impl Runtime {
    fn new(bin: &'static str) -> Runtime {
        Runtime {
            bin,
            root: tempfile::Builder::new()
                .prefix("longshore-rtroot-")
                .tempdir()
                .unwrap(),
            ids: Default::default(),
        }
    }

    fn longshore() -> Runtime {
        Runtime::new(RT)
    }

    /// runc, if installed (the comparisons need it: apt-get install -y runc).
    fn runc() -> Option<Runtime> {
        if Path::new(RUNC).exists() {
            Some(Runtime::new(RUNC))
        } else {
            longshore_test_support::report_skip(
                "runc comparison",
                &format!("{RUNC} missing (apt-get install -y runc)"),
            );
            None
        }
    }

    /// A fresh container id, deleted (forced) when the runtime guard drops. It holds
    /// "longshore" so that runc's cgroup (`/<id>` without a cgroupsPath) is named so too.
    fn id(&self, prefix: &str) -> String {
        let id = format!("longshore-{}", unique_name(prefix));
        self.ids.borrow_mut().push(id.clone());
        id
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(self.bin);
        c.arg("--root").arg(self.root.path());
        c.stdin(Stdio::null());
        c
    }

    /// Runs to completion. stdout and stderr go to files, not pipes: a container
    /// created by the command inherits them and would hold a pipe open.
    fn run(&self, args: &[&str], cwd: &Path) -> Output {
        let out = tempfile::tempfile().unwrap();
        let err = tempfile::tempfile().unwrap();
        let status = self
            .cmd()
            .args(args)
            .current_dir(cwd)
            .stdout(out.try_clone().unwrap())
            .stderr(err.try_clone().unwrap())
            .status()
            .unwrap();
        Output {
            status,
            stdout: read_back(out),
            stderr: read_back(err),
        }
    }

    /// Runs and asserts exit code 0.
    fn ok(&self, args: &[&str], cwd: &Path) -> Output {
        let out = self.run(args, cwd);
        assert!(
            out.status.success(),
            "{} {args:?}: {:?}\nstdout: {}\nstderr: {}",
            self.bin,
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }

    fn state(&self, id: &str) -> Value {
        let out = self.ok(&["state", id], Path::new("/"));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("state of {id} is not JSON ({e}): {}", text(&out.stdout)))
    }

    /// Polls `state` until the status is `want` (a killed process takes a moment to go).
    fn wait_status(&self, id: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = self.run(&["state", id], Path::new("/"));
            // (a container being created by another command may not exist yet)
            if out.status.success() || Instant::now() > deadline {
                let st = self.state(id);
                if st["status"] == want || Instant::now() > deadline {
                    return st;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        for id in self.ids.borrow().iter() {
            let _ = self
                .cmd()
                .args(["delete", "--force", id])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A foreground `run` spawned in the background of the test. On drop (a failed test)
/// it force-deletes the container until the `run` process is gone, so that a `run`
/// still creating its container when the test fails does not leave it behind.
struct Foreground<'a> {
    rt: &'a Runtime,
    id: String,
    child: std::process::Child,
}

impl<'a> Foreground<'a> {
    fn spawn(rt: &'a Runtime, id: &str, bundle: &Path) -> Foreground<'a> {
        let child = rt
            .cmd()
            .args(["run", id])
            .current_dir(bundle)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Foreground {
            rt,
            id: id.to_string(),
            child,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }
}

impl Drop for Foreground<'_> {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            let _ = self
                .rt
                .cmd()
                .args(["delete", "--force", &self.id])
                .stderr(Stdio::null())
                .status();
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

/// The cgroup directories a container of ours with this id would have.
fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in entries.flatten() {
            let p = e.path().join("longshore").join(id);
            if p.exists() {
                found.push(p);
            }
        }
    }
    found
}

/// What one runtime printed and returned for the lifecycle, for comparison.
#[derive(Debug, PartialEq)]
struct Lifecycle {
    state_keys: Vec<String>,
    statuses: Vec<String>,
    codes: Vec<Option<i32>>,
}

/// create → state → start → state → delete (refused: running) → kill KILL → state →
/// kill 9 (refused: stopped) → delete → state (gone).
fn lifecycle(rt: &Runtime, bundle: &Path) -> Lifecycle {
    let id = rt.id("lc");
    let b = bundle.to_str().unwrap();
    let mut statuses = Vec::new();
    let mut codes = Vec::new();
    let mut code = |out: &Output| codes.push(out.status.code());

    code(&rt.ok(&["create", "--bundle", b, &id], Path::new("/")));
    let created = rt.state(&id);
    assert_eq!(created["id"], id.as_str());
    assert!(created["pid"].as_i64().unwrap() > 0, "{created}");
    assert_eq!(
        Path::new(created["bundle"].as_str().unwrap()),
        bundle.canonicalize().unwrap()
    );
    statuses.push(created["status"].as_str().unwrap().to_string());
    let pid = created["pid"].as_i64().unwrap();

    code(&rt.ok(&["start", &id], Path::new("/")));
    let running = rt.state(&id);
    assert_eq!(running["pid"].as_i64(), Some(pid), "same init after start");
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    statuses.push(running["status"].as_str().unwrap().to_string());

    // a running container is not deleted without --force
    let out = rt.run(&["delete", &id], Path::new("/"));
    assert!(
        !out.stderr.is_empty(),
        "{}: delete of a running container is silent",
        rt.bin
    );
    code(&out);
    assert_eq!(rt.state(&id)["status"], "running");

    code(&rt.ok(&["kill", &id, "KILL"], Path::new("/")));
    let stopped = rt.wait_status(&id, "stopped");
    assert_eq!(
        stopped["pid"], 0,
        "a stopped container reports pid 0: {stopped}"
    );
    statuses.push(stopped["status"].as_str().unwrap().to_string());

    // signalling a stopped container is an error
    let out = rt.run(&["kill", &id, "9"], Path::new("/"));
    assert!(!out.stderr.is_empty());
    code(&out);

    code(&rt.ok(&["delete", &id], Path::new("/")));
    let out = rt.run(&["state", &id], Path::new("/"));
    assert!(!out.stderr.is_empty());
    assert!(out.stdout.is_empty());
    code(&out);

    Lifecycle {
        state_keys: keys(&running),
        statuses,
        codes,
    }
}

#[test]
fn lifecycle_matches_runc() {
    require_root!();
    let dir = bundle(&["sleep", "100"]);
    let ours = Runtime::longshore();
    let mine = lifecycle(&ours, dir.path());
    assert_eq!(mine.statuses, ["created", "running", "stopped"]);
    assert_eq!(
        mine.codes,
        [
            Some(0),
            Some(0),
            Some(1),
            Some(0),
            Some(1),
            Some(0),
            Some(1)
        ]
    );
    assert_eq!(
        mine.state_keys,
        [
            "bundle",
            "created",
            "id",
            "ociVersion",
            "owner",
            "pid",
            "rootfs",
            "status"
        ]
    );
    if let Some(runc) = Runtime::runc() {
        let theirs = lifecycle(&runc, dir.path());
        assert_eq!(mine, theirs, "longshore-runtime vs runc");
    }
}

#[test]
fn kill_by_number_and_by_name_with_and_without_sig() {
    require_root!();
    let dir = bundle(&["sleep", "100"]);
    let rt = Runtime::longshore();
    let b = dir.path().to_str().unwrap();
    for sig in ["9", "KILL", "SIGKILL", "sigkill"] {
        let id = rt.id("ks");
        rt.ok(&["run", "--detach", "--bundle", b, &id], Path::new("/"));
        assert_eq!(rt.state(&id)["status"], "running");
        rt.ok(&["kill", &id, sig], Path::new("/"));
        assert_eq!(
            rt.wait_status(&id, "stopped")["status"],
            "stopped",
            "kill {sig}"
        );
        rt.ok(&["delete", &id], Path::new("/"));
    }
}

/// The same error cases on both runtimes: exit code 1 and a message on stderr.
#[test]
fn errors_exit_1_with_a_message_like_runc() {
    require_root!();
    let dir = bundle(&["sleep", "100"]);
    let b = dir.path().to_str().unwrap();
    let mut runtimes = vec![Runtime::longshore()];
    runtimes.extend(Runtime::runc());
    for rt in &runtimes {
        let nobody = rt.id("no");
        for args in [
            vec!["start", nobody.as_str()],
            vec!["state", nobody.as_str()],
            vec!["kill", nobody.as_str()],
            vec!["delete", nobody.as_str()],
            vec!["pause", nobody.as_str()],
            vec!["exec", nobody.as_str(), "true"],
        ] {
            let out = rt.run(&args, Path::new("/"));
            // runc: a failed exec exits 255, everything else 1
            let want = if args[0] == "exec" { 255 } else { 1 };
            assert_eq!(out.status.code(), Some(want), "{} {args:?}", rt.bin);
            assert!(out.stdout.is_empty(), "{} {args:?}", rt.bin);
            let err = text(&out.stderr);
            assert!(
                err.contains("level=error") && err.contains("does not exist"),
                "{} {args:?}: {err}",
                rt.bin
            );
        }
        // delete --force of an unknown container succeeds quietly
        let out = rt.run(&["delete", "--force", &nobody], Path::new("/"));
        assert_eq!(out.status.code(), Some(0), "{}", rt.bin);

        // a running container: start again, bad signal, double create
        let id = rt.id("er");
        rt.ok(&["run", "--detach", "--bundle", b, &id], Path::new("/"));
        for args in [
            vec!["start", id.as_str()],
            vec!["kill", id.as_str(), "NOPE"],
            vec!["create", "--bundle", b, id.as_str()],
            vec!["resume", id.as_str()],
        ] {
            let out = rt.run(&args, Path::new("/"));
            assert_eq!(out.status.code(), Some(1), "{} {args:?}", rt.bin);
            assert!(
                text(&out.stderr).contains("level=error"),
                "{} {args:?}: {}",
                rt.bin,
                text(&out.stderr)
            );
        }
        assert_eq!(rt.state(&id)["status"], "running", "{}", rt.bin);
        rt.ok(&["delete", "--force", &id], Path::new("/"));
        let out = rt.run(&["state", &id], Path::new("/"));
        assert_eq!(out.status.code(), Some(1), "{}", rt.bin);
    }
}

#[test]
fn json_log_file_gets_the_error_as_runc_writes_it() {
    require_root!();
    let rt = Runtime::longshore();
    let logdir = tempfile::Builder::new()
        .prefix("longshore-log-")
        .tempdir()
        .unwrap();
    let log = logdir.path().join("log.json");
    let id = rt.id("lg");
    let out = rt
        .cmd()
        .arg("--log")
        .arg(&log)
        .args(["--log-format", "json", "start", &id])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    // the bare message on stderr, the JSON line in the log (containerd's shim reads it)
    let err = text(&out.stderr);
    assert!(
        err.contains("does not exist") && !err.contains("level="),
        "{err}"
    );
    let line = std::fs::read_to_string(&log).unwrap();
    let v: Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(v["level"], "error");
    assert!(v["msg"].as_str().unwrap().contains("does not exist"), "{v}");
    assert!(v["time"].as_str().unwrap().ends_with('Z'), "{v}");
}

/// `run` returns the container's exit code, 128+9 when it is killed from outside.
#[test]
fn run_returns_the_exit_code_like_runc() {
    require_root!();
    let mut runtimes = vec![Runtime::longshore()];
    runtimes.extend(Runtime::runc());
    for rt in &runtimes {
        for (args, want) in [(&["true"][..], 0), (&["sh", "-c", "exit 3"][..], 3)] {
            let dir = bundle(args);
            let id = rt.id("rc");
            let out = rt.run(&["run", &id], dir.path());
            assert_eq!(out.status.code(), Some(want), "{} {args:?}", rt.bin);
            // run deletes the container afterwards
            assert_eq!(
                rt.run(&["state", &id], Path::new("/")).status.code(),
                Some(1)
            );
        }
        let dir = bundle(&["sleep", "100"]);
        let id = rt.id("rk");
        let mut child = Foreground::spawn(rt, &id, dir.path());
        assert_eq!(rt.wait_status(&id, "running")["status"], "running");
        rt.ok(&["kill", &id, "KILL"], Path::new("/"));
        let status = child.wait();
        assert_eq!(status.code(), Some(137), "{}", rt.bin);
        assert_eq!(
            rt.run(&["state", &id], Path::new("/")).status.code(),
            Some(1)
        );
    }
}

#[test]
fn exec_into_a_running_container_like_runc() {
    require_root!();
    let dir = bundle(&["sleep", "100"]);
    let b = dir.path().to_str().unwrap();
    let mut runtimes = vec![Runtime::longshore()];
    runtimes.extend(Runtime::runc());
    for rt in &runtimes {
        let id = rt.id("ex");
        rt.ok(&["run", "--detach", "--bundle", b, &id], Path::new("/"));
        let pid = rt.state(&id)["pid"].as_i64().unwrap();
        // same namespaces as the init, and its exit code comes back
        let out = rt.ok(
            &["exec", &id, "sh", "-c", "hostname; cat /proc/1/cmdline"],
            Path::new("/"),
        );
        let s = text(&out.stdout);
        assert!(s.starts_with("longshore\n"), "{}: {s}", rt.bin);
        assert!(
            s.contains("sleep\u{0}100"),
            "{}: pid 1 is not the init: {s:?}",
            rt.bin
        );
        let out = rt.run(&["exec", &id, "sh", "-c", "exit 5"], Path::new("/"));
        assert_eq!(out.status.code(), Some(5), "{}", rt.bin);
        // --process JSON (what containerd's shim passes), detached with a pid file
        let tmp = tempfile::Builder::new()
            .prefix("longshore-exec-")
            .tempdir()
            .unwrap();
        let process = serde_json::json!({
            "terminal": false, "user": {"uid": 0, "gid": 0}, "cwd": "/",
            "args": ["sh", "-c", "echo detached > /tmp/mark; sleep 100"],
            "env": ["PATH=/bin:/usr/bin"]
        });
        std::fs::write(tmp.path().join("p.json"), process.to_string()).unwrap();
        let pf = tmp.path().join("pid");
        rt.ok(
            &[
                "exec",
                "--process",
                tmp.path().join("p.json").to_str().unwrap(),
                "--detach",
                "--pid-file",
                pf.to_str().unwrap(),
                &id,
            ],
            Path::new("/"),
        );
        let epid: i32 = std::fs::read_to_string(&pf)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(epid > 0 && i64::from(epid) != pid);
        // the exec'd process is in the container's pid namespace
        assert_eq!(
            std::fs::read_link(format!("/proc/{epid}/ns/pid")).unwrap(),
            std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap()
        );
        let out = rt.ok(&["ps", "--format", "json", &id], Path::new("/"));
        let pids: Vec<i64> = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            pids.contains(&pid) && pids.contains(&i64::from(epid)),
            "{pids:?}"
        );
        rt.ok(&["delete", "--force", &id], Path::new("/"));
        assert!(!Path::new(&format!("/proc/{epid}")).exists() || zombie_or_gone(epid));
    }
}

fn zombie_or_gone(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(s)
                if s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z') =>
            {
                return true;
            }
            Ok(_) if Instant::now() > deadline => return false,
            Ok(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// kill -9 of a foreground `run`: the container lives on (its init is not tied to the
/// runtime), `state` still sees it running, and `delete --force` cleans up everything.
#[test]
fn state_after_kill_9_of_the_runtime() {
    require_root!();
    let dir = bundle(&["sleep", "100"]);
    let rt = Runtime::longshore();
    let id = rt.id("k9");
    let mut child = Foreground::spawn(&rt, &id, dir.path());
    let st = rt.wait_status(&id, "running");
    assert_eq!(st["status"], "running", "{st}");
    let pid = st["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.pid()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let status = child.wait();
    assert_eq!(
        status.signal(),
        Some(nix::sys::signal::Signal::SIGKILL as i32)
    );

    let st = rt.state(&id);
    assert_eq!(
        st["status"], "running",
        "the init survives its runtime: {st}"
    );
    assert_eq!(st["pid"].as_i64(), Some(i64::from(pid)));
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert!(!cgroup_dirs(&id).is_empty(), "the container has cgroups");
    let state_dir = rt.root.path().join(&id);
    assert!(state_dir.exists());

    rt.ok(&["delete", "--force", &id], Path::new("/"));
    assert!(
        zombie_or_gone(pid),
        "init {pid} still runs after delete --force"
    );
    assert_eq!(
        cgroup_dirs(&id),
        Vec::<PathBuf>::new(),
        "cgroups left behind"
    );
    assert!(!state_dir.exists(), "state dir left behind");
    assert_eq!(
        rt.run(&["state", &id], Path::new("/")).status.code(),
        Some(1)
    );
    let out = rt.ok(&["list", "--quiet"], Path::new("/"));
    assert!(!text(&out.stdout).contains(&id));
}

/// A foreground `run` passes the signals it receives on to the container's init, as
/// runc does: the container's shell traps SIGTERM and exits with 42.
#[test]
fn foreground_run_forwards_signals() {
    require_root!();
    let dir = bundle(&[
        "sh",
        "-c",
        "trap 'exit 42' TERM; trap 'exit 43' INT; touch /tmp/ready; while true; do sleep 0.05; done",
    ]);
    let rt = Runtime::longshore();
    for (sig, want) in [
        (nix::sys::signal::Signal::SIGTERM, 42),
        (nix::sys::signal::Signal::SIGINT, 43),
    ] {
        let id = rt.id("sg");
        let mut child = Foreground::spawn(&rt, &id, dir.path());
        let ready = dir.path().join("rootfs/tmp/ready");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(ready.exists(), "the container did not start");
        std::fs::remove_file(&ready).unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.pid()), sig).unwrap();
        let status = child.wait();
        assert_eq!(status.code(), Some(want), "{sig} forwarded");
        assert_eq!(
            rt.run(&["state", &id], Path::new("/")).status.code(),
            Some(1)
        );
    }
}

#[test]
fn features_document() {
    let out = Command::new(RT).arg("features").output().unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ociVersionMin"], "1.0.0");
    assert!(v["linux"]["namespaces"].as_array().unwrap().len() == 7);
    assert!(
        v["linux"]["capabilities"]
            .as_array()
            .unwrap()
            .contains(&Value::from("CAP_SYS_ADMIN"))
    );
    assert_eq!(v["linux"]["cgroup"]["systemd"], false);
}

#[test]
fn bad_log_format_is_refused_like_runc() {
    let root = tempfile::Builder::new()
        .prefix("longshore-rtroot-")
        .tempdir()
        .unwrap();
    let out = Command::new(RT)
        .arg("--root")
        .arg(root.path())
        .args(["--log-format", "xml", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("invalid log-format"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn systemd_cgroup_is_refused_clearly() {
    let root = tempfile::Builder::new()
        .prefix("longshore-rtroot-")
        .tempdir()
        .unwrap();
    let out = Command::new(RT)
        .arg("--root")
        .arg(root.path())
        .args(["--systemd-cgroup", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("systemd"),
        "{}",
        text(&out.stderr)
    );
}

/// The host directory of `pid`'s cgroup for a v1 `controller`.
fn v1_cgroup_dir(pid: i64, controller: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let rel = text
        .lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            ctrls
                .split(',')
                .any(|c| c == controller)
                .then(|| path.to_string())
        })
        .unwrap_or_else(|| panic!("no {controller} cgroup for {pid}: {text}"));
    Path::new("/sys/fs/cgroup")
        .join(controller)
        .join(rel.trim_start_matches('/'))
}

fn read_trim(p: PathBuf) -> String {
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

/// `update` by flags and by `--resources -` (containerd's way), on both runtimes; the
/// device rules in a resources document are not applied (the container keeps /dev/null).
#[test]
fn update_changes_cgroup_limits_like_runc() {
    require_root!();
    if !Path::new("/sys/fs/cgroup/memory").is_dir() || !Path::new("/sys/fs/cgroup/pids").is_dir() {
        longshore_test_support::skip!("needs cgroup v1 memory and pids");
    }
    let dir = bundle(&["sleep", "100"]);
    let b = dir.path().to_str().unwrap();
    let mut runtimes = vec![Runtime::longshore()];
    runtimes.extend(Runtime::runc());
    for rt in &runtimes {
        let id = rt.id("up");
        rt.ok(&["run", "--detach", "--bundle", b, &id], Path::new("/"));
        let pid = rt.state(&id)["pid"].as_i64().unwrap();
        rt.ok(
            &["update", "--memory", "64m", "--pids-limit", "30", &id],
            Path::new("/"),
        );
        let mem = v1_cgroup_dir(pid, "memory");
        assert_eq!(
            read_trim(mem.join("memory.limit_in_bytes")),
            "67108864",
            "{}",
            rt.bin
        );
        assert_eq!(
            read_trim(v1_cgroup_dir(pid, "pids").join("pids.max")),
            "30",
            "{}",
            rt.bin
        );

        let res = serde_json::json!({
            "memory": {"limit": 96 * 1024 * 1024},
            "pids": {"limit": 40},
            "devices": [{"allow": false, "access": "rwm"}]
        });
        let mut child = rt
            .cmd()
            .args(["update", "--resources", "-", &id])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(res.to_string().as_bytes()).unwrap();
        }
        assert!(child.wait().unwrap().success(), "{}", rt.bin);
        assert_eq!(
            read_trim(mem.join("memory.limit_in_bytes")),
            "100663296",
            "{}",
            rt.bin
        );
        assert_eq!(
            read_trim(v1_cgroup_dir(pid, "pids").join("pids.max")),
            "40",
            "{}",
            rt.bin
        );
        let out = rt.run(
            &["exec", &id, "sh", "-c", "echo x > /dev/null"],
            Path::new("/"),
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            rt.bin,
            text(&out.stderr)
        );

        // bad input changes nothing
        let out = rt.run(&["update", "--memory", "lots", &id], Path::new("/"));
        assert_ne!(out.status.code(), Some(0), "{}", rt.bin);
        assert_eq!(
            read_trim(mem.join("memory.limit_in_bytes")),
            "100663296",
            "{}",
            rt.bin
        );
        rt.ok(&["delete", "--force", &id], Path::new("/"));
    }
}

/// `list --format json` and `ps` print what runc prints for the same containers.
#[test]
fn list_and_ps_like_runc() {
    require_root!();
    let dir = bundle(&["sleep", "100"]);
    let b = dir.path().to_str().unwrap();
    let mut runtimes = vec![Runtime::longshore()];
    runtimes.extend(Runtime::runc());
    let mut shapes = Vec::new();
    for rt in &runtimes {
        let id = rt.id("ls");
        rt.ok(&["run", "--detach", "--bundle", b, &id], Path::new("/"));
        let pid = rt.state(&id)["pid"].as_i64().unwrap();
        let out = rt.ok(&["list", "--format", "json"], Path::new("/"));
        let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(list.len(), 1, "{}: {list:?}", rt.bin);
        assert_eq!(list[0]["id"], id.as_str());
        assert_eq!(list[0]["status"], "running");
        assert_eq!(list[0]["owner"], "root", "{}", rt.bin);
        let quiet = rt.ok(&["list", "-q"], Path::new("/"));
        assert_eq!(text(&quiet.stdout).trim(), id);

        let out = rt.ok(&["ps", &id], Path::new("/"));
        let table = text(&out.stdout);
        let mut lines = table.lines();
        let header = lines.next().unwrap().split_whitespace().collect::<Vec<_>>();
        assert_eq!(header[..3], ["UID", "PID", "PPID"], "{}: {table}", rt.bin);
        let rows: Vec<&str> = lines.collect();
        assert_eq!(rows.len(), 1, "{}: {table}", rt.bin);
        assert!(rows[0].contains(&pid.to_string()) && rows[0].ends_with("sleep 100"));
        let out = rt.run(&["ps", "--format", "yaml", &id], Path::new("/"));
        assert_eq!(out.status.code(), Some(1), "{}", rt.bin);
        shapes.push(keys(&list[0]));
        rt.ok(&["delete", "--force", &id], Path::new("/"));
    }
    if shapes.len() == 2 {
        assert_eq!(shapes[0], shapes[1], "list --format json keys");
    }
}

/// `events --stats` prints one runc-shaped stats event; `create --pid-file` writes the
/// bare pid (containerd's shim parses it without trimming).
#[test]
fn events_stats_and_pid_file_like_runc() {
    require_root!();
    let dir = bundle(&["sleep", "100"]);
    let b = dir.path().to_str().unwrap();
    let mut runtimes = vec![Runtime::longshore()];
    runtimes.extend(Runtime::runc());
    for rt in &runtimes {
        let id = rt.id("ev");
        let tmp = tempfile::Builder::new()
            .prefix("longshore-pidf-")
            .tempdir()
            .unwrap();
        let pf = tmp.path().join("init.pid");
        rt.ok(
            &[
                "create",
                "--bundle",
                b,
                "--pid-file",
                pf.to_str().unwrap(),
                &id,
            ],
            Path::new("/"),
        );
        let pid = rt.state(&id)["pid"].as_i64().unwrap();
        assert_eq!(
            std::fs::read_to_string(&pf).unwrap(),
            pid.to_string(),
            "{}",
            rt.bin
        );
        rt.ok(&["start", &id], Path::new("/"));
        let out = rt.ok(&["events", "--stats", &id], Path::new("/"));
        let ev: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(ev["type"], "stats", "{}", rt.bin);
        assert_eq!(ev["id"], id.as_str());
        let data = &ev["data"];
        assert!(
            data["cpu"]["usage"]["total"].as_u64().unwrap() > 0,
            "{}: {ev}",
            rt.bin
        );
        assert!(
            data["memory"]["usage"]["usage"].as_u64().unwrap() > 0,
            "{}: {ev}",
            rt.bin
        );
        // (1 once the init has exec'd; runc's init still has its Go threads just after start)
        assert!(
            data["pids"]["current"].as_u64().unwrap() >= 1,
            "{}: {ev}",
            rt.bin
        );
        rt.ok(&["delete", "--force", &id], Path::new("/"));
    }
}

/// A foreground `exec` forwards signals to its process too (runc's exec does).
#[test]
fn foreground_exec_forwards_signals() {
    require_root!();
    let dir = bundle(&["sleep", "100"]);
    let b = dir.path().to_str().unwrap();
    let rt = Runtime::longshore();
    let id = rt.id("xs");
    rt.ok(&["run", "--detach", "--bundle", b, &id], Path::new("/"));
    let mut child = rt
        .cmd()
        .args([
            "exec",
            &id,
            "sh",
            "-c",
            "trap 'exit 44' TERM; touch /tmp/xready; while true; do sleep 0.05; done",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let ready = dir.path().join("rootfs/tmp/xready");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = ready.exists();
    if !started {
        let _ = child.kill();
    }
    assert!(started, "the exec'd process did not start");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(44));
    assert_eq!(rt.state(&id)["status"], "running", "the init is untouched");
}

/// A created (never started) container: runc deletes it without --force; longshore-runtime
/// follows the runtime spec (the delete fails and changes nothing; --force deletes it).
/// Both: a bundle without config.json fails create with exit code 1.
#[test]
fn delete_created_and_bad_bundle() {
    require_root!();
    let dir = bundle(&["sleep", "100"]);
    let b = dir.path().to_str().unwrap();
    let empty = tempfile::Builder::new()
        .prefix("longshore-empty-")
        .tempdir()
        .unwrap();
    let mut runtimes = vec![Runtime::longshore()];
    runtimes.extend(Runtime::runc());
    for rt in &runtimes {
        let id = rt.id("dc");
        rt.ok(&["create", "--bundle", b, &id], Path::new("/"));
        let pid = rt.state(&id)["pid"].as_i64().unwrap() as i32;
        if rt.bin == RT {
            // the runtime spec: deleting a container that is not stopped fails and
            // changes nothing (runc deletes a created one anyway)
            let out = rt.run(&["delete", &id], Path::new("/"));
            assert_eq!(out.status.code(), Some(1));
            assert!(
                text(&out.stderr).contains("that is not stopped: created"),
                "{}",
                text(&out.stderr)
            );
            assert_eq!(rt.state(&id)["status"], "created");
            rt.ok(&["delete", "--force", &id], Path::new("/"));
        } else {
            rt.ok(&["delete", &id], Path::new("/"));
        }
        assert!(
            zombie_or_gone(pid),
            "{}: init {pid} survives delete",
            rt.bin
        );
        assert_eq!(
            rt.run(&["state", &id], Path::new("/")).status.code(),
            Some(1)
        );

        let bad = rt.id("bb");
        let out = rt.run(
            &["create", "--bundle", empty.path().to_str().unwrap(), &bad],
            Path::new("/"),
        );
        assert_eq!(out.status.code(), Some(1), "{}", rt.bin);
        let err = text(&out.stderr);
        assert!(
            err.contains("create failed") && err.contains("config.json"),
            "{}: {err}",
            rt.bin
        );
        assert_eq!(
            rt.run(&["state", &bad], Path::new("/")).status.code(),
            Some(1)
        );
    }
}

/// A foreground `run` of a process with `terminal: true` and no --console-socket gets a
/// pty proxied to the runtime's own terminal, with its size, as `runc run` does.
#[test]
fn foreground_run_with_terminal_like_runc() {
    require_root!();
    let dir = bundle(&["sh", "-c", "tty; stty size; echo tty-ok; exit 6"]);
    let path = dir.path().join("config.json");
    let mut spec: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    spec["process"]["terminal"] = true.into();
    std::fs::write(&path, spec.to_string()).unwrap();
    let mut runtimes = vec![Runtime::longshore()];
    runtimes.extend(Runtime::runc());
    for rt in &runtimes {
        let ws = nix::pty::Winsize {
            ws_row: 30,
            ws_col: 100,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&ws), None).unwrap();
        let id = rt.id("tt");
        let mut cmd = rt.cmd();
        cmd.args(["run", &id])
            .current_dir(dir.path())
            .stdin(pty.slave.try_clone().unwrap())
            .stdout(pty.slave.try_clone().unwrap())
            .stderr(pty.slave);
        let mut child = cmd.spawn().unwrap();
        drop(cmd); // our copies of the terminal's slave end
        let master = std::fs::File::from(pty.master);
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = std::io::Read::read_to_end(&mut &master, &mut out); // EIO at the end
            out
        });
        let status = child.wait().unwrap();
        let out = text(&reader.join().unwrap()).replace('\r', "");
        assert_eq!(status.code(), Some(6), "{}: {out}", rt.bin);
        assert!(out.contains("/dev/pts/0\n"), "{}: {out:?}", rt.bin);
        assert!(out.contains("tty-ok\n"), "{}: {out:?}", rt.bin);
        // the terminal's size is passed on (checked on ours: runc's own `stty` was seen
        // failing with ECHILD when four copies of this suite ran at once)
        if rt.bin == RT {
            assert!(out.contains("\n30 100\n"), "{}: {out:?}", rt.bin);
        }
    }
}

/// kill -9 of `create` in the middle (during a createRuntime hook): the "creating" record
/// written right after the cgroups were made lets `state` report the container as
/// stopped and `delete --force` remove its cgroups and state (runc 1.1 leaks the cgroups
/// here and says the container does not exist); the id can then be reused.
#[test]
fn kill_9_during_create_then_delete_force_and_reuse() {
    require_root!();
    let dir = bundle(&["sleep", "100"]);
    let marker = dir.path().join("hook-ran");
    let path = dir.path().join("config.json");
    let mut spec: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    spec["hooks"] = serde_json::json!({"createRuntime": [{
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("touch {}; sleep 3", marker.display())]
    }]});
    std::fs::write(&path, spec.to_string()).unwrap();
    let b = dir.path().to_str().unwrap();
    let rt = Runtime::longshore();
    let id = rt.id("kc");
    let mut create = rt
        .cmd()
        .args(["create", "--bundle", b, &id])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !marker.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = create.kill();
    create.wait().unwrap();
    assert!(marker.exists(), "the hook never ran");
    assert!(
        rt.root.path().join(&id).exists(),
        "create made its state dir"
    );

    assert!(!cgroup_dirs(&id).is_empty(), "create had made the cgroups");
    assert_eq!(rt.state(&id)["status"], "stopped");
    rt.ok(&["delete", "--force", &id], Path::new("/"));
    assert!(
        !rt.root.path().join(&id).exists(),
        "delete --force left the state dir"
    );
    assert_eq!(
        cgroup_dirs(&id),
        Vec::<PathBuf>::new(),
        "delete --force left the cgroups"
    );

    // the id is free again; this container also takes over (and removes) the cgroups
    // the aborted create left behind
    spec["hooks"] = Value::Null;
    std::fs::write(&path, spec.to_string()).unwrap();
    rt.ok(&["run", "--detach", "--bundle", b, &id], Path::new("/"));
    assert_eq!(rt.state(&id)["status"], "running");
    rt.ok(&["delete", "--force", &id], Path::new("/"));
    assert_eq!(cgroup_dirs(&id), Vec::<PathBuf>::new());
}

/// The `msg` of a logrus-style error line, with the runtime's own name normalised.
fn error_msg(rt: &Runtime, out: &Output) -> String {
    let err = text(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("level=error"))
        .unwrap_or_else(|| panic!("{}: no error line in {err:?}", rt.bin));
    let quoted = &line[line.find("msg=").expect("msg=") + 4..];
    let msg: String = serde_json::from_str(quoted.trim()).unwrap_or_else(|_| quoted.to_string());
    let name = Path::new(rt.bin).file_name().unwrap().to_str().unwrap();
    msg.replace(name, "RUNTIME")
}

/// The same mistakes give the same messages and exit codes from both runtimes.
#[test]
fn error_messages_are_runcs() {
    require_root!();
    let Some(runc) = Runtime::runc() else {
        return;
    };
    let dir = bundle(&["sleep", "100"]);
    let b = dir.path().to_str().unwrap();
    let mut seen = Vec::new();
    for rt in [&Runtime::longshore(), &runc] {
        let id = rt.id("em");
        let mut msgs = Vec::new();
        let mut expect_fail = |args: &[&str]| {
            let out = rt.run(args, Path::new("/"));
            assert_ne!(out.status.code(), Some(0), "{} {args:?}", rt.bin);
            msgs.push((args[0].to_string(), out.status.code(), error_msg(rt, &out)));
        };
        expect_fail(&["start", "nosuch"]);
        expect_fail(&["kill", "nosuch"]);
        rt.ok(&["create", "--bundle", b, &id], Path::new("/"));
        expect_fail(&["create", "--bundle", b, &id]);
        expect_fail(&["resume", &id]);
        rt.ok(&["start", &id], Path::new("/"));
        expect_fail(&["start", &id]);
        expect_fail(&["delete", &id]);
        expect_fail(&["resume", &id]);
        rt.ok(&["pause", &id], Path::new("/"));
        expect_fail(&["start", &id]);
        expect_fail(&["exec", &id, "true"]);
        rt.ok(&["resume", &id], Path::new("/"));
        rt.ok(&["kill", &id, "KILL"], Path::new("/"));
        rt.wait_status(&id, "stopped");
        expect_fail(&["start", &id]);
        expect_fail(&["kill", &id, "KILL"]);
        expect_fail(&["pause", &id]);
        expect_fail(&["exec", &id, "true"]);
        rt.ok(&["delete", &id], Path::new("/"));
        expect_fail(&["delete", &id]);
        seen.push((msgs, id));
    }
    let (theirs, runc_id) = seen.pop().unwrap();
    let (ours, our_id) = seen.pop().unwrap();
    for (a, b) in ours.iter().zip(&theirs) {
        let b = (b.0.clone(), b.1, b.2.replace(&runc_id, &our_id));
        assert_eq!(a, &b, "longshore-runtime vs runc");
    }
    assert_eq!(ours.len(), theirs.len());
}

/// Real-time signals reach the init (systemd's stop signal is SIGRTMIN+3, 37 here), by
/// number on both runtimes and as `RTMIN+3` on ours.
#[test]
fn kill_with_a_real_time_signal_like_runc() {
    require_root!();
    let dir = bundle(&[
        "sh",
        "-c",
        "trap 'echo got > /tmp/rt; exit 45' 37; touch /tmp/rtready; while true; do sleep 0.05; done",
    ]);
    let b = dir.path().to_str().unwrap();
    let mut runs = vec![
        (Runtime::longshore(), "RTMIN+3"),
        (Runtime::longshore(), "37"),
    ];
    runs.extend(Runtime::runc().map(|r| (r, "37")));
    for (rt, sig) in &runs {
        let ready = dir.path().join("rootfs/tmp/rtready");
        let got = dir.path().join("rootfs/tmp/rt");
        let _ = std::fs::remove_file(&ready);
        let _ = std::fs::remove_file(&got);
        let id = rt.id("rt");
        rt.ok(&["run", "--detach", "--bundle", b, &id], Path::new("/"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(ready.exists(), "{}: the container did not start", rt.bin);
        rt.ok(&["kill", &id, sig], Path::new("/"));
        assert_eq!(
            rt.wait_status(&id, "stopped")["status"],
            "stopped",
            "{} {sig}",
            rt.bin
        );
        assert_eq!(
            std::fs::read_to_string(&got).unwrap(),
            "got\n",
            "{} {sig}",
            rt.bin
        );
        // out of range
        let out = rt.run(&["kill", &id, "99"], Path::new("/"));
        assert_eq!(out.status.code(), Some(1), "{}", rt.bin);
        rt.ok(&["delete", &id], Path::new("/"));
    }
}

/// `exec -t` without --console-socket proxies a pty too (runc does).
#[test]
fn foreground_exec_with_terminal_like_runc() {
    require_root!();
    let dir = bundle(&["sleep", "100"]);
    let b = dir.path().to_str().unwrap();
    let mut runtimes = vec![Runtime::longshore()];
    runtimes.extend(Runtime::runc());
    for rt in &runtimes {
        let id = rt.id("et");
        rt.ok(&["run", "--detach", "--bundle", b, &id], Path::new("/"));
        let pty = nix::pty::openpty(None, None).unwrap();
        let mut cmd = rt.cmd();
        cmd.args([
            "exec",
            "-t",
            &id,
            "sh",
            "-c",
            "tty; echo exec-tty-ok; exit 4",
        ])
        .stdin(pty.slave.try_clone().unwrap())
        .stdout(pty.slave.try_clone().unwrap())
        .stderr(pty.slave);
        let mut child = cmd.spawn().unwrap();
        drop(cmd);
        let master = std::fs::File::from(pty.master);
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = std::io::Read::read_to_end(&mut &master, &mut out);
            out
        });
        let status = child.wait().unwrap();
        let out = text(&reader.join().unwrap()).replace('\r', "");
        assert_eq!(status.code(), Some(4), "{}: {out}", rt.bin);
        assert!(out.contains("/dev/pts/"), "{}: {out:?}", rt.bin);
        assert!(out.contains("exec-tty-ok\n"), "{}: {out:?}", rt.bin);
        rt.ok(&["delete", "--force", &id], Path::new("/"));
    }
}

/// The container's process starts with no ignored signals, as under runc (Rust programs
/// start with SIGPIPE ignored, which execve would pass on).
#[test]
fn no_ignored_signals_leak_into_the_container_like_runc() {
    require_root!();
    // (`; true`: sh forks grep with the dispositions sh inherited; exec'd as the last
    // command it would keep busybox sh's own ignored SIGQUIT)
    let dir = bundle(&[
        "sh",
        "-c",
        "grep SigIgn /proc/self/status > /tmp/sigign; true",
    ]);
    let b = dir.path().to_str().unwrap();
    let out_file = dir.path().join("rootfs/tmp/sigign");
    let mut runtimes = vec![Runtime::longshore()];
    runtimes.extend(Runtime::runc());
    for rt in &runtimes {
        for detach in [true, false] {
            let _ = std::fs::remove_file(&out_file);
            let id = rt.id("si");
            if detach {
                rt.ok(&["run", "--detach", "--bundle", b, &id], Path::new("/"));
                rt.wait_status(&id, "stopped");
                rt.ok(&["delete", &id], Path::new("/"));
            } else {
                rt.ok(&["run", "--bundle", b, &id], Path::new("/"));
            }
            let got = std::fs::read_to_string(&out_file).unwrap();
            let mask = u64::from_str_radix(got.trim().trim_start_matches("SigIgn:\t"), 16)
                .unwrap_or_else(|e| panic!("{got:?}: {e}"));
            // runc passes on glibc's internal 32 and 33 when its caller ignored them
            // (seen under cargo test); ours resets every signal
            let checked = if rt.bin == RT { u64::MAX } else { 0x7fff_ffff };
            assert_eq!(mask & checked, 0, "{} detach={detach}: {got}", rt.bin);
        }
    }
}

/// CVE-2019-5736 with CAP_SYS_PTRACE granted: non-dumpable no longer hides the init's
/// `/proc/<pid>/exe`, so the runtime re-runs itself from a sealed memfd first and what
/// the container can reach is that anonymous copy, never the binary on the host.
#[test]
fn with_ptrace_the_init_runs_from_a_sealed_copy() {
    require_root!();
    let dir = bundle(&["sleep", "100"]);
    let path = dir.path().join("config.json");
    let mut spec: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for set in ["bounding", "effective", "permitted"] {
        let caps = spec["process"]["capabilities"][set].as_array_mut().unwrap();
        caps.push("CAP_SYS_PTRACE".into());
    }
    std::fs::write(&path, spec.to_string()).unwrap();
    let b = dir.path().to_str().unwrap();
    let rt = Runtime::longshore();
    let id = rt.id("pt");
    rt.ok(&["create", "--bundle", b, &id], Path::new("/"));
    // the init still waits in the runtime's code: look at its exe from inside
    let out = rt.ok(&["exec", &id, "readlink", "/proc/1/exe"], Path::new("/"));
    let exe = text(&out.stdout);
    assert!(
        exe.starts_with("/memfd:longshore-runtime"),
        "init runs from {exe:?}"
    );
    // and writing through it fails: the copy is sealed
    let out = rt.run(
        &["exec", &id, "sh", "-c", "echo x >> /proc/1/exe"],
        Path::new("/"),
    );
    assert!(!out.status.success(), "wrote to the runtime's image");
    rt.ok(&["delete", "--force", &id], Path::new("/"));
}

/// Compiles libcontainer's CVE-2019-5736 payload into `rootfs` as the dynamic loader and
/// makes the image's `/bin/sh` the script `#!/proc/self/exe` (issue 14, item 1).
fn plant_exe_payload(rootfs: &Path) {
    let src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../libcontainer/tests/data/exe_overwrite.c");
    std::fs::create_dir_all(rootfs.join("lib64")).unwrap();
    let out = Command::new("cc")
        .args([
            "-static",
            "-nostdlib",
            "-fno-pie",
            "-no-pie",
            "-O1",
            "-fno-stack-protector",
            "-o",
        ])
        .arg(rootfs.join("lib64/ld-linux-x86-64.so.2"))
        .arg(&src)
        .output()
        .expect("cc (the payload is C)");
    assert!(out.status.success(), "cc: {}", text(&out.stderr));
    let sh = rootfs.join("bin/sh");
    std::fs::remove_file(&sh).unwrap();
    std::fs::write(&sh, "#!/proc/self/exe\n").unwrap();
    std::fs::set_permissions(&sh, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// Waits until the payload in `rootfs` is done (it ran: its outcome) or is known never to
/// have run (`settled` says the container's process is over and it left no mark).
fn payload_outcome(rootfs: &Path, settled: impl Fn() -> bool) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(s) = std::fs::read_to_string(rootfs.join("payload-done")) {
            return Some(s);
        }
        let started = rootfs.join("payload-started").exists();
        if (!started && settled()) || Instant::now() > deadline {
            return std::fs::read_to_string(rootfs.join("payload-started"))
                .ok()
                .map(|s| format!("started (opened inode {})", s.trim()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// CVE-2019-5736 as reproduced in issue 14, with the default capabilities (no
/// CAP_SYS_PTRACE): the image's `/bin/sh` is `#!/proc/self/exe` and its loader writes
/// through `/proc/self/fd/N` once the runtime has exited. Neither `run -d` with `/bin/sh`
/// as the entrypoint nor `exec c1 /bin/sh` may let it replace the runtime's binary (a
/// private copy here, so that the real one is safe even when this test fails).
#[test]
#[cfg(target_arch = "x86_64")]
fn cve_2019_5736_the_runtime_binary_cannot_be_overwritten() {
    require_root!();
    let copy_dir = tempfile::Builder::new()
        .prefix("longshore-rtcopy-")
        .tempdir()
        .unwrap();
    let copy = copy_dir.path().join("longshore-runtime");
    std::fs::copy(RT, &copy).unwrap();
    let original = std::fs::read(&copy).unwrap();
    let bin: &'static str = Box::leak(copy.to_str().unwrap().to_string().into_boxed_str());
    let rt = Runtime::new(bin);
    // if the attack works the copy is garbage: clean up with the real binary
    struct DeleteWithRealBinary<'a>(&'a Runtime);
    impl Drop for DeleteWithRealBinary<'_> {
        fn drop(&mut self) {
            for id in self.0.ids.borrow().iter() {
                let _ = Command::new(RT)
                    .arg("--root")
                    .arg(self.0.root.path())
                    .args(["delete", "--force", id])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
    let _cleanup = DeleteWithRealBinary(&rt);

    // run -d with the script as the entrypoint: the init's execve
    let dir = bundle(&["/bin/sh"]);
    let rootfs = dir.path().join("rootfs");
    plant_exe_payload(&rootfs);
    let id = rt.id("cve1");
    let b = dir.path().to_str().unwrap();
    rt.ok(&["run", "--detach", "--bundle", b, &id], Path::new("/"));
    let got = payload_outcome(&rootfs, || rt.state(&id)["status"] == "stopped");
    assert_eq!(got, None, "run -d: the payload ran as the runtime's loader");
    assert!(
        std::fs::read(&copy).unwrap() == original,
        "run -d: the runtime binary changed"
    );

    // exec /bin/sh into a running container
    let dir = bundle(&["sleep", "100"]);
    let rootfs = dir.path().join("rootfs");
    plant_exe_payload(&rootfs);
    let id = rt.id("cve1");
    let b = dir.path().to_str().unwrap();
    rt.ok(&["run", "--detach", "--bundle", b, &id], Path::new("/"));
    let out = rt.run(&["exec", &id, "/bin/sh"], Path::new("/"));
    let got = payload_outcome(&rootfs, || true);
    assert_eq!(got, None, "exec: the payload ran as the runtime's loader");
    assert!(
        std::fs::read(&copy).unwrap() == original,
        "exec: the runtime binary changed"
    );
    // the script reached only the sealed trampoline, which refused it
    assert_eq!(out.status.code(), Some(126), "{}", text(&out.stderr));
    rt.ok(&["delete", "--force", &id], Path::new("/"));
}

/// `run -d` and `create` + `start` of a container without a mount namespace of its own
/// (issue 14, item 11): it runs, as a foreground `run` of the same bundle does, and `exec`
/// lands in its root (item 5).
#[test]
fn detached_container_without_mount_namespace_runs() {
    require_root!();
    let dir = bundle(&["sleep", "100"]);
    let path = dir.path().join("config.json");
    let mut spec: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "mount");
    std::fs::write(&path, spec.to_string()).unwrap();
    std::fs::write(dir.path().join("rootfs/longshore-marker"), "inside\n").unwrap();
    let b = dir.path().to_str().unwrap();
    let rt = Runtime::longshore();
    let id = rt.id("nomnt");
    rt.ok(&["run", "--detach", "--bundle", b, &id], Path::new("/"));
    assert_eq!(rt.state(&id)["status"], "running");
    let out = rt.ok(&["exec", &id, "cat", "/longshore-marker"], Path::new("/"));
    assert_eq!(text(&out.stdout), "inside\n");
    rt.ok(&["delete", "--force", &id], Path::new("/"));
    let id = rt.id("nomnt");
    rt.ok(&["create", "--bundle", b, &id], Path::new("/"));
    rt.ok(&["start", &id], Path::new("/"));
    assert_eq!(rt.wait_status(&id, "running")["status"], "running");
    rt.ok(&["delete", "--force", &id], Path::new("/"));
}

/// `create` prints what the container was asked for and did not get as a runc-style
/// warning line on stderr, and still creates it (issue 9).
#[test]
fn create_prints_warnings_like_runc() {
    require_root!();
    let dir = bundle(&["true"]);
    let path = dir.path().join("config.json");
    let mut spec: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    spec["linux"]["resources"]["memory"] = serde_json::json!({"kernel": 67108864});
    std::fs::write(&path, spec.to_string()).unwrap();
    let b = dir.path().to_str().unwrap();
    let rt = Runtime::longshore();
    let id = rt.id("warn");
    let out = rt.ok(&["create", "--bundle", b, &id], Path::new("/"));
    let err = text(&out.stderr);
    assert!(
        err.contains("level=warning") && err.contains("memory.kernel"),
        "{err}"
    );
    rt.ok(&["delete", "--force", &id], Path::new("/"));
}
