//! The Engine API server (`longshore_engine::api`) driven by the real docker CLI
//! (`/usr/local/bin/docker`, unchanged) over a unix socket, and by raw HTTP for the
//! errors. Runs as root; every daemon has its own data root under
//! `/tmp/longshore-api-*`, containers use `--network none` (no host nftables), and
//! everything is removed by Drop guards.
//!
//! A custom harness (`harness = false`): the test binary is also the containers'
//! monitor program, so `main` calls `run_if_monitor` first.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output, Stdio};
use std::time::Duration;

use longshore_engine::api::DaemonOptions;
use longshore_engine::{Engine, EngineOptions};
use longshore_test_support::unique_name;

mod common;
use common::daemon::*;

fn version_and_ping(d: &Daemon) {
    let v = ok(&d.docker(&[
        "version",
        "--format",
        "{{.Server.APIVersion}} {{.Server.MinAPIVersion}}",
    ]));
    assert_eq!(v.trim(), "1.45 1.24");
    let out = ok(&d.docker(&["version"]));
    assert!(out.contains("longshore"), "{out}");
    let (code, body) = d.http("GET", "/_ping", "");
    assert_eq!((code, body.as_str()), (200, "OK"));
    let (code, body) = d.http("GET", "/v1.24/version", "");
    assert_eq!(code, 200, "{body}");
    let mode = std::fs::metadata(&d.sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "socket mode");
}

fn run_rm_echo(d: &Daemon) {
    let name = unique_name("lsapi");
    let o = d.busybox("run", &["--rm", "--name", &name], &["echo", "hi"]);
    assert_eq!(ok(&o), "hi\n");
    // --rm: gone once run returns
    let ps = ok(&d.docker(&["ps", "-a", "-q", "--filter", &format!("name={name}")]));
    assert_eq!(ps.trim(), "", "the --rm container is still listed");
}

fn run_exit_code_and_streams(d: &Daemon) {
    let o = d.busybox(
        "run",
        &["--rm"],
        &["sh", "-c", "echo out; echo err >&2; exit 3"],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "out\n");
    assert!(text(&o.stderr).contains("err\n"), "{}", text(&o.stderr));
    // without --rm the wait is next-exit
    let name = unique_name("lsapi");
    let o = d.busybox("run", &["--name", &name], &["sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7), "{}", text(&o.stderr));
    ok(&d.docker(&["rm", &name]));
}

fn run_with_stdin(d: &Daemon) {
    let o = d.docker_in(
        &["run", "-i", "--rm", "--network", "none", "busybox", "cat"],
        Some(b"hello stdin\n"),
    );
    assert_eq!(ok(&o), "hello stdin\n");
}

fn detached_logs_stop_rm(d: &Daemon) {
    let name = unique_name("lsapi");
    let id = ok(&d.busybox(
        "run",
        &["-d", "--name", &name],
        &["sh", "-c", "echo one; echo two >&2; exec sleep 100"],
    ));
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id}");
    let ps = ok(&d.docker(&["ps", "--format", "{{.Names}} {{.Status}}"]));
    assert!(
        ps.lines()
            .any(|l| l.starts_with(&name) && l.contains(" Up")),
        "{ps}"
    );
    let inspect = ok(&d.docker(&[
        "inspect",
        "-f",
        "{{.State.Running}} {{.Config.Image}}",
        &name,
    ]));
    assert_eq!(inspect.trim(), "true busybox");
    // the logs are demultiplexed by the CLI: the 8-byte framing is right
    let mut logs = Output {
        status: std::process::ExitStatus::default(),
        stdout: vec![],
        stderr: vec![],
    };
    for _ in 0..100 {
        logs = d.docker(&["logs", &name]);
        if text(&logs.stdout) == "one\n" && text(&logs.stderr) == "two\n" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(text(&logs.stdout), "one\n", "{}", text(&logs.stderr));
    assert_eq!(text(&logs.stderr), "two\n");
    let tail = ok(&d.docker(&["logs", "--tail", "1", "-t", &name]));
    assert_eq!(tail, "", "--tail 1 is the stderr line, on stderr");
    // running: rm without -f is a conflict, in Docker's words
    let o = d.docker(&["rm", &name]);
    assert!(!o.status.success());
    ok(&d.docker(&["stop", "-t", "1", &name]));
    let st = ok(&d.docker(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.Running}}",
        &name,
    ]));
    assert_eq!(st.trim(), "exited false");
    let ps = ok(&d.docker(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]));
    assert!(
        ps.lines()
            .any(|l| l.starts_with(&name) && l.contains("Exited")),
        "{ps}"
    );
    ok(&d.docker(&["rm", &name]));
    let ps = ok(&d.docker(&["ps", "-a", "-q", "--filter", &format!("name={name}")]));
    assert_eq!(ps.trim(), "");
    let o = d.docker(&["rm", &name]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("No such container"),
        "{}",
        text(&o.stderr)
    );
}

fn exec_in_a_running_container(d: &Daemon) {
    let name = unique_name("lsapi");
    ok(&d.busybox("run", &["-d", "--name", &name], &["sleep", "100"]));
    assert_eq!(ok(&d.docker(&["exec", &name, "echo", "hi"])), "hi\n");
    let o = d.docker(&["exec", &name, "sh", "-c", "echo out; echo err >&2; exit 5"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "out\n");
    assert!(text(&o.stderr).contains("err\n"), "{}", text(&o.stderr));
    let o = d.docker_in(&["exec", "-i", &name, "cat"], Some(b"via stdin\n"));
    assert_eq!(ok(&o), "via stdin\n");
    ok(&d.docker(&["exec", "-d", &name, "sh", "-c", "echo done > /tmp/f"]));
    let mut seen = String::new();
    for _ in 0..100 {
        seen = text(&d.docker(&["exec", &name, "cat", "/tmp/f"]).stdout);
        if seen == "done\n" {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(seen, "done\n", "the detached exec did not run");
    // paused: dockerd's words (this said "is not running")
    ok(&d.docker(&["pause", &name]));
    let o = d.docker(&["exec", &name, "true"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("is paused, unpause the container before exec"),
        "{}",
        text(&o.stderr)
    );
    ok(&d.docker(&["unpause", &name]));
    ok(&d.docker(&["stop", "-t", "0", &name]));
    let o = d.docker(&["exec", &name, "true"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("is not running"),
        "{}",
        text(&o.stderr)
    );
    ok(&d.docker(&["rm", &name]));
}

fn images_and_inspect(d: &Daemon) {
    let imgs = ok(&d.docker(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]));
    assert!(
        imgs.lines().any(|l| l.starts_with("busybox:latest ")),
        "{imgs}"
    );
    let id = ok(&d.docker(&["inspect", "--type", "image", "-f", "{{.Id}}", "busybox"]));
    assert!(id.trim().starts_with("sha256:"), "{id}");
    let o = d.docker(&["inspect", "--type", "image", "nosuchimage-lsapi"]);
    assert!(!o.status.success());
    // a missing image: the CLI pulls it, and the registry's "not found" ends the run
    let missing = format!("{}/nosuch-lsapi:latest", d.registry.addr);
    let o = d.docker(&["run", "--rm", "--network", "none", &missing]);
    assert_eq!(o.status.code(), Some(125), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("Unable to find image") && text(&o.stderr).contains("not found"),
        "{}",
        text(&o.stderr)
    );
    let o = d.docker(&["rmi", "nosuchimage-lsapi"]);
    assert!(
        text(&o.stderr).contains("No such image"),
        "{}",
        text(&o.stderr)
    );
}

fn bad_requests_leave_the_daemon_up(d: &Daemon) {
    let (code, body) = d.http(
        "POST",
        "/v1.45/containers/create",
        "{\"Image\": \"busybox\", ",
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("invalid JSON in the container config"),
        "{body}"
    );
    let (code, body) = d.http(
        "POST",
        "/containers/create",
        "{\"Image\":\"busybox\",\"Tty\":\"yes\"}",
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("expected a boolean"), "{body}");
    let (code, body) = d.http("GET", "/v1.99/version", "");
    assert_eq!(code, 400);
    assert_eq!(
        body,
        "{\"message\":\"client version 1.99 is too new. Maximum supported API version is 1.45\"}"
    );
    let (code, body) = d.http("GET", "/v1.12/version", "");
    assert_eq!(code, 400);
    assert!(body.contains("too old"), "{body}");
    let (code, body) = d.http("GET", "/containers/nosuch-lsapi/json", "");
    assert_eq!(code, 404);
    assert!(body.contains("No such container: nosuch-lsapi"), "{body}");
    let (code, _) = d.http("GET", "/nothing/here", "");
    assert_eq!(code, 404);
    let (code, body) = d.http("POST", "/containers/create", &"x".repeat(5 << 20));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("too large"), "{body}");
    // nothing was created, and the daemon still answers
    let ps = ok(&d.docker(&["ps", "-a", "-q"]));
    assert_eq!(ps.trim(), "", "a bad request left a container");
    assert_eq!(d.http("GET", "/_ping", "").0, 200);
}

/// SIGTERM's path: the daemon stops accepting, a request in flight (a wait) is answered,
/// the socket is gone, the container keeps running; a new daemon serves it again.
fn stop_keeps_containers(d: &mut Daemon) {
    let name = unique_name("lsapi");
    ok(&d.busybox("run", &["-d", "--name", &name], &["sleep", "100"]));
    let waiter = unique_name("lsapi");
    ok(&d.busybox("run", &["-d", "--name", &waiter], &["sleep", "1"]));
    let sock = d.sock.clone();
    let wait = std::thread::spawn(move || {
        let mut s = UnixStream::connect(&sock).expect("connect");
        write!(s, "POST /containers/{waiter}/wait HTTP/1.1\r\nHost: d\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    });
    std::thread::sleep(Duration::from_millis(200));
    let status = d.shutdown().expect("the daemon ran");
    assert!(status.success(), "the daemon's exit on SIGTERM: {status:?}");
    let answer = wait.join().unwrap();
    assert!(
        answer.contains("\"StatusCode\":0"),
        "the wait in flight was cut: {answer:?}"
    );
    assert!(!d.sock.exists(), "the socket is left behind");
    assert!(UnixStream::connect(&d.sock).is_err());
    let v = d.engine.inspect_container(&name).unwrap();
    assert_eq!(
        v["State"]["Running"], true,
        "the daemon's stop stopped a container: {}",
        v["State"]
    );
    d.serve();
    let ps = ok(&d.docker(&["ps", "--format", "{{.Names}}"]));
    assert!(ps.lines().any(|l| l == name), "{ps}");
    ok(&d.docker(&["rm", "-f", &name]));
}

/// `docker tag`, `push` (to a real registry), `rmi`, `pull` (the JSON progress stream the
/// CLI renders), `run` of the pulled image, `history`, `image prune`.
fn push_pull_tag_history(d: &mut Daemon) {
    let repo = format!("{}/{}", d.registry.addr, unique_name("lsapi"));
    let tagged = format!("{repo}:v1");
    ok(&d.docker(&["tag", "busybox", &tagged]));
    let out = ok(&d.docker(&["push", &tagged]));
    assert!(out.contains("The push refers to repository"), "{out}");
    assert!(out.contains("v1: digest: sha256:"), "{out}");
    // pushing again: every layer is there already
    let again = ok(&d.docker(&["push", &tagged]));
    assert!(again.contains("Layer already exists"), "{again}");
    let o = ok(&d.docker(&["rmi", &tagged]));
    assert!(o.contains("Untagged"), "{o}");
    let out = ok(&d.docker(&["pull", &tagged]));
    assert!(out.contains("Digest: sha256:"), "{out}");
    assert!(
        out.contains("Status: Image is up to date") || out.contains("Downloaded newer image"),
        "{out}"
    );
    let o = d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        &tagged,
        "echo",
        "pulled",
    ]);
    assert_eq!(ok(&o), "pulled\n");
    // a tag that is not there: the stream's error, exit 1
    let o = d.docker(&["pull", &format!("{repo}:nope")]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("not found"), "{}", text(&o.stderr));
    // a push of nothing: 404 before the stream
    let o = d.docker(&["push", &format!("{repo}:absent")]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("No such image"),
        "{}",
        text(&o.stderr)
    );
    let h = ok(&d.docker(&["history", "--format", "{{.CreatedBy}}|{{.Size}}", &tagged]));
    assert!(!h.trim().is_empty(), "{h}");
    let (code, body) = d.http("GET", &format!("/images/{tagged}/history"), "");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(&tagged), "{body}");
    ok(&d.docker(&["rmi", &tagged]));
    let o = ok(&d.docker(&["image", "prune", "-f"]));
    assert!(o.contains("Total reclaimed space"), "{o}");
    let (code, body) = d.http("GET", "/images/search?term=", "");
    assert_eq!(code, 400, "{body}");
}

/// `docker login` against a registry with htpasswd auth, then a push and pull through it;
/// a wrong password is refused (401) and pushes without login fail.
fn login_and_private_push(d: &mut Daemon) {
    let reg = d.private.addr.clone();
    let tagged = format!("{reg}/{}:1", unique_name("lsapi"));
    ok(&d.docker(&["tag", "busybox", &tagged]));
    let o = d.docker(&["push", &tagged]);
    assert!(
        !o.status.success() || text(&o.stdout).contains("401"),
        "{}",
        text(&o.stdout)
    );
    let o = d.docker_in(
        &["login", "-u", "alice", "--password-stdin", &reg],
        Some(b"wrong\n"),
    );
    assert!(!o.status.success(), "{}", text(&o.stdout));
    let (code, body) = d.http(
        "POST",
        "/auth",
        &format!("{{\"username\":\"alice\",\"password\":\"wrong\",\"serveraddress\":\"{reg}\"}}"),
    );
    assert_eq!(code, 401, "{body}");
    let o = d.docker_in(
        &["login", "-u", "alice", "--password-stdin", &reg],
        Some(b"s3cret\n"),
    );
    assert!(text(&ok(&o).into_bytes()).contains("Login Succeeded"));
    let out = ok(&d.docker(&["push", &tagged]));
    assert!(out.contains("digest: sha256:"), "{out}");
    ok(&d.docker(&["rmi", &tagged]));
    ok(&d.docker(&["pull", &tagged]));
    ok(&d.docker(&["rmi", &tagged]));
}

/// `docker save` to a file, `rmi`, `load` from it: the image and its tag are back.
fn save_and_load(d: &mut Daemon) {
    let name = format!("{}:s1", unique_name("lsapi"));
    ok(&d.docker(&["tag", "busybox", &name]));
    let tar = d.dir.path().join(format!("{}.tar", unique_name("save")));
    ok(&d.docker(&["save", "-o", tar.to_str().unwrap(), &name]));
    assert!(std::fs::metadata(&tar).unwrap().len() > 100_000);
    ok(&d.docker(&["rmi", &name]));
    let out = ok(&d.docker(&["load", "-i", tar.to_str().unwrap()]));
    assert!(out.contains(&format!("Loaded image: {name}")), "{out}");
    let o = d.docker(&["run", "--rm", "--network", "none", &name, "echo", "loaded"]);
    assert_eq!(ok(&o), "loaded\n");
    ok(&d.docker(&["rmi", &name]));
    let (code, body) = d.http("GET", "/images/get?names=nosuch-lsapi", "");
    assert_eq!(code, 404, "{body}");
    let (code, body) = d.http("POST", "/images/load", "this is not a tar");
    assert_eq!(code, 400, "{body}");
    std::fs::remove_file(&tar).unwrap();
}

/// `docker cp` both ways (a file, a directory), into a running container and out of it.
fn copy_in_and_out(d: &mut Daemon) {
    let name = unique_name("lsapi");
    ok(&d.busybox("run", &["-d", "--name", &name], &["sleep", "100"]));
    let work = d.dir.path().join(unique_name("cp"));
    std::fs::create_dir_all(work.join("dir/sub")).unwrap();
    std::fs::write(work.join("f.txt"), "file content\n").unwrap();
    std::fs::write(work.join("dir/sub/g"), "deep\n").unwrap();
    ok(&d.docker(&[
        "cp",
        work.join("f.txt").to_str().unwrap(),
        &format!("{name}:/tmp/"),
    ]));
    ok(&d.docker(&[
        "cp",
        work.join("dir").to_str().unwrap(),
        &format!("{name}:/tmp/dir"),
    ]));
    assert_eq!(
        ok(&d.docker(&["exec", &name, "cat", "/tmp/f.txt"])),
        "file content\n"
    );
    assert_eq!(
        ok(&d.docker(&["exec", &name, "cat", "/tmp/dir/sub/g"])),
        "deep\n"
    );
    ok(&d.docker(&["exec", &name, "sh", "-c", "echo made > /tmp/out.txt"]));
    let back = work.join("back.txt");
    ok(&d.docker(&[
        "cp",
        &format!("{name}:/tmp/out.txt"),
        back.to_str().unwrap(),
    ]));
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "made\n");
    let dback = work.join("dback");
    ok(&d.docker(&["cp", &format!("{name}:/tmp/dir"), dback.to_str().unwrap()]));
    assert_eq!(
        std::fs::read_to_string(dback.join("sub/g")).unwrap(),
        "deep\n"
    );
    let o = d.docker(&[
        "cp",
        &format!("{name}:/nonexistent"),
        back.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("Could not find the file"),
        "{}",
        text(&o.stderr)
    );
    ok(&d.docker(&["rm", "-f", &name]));
    std::fs::remove_dir_all(&work).unwrap();
}

/// `docker events` with --since/--until and a filter, and following: the events of a run
/// arrive while the stream is open.
fn events_past_and_streaming(d: &mut Daemon) {
    let name = unique_name("lsapi");
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut follow = Command::new(DOCKER)
        .arg("-H")
        .arg(format!("unix://{}", d.sock.display()))
        .args([
            "events",
            "--filter",
            &format!("container={name}"),
            "--format",
            "{{.Action}}",
        ])
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    ok(&d.busybox("run", &["--name", &name], &["true"]));
    ok(&d.docker(&["rm", &name]));
    let mut seen = String::new();
    {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(follow.stdout.take().unwrap()).lines();
        while let Some(Ok(l)) = lines.next() {
            seen.push_str(&l);
            seen.push('\n');
            if l == "destroy" {
                break;
            }
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    for a in ["create", "start", "die", "destroy"] {
        assert!(seen.lines().any(|l| l == a), "following missed {a}: {seen}");
    }
    // until now: the past events, then the stream ends
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let past = ok(&d.docker(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        &format!("container={name}"),
        "--filter",
        "event=die",
        "--format",
        "{{.Action}} {{.Actor.Attributes.exitCode}}",
    ]));
    assert_eq!(past.trim(), "die 0");
    let (code, body) = d.http(
        "GET",
        "/events?filters=%7B%22bogus%22%3A%5B%22x%22%5D%7D",
        "",
    );
    assert_eq!(code, 400, "{body}");
}

/// `docker volume` commands and `run -v` with a named volume and a host directory.
fn volumes_and_binds(d: &mut Daemon) {
    let vol = unique_name("lsapi");
    ok(&d.docker(&["volume", "create", "--label", "k=v", &vol]));
    let ls = ok(&d.docker(&["volume", "ls", "-q", "--filter", "label=k=v"]));
    assert!(ls.lines().any(|l| l == vol), "{ls}");
    let mp = ok(&d.docker(&[
        "volume",
        "inspect",
        "-f",
        "{{.Mountpoint}} {{.Labels.k}}",
        &vol,
    ]));
    assert!(mp.trim().ends_with("_data v"), "{mp}");
    let user = unique_name("lsapi");
    ok(&d.busybox(
        "run",
        &["--name", &user, "-v", &format!("{vol}:/data")],
        &["sh", "-c", "echo kept > /data/f"],
    ));
    let o = d.busybox(
        "run",
        &["--rm", "-v", &format!("{vol}:/data")],
        &["cat", "/data/f"],
    );
    assert_eq!(ok(&o), "kept\n");
    let o = d.docker(&["volume", "rm", &vol]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("in use"), "{}", text(&o.stderr));
    ok(&d.docker(&["rm", &user]));
    ok(&d.docker(&["volume", "rm", &vol]));
    let o = d.docker(&["volume", "inspect", &vol]);
    assert!(!o.status.success());
    // a host directory
    let host = d.dir.path().join(unique_name("bind"));
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("h"), "from host\n").unwrap();
    let o = d.busybox(
        "run",
        &["--rm", "-v", &format!("{}:/h", host.display())],
        &["sh", "-c", "cat /h/h; echo back > /h/back"],
    );
    assert_eq!(ok(&o), "from host\n");
    assert_eq!(
        std::fs::read_to_string(host.join("back")).unwrap(),
        "back\n"
    );
    let pruned = unique_name("lsapi");
    ok(&d.docker(&["volume", "create", &pruned]));
    // named volumes are pruned with all=true only (API 1.42 on)
    let (code, body) = d.http("POST", "/v1.45/volumes/prune", "");
    assert_eq!(code, 200, "{body}");
    assert!(!body.contains(&pruned), "{body}");
    let (code, body) = d.http(
        "POST",
        "/v1.45/volumes/prune?filters=%7B%22all%22%3A%5B%22true%22%5D%7D",
        "",
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(&pruned), "{body}");
    let (code, body) = d.http("POST", "/volumes/create", "{\"Name\":\"bad/name\"}");
    assert_eq!(code, 400, "{body}");
}

/// `docker network create/ls/inspect/rm` of a bridge network (its bridge named `ls...`).
fn network_commands(d: &mut Daemon) {
    let net = unique_name("lsapi");
    let bridge = unique_name("ls");
    let id = ok(&d.docker(&[
        "network",
        "create",
        "-o",
        &format!("com.docker.network.bridge.name={bridge}"),
        &net,
    ]));
    let id = id.trim().to_string();
    let guard = NetGuard(d.sock.clone(), net.clone());
    let ls = ok(&d.docker(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]));
    assert!(ls.lines().any(|l| l == format!("{net} bridge")), "{ls}");
    assert!(ls.lines().any(|l| l == "none null"), "{ls}");
    let insp = ok(&d.docker(&["network", "inspect", "-f", "{{.Id}} {{.Driver}}", &net]));
    assert_eq!(insp.trim(), format!("{id} bridge"));
    let o = d.docker(&["network", "create", &net]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("already exists"),
        "{}",
        text(&o.stderr)
    );
    ok(&d.docker(&["network", "rm", &net]));
    std::mem::forget(guard);
    let o = d.docker(&["network", "inspect", &net]);
    assert!(!o.status.success());
    let (code, body) = d.http("DELETE", &format!("/networks/{net}"), "");
    assert_eq!(code, 404, "{body}");
    let (code, body) = d.http("DELETE", "/networks/none", "");
    assert_eq!(code, 403, "{body}");
}

/// Removes a test network if the test failed before it did.
struct NetGuard(PathBuf, String);

impl Drop for NetGuard {
    fn drop(&mut self) {
        let _ = Command::new(DOCKER)
            .arg("-H")
            .arg(format!("unix://{}", self.0.display()))
            .args(["network", "rm", &self.1])
            .output();
    }
}

/// `docker logs -f` follows until the container exits.
fn logs_follow(d: &mut Daemon) {
    let name = unique_name("lsapi");
    ok(&d.busybox(
        "run",
        &["-d", "--name", &name],
        &["sh", "-c", "echo a; sleep 1; echo b"],
    ));
    let out = ok(&d.docker(&["logs", "-f", &name]));
    assert_eq!(out, "a\nb\n");
    ok(&d.docker(&["rm", &name]));
}

/// `docker run -it` and `docker exec -it` under a pseudo-terminal (`script`): a terminal
/// inside, the exit code passed through.
fn tty_run_and_exec(d: &mut Daemon) {
    let host = format!("unix://{}", d.sock.display());
    let cfg = d.dir.path().join("docker-config");
    let run = |cmd: &str| {
        Command::new("script")
            .args(["-qec", cmd, "/dev/null"])
            .env("DOCKER_CONFIG", &cfg)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = run(&format!(
        "{DOCKER} -H {host} run -it --rm --network none busybox sh -c 'test -t 0 && echo tty-yes; exit 4'"
    ));
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert!(text(&o.stdout).contains("tty-yes"), "{}", text(&o.stdout));
    let name = unique_name("lsapi");
    ok(&d.busybox("run", &["-d", "--name", &name], &["sleep", "100"]));
    let o = run(&format!(
        "{DOCKER} -H {host} exec -it {name} sh -c 'test -t 1 && echo exec-tty; exit 6'"
    ));
    assert_eq!(
        o.status.code(),
        Some(6),
        "{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert!(text(&o.stdout).contains("exec-tty"), "{}", text(&o.stdout));
    ok(&d.docker(&["rm", "-f", &name]));
}

/// top, diff, stats, update, rename, export, commit, container prune, system df; exec
/// resize of an unknown exec.
fn container_inspection_endpoints(d: &mut Daemon) {
    let name = unique_name("lsapi");
    ok(&d.busybox("run", &["-d", "--name", &name], &["sleep", "100"]));
    let top = ok(&d.docker(&["top", &name]));
    assert!(top.contains("PID") && top.contains("sleep 100"), "{top}");
    let (code, body) = d.http(
        "GET",
        &format!("/containers/{name}/top?ps_args=-o%20pid,comm"),
        "",
    );
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("\"COMMAND\"") && body.contains("\"sleep\""),
        "{body}"
    );
    ok(&d.docker(&["exec", &name, "touch", "/tmp/newfile"]));
    let diff = ok(&d.docker(&["diff", &name]));
    assert!(diff.lines().any(|l| l == "A /tmp/newfile"), "{diff}");
    let st = ok(&d.docker(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.PIDs}}",
        &name,
    ]));
    assert_eq!(st.trim(), format!("{name} 1"));
    ok(&d.docker(&["update", "--memory", "64m", "--memory-swap", "128m", &name]));
    let mem = ok(&d.docker(&["inspect", "-f", "{{.HostConfig.Memory}}", &name]));
    assert_eq!(mem.trim(), "67108864");
    let renamed = unique_name("lsapi");
    ok(&d.docker(&["rename", &name, &renamed]));
    let tar = d.dir.path().join(format!("{}.tar", unique_name("exp")));
    ok(&d.docker(&["export", "-o", tar.to_str().unwrap(), &renamed]));
    let mut a = tar::Archive::new(std::fs::File::open(&tar).unwrap());
    let names: Vec<String> = a
        .entries()
        .unwrap()
        .filter_map(|e| e.ok()?.path().ok().map(|p| p.display().to_string()))
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.trim_start_matches("./") == "tmp/newfile"),
        "{names:?}"
    );
    std::fs::remove_file(&tar).unwrap();
    let image = format!("{}:c1", unique_name("lsapi"));
    let id = ok(&d.docker(&["commit", &renamed, &image]));
    assert!(id.trim().starts_with("sha256:"), "{id}");
    let o = d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        &image,
        "ls",
        "/tmp/newfile",
    ]);
    assert_eq!(ok(&o), "/tmp/newfile\n");
    // --change instructions, as the docker CLI sends them, over the container's config
    let changed = format!("{}:c2", unique_name("lsapi"));
    ok(&d.docker(&[
        "commit",
        "-c",
        "ENV COMMITTED=api",
        "--change",
        "CMD [\"echo\", \"committed\"]",
        "--pause=false",
        &renamed,
        &changed,
    ]));
    let cfg = ok(&d.docker(&["inspect", "-f", "{{json .Config}}", &changed]));
    assert!(cfg.contains("COMMITTED=api"), "{cfg}");
    assert!(cfg.contains(r#""Cmd":["echo","committed"]"#), "{cfg}");
    let bad = d.docker(&["commit", "-c", "RUN true", &renamed, &changed]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("not a valid change command"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    ok(&d.docker(&["rmi", &changed]));
    // a config in the request body, as Docker's API takes it: its fields over the
    // container's, then the changes; a field of the wrong type is a 400 and no image
    let repo = unique_name("lsapi");
    let (code, body) = d.http(
        "POST",
        &format!(
            "/commit?container={renamed}&repo={repo}&tag=body&pause=0&changes=ENV%20CHANGED%3D1"
        ),
        r#"{"Cmd":["echo","from-body"],"Env":["BODY=1"],"Labels":null}"#,
    );
    assert_eq!(code, 201, "{body}");
    let cfg = ok(&d.docker(&["inspect", "-f", "{{json .Config}}", &format!("{repo}:body")]));
    assert!(cfg.contains(r#""Cmd":["echo","from-body"]"#), "{cfg}");
    assert!(cfg.contains("BODY=1") && cfg.contains("CHANGED=1"), "{cfg}");
    let o = d.docker(&["run", "--rm", "--network", "none", &format!("{repo}:body")]);
    assert_eq!(ok(&o), "from-body\n");
    for bad in [r#"{"Cmd":5}"#, "[1,2]", "{not json"] {
        let (code, body) = d.http(
            "POST",
            &format!("/commit?container={renamed}&repo={repo}&tag=bad&pause=0"),
            bad,
        );
        assert_eq!(code, 400, "{bad}: {body}");
        assert!(body.contains("commit config"), "{bad}: {body}");
    }
    let images = ok(&d.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]));
    assert!(!images.contains(&format!("{repo}:bad")), "{images}");
    ok(&d.docker(&["rmi", &format!("{repo}:body")]));
    // prune removes the stopped one and keeps the running one
    let stopped = unique_name("lsapi");
    ok(&d.busybox("create", &["--name", &stopped], &["true"]));
    let pr = ok(&d.docker(&["container", "prune", "-f"]));
    assert!(pr.contains("Deleted Containers"), "{pr}");
    let ps = ok(&d.docker(&["ps", "-a", "--format", "{{.Names}}"]));
    assert!(!ps.lines().any(|l| l == stopped), "{ps}");
    assert!(ps.lines().any(|l| l == renamed), "{ps}");
    let df = ok(&d.docker(&["system", "df"]));
    assert!(df.contains("Images") && df.contains("Containers"), "{df}");
    let (code, body) = d.http("POST", "/exec/nosuch-lsapi/resize?h=10&w=10", "");
    assert_eq!(code, 404, "{body}");
    ok(&d.docker(&["rm", "-f", &renamed]));
    ok(&d.docker(&["rmi", &image]));
}

/// `docker run -p` on the default bridge: the published port reaches the container. The
/// daemon runs in a network namespace of its own, with a veth address to reach the port
/// through (DNAT does not apply to 127.0.0.1).
fn run_publish_port(_: &mut Daemon) {
    let mut d = Daemon::start_with(true);
    let d = &mut d;
    let pid = d.child.as_ref().unwrap().id();
    let ns = format!("--net=/proc/{pid}/ns/net");
    let (a, b) = (unique_name("ls"), unique_name("ls"));
    let st = Command::new("nsenter")
        .arg(&ns)
        .args(["sh", "-c", &format!("ip link set lo up && ip link add {a} type veth peer name {b} && ip addr add 10.250.0.1/24 dev {a} && ip link set {a} up && ip link set {b} up")])
        .status()
        .unwrap();
    assert!(st.success());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let name = unique_name("lsapi");
    ok(&d.docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "-p",
        &format!("{port}:8080"),
        "busybox",
        "sh",
        "-c",
        "echo published > /tmp/index.html; exec httpd -f -p 8080 -h /tmp",
    ]));
    let pub_ = ok(&d.docker(&["port", &name]));
    assert!(pub_.contains(&format!("0.0.0.0:{port}")), "{pub_}");
    let mut got = String::new();
    for _ in 0..100 {
        let o = Command::new("nsenter")
            .arg(&ns)
            .args([
                "curl",
                "-s",
                "-m",
                "3",
                &format!("http://10.250.0.1:{port}/index.html"),
            ])
            .output()
            .unwrap();
        got = text(&o.stdout);
        if got.contains("published") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ok(&d.docker(&["rm", "-f", &name]));
    assert!(got.contains("published"), "{got}");
}

/// `docker rm` right after `docker run` (attached, without --rm) never finds the container
/// busy: 3 clients at once, 10 times each.
fn rm_right_after_run(d: &mut Daemon) {
    let d = &*d;
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(move || {
                    for _ in 0..10 {
                        let name = unique_name("lsapi");
                        let o = d.busybox("run", &["--name", &name], &["sh", "-c", "exit 7"]);
                        assert_eq!(o.status.code(), Some(7), "{}", text(&o.stderr));
                        ok(&d.docker(&["rm", &name]));
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
}

/// A short command's events come in order: `start` before `die` (the monitor records
/// both; the engine recorded `start` after its job returned, and a `true` that exited in
/// between came out as create, die, start: seen by api_bollard's events test under load).
/// 3 clients x 10 containers, each one's window of events checked.
fn events_start_before_die(d: &mut Daemon) {
    let d = &*d;
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;
    let ids: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(move || {
                    (0..10)
                        .map(|_| {
                            let id = ok(&d.busybox("run", &["-d"], &["true"]));
                            let id = id.trim().to_string();
                            ok(&d.docker(&["wait", &id]));
                            id
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let mut bad = vec![];
    for id in &ids {
        let ev = ok(&d.docker(&[
            "events",
            "--since",
            &since.to_string(),
            "--until",
            &until.to_string(),
            "--filter",
            &format!("container={id}"),
            "--format",
            "{{.Action}}",
        ]));
        let actions: Vec<&str> = ev.lines().collect();
        if actions != ["create", "start", "die"] {
            bad.push(format!("{}: {actions:?}", &id[..12]));
        }
        ok(&d.docker(&["rm", id]));
    }
    assert!(bad.is_empty(), "events out of order: {bad:?}");
}

/// `docker rm` as soon as the container shows as exited (its monitor may still be
/// recording the exit: unmounting, writing the state) removes it, as Docker's rm waits
/// for the container: 3 clients at once, 10 rounds each, the removal through the docker
/// CLI and through raw HTTP in turn.
fn rm_as_soon_as_exited(d: &mut Daemon) {
    let d = &*d;
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(move || {
                    for round in 0..10 {
                        let name = unique_name("lsapi");
                        let id = ok(&d.busybox(
                            "run",
                            &["-d", "--name", &name],
                            &["sh", "-c", "exit 3"],
                        ));
                        let id = id.trim();
                        loop {
                            let (code, body) = d.http("GET", &format!("/containers/{id}/json"), "");
                            assert_eq!(code, 200, "{body}");
                            if body.contains(r#""Status":"exited""#) {
                                break;
                            }
                        }
                        if round % 2 == 0 {
                            let o = d.docker(&["rm", &name]);
                            assert!(o.status.success(), "round {round}: {}", text(&o.stderr));
                        } else {
                            let (code, body) = d.http("DELETE", &format!("/containers/{id}"), "");
                            assert_eq!(code, 204, "round {round}: {body}");
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
}

/// A start while someone checks the monitor (a wait polling, `rm`, `ps`: a shared flock
/// of `monitor.lock` for an instant) starts: the monitor waits for the check to end
/// instead of failing (the cause of `docker rm` after `docker run` failing under load).
fn start_while_the_monitor_lock_is_checked(d: &mut Daemon) {
    let name = unique_name("lsapi");
    let id = ok(&d.busybox("create", &["--name", &name], &["sh", "-c", "exit 3"]));
    let dir = d.dir.path().join("root/containers").join(id.trim());
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("monitor.lock"))
        .unwrap();
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockShared).unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(f);
    });
    let o = d.docker(&["start", "-a", &name]);
    release.join().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    ok(&d.docker(&["rm", &name]));
}

/// tcp:// on loopback serves the docker CLI; on another address without TLS it is refused
/// unless forced; fd:// takes the socket systemd passes (`systemd-socket-activate`).
fn tcp_and_socket_activation(d: &mut Daemon) {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    // refused: reachable from other hosts, no TLS
    let engine = Engine::open(d.dir.path().join("root"), EngineOptions::default()).unwrap();
    let engine = std::sync::Arc::new(engine);
    let mut opts = DaemonOptions::default();
    opts.hosts = vec![format!("tcp://0.0.0.0:{}", free())];
    let e = longshore_engine::api::Server::bind(engine.clone(), &opts).unwrap_err();
    assert!(e.to_string().contains("TLS"), "{e}");
    opts.insecure_tcp = true;
    let forced = longshore_engine::api::Server::bind(engine.clone(), &opts).unwrap();
    assert_eq!(forced.addresses().len(), 1);
    drop(forced);
    // loopback: the docker CLI over TCP, then over a socket passed by systemd
    let port = free();
    let sock = d.dir.path().join(format!("{}.sock", unique_name("fd")));
    let child = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&sock)
        .arg("-E")
        .arg(format!(
            "{DAEMON_ROOT}={}",
            d.dir.path().join("root").display()
        ))
        .arg("-E")
        .arg(format!("{DAEMON_SOCK}=unused"))
        .arg("-E")
        .arg(format!("{DAEMON_HOSTS}=fd://,tcp://127.0.0.1:{port}"))
        .arg(std::env::current_exe().unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("systemd-socket-activate (package systemd)");
    let guard = Term(child);
    wait_for(|| sock.exists());
    // the first connection makes systemd-socket-activate start the daemon with the fd
    let via_fd = |args: &[&str]| {
        Command::new(DOCKER)
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .args(args)
            .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
            .output()
            .unwrap()
    };
    let v = ok(&via_fd(&["version", "--format", "{{.Server.APIVersion}}"]));
    assert_eq!(v.trim(), "1.45");
    let mut tcp_ok = String::new();
    for _ in 0..200 {
        let o = Command::new(DOCKER)
            .arg("-H")
            .arg(format!("tcp://127.0.0.1:{port}"))
            .args(["images", "--format", "{{.Repository}}"])
            .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
            .output()
            .unwrap();
        if o.status.success() {
            tcp_ok = text(&o.stdout);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(tcp_ok.lines().any(|l| l == "busybox"), "{tcp_ok}");
    drop(guard);
}

/// Creates through the API while other clients list (a listing sweeps container
/// directories left without state by a killed create): every create succeeds. Found by
/// the 200-client bench ("write .../config.json: No such file or directory").
fn creates_while_listing(d: &mut Daemon) {
    let d = &*d;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let ids = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        let listers: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let (code, body) = d.http("GET", "/containers/json?all=1", "");
                        assert_eq!(code, 200, "{body}");
                    }
                })
            })
            .collect();
        let creators: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    for _ in 0..40 {
                        let (code, body) = d.http(
                            "POST",
                            "/containers/create",
                            r#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"NetworkMode":"none"}}"#,
                        );
                        if code == 201 {
                            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                            ids.lock().unwrap().push(v["Id"].as_str().unwrap().to_string());
                        }
                        assert_eq!(code, 201, "{body}");
                    }
                })
            })
            .collect();
        let res: Vec<_> = creators.into_iter().map(|h| h.join()).collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for l in listers {
            l.join().unwrap();
        }
        for r in res {
            if let Err(e) = r {
                std::panic::resume_unwind(e);
            }
        }
    });
    for id in ids.into_inner().unwrap() {
        let (code, body) = d.http("DELETE", &format!("/containers/{id}"), "");
        assert_eq!(code, 204, "{body}");
    }
}

/// daemon.json: its labels and hosts are used, a flag given in both places is refused,
/// an unknown directive is refused by name, and SIGHUP reloads labels and debug.
fn daemon_json_and_sighup(d: &mut Daemon) {
    let engine = std::sync::Arc::new(
        Engine::open(d.dir.path().join("root"), EngineOptions::default()).unwrap(),
    );
    let cfg = d.dir.path().join(format!("{}.json", unique_name("cfg")));
    let sock = d.dir.path().join(format!("{}.sock", unique_name("cfg")));
    std::fs::write(
        &cfg,
        format!(
            "{{\"hosts\":[\"unix://{}\"],\"labels\":[\"zone=a\"],\"debug\":false}}",
            sock.display()
        ),
    )
    .unwrap();
    let mut opts = DaemonOptions::default();
    opts.config_file = Some(cfg.clone());
    opts.hosts = vec!["unix:///tmp/longshore-never.sock".into()];
    let e = longshore_engine::api::Server::bind(engine.clone(), &opts).unwrap_err();
    assert!(
        e.to_string()
            .contains("both as a flag and in the configuration file: hosts"),
        "{e}"
    );
    let bad = d.dir.path().join(format!("{}.json", unique_name("cfg")));
    std::fs::write(&bad, "{\"no-such-option\": 1}").unwrap();
    let mut o2 = DaemonOptions::default();
    o2.config_file = Some(bad);
    let e = longshore_engine::api::Server::bind(engine.clone(), &o2).unwrap_err();
    assert!(e.to_string().contains("no-such-option"), "{e}");
    // the daemon on the file's socket; SIGHUP after the file changes
    let child = config_daemon(&d.dir.path().join("root"), &cfg, false)
        .spawn()
        .unwrap();
    let guard = Term(child);
    wait_for(|| UnixStream::connect(&sock).is_ok());
    let info = |fmt: &str| {
        let o = Command::new(DOCKER)
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .args(["info", "--format", fmt])
            .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
            .output()
            .unwrap();
        ok(&o).trim().to_string()
    };
    assert_eq!(info("{{.Labels}} {{.Debug}}"), "[zone=a] false");
    std::fs::write(
        &cfg,
        format!(
            "{{\"hosts\":[\"unix://{}\"],\"labels\":[\"zone=b\",\"x=y\"],\"debug\":true}}",
            sock.display()
        ),
    )
    .unwrap();
    guard.signal(nix::sys::signal::Signal::SIGHUP);
    let mut seen = String::new();
    for _ in 0..200 {
        seen = info("{{.Labels}} {{.Debug}}");
        if seen == "[zone=b x=y] true" {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(seen, "[zone=b x=y] true");
    drop(guard);
}

/// SIGHUP reloads the registry settings of daemon.json, as Docker does: a daemon (on a
/// data root of its own) that was started without them cannot pull from the plain-HTTP
/// registry; after the file names it as an insecure registry and as a Docker Hub mirror
/// and SIGHUP, /info shows both (and the new labels and debug), a pull by the registry's
/// address works and a pull of a Docker Hub name comes from the mirror.
fn sighup_reloads_registries(d: &mut Daemon) {
    let repo = unique_name("lsmirror");
    let reg = d.registry.addr.clone();
    let pushed = format!("{reg}/library/{repo}:v1");
    ok(&d.docker(&["tag", "busybox", &pushed]));
    ok(&d.docker(&["push", &pushed]));
    ok(&d.docker(&["rmi", &pushed]));
    let cfg = d.dir.path().join(format!("{}.json", unique_name("cfg")));
    let sock = d.dir.path().join(format!("{}.sock", unique_name("cfg")));
    let hosts = format!("\"hosts\":[\"unix://{}\"]", sock.display());
    std::fs::write(&cfg, format!("{{{hosts},\"labels\":[\"zone=a\"]}}")).unwrap();
    let child = config_daemon(&d.dir.path().join(unique_name("root")), &cfg, false)
        .spawn()
        .unwrap();
    let guard = Term(child);
    wait_for(|| UnixStream::connect(&sock).is_ok());
    let docker = |args: &[&str]| {
        Command::new(DOCKER)
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .args(args)
            .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
            .output()
            .unwrap()
    };
    let info = |fmt: &str| ok(&docker(&["info", "--format", fmt])).trim().to_string();
    let registry_config =
        "{{json .RegistryConfig.Mirrors}} {{(index .RegistryConfig.IndexConfigs \"REG\")}}"
            .replace("REG", &reg);
    assert_eq!(info("{{.Labels}} {{.Debug}}"), "[zone=a] false");
    assert_eq!(info(&registry_config), "[] <nil>");
    let o = docker(&["pull", &pushed]);
    assert!(
        !o.status.success(),
        "pulled from {reg} over plain HTTP without it being insecure"
    );
    std::fs::write(
        &cfg,
        format!(
            "{{{hosts},\"labels\":[\"zone=b\"],\"debug\":true,\"insecure-registries\":[\"{reg}\"],\"registry-mirrors\":[\"http://{reg}\"],\"max-concurrent-downloads\":2}}"
        ),
    )
    .unwrap();
    guard.signal(nix::sys::signal::Signal::SIGHUP);
    let mut seen = String::new();
    for _ in 0..200 {
        seen = info("{{.Labels}} {{.Debug}}");
        if seen == "[zone=b] true" {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(seen, "[zone=b] true");
    let rc = info(&registry_config);
    assert!(
        rc.starts_with(&format!("[\"http://{reg}/\"] ")) && rc.contains("false"),
        "{rc}"
    );
    let text_info = ok(&docker(&["info"]));
    assert!(
        text_info.contains("Insecure Registries:") && text_info.contains(&format!("http://{reg}/")),
        "{text_info}"
    );
    ok(&docker(&["pull", &pushed]));
    // a Docker Hub name: the mirror serves it (nothing here reaches Docker Hub)
    let o = ok(&docker(&["pull", &format!("{repo}:v1")]));
    assert!(o.contains("Digest: sha256:"), "{o}");
    let images = ok(&docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]));
    assert!(
        images.lines().any(|l| l == format!("{repo}:v1")),
        "{images}"
    );
    // a bad file changes nothing: the registries stay
    std::fs::write(
        &cfg,
        format!("{{{hosts},\"registry-mirrors\":[\"not-a-url\"]}}"),
    )
    .unwrap();
    guard.signal(nix::sys::signal::Signal::SIGHUP);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(info(&registry_config), rc);
    drop(guard);
}

/// Test certificates made with openssl in `dir`: a CA (`ca.pem`), the daemon's
/// certificate for 127.0.0.1 (`server-cert.pem`, `server-key.pem`), a client of that CA
/// (`cert.pem`, `key.pem`), and a client of another CA (`rogue-cert.pem`, `rogue-key.pem`).
fn make_certs(dir: &Path) {
    let script = r#"set -e
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() { key "$1-key.pem"; openssl req -x509 -new -key "$1-key.pem" -out "$1.pem" -days 2 -subj "/CN=longshore-test-$1"; }
leaf() { # name ca ext
  key "$1-key.pem"; openssl req -new -key "$1-key.pem" -out "$1.csr" -subj "/CN=$1"
  printf "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2-key.pem" -CAcreateserial -out "$1-cert.pem" -days 2 -extfile "$1.ext" 2>/dev/null
}
ca ca; ca other
leaf server ca 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n'
leaf client ca 'extendedKeyUsage=clientAuth\n'
leaf rogue other 'extendedKeyUsage=clientAuth\n'
mv client-cert.pem cert.pem; mv client-key.pem key.pem
"#;
    let st = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .status()
        .expect("openssl (package openssl)");
    assert!(st.success(), "making the test certificates failed");
}

/// tcp:// with `--tlsverify` (from daemon.json) on 0.0.0.0: the docker CLI with a
/// certificate of the CA lists and runs (attach over TLS); a client without a certificate,
/// with one of another CA, or speaking plain HTTP is refused before any request is
/// served. `--tls` alone serves clients without certificates. Bad files are refused.
fn tls_tcp(d: &mut Daemon) {
    let certs = d.dir.path().join(unique_name("tls"));
    std::fs::create_dir_all(&certs).unwrap();
    make_certs(&certs);
    let c = |n: &str| certs.join(n);
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    // bad files: named in the error, nothing listens
    let engine = std::sync::Arc::new(
        Engine::open(d.dir.path().join("root"), EngineOptions::default()).unwrap(),
    );
    let mut opts = DaemonOptions::default();
    opts.hosts = vec![format!("tcp://0.0.0.0:{}", free())];
    opts.tls_verify = true;
    opts.tls_ca_cert = Some(c("ca.pem"));
    opts.tls_cert = Some(c("server-cert.pem"));
    opts.tls_key = Some(c("missing-key.pem"));
    let e = longshore_engine::api::Server::bind(engine.clone(), &opts).unwrap_err();
    assert!(e.to_string().contains("missing-key.pem"), "{e}");
    opts.tls_key = Some(c("key.pem")); // the client's key: does not match
    let e = longshore_engine::api::Server::bind(engine.clone(), &opts).unwrap_err();
    assert!(e.to_string().contains("does not match"), "{e}");
    opts.tls_key = Some(c("server-key.pem"));
    opts.tls_ca_cert = Some(c("server.csr"));
    let e = longshore_engine::api::Server::bind(engine.clone(), &opts).unwrap_err();
    assert!(e.to_string().contains("server.csr"), "{e}");

    // the daemon from daemon.json, on every address, with --tlsverify
    let port = free();
    let cfg = certs.join("daemon.json");
    std::fs::write(
        &cfg,
        serde_json::json!({
            "hosts": [format!("tcp://0.0.0.0:{port}")],
            "tlsverify": true,
            "tlscacert": c("ca.pem"),
            "tlscert": c("server-cert.pem"),
            "tlskey": c("server-key.pem"),
        })
        .to_string(),
    )
    .unwrap();
    let child = config_daemon(&d.dir.path().join("root"), &cfg, false)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let guard = Term(child);
    wait_for(|| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    let host = format!("tcp://127.0.0.1:{port}");
    let docker = |tls: &[&str], args: &[&str]| {
        Command::new(DOCKER)
            .args(tls)
            .arg("-H")
            .arg(&host)
            .args(args)
            .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
            .env("DOCKER_CERT_PATH", &certs)
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_TLS_VERIFY")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let (ca, cert, key) = (c("ca.pem"), c("cert.pem"), c("key.pem"));
    let (ca, cert, key) = (
        ca.to_str().unwrap(),
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
    );
    let good = [
        "--tlsverify",
        "--tlscacert",
        ca,
        "--tlscert",
        cert,
        "--tlskey",
        key,
    ];
    let images = ok(&docker(&good, &["images", "--format", "{{.Repository}}"]));
    assert!(images.lines().any(|l| l == "busybox"), "{images}");
    let out = ok(&docker(
        &good,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "busybox",
            "echo",
            "over tls",
        ],
    ));
    assert_eq!(out, "over tls\n");
    // a client of another CA: refused by the daemon
    let (rc, rk) = (c("rogue-cert.pem"), c("rogue-key.pem"));
    let rogue = [
        "--tlsverify",
        "--tlscacert",
        ca,
        "--tlscert",
        rc.to_str().unwrap(),
        "--tlskey",
        rk.to_str().unwrap(),
    ];
    let o = docker(&rogue, &["ps"]);
    assert!(!o.status.success(), "a client of another CA was served");
    let e = text(&o.stderr);
    assert!(
        e.contains("certificate") || e.contains("tls") || e.contains("reset"),
        "{e}"
    );
    // without a certificate (curl verifies the daemon, presents none); with the right one
    let curl = |extra: &[&str]| {
        Command::new("curl")
            .args(["-s", "-m", "10", "--cacert", ca])
            .args(extra)
            .arg(format!("https://127.0.0.1:{port}/_ping"))
            .output()
            .unwrap()
    };
    let o = curl(&[]);
    assert!(
        !o.status.success() && o.stdout.is_empty(),
        "served without a client certificate: {}",
        text(&o.stdout)
    );
    assert_eq!(text(&curl(&["--cert", cert, "--key", key]).stdout), "OK");
    // plain HTTP on the TLS port: no answer from the API
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(b"GET /containers/json HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(
        !text(&got).contains("HTTP/1.1 200"),
        "plain HTTP was served: {}",
        text(&got)
    );
    // the daemon is still up after the refusals
    ok(&docker(&good, &["version"]));
    drop(guard);

    // --tls alone: encrypted, clients without a certificate are served
    let mut opts = DaemonOptions::default();
    opts.hosts = vec!["tcp://127.0.0.1:0".into()];
    opts.tls = true;
    opts.tls_cert = Some(c("server-cert.pem"));
    opts.tls_key = Some(c("server-key.pem"));
    let server = longshore_engine::api::Server::bind(engine, &opts).unwrap();
    let addr = server.addresses()[0].clone();
    assert!(addr.ends_with("(TLS)"), "{addr}");
    let port2: u16 = addr
        .trim_start_matches("tcp://127.0.0.1:")
        .trim_end_matches(" (TLS)")
        .parse()
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(server.serve(async {
            let _ = stopped.await;
        }))
    });
    let o = Command::new("curl")
        .args(["-s", "-m", "10", "--cacert", ca])
        .arg(format!("https://127.0.0.1:{port2}/_ping"))
        .output()
        .unwrap();
    let _ = stop.send(());
    serving.join().unwrap().unwrap();
    assert_eq!(text(&o.stdout), "OK");
}

/// `docker network connect/disconnect` of running containers, on a daemon in a network
/// namespace of its own: the connected container gets `eth1` on the other network, the
/// members reach each other by name and alias both ways, inspect shows both networks;
/// disconnect takes the interface and the names away; the error cases get Docker's codes;
/// `rm -f` of a connected container leaves no endpoint (the network can be removed).
fn network_connect_disconnect(_: &mut Daemon) {
    let mut d = Daemon::start_with(true);
    let d = &mut d;
    let (na, nb) = (unique_name("lsneta"), unique_name("lsnetb"));
    ok(&d.docker(&["network", "create", "--subnet", "10.251.1.0/24", &na]));
    ok(&d.docker(&["network", "create", "--subnet", "10.251.2.0/24", &nb]));
    let (a, b) = (unique_name("lsapi"), unique_name("lsapi"));
    for (name, net) in [(&a, &na), (&b, &nb)] {
        ok(&d.docker(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            net,
            "busybox",
            "sleep",
            "300",
        ]));
    }
    let ping = |from: &str, to: &str| {
        d.docker(&["exec", from, "ping", "-c", "1", "-W", "2", to])
            .status
            .success()
    };
    assert!(!ping(&b, &a), "{b} reached {a} before any connect");
    ok(&d.docker(&["network", "connect", "--alias", "web", &na, &b]));
    let addrs = ok(&d.docker(&["exec", &b, "ip", "-4", "-o", "addr", "show", "eth1"]));
    assert!(addrs.contains("10.251.1."), "{addrs}");
    let route = ok(&d.docker(&["exec", &b, "ip", "route"]));
    assert!(route.contains("default via 10.251.2.1 dev eth0"), "{route}");
    assert!(ping(&b, &a), "{b} does not reach {a} after connect");
    assert!(ping(&a, &b), "{a} does not reach {b} after connect");
    assert!(ping(&a, "web"), "{a} does not reach the alias web");
    let nets = ok(&d.docker(&[
        "inspect",
        "-f",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
        &b,
    ]));
    assert!(nets.contains(&na) && nets.contains(&nb), "{nets}");
    let bid = ok(&d.docker(&["inspect", "-f", "{{.Id}}", &b]));
    let members = ok(&d.docker(&[
        "network",
        "inspect",
        "-f",
        "{{range $k, $v := .Containers}}{{$k}} {{end}}",
        &na,
    ]));
    assert!(members.contains(bid.trim()), "{members}");
    // the errors: connected already (409), no such network or container (404), a
    // malformed body (400)
    let o = d.docker(&["network", "connect", &na, &b]);
    assert!(
        text(&o.stderr).contains("already exists"),
        "{}",
        text(&o.stderr)
    );
    let (code, body) = d.http(
        "POST",
        &format!("/networks/{na}/connect"),
        &format!("{{\"Container\":\"{b}\"}}"),
    );
    assert_eq!(code, 409, "{body}");
    let (code, body) = d.http(
        "POST",
        "/networks/lsnosuchnet/connect",
        &format!("{{\"Container\":\"{b}\"}}"),
    );
    assert_eq!(code, 404, "{body}");
    let (code, body) = d.http(
        "POST",
        &format!("/networks/{na}/connect"),
        "{\"Container\":\"lsnosuchcontainer\"}",
    );
    assert_eq!(code, 404, "{body}");
    for bad in ["{\"Container\": 5}", "{\"Container\":", "{}"] {
        let (code, body) = d.http("POST", &format!("/networks/{na}/connect"), bad);
        assert_eq!(code, 400, "{bad}: {body}");
    }
    // disconnect: the interface and the names are gone, both ways
    ok(&d.docker(&["network", "disconnect", &na, &b]));
    let links = ok(&d.docker(&["exec", &b, "ip", "-o", "link"]));
    assert!(!links.contains("eth1"), "{links}");
    // (by name: whether another network's address is routed is the bridge's isolation)
    let hosts = ok(&d.docker(&["exec", &b, "cat", "/etc/hosts"]));
    assert!(
        !hosts.contains(&a) && !hosts.contains("10.251.1."),
        "{hosts}"
    );
    assert!(hosts.contains("10.251.2."), "{hosts}");
    let hosts = ok(&d.docker(&["exec", &a, "cat", "/etc/hosts"]));
    assert!(!hosts.contains(&b) && !hosts.contains(" web"), "{hosts}");
    let o = d.docker(&["network", "disconnect", &na, &b]);
    assert!(
        text(&o.stderr).contains("is not connected"),
        "{}",
        text(&o.stderr)
    );
    // rm -f of a connected container takes its additional endpoint too
    ok(&d.docker(&["network", "connect", &na, &b]));
    ok(&d.docker(&["rm", "-f", &a, &b]));
    let members = ok(&d.docker(&["network", "inspect", "-f", "{{len .Containers}}", &na]));
    assert_eq!(members.trim(), "0");
    ok(&d.docker(&["network", "rm", &na, &nb]));
}

/// `docker network connect` of a stopped container records the network, joined at its
/// start; `network disconnect` of the network a container started on removes its
/// interface (eth0), and a stopped container can be disconnected from it (it starts
/// without it) and connected back; a restart keeps what was connected and disconnected,
/// and a container restarts on its network (the daemon held every stopped container's
/// namespace open, so a second start met the old veth: checked). Both refused before
/// (checked: "not running", "joined network ... when it started"). A daemon in its own
/// network namespace.
fn network_connect_stopped_disconnect_first(_: &mut Daemon) {
    let mut d = Daemon::start_with(true);
    let d = &mut d;
    let (na, nb) = (unique_name("lsneta"), unique_name("lsnetb"));
    ok(&d.docker(&["network", "create", "--subnet", "10.251.3.0/24", &na]));
    ok(&d.docker(&["network", "create", "--subnet", "10.251.4.0/24", &nb]));
    let (c, p, q, r) = (
        unique_name("lsapi"),
        unique_name("lsapi"),
        unique_name("lsapi"),
        unique_name("lsapi"),
    );
    for name in [&c, &q, &r] {
        ok(&d.docker(&[
            "create",
            "--name",
            name,
            "--network",
            &na,
            "busybox",
            "sleep",
            "300",
        ]));
    }
    ok(&d.docker(&[
        "run",
        "-d",
        "--name",
        &p,
        "--network",
        &nb,
        "busybox",
        "sleep",
        "300",
    ]));
    let o = d.docker(&["network", "connect", "--ip", "10.9.9.9", &nb, &c]);
    assert!(
        text(&o.stderr).contains("not in the subnet"),
        "{}",
        text(&o.stderr)
    );
    // a created container: connected now, joined at its start
    ok(&d.docker(&["network", "connect", "--alias", "web", &nb, &c]));
    let o = d.docker(&["network", "connect", &nb, &c]);
    assert!(
        text(&o.stderr).contains("already exists"),
        "{}",
        text(&o.stderr)
    );
    let o = d.docker(&["network", "connect", &na, &c]);
    assert!(
        text(&o.stderr).contains("already exists"),
        "{}",
        text(&o.stderr)
    );
    let nets = |name: &str| {
        ok(&d.docker(&[
            "inspect",
            "-f",
            "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
            name,
        ]))
    };
    assert!(nets(&c).contains(&nb), "{}", nets(&c));
    ok(&d.docker(&["start", &c]));
    let addrs = ok(&d.docker(&["exec", &c, "ip", "-4", "-o", "addr"]));
    assert!(
        addrs.contains("eth0") && addrs.contains("10.251.3."),
        "{addrs}"
    );
    assert!(
        addrs.contains("eth1") && addrs.contains("10.251.4."),
        "{addrs}"
    );
    let route = ok(&d.docker(&["exec", &c, "ip", "route"]));
    assert!(route.contains("default via 10.251.3.1 dev eth0"), "{route}");
    let ping = |from: &str, to: &str| {
        d.docker(&["exec", from, "ping", "-c", "1", "-W", "2", to])
            .status
            .success()
    };
    assert!(ping(&p, "web"), "{p} does not reach {c} by its alias");
    assert!(ping(&c, &p), "{c} does not reach {p}");
    let nets_c = nets(&c);
    assert!(nets_c.contains(&na) && nets_c.contains(&nb), "{nets_c}");
    // the network a running container started on
    ok(&d.docker(&["network", "disconnect", &na, &c]));
    let links = ok(&d.docker(&["exec", &c, "ip", "-o", "link"]));
    assert!(!links.contains("eth0") && links.contains("eth1"), "{links}");
    let hosts = ok(&d.docker(&["exec", &c, "cat", "/etc/hosts"]));
    assert!(!hosts.contains("10.251.3."), "{hosts}");
    assert!(
        ping(&p, "web"),
        "{p} does not reach {c} after the disconnect"
    );
    assert_eq!(nets(&c).trim(), nb);
    let ip = ok(&d.docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &c]));
    assert_eq!(ip.trim(), "");
    let o = d.docker(&["network", "disconnect", &na, &c]);
    assert!(
        text(&o.stderr).contains("is not connected"),
        "{}",
        text(&o.stderr)
    );
    // a restart keeps it that way: no eth0, eth1 on the network connected (this also
    // needs the previous run's namespace to go: the daemon held it open, and the second
    // start met the old veth, "File exists")
    ok(&d.docker(&["restart", "-t", "0", &c]));
    let addrs = ok(&d.docker(&["exec", &c, "ip", "-4", "-o", "addr"]));
    assert!(
        !addrs.contains("eth0") && addrs.contains("10.251.4."),
        "{addrs}"
    );
    assert!(ping(&p, "web"), "{p} does not reach {c} after the restart");
    // and a container on its first network only restarts with it
    ok(&d.docker(&["restart", "-t", "0", &p]));
    let route = ok(&d.docker(&["exec", &p, "ip", "route"]));
    assert!(route.contains("default via 10.251.4.1 dev eth0"), "{route}");
    // a stopped container disconnected from its network and connected to another:
    // starts without eth0, on the other
    ok(&d.docker(&["network", "disconnect", &na, &q]));
    assert_eq!(nets(&q).trim(), "");
    ok(&d.docker(&["network", "connect", &nb, &q]));
    ok(&d.docker(&["start", &q]));
    let addrs = ok(&d.docker(&["exec", &q, "ip", "-4", "-o", "addr"]));
    assert!(
        !addrs.contains("eth0") && addrs.contains("eth1") && addrs.contains("10.251.4."),
        "{addrs}"
    );
    assert!(ping(&q, &p), "{q} does not reach {p}");
    // disconnected and connected back: its network as before, eth0 and the route
    ok(&d.docker(&["network", "disconnect", &na, &r]));
    ok(&d.docker(&["network", "connect", &na, &r]));
    ok(&d.docker(&["start", &r]));
    let route = ok(&d.docker(&["exec", &r, "ip", "route"]));
    assert!(route.contains("default via 10.251.3.1 dev eth0"), "{route}");
    ok(&d.docker(&["rm", "-f", &c, &p, &q, &r]));
    for n in [&na, &nb] {
        let members = ok(&d.docker(&["network", "inspect", "-f", "{{len .Containers}}", n]));
        assert_eq!(members.trim(), "0", "{n}");
    }
    ok(&d.docker(&["network", "rm", &na, &nb]));
}

/// Opens `POST path` with `Upgrade: tcp` on the daemon's socket; returns the stream after
/// the 101 answer's headers.
fn upgrade(d: &Daemon, path: &str) -> UnixStream {
    let (s, head) = send_head(
        d,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
        ),
    );
    assert!(text(&head).starts_with("HTTP/1.1 101"), "{}", text(&head));
    s
}

/// Sends `head` (a request's head, perhaps without its body) on a new connection to the
/// daemon and reads the answer's head, byte by byte so that nothing after it is taken;
/// returns the connection and that head.
fn send_head(d: &Daemon, head: &str) -> (UnixStream, Vec<u8>) {
    let mut s = UnixStream::connect(&d.sock).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let mut b = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut b).expect("read the answer"),
            1,
            "closed: {}",
            text(&answer)
        );
        answer.push(b[0]);
    }
    (s, answer)
}

/// A client that keeps sending input to an attached container which does not read it
/// and exits: the stream ends with its last output and a clean end, not "connection
/// reset by peer" (the daemon closed with the client's input unread: the docker CLI's
/// `run -it` could fail that way, as `exec -it` did before 4f6f5c5). The client reads
/// slowly after the last line, so the daemon ends the stream first. Five rounds.
fn attach_input_after_the_exit(d: &mut Daemon) {
    for round in 0..5 {
        let name = unique_name("lsapi");
        let id = ok(&d.busybox(
            "create",
            &["-i", "--name", &name],
            &["sh", "-c", "echo last; sleep 0.2"],
        ));
        let id = id.trim();
        let s = upgrade(
            d,
            &format!("/containers/{id}/attach?stream=1&stdin=1&stdout=1&stderr=1"),
        );
        let (code, body) = d.http("POST", &format!("/containers/{id}/start"), "");
        assert_eq!(code, 204, "{body}");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut w = s.try_clone().unwrap();
        let stop_w = stop.clone();
        let writer = std::thread::spawn(move || {
            let chunk = [b'x'; 4096];
            let mut sent = 0usize;
            while !stop_w.load(std::sync::atomic::Ordering::Relaxed) && sent < (64 << 20) {
                match w.write(&chunk) {
                    Ok(n) => sent += n,
                    Err(_) => break,
                }
            }
        });
        let mut r = s;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let mut slept = false;
        let end = loop {
            match r.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => break Err(e),
            }
            // a slow client: the container exits and the daemon ends the stream before
            // the client reads on
            if !slept && text(&out).contains("last") {
                slept = true;
                std::thread::sleep(Duration::from_millis(600));
            }
        };
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = r.shutdown(std::net::Shutdown::Write);
        writer.join().unwrap();
        ok(&d.docker(&["rm", "-f", &name]));
        assert!(
            end.is_ok(),
            "round {round}: the stream ended with {:?} after {:?}",
            end,
            text(&out)
        );
        assert!(
            text(&out).contains("last"),
            "round {round}: {:?}",
            text(&out)
        );
    }
}

/// An attach is registered by the container's monitor before the daemon answers it.
/// The monitor is stopped (SIGSTOP) while a client attaches to a running container; the
/// client, once it has its 101, makes the container print (a line into a fifo the
/// container reads), then the monitor continues: the line must reach the client (it was
/// written after the client's answer). Before the acknowledgement the daemon answered at
/// once and the monitor, woken with both the output and the new connection ready, sent
/// the line before it took the client in: lost. Also a client attaching with one
/// connection per stream before the start gets the first output on both, 10 times.
fn attach_registered_before_the_answer(d: &mut Daemon) {
    for round in 0..10 {
        let name = unique_name("lsapi");
        let id = ok(&d.busybox(
            "create",
            &["--name", &name],
            &["sh", "-c", "echo out; echo err >&2"],
        ));
        let id = id.trim();
        let out = upgrade(d, &format!("/containers/{id}/attach?stream=1&stdout=1"));
        let err = upgrade(d, &format!("/containers/{id}/attach?stream=1&stderr=1"));
        let (code, body) = d.http("POST", &format!("/containers/{id}/start"), "");
        assert_eq!(code, 204, "{body}");
        let (o, e) = (frames(&read_all(out)), frames(&read_all(err)));
        ok(&d.docker(&["rm", "-f", &name]));
        assert_eq!(o, vec![(1, "out\n".into())], "round {round}: stdout");
        assert_eq!(e, vec![(2, "err\n".into())], "round {round}: stderr");
    }
    let dir = temp();
    let fifo = dir.path().join("f");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let name = unique_name("lsapi");
    let id = ok(&d.busybox(
        "run",
        &[
            "-d",
            "--name",
            &name,
            "-v",
            &format!("{}:/x", dir.path().display()),
        ],
        &["sh", "-c", "while :; do read l < /x/f; echo hi $l; done"],
    ));
    let id = id.trim().to_string();
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            d.dir
                .path()
                .join("root/containers")
                .join(&id)
                .join("state.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let monitor = nix::unistd::Pid::from_raw(state["LongshoreMonitorPid"].as_i64().unwrap() as i32);
    assert!(monitor.as_raw() > 0, "{state}");
    let mut failures = vec![];
    for round in 0..3 {
        nix::sys::signal::kill(monitor, nix::sys::signal::Signal::SIGSTOP).unwrap();
        let client = {
            let d = &*d;
            let (id, fifo) = (id.clone(), fifo.clone());
            std::thread::scope(|sc| {
                let t = sc.spawn(move || {
                    let mut s = upgrade(d, &format!("/containers/{id}/attach?stream=1&stdout=1"));
                    // answered: what the container writes now is this client's
                    std::fs::write(&fifo, format!("{round}\n")).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                    let mut got = Vec::new();
                    let mut buf = [0u8; 256];
                    while !text(&got).contains(&format!("hi {round}")) {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    text(&got)
                });
                // let the attach reach the stopped monitor (and, before the fix, the
                // client its answer and the container its line)
                std::thread::sleep(Duration::from_millis(300));
                nix::sys::signal::kill(monitor, nix::sys::signal::Signal::SIGCONT).unwrap();
                t.join().unwrap()
            })
        };
        if !client.contains(&format!("hi {round}")) {
            failures.push(format!("round {round}: {client:?}"));
        }
    }
    ok(&d.docker(&["rm", "-f", &name]));
    assert!(
        failures.is_empty(),
        "output written after the attach's answer was missed: {failures:?}"
    );
}

/// Reads an upgraded stream to its end; the bytes.
fn read_all(mut s: UnixStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// Docker's 8-byte framing decoded: (stream, data) per frame.
fn frames(mut b: &[u8]) -> Vec<(u8, String)> {
    let mut out = vec![];
    while b.len() >= 8 {
        let n = u32::from_be_bytes([b[4], b[5], b[6], b[7]]) as usize;
        out.push((b[0], text(&b[8..(8 + n).min(b.len())])));
        b = &b[(8 + n).min(b.len())..];
    }
    out
}

/// `attach?logs=1`: the log first, framed per stream, then the live output
/// (`stream=1`), or the log alone (`stream=0`); neither is a 400.
fn attach_with_logs(d: &mut Daemon) {
    let name = unique_name("lsapi");
    ok(&d.busybox(
        "run",
        &["-d", "--name", &name],
        &[
            "sh",
            "-c",
            "echo first; echo err >&2; while [ ! -e /go ]; do sleep 0.05; done; echo second",
        ],
    ));
    for _ in 0..200 {
        if ok(&d.docker(&["logs", &name])).contains("first") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = upgrade(
        d,
        &format!("/containers/{name}/attach?logs=1&stream=1&stdout=1&stderr=1"),
    );
    ok(&d.docker(&["exec", &name, "touch", "/go"]));
    let got = frames(&read_all(s));
    assert_eq!(
        got,
        vec![
            (1, "first\n".into()),
            (2, "err\n".into()),
            (1, "second\n".into())
        ],
        "{got:?}"
    );
    // the log alone, of the exited container; stdout only
    let s = upgrade(d, &format!("/containers/{name}/attach?logs=1&stdout=1"));
    let got = frames(&read_all(s));
    assert_eq!(
        got,
        vec![(1, "first\n".into()), (1, "second\n".into())],
        "{got:?}"
    );
    let (code, body) = d.http("POST", &format!("/containers/{name}/attach?stdout=1"), "");
    assert_eq!(code, 400, "{body}");
    ok(&d.docker(&["rm", "-f", &name]));
}

/// A masked client WebSocket frame.
fn ws_client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let m = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    f.extend_from_slice(&m);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
    f
}

/// The server's WebSocket frames: (opcode, payload).
fn ws_frames(mut b: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = vec![];
    while b.len() >= 2 {
        let (len, at) = match b[1] & 0x7f {
            126 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        assert_eq!(b[1] & 0x80, 0, "a server frame is never masked");
        out.push((b[0] & 0x0f, b[at..at + len].to_vec()));
        b = &b[at + len..];
    }
    out
}

/// `GET /containers/{id}/attach/ws`: the RFC 6455 handshake, the container's output as
/// binary messages, a text message as its input, a ping answered, a close at the exit;
/// without a WebSocket handshake a 400.
fn attach_over_websocket(d: &mut Daemon) {
    let name = unique_name("lsapi");
    ok(&d.busybox(
        "run",
        &["-d", "-i", "--name", &name],
        &["sh", "-c", "echo hello; read x; echo \"got $x\""],
    ));
    // "hello" is in the log before the attach: it comes from the replay (logs=1)
    for _ in 0..200 {
        if ok(&d.docker(&["logs", &name])).contains("hello") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut s = UnixStream::connect(&d.sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET /v1.45/containers/{name}/attach/ws?logs=1&stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1, "{}", text(&head));
        head.push(b[0]);
    }
    let head = text(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    // read "hello" before answering
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !text(&got).contains("hello") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before hello: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    s.write_all(&ws_client_frame(0x9, b"pp")).unwrap();
    s.write_all(&ws_client_frame(0x1, b"abc\n")).unwrap();
    got.extend(read_all(s.try_clone().unwrap()));
    let fr = ws_frames(&got);
    let data: String = fr
        .iter()
        .filter(|(op, _)| *op == 2)
        .map(|(_, p)| text(p))
        .collect();
    assert!(data.contains("hello\n"), "{fr:?}");
    assert!(data.ends_with("got abc\n"), "{fr:?}");
    assert!(fr.contains(&(0xA, b"pp".to_vec())), "no pong: {fr:?}");
    assert_eq!(
        fr.last().map(|f| f.0),
        Some(0x8),
        "no close at the end: {fr:?}"
    );
    // no handshake
    let (code, body) = d.http(
        "GET",
        &format!("/containers/{name}/attach/ws?stream=1&stdout=1"),
        "",
    );
    assert_eq!(code, 400, "{body}");
    ok(&d.docker(&["rm", "-f", &name]));
}

/// Sends raw bytes (a write error is ignored: the daemon may refuse early and close),
/// optionally shuts the write side down, and reads the answer.
fn raw(d: &Daemon, data: &[u8], half_close: bool) -> String {
    let mut s = UnixStream::connect(&d.sock).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.write_all(data);
    if half_close {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    text(&out)
}

/// Hostile and broken clients: fields of the wrong type, oversized and too many headers,
/// bytes that are not HTTP, a bad Content-Length, a body cut short, clients that
/// half-close after their request (they get their answer: before the fix the daemon
/// closed at the EOF and a create's client never learnt its container's id), and 40
/// clients that never finish their headers while others are served. Nothing is created
/// by a refused request, the daemon's fds come back to where they were.
fn hostile_clients(d: &mut Daemon) {
    let pid = d.child.as_ref().unwrap().id();
    let fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    };
    // the image store opens on first use (its lock and database files): opened before
    // the count
    let warm = unique_name("lsapi");
    ok(&d.docker(&["create", "--name", &warm, "--network", "none", "busybox"]));
    ok(&d.docker(&["rm", &warm]));
    let before = fds();
    // the wrong types, each a 400 naming the field
    for (field, value) in [
        ("Cmd", "5"),
        ("Env", "{}"),
        ("Labels", "{\"a\":1}"),
        ("HostConfig", "\"x\""),
        ("ExposedPorts", "[1]"),
    ] {
        let (code, body) = d.http(
            "POST",
            "/containers/create",
            &format!("{{\"Image\":\"busybox\",\"{field}\":{value}}}"),
        );
        assert_eq!(code, 400, "{field}: {body}");
        assert!(body.contains("\"message\""), "{field}: {body}");
    }
    let (code, body) = d.http(
        "POST",
        "/containers/create",
        "{\"Image\":\"busybox\",\"HostConfig\":{\"Memory\":\"lots\"}}",
    );
    assert_eq!(code, 400, "{body}");
    // headers: one of 2 MiB, 200 of them
    let big = format!(
        "GET /_ping HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(2 << 20)
    );
    let a = raw(d, big.as_bytes(), false);
    assert!(a.starts_with("HTTP/1.1 431"), "{a:.100}");
    let many: String = (0..200).map(|i| format!("X-{i}: 1\r\n")).collect();
    let a = raw(
        d,
        format!("GET /_ping HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes(),
        false,
    );
    assert!(a.starts_with("HTTP/1.1 431"), "{a:.100}");
    // not HTTP; a bad length; a body cut short
    let a = raw(d, b"\x00\x01\x02 garbage\r\n\r\n", false);
    assert!(a.starts_with("HTTP/1.1 400"), "{a:.100}");
    let a = raw(
        d,
        b"POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        false,
    );
    assert!(a.starts_with("HTTP/1.1 400"), "{a:.100}");
    let a = raw(
        d,
        b"POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"Image\":\"busybox\"",
        true,
    );
    assert!(a.is_empty() || a.starts_with("HTTP/1.1 400"), "{a:.200}");
    assert_eq!(
        ok(&d.docker(&["ps", "-a", "-q"])).trim(),
        "",
        "a refused request created a container"
    );
    // half-closed after a complete request: the answer still comes
    for _ in 0..5 {
        let a = raw(d, b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n", true);
        assert!(
            a.starts_with("HTTP/1.1 200") && a.ends_with("OK"),
            "{a:.200}"
        );
    }
    let name = unique_name("lsapi");
    let body =
        "{\"Image\":\"busybox\",\"Cmd\":[\"true\"],\"HostConfig\":{\"NetworkMode\":\"none\"}}";
    let a = raw(
        d,
        format!(
            "POST /containers/create?name={name} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
        true,
    );
    assert!(
        a.starts_with("HTTP/1.1 201") && a.contains("\"Id\""),
        "{a:.300}"
    );
    ok(&d.docker(&["rm", &name]));
    // clients that never finish their headers do not keep others out
    let slow: Vec<UnixStream> = (0..40)
        .map(|_| {
            let mut s = UnixStream::connect(&d.sock).unwrap();
            s.write_all(b"GET /containers/json HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    let v = ok(&d.docker(&["version", "--format", "{{.Server.APIVersion}}"]));
    assert_eq!(v.trim(), "1.45");
    drop(slow);
    // the daemon's fds come back (the connections above are all closed)
    let mut now = fds();
    for _ in 0..500 {
        if now <= before {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        now = fds();
    }
    let links: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        now <= before,
        "daemon fds: {before} before, {now} after: {links:?}"
    );
    assert_eq!(d.http("GET", "/_ping", "").0, 200);
}

/// The daemon flags that set up the engine: malformed or unsupported ones are refused
/// naming the flag; from daemon.json (a daemon in a network namespace of its own) the
/// default bridge gets its name, --bip, --fixed-cidr and --mtu, containers get --dns and
/// --dns-search, the storage driver is vfs, debug logging from log-level; a setting both
/// a flag and in the file is refused.
fn daemon_engine_settings(d: &mut Daemon) {
    use longshore_engine::api::{EngineSettings, engine_options};
    let root = d.dir.path().join("unused-root");
    let refused = |f: &dyn Fn(&mut EngineSettings), want: &str| {
        let mut s = EngineSettings::default();
        f(&mut s);
        let e = engine_options(&root, EngineOptions::default(), &s).unwrap_err();
        assert!(e.to_string().contains(want), "{want}: {e}");
    };
    refused(
        &|s| s.storage_opts = vec!["size=1G".into()],
        "--storage-opt: unsupported",
    );
    refused(
        &|s| s.storage_driver = Some("zfs".into()),
        "--storage-driver",
    );
    refused(&|s| s.bridge = Some("none".into()), "--bridge: unsupported");
    refused(&|s| s.bip = Some("10.0.0.300/24".into()), "--bip");
    refused(&|s| s.fixed_cidr = Some("x".into()), "--fixed-cidr");
    refused(&|s| s.mtu = Some(10), "--mtu");
    refused(&|s| s.ip = Some("host".into()), "--ip");
    refused(&|s| s.dns = vec!["dns.example".into()], "--dns");
    refused(
        &|s| s.registry_mirrors = vec!["mirror.local".into()],
        "--registry-mirror",
    );
    refused(&|s| s.log_level = Some("loud".into()), "--log-level");
    assert!(!root.exists(), "a refused setting wrote into the data root");

    let sock = d.dir.path().join(format!("{}.sock", unique_name("eng")));
    let bridge = unique_name("ls");
    let cfg = d.dir.path().join(format!("{}.json", unique_name("eng")));
    std::fs::write(
        &cfg,
        serde_json::json!({
            "hosts": [format!("unix://{}", sock.display())],
            "bridge": bridge,
            "bip": "10.253.0.1/24",
            "fixed-cidr": "10.253.0.128/25",
            "mtu": 1400,
            "icc": true,
            "ip-masq": true,
            "dns": ["10.9.9.9"],
            "dns-search": ["example.test"],
            "storage-driver": "vfs",
            "registry-mirrors": ["http://127.0.0.1:9"],
            "log-level": "debug",
        })
        .to_string(),
    )
    .unwrap();
    // a setting given both ways: refused before anything is opened
    let mut opts = DaemonOptions::default();
    opts.config_file = Some(cfg.clone());
    opts.engine.bridge = Some("lsother0".into());
    let e = longshore_engine::api::run_daemon(&root, EngineOptions::default(), &opts).unwrap_err();
    assert!(
        e.to_string().contains("in the configuration file: bridge"),
        "{e}"
    );
    let eroot = d.dir.path().join(unique_name("engroot"));
    let child = config_daemon(&eroot, &cfg, true).spawn().unwrap();
    struct Stop(std::process::Child, PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = self.0.wait();
            // its containers (the daemon is gone: the engine in process removes them)
            if let Ok(e) = Engine::open(&self.1, EngineOptions::default()) {
                let mut all = longshore_engine::ListOptions::default();
                all.all = true;
                let mut force = longshore_engine::RemoveOptions::default();
                force.force = true;
                for c in e.list_containers(&all).unwrap_or_default() {
                    let _ = e.remove_container(&c.id, &force);
                }
            }
        }
    }
    let guard = Stop(child, eroot.clone());
    wait_for(|| UnixStream::connect(&sock).is_ok());
    let docker = |args: &[&str]| {
        Command::new(DOCKER)
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .args(args)
            .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
            .output()
            .unwrap()
    };
    let info = ok(&docker(&["info", "--format", "{{.Driver}} {{.Debug}}"]));
    assert_eq!(info.trim(), "vfs true");
    // busybox into this daemon's store (its own data root)
    let mut save = Command::new(DOCKER)
        .arg("-H")
        .arg(format!("unix://{}", d.sock.display()))
        .args(["save", "busybox"])
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let load = Command::new(DOCKER)
        .arg("-H")
        .arg(format!("unix://{}", sock.display()))
        .args(["load", "-q"])
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .stdin(save.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(save.wait().unwrap().success());
    ok(&load);
    let out = ok(&docker(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "ip -4 -o addr show eth0; cat /sys/class/net/eth0/mtu; cat /etc/resolv.conf",
    ]));
    let addr = out
        .split_whitespace()
        .find(|w| w.starts_with("10.253.0."))
        .unwrap_or_else(|| panic!("no address of --bip: {out}"));
    let last: u8 = addr
        .trim_start_matches("10.253.0.")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(last >= 128, "not from --fixed-cidr: {out}");
    assert!(out.lines().any(|l| l.trim() == "1400"), "mtu: {out}");
    assert!(out.contains("nameserver 10.9.9.9"), "{out}");
    assert!(out.contains("search example.test"), "{out}");
    let pid = guard.0.id();
    let link = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["ip", "-o", "addr", "show", &bridge])
        .output()
        .unwrap();
    assert!(
        text(&link.stdout).contains("10.253.0.1/24"),
        "{}",
        text(&link.stdout)
    );
    drop(guard);
}

/// The daemon's listing reuses parsed records while their files are unchanged: every
/// change right after a cached listing shows in the next one (rename, start, stop, rm).
fn listing_sees_every_change(d: &mut Daemon) {
    let (a, b) = (unique_name("lsapi"), unique_name("lsapi"));
    ok(&d.busybox("create", &["--name", &a], &["sleep", "100"]));
    let ps = |name: &str| {
        ok(&d.docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("name={name}"),
            "--format",
            "{{.Names}} {{.State}}",
        ]))
        .trim()
        .to_string()
    };
    // older than the cache's settling time: the next listings are served from it
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(ps(&a), format!("{a} created"));
    assert_eq!(ps(&a), format!("{a} created"));
    ok(&d.docker(&["rename", &a, &b]));
    assert_eq!(ps(&b), format!("{b} created"));
    assert_eq!(ps(&a), "");
    ok(&d.docker(&["start", &b]));
    assert_eq!(ps(&b), format!("{b} running"));
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(ps(&b), format!("{b} running"));
    ok(&d.docker(&["stop", "-t", "0", &b]));
    assert_eq!(ps(&b), format!("{b} exited"));
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(ps(&b), format!("{b} exited"));
    ok(&d.docker(&["rm", &b]));
    assert_eq!(ps(&b), "");
}

/// The daemon's container list follows what another process does on its root (the
/// test's own engine, as the `longshore` CLI would): a container created, renamed,
/// started and exited, and removed there shows at the next `GET /containers/json`, also
/// right after a listing and after listings served from the daemon's cache (its inotify
/// watch of the containers' directories); a row is the in-process engine's summary, with
/// Docker's fields.
fn listing_follows_other_processes(d: &mut Daemon) {
    use longshore_engine::{
        CreateRequest, ListOptions, RemoveOptions, StartOptions, WaitCondition,
    };
    let e = &d.engine;
    let list = || -> Vec<serde_json::Value> {
        let (code, body) = d.http("GET", "/v1.45/containers/json?all=1", "");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("a JSON array")
    };
    let row = |id: &str| list().into_iter().find(|r| r["Id"] == id);
    let mut all = ListOptions::default();
    all.all = true;
    let summary = |id: &str| {
        let s = e.list_containers(&all).unwrap();
        serde_json::to_value(
            s.into_iter()
                .find(|s| s.id == id)
                .expect("listed in process"),
        )
        .unwrap()
    };
    let mut req = CreateRequest::default();
    req.image = "busybox".into();
    req.cmd = vec!["true".into()];
    req.network = Some("none".into());
    req.name = Some(unique_name("lsw"));
    req.labels.insert("k".into(), "v \"q\"".into());
    // the daemon has listed (and watches) before the change
    list();
    let id = e.create_container(&req).unwrap().id().to_string();
    let r = row(&id).expect("a container created by another process is listed at once");
    assert_eq!(r, summary(&id));
    let keys: std::collections::BTreeSet<&str> =
        r.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    let docker: std::collections::BTreeSet<&str> = [
        "Id", "Names", "Image", "ImageID", "Command", "Created", "Ports", "Labels", "State",
        "Status",
    ]
    .into();
    assert_eq!(keys, docker);
    // settled (older than the file system's clock tick) and listed from the cache
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(row(&id).unwrap(), summary(&id));
    assert_eq!(row(&id).unwrap(), summary(&id));
    let renamed = unique_name("lsw");
    e.rename_container(&id, &renamed).unwrap();
    assert_eq!(row(&id).unwrap()["Names"][0], format!("/{renamed}"));
    e.start_container(&id, &StartOptions::default()).unwrap();
    e.wait_container(&id, WaitCondition::NotRunning).unwrap();
    let r = row(&id).unwrap();
    assert_eq!(r["State"], "exited", "{r}");
    assert!(
        r["Status"].as_str().unwrap().starts_with("Exited (0) "),
        "{r}"
    );
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(row(&id).unwrap()["State"], "exited");
    e.remove_container(&id, &RemoveOptions::default()).unwrap();
    assert!(
        row(&id).is_none(),
        "a container removed by another process is not listed"
    );
}

/// After 5 s without requests the daemon gives back its allocator's free memory and the
/// pages of its binary that serving mapped (they fault back in from the page cache): its
/// resident file pages drop, and it answers as before.
fn an_idle_daemon_gives_back_its_pages(d: &mut Daemon) {
    let pid = d.child.as_ref().expect("the daemon runs").id();
    let rss_file = || -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("RssFile:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("RssFile in /proc/PID/status")
    };
    let id = ok(&d.busybox("create", &[], &["true"])).trim().to_string();
    for _ in 0..10 {
        assert_eq!(d.http("GET", "/containers/json?all=1", "").0, 200);
        assert_eq!(d.http("GET", &format!("/containers/{id}/json"), "").0, 200);
        assert_eq!(d.http("GET", "/_ping", "").0, 200);
    }
    let busy = rss_file();
    let mut idle = busy;
    for _ in 0..300 {
        std::thread::sleep(Duration::from_millis(100));
        idle = rss_file();
        if idle + 1024 < busy {
            break;
        }
    }
    assert!(
        idle + 1024 < busy,
        "the daemon's resident file pages: {busy} kB after the requests, {idle} kB idle"
    );
    let (code, body) = d.http("GET", "/containers/json?all=1", "");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(&id), "{body}");
    ok(&d.docker(&["rm", &id]));
}

/// A test: its name and body.
type Test = (&'static str, fn(&mut Daemon));

/// Many `network connect`s and `disconnect`s of one container at the same instant, each
/// to another network, stopped and then running: every one is recorded, and a running
/// container has one interface per network. (Each reads `networks.json`, changes it and
/// writes it back; without the container's lock around that, two at once read the same
/// record and the second write dropped the first's network.)
fn network_connect_concurrently(_: &mut Daemon) {
    let d = Daemon::start_with(true);
    let nets: Vec<String> = (0..10).map(|_| unique_name("lsnetc")).collect();
    for (i, n) in nets.iter().enumerate() {
        let subnet = format!("10.252.{}.0/24", i + 10);
        ok(&d.docker(&["network", "create", "--subnet", &subnet, n]));
    }
    let c = unique_name("lsapi");
    ok(&d.docker(&[
        "create",
        "--name",
        &c,
        "--network",
        &nets[0],
        "busybox",
        "sleep",
        "300",
    ]));
    let recorded = || -> std::collections::BTreeSet<String> {
        ok(&d.docker(&[
            "inspect",
            "-f",
            "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
            &c,
        ]))
        .split_whitespace()
        .map(String::from)
        .collect()
    };
    let want = |idx: &[usize]| -> std::collections::BTreeSet<String> {
        idx.iter().map(|&i| nets[i].clone()).collect()
    };
    // (connect or disconnect, network index), all sent at once, each on its connection
    let at_once = |ops: &[(&str, usize)]| {
        let barrier = std::sync::Barrier::new(ops.len());
        std::thread::scope(|s| {
            for &(op, i) in ops {
                let (barrier, sock, net, c) = (&barrier, &d.sock, &nets[i], &c);
                s.spawn(move || {
                    barrier.wait();
                    let (code, body) = http_at(
                        sock,
                        "POST",
                        &format!("/networks/{net}/{op}"),
                        &format!("{{\"Container\":\"{c}\"}}"),
                    );
                    assert_eq!(code, 200, "{op} {net}: {body}");
                });
            }
        });
    };
    // stopped: six connects at once, then three disconnects and three connects at once
    at_once(&[1, 2, 3, 4, 5, 6].map(|i| ("connect", i)));
    assert_eq!(recorded(), want(&[0, 1, 2, 3, 4, 5, 6]));
    at_once(&[
        ("disconnect", 1),
        ("disconnect", 2),
        ("disconnect", 3),
        ("connect", 7),
        ("connect", 8),
        ("connect", 9),
    ]);
    assert_eq!(recorded(), want(&[0, 4, 5, 6, 7, 8, 9]));
    // running: it joined all seven at its start; three out and three back in at once
    ok(&d.docker(&["start", &c]));
    at_once(&[
        ("disconnect", 4),
        ("disconnect", 5),
        ("disconnect", 6),
        ("connect", 1),
        ("connect", 2),
        ("connect", 3),
    ]);
    let now = [0, 1, 2, 3, 7, 8, 9];
    assert_eq!(recorded(), want(&now));
    let addrs = ok(&d.docker(&["exec", &c, "ip", "-4", "-o", "addr"]));
    let subnets: Vec<String> = addrs
        .lines()
        .filter(|l| !l.contains(" lo "))
        .filter_map(|l| l.split_whitespace().nth(3))
        .map(|a| {
            a.rsplit_once('.')
                .map(|(n, _)| n.to_string())
                .unwrap_or_default()
        })
        .collect();
    let mut expected: Vec<String> = now.iter().map(|i| format!("10.252.{}", i + 10)).collect();
    let mut got = subnets.clone();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "{addrs}");
    // and a restart joins the same seven
    ok(&d.docker(&["restart", "-t", "0", &c]));
    assert_eq!(recorded(), want(&now));
    let addrs = ok(&d.docker(&["exec", &c, "ip", "-4", "-o", "addr"]));
    assert_eq!(
        addrs.lines().filter(|l| !l.contains(" lo ")).count(),
        7,
        "{addrs}"
    );
    ok(&d.docker(&["rm", "-f", &c]));
    for n in &nets {
        ok(&d.docker(&["network", "rm", n]));
    }
}

/// A client that sends a request's head and its body in two writes (Python's http.client
/// does) and whose body is late: the handler (`start` never reads its `{}`) answers first.
/// The keep-alive connection must still serve the next request: before the fix the daemon
/// dropped the unread body, hyper closed the connection after the answer, and the client's
/// next request failed with a broken pipe (1 in ~80,000 requests of api-compare.sh's 200
/// clients, leaving the container of the broken sequence behind).
fn a_late_body_keeps_the_connection(d: &mut Daemon) {
    let (code, body) = d.http(
        "POST",
        "/containers/create",
        r#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"NetworkMode":"none"}}"#,
    );
    assert_eq!(code, 201, "{body}");
    let id = body.split('"').nth(3).expect("an Id").to_string();
    // the head only: the body comes once the answer is in
    let (mut s, got) = send_head(
        d,
        &format!(
            "POST /v1.45/containers/{id}/start HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n"
        ),
    );
    assert!(text(&got).starts_with("HTTP/1.1 204"), "{}", text(&got));
    // the late body, then the next request on the same connection
    let _ = s.write_all(b"{}");
    let _ = s.write_all(b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let rest = text(&rest);
    assert!(
        rest.starts_with("HTTP/1.1 200") && rest.ends_with("OK"),
        "the connection did not serve the next request: {rest:?}"
    );
    let (code, body) = d.http("POST", &format!("/containers/{id}/wait"), "");
    assert_eq!(code, 200, "{body}");
    let (code, body) = d.http("DELETE", &format!("/containers/{id}"), "");
    assert_eq!(code, 204, "{body}");
}

/// Containers started at the same time: no monitor inherits the pipe another start
/// made for its own monitor's report. Before the fix each of 8 monitors started together
/// held 0-7 extra pipe ends for its whole life (a start whose monitor died before
/// reporting then waited for an unrelated container to end).
fn parallel_starts_leak_no_pipe_into_monitors(d: &mut Daemon) {
    let root = d.dir.path().join("root");
    let sock = d.sock.clone();
    let run = |n: usize| -> Vec<String> {
        let threads: Vec<_> = (0..n)
            .map(|_| {
                let sock = sock.clone();
                std::thread::spawn(move || {
                    let (code, body) = http_at(
                        &sock,
                        "POST",
                        "/containers/create",
                        r#"{"Image":"busybox","Cmd":["sleep","60"],"HostConfig":{"NetworkMode":"none"}}"#,
                    );
                    assert_eq!(code, 201, "{body}");
                    let id = body.split('"').nth(3).expect("an Id").to_string();
                    let (code, body) =
                        http_at(&sock, "POST", &format!("/containers/{id}/start"), "");
                    assert_eq!(code, 204, "{body}");
                    id
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    };
    let pipes = |id: &str| -> usize {
        let state: serde_json::Value = serde_json::from_slice(
            &std::fs::read(root.join("containers").join(id).join("state.json")).unwrap(),
        )
        .unwrap();
        let pid = state["LongshoreMonitorPid"]
            .as_i64()
            .expect("a monitor pid");
        // the fewest seen over 0.5 s: a monitor closes its report pipe (fd 3) just after
        // writing `ok` on it, so a count made as the start returns may still see it; an
        // inherited pipe stays for the monitor's life
        (0..25)
            .map(|_| {
                std::thread::sleep(std::time::Duration::from_millis(20));
                std::fs::read_dir(format!("/proc/{pid}/fd"))
                    .unwrap()
                    .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                    .filter(|l| l.to_string_lossy().starts_with("pipe:"))
                    .count()
            })
            .min()
            .unwrap_or(0)
    };
    let alone = run(1);
    let own = pipes(&alone[0]);
    let together = run(8);
    let counts: Vec<usize> = together.iter().map(|id| pipes(id)).collect();
    for id in alone.iter().chain(&together) {
        let (code, body) = d.http("DELETE", &format!("/containers/{id}?force=1"), "");
        assert_eq!(code, 204, "{body}");
    }
    assert!(
        counts.iter().all(|&n| n == own),
        "a monitor alone has {own} pipe ends; started together: {counts:?}"
    );
}

fn main() -> ExitCode {
    let tests: Vec<Test> = vec![
        ("version_and_ping", |d| version_and_ping(d)),
        ("run_rm_echo", |d| run_rm_echo(d)),
        ("run_exit_code_and_streams", |d| {
            run_exit_code_and_streams(d)
        }),
        ("run_with_stdin", |d| run_with_stdin(d)),
        ("detached_logs_stop_rm", |d| detached_logs_stop_rm(d)),
        ("exec_in_a_running_container", |d| {
            exec_in_a_running_container(d)
        }),
        ("images_and_inspect", |d| images_and_inspect(d)),
        ("bad_requests_leave_the_daemon_up", |d| {
            bad_requests_leave_the_daemon_up(d)
        }),
        ("hostile_clients", hostile_clients),
        (
            "parallel_starts_leak_no_pipe_into_monitors",
            parallel_starts_leak_no_pipe_into_monitors,
        ),
        (
            "a_late_body_keeps_the_connection",
            a_late_body_keeps_the_connection,
        ),
        ("push_pull_tag_history", push_pull_tag_history),
        ("login_and_private_push", login_and_private_push),
        ("save_and_load", save_and_load),
        ("copy_in_and_out", copy_in_and_out),
        ("events_past_and_streaming", events_past_and_streaming),
        ("volumes_and_binds", volumes_and_binds),
        ("network_commands", network_commands),
        ("network_connect_disconnect", network_connect_disconnect),
        (
            "network_connect_stopped_disconnect_first",
            network_connect_stopped_disconnect_first,
        ),
        ("network_connect_concurrently", network_connect_concurrently),
        ("logs_follow", logs_follow),
        ("attach_input_after_the_exit", attach_input_after_the_exit),
        ("attach_with_logs", attach_with_logs),
        (
            "attach_registered_before_the_answer",
            attach_registered_before_the_answer,
        ),
        ("attach_over_websocket", attach_over_websocket),
        ("tty_run_and_exec", tty_run_and_exec),
        (
            "container_inspection_endpoints",
            container_inspection_endpoints,
        ),
        ("run_publish_port", run_publish_port),
        ("rm_right_after_run", rm_right_after_run),
        ("rm_as_soon_as_exited", rm_as_soon_as_exited),
        ("events_start_before_die", events_start_before_die),
        ("daemon_json_and_sighup", daemon_json_and_sighup),
        ("sighup_reloads_registries", sighup_reloads_registries),
        ("daemon_engine_settings", daemon_engine_settings),
        ("creates_while_listing", |d| creates_while_listing(d)),
        ("listing_sees_every_change", listing_sees_every_change),
        (
            "listing_follows_other_processes",
            listing_follows_other_processes,
        ),
        (
            "an_idle_daemon_gives_back_its_pages",
            an_idle_daemon_gives_back_its_pages,
        ),
        ("tcp_and_socket_activation", tcp_and_socket_activation),
        ("tls_tcp", tls_tcp),
        ("start_while_the_monitor_lock_is_checked", |d| {
            start_while_the_monitor_lock_is_checked(d)
        }),
        ("stop_keeps_containers", stop_keeps_containers),
    ];
    harness("api", true, Daemon::start, &tests, |t, d| t(d))
}
