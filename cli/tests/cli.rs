//! The `longshore` command as a user runs it, as root, against a busybox image imported
//! from Debian's busybox-static into a private data root per test. Containers on the
//! bridge run with every command inside a network namespace the test made (nsenter), so
//! the host's network and nftables stay untouched.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use longshore_test_support::{require_root, unique_name};

const BIN: &str = env!("CARGO_BIN_EXE_longshore");

struct Env {
    root: tempfile::TempDir,
    /// A network namespace every command runs in (bridge tests).
    netns: Option<PathBuf>,
}

impl Env {
    fn new() -> Env {
        let root = tempfile::Builder::new()
            .prefix("longshore-cli-")
            .tempdir()
            .unwrap();
        let env = Env { root, netns: None };
        env.import_busybox();
        env
    }

    fn with_netns() -> Env {
        let mut env = Env::new();
        let name = unique_name("lsc");
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(st.success());
        let path = PathBuf::from(format!("/run/netns/{name}"));
        let st = Command::new("ip")
            .args(["-n", &name, "link", "set", "lo", "up"])
            .status()
            .unwrap();
        assert!(st.success());
        env.netns = Some(path);
        env
    }

    fn import_busybox(&self) {
        let rootfs = self.root.path().join("rootfs");
        std::fs::create_dir(&rootfs).unwrap();
        longshore_test_support::busybox_rootfs(&rootfs).unwrap();
        let tar = self.root.path().join("rootfs.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        let out = self.run(&[
            "import",
            "-c",
            "CMD [\"sh\"]",
            tar.to_str().unwrap(),
            "busybox:latest",
        ]);
        assert!(out.status.success(), "import: {}", stderr(&out));
    }

    fn data(&self) -> &Path {
        self.root.path()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", ns.display())).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        c.args(args)
            .env("LONGSHORE_ROOT", self.data())
            .env("LONGSHORE_BRIDGE", "lsbr0")
            .env_remove("LONGSHORE_HOST")
            .env_remove("DOCKER_HOST");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed ({:?}): {}",
            out.status.code(),
            stderr(&out)
        );
        stdout(&out)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let ids = stdout(&self.run(&["ps", "-aq", "--no-trunc"]));
        for id in ids.lines() {
            let _ = self.run(&["rm", "-f", "-v", id]);
        }
        // volumes with -o hold a mount on the host (tmpfs, a bound directory)
        let vols = stdout(&self.run(&["volume", "ls", "-q"]));
        for v in vols.lines() {
            let _ = self.run(&["volume", "rm", "-f", v]);
        }
        if let Some(ns) = &self.netns {
            let name = ns.file_name().unwrap().to_str().unwrap().to_string();
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn run_gives_docker_exit_codes_and_rm_leaves_nothing() {
    require_root!();
    let env = Env::new();
    let out = env.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "echo",
        "hello",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello\n");
    let out = env.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stderr(&out), "err\n");
    let out = env.run(&["run", "--rm", "--network", "none", "busybox", "nosuchcmd"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("executable file not found"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["run", "--rm", "--network", "none", "busybox", "/etc/passwd"]);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    // --rm: nothing is left (the monitor removes the container after it exits)
    wait_for("removal", || env.ok(&["ps", "-aq"]).is_empty());
    // stdin with -i
    let mut c = env.command(&[
        "run",
        "-i",
        "--rm",
        "--network",
        "none",
        "busybox",
        "wc",
        "-c",
    ]);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"12345").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out).trim(), "5");
}

#[test]
fn detached_container_lifecycle() {
    require_root!();
    let env = Env::new();
    let id = env.ok(&[
        "run",
        "-d",
        "--name",
        "web1",
        "--network",
        "none",
        "-l",
        "tier=front",
        "busybox",
        "sh",
        "-c",
        "echo started; echo oops >&2; exec sleep 1000",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id}");
    // the CLI that started it is gone; another process sees it running
    let ps = env.ok(&["ps"]);
    let lines: Vec<&str> = ps.lines().collect();
    assert!(
        lines[0].starts_with("CONTAINER ID   IMAGE     COMMAND"),
        "{ps}"
    );
    assert!(
        lines[1].starts_with(&id[..12]) && lines[1].contains("Up ") && lines[1].ends_with("web1"),
        "{ps}"
    );
    assert_eq!(
        env.ok(&["ps", "-q", "--filter", "label=tier=front"]).trim(),
        &id[..12]
    );
    assert_eq!(
        env.ok(&["ps", "-q", "--filter", "label=tier=back"]).trim(),
        ""
    );
    assert_eq!(
        env.ok(&["ps", "--format", "{{.Names}} {{.State}}"]).trim(),
        "web1 running"
    );
    wait_for("logs", || env.ok(&["logs", "web1"]).contains("started"));
    let out = env.run(&["logs", "web1"]);
    assert_eq!(stdout(&out), "started\n");
    assert_eq!(stderr(&out), "oops\n");
    // the json-file log on disk in Docker's format
    let log =
        std::fs::read_to_string(env.data().join(format!("containers/{id}/{id}-json.log"))).unwrap();
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(first["log"], "started\n");
    assert_eq!(first["stream"], "stdout");
    // exec: output and exit code
    let out = env.run(&["exec", "web1", "sh", "-c", "echo in; exit 4"]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(stdout(&out), "in\n");
    // rm of a running container: refused in Docker's words
    let out = env.run(&["rm", "web1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("You cannot remove a running container"),
        "{}",
        stderr(&out)
    );
    // a name in use
    let out = env.run(&[
        "run",
        "-d",
        "--name",
        "web1",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("is already in use by container"),
        "{}",
        stderr(&out)
    );
    // inspect with a template; by prefix
    assert_eq!(
        env.ok(&["inspect", "-f", "{{.State.Status}} {{.Name}}", &id[..5]])
            .trim(),
        "running /web1"
    );
    // stop: sleep as pid 1 ignores TERM, so SIGKILL after -t: 137
    env.ok(&["stop", "-t", "1", "web1"]);
    let st = env.ok(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.ExitCode}}",
        "web1",
    ]);
    assert_eq!(st.trim(), "exited 137");
    assert!(env.ok(&["ps", "-a"]).contains("Exited (137)"));
    assert_eq!(env.ok(&["ps", "-q"]).trim(), "");
    // start again, then wait for a container that exits by itself
    env.ok(&["rename", "web1", "web2"]);
    env.ok(&["start", "web2"]);
    assert_eq!(
        env.ok(&["inspect", "-f", "{{.State.Running}}", "web2"])
            .trim(),
        "true"
    );
    env.ok(&["kill", "web2"]);
    assert_eq!(env.ok(&["wait", "web2"]).trim(), "137");
    env.ok(&["rm", "web2"]);
    let out = env.run(&["inspect", "web2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("No such object: web2"));
}

#[test]
fn a_killed_monitor_loses_no_container() {
    require_root!();
    let env = Env::new();
    let id = env.ok(&["run", "-d", "--network", "none", "busybox", "sleep", "1000"]);
    let id = id.trim();
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.data().join(format!("containers/{id}/state.json"))).unwrap(),
    )
    .unwrap();
    let monitor = state["LongshoreMonitorPid"].as_i64().unwrap();
    assert!(monitor > 0);
    // kill -9 of the monitor: the container runs on and is still found
    let st = Command::new("kill")
        .args(["-9", &monitor.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    std::thread::sleep(Duration::from_millis(100));
    assert!(env.ok(&["ps"]).contains("Up "), "{}", env.ok(&["ps", "-a"]));
    // stopping it records that its status is unknown (as Docker when its shim dies)
    env.ok(&["stop", "-t", "0", id]);
    let st = env.ok(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", id]);
    assert_eq!(st.trim(), "exited 255");
    env.ok(&["rm", id]);
}

#[test]
fn restart_policy_on_failure_counts_restarts() {
    require_root!();
    let env = Env::new();
    let id = env.ok(&[
        "run",
        "-d",
        "--restart",
        "on-failure:2",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo run; exit 1",
    ]);
    let id = id.trim().to_string();
    wait_for("the restarts", || {
        env.ok(&["inspect", "-f", "{{.State.Status}} {{.RestartCount}}", &id])
            .trim()
            == "exited 2"
    });
    let logs = env.ok(&["logs", &id]);
    assert_eq!(
        logs.matches("run").count(),
        3,
        "logs {logs:?}; state {}",
        env.ok(&["inspect", "-f", "{{json .State}}", &id])
    );
    let out = env.run(&["run", "--rm", "--restart", "always", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("Conflicting options: --restart and --rm"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_input_is_a_clear_error_and_leaves_nothing() {
    require_root!();
    let env = Env::new();
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "run",
                "--pull",
                "never",
                "--network",
                "none",
                "nosuchimage:1",
                "true",
            ],
            "No such image",
        ),
        (
            &["run", "-p", "99999:80", "busybox", "true"],
            "invalid port mapping",
        ),
        (
            &["run", "-m", "1m", "busybox", "true"],
            "Minimum memory limit allowed is 6MB",
        ),
        (
            &["run", "-v", "relative:path", "busybox", "true"],
            "invalid volume specification",
        ),
        (
            &["run", "--lxc-conf", "lxc.x=1", "busybox", "true"],
            "--lxc-conf is not supported",
        ),
        (
            &["run", "--health-retries=-1", "busybox", "true"],
            "--health-retries cannot be negative",
        ),
        (
            &["run", "--restart", "sometimes", "busybox", "true"],
            "invalid restart policy",
        ),
        (
            &["run", "--cap-add", "CAP_NOPE", "busybox", "true"],
            "invalid capability",
        ),
        (
            &["run", "--stop-signal", "SIGNOPE", "busybox", "true"],
            "Invalid signal",
        ),
    ];
    for (args, want) in cases {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{args:?}");
    }
    assert_eq!(env.ok(&["ps", "-aq"]), "", "a failed run left a container");
    let out = env.run(&["nosuchcommand"]);
    assert_eq!(out.status.code(), Some(125));
    let out = env.run(&["ps", "--format", "{{.Nope}}"]);
    // no containers: the template is not evaluated, as docker
    assert!(out.status.success());
    env.ok(&["create", "--name", "c1", "busybox", "true"]);
    let out = env.run(&["ps", "-a", "--format", "{{.Nope}}"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("can't evaluate field Nope"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["stop", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("No such container: nosuch"));
    let out = env.run(&["exec", "c1", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("is not running"), "{}", stderr(&out));
}

#[test]
fn images_tag_rmi_and_conflicts() {
    require_root!();
    let env = Env::new();
    let imgs = env.ok(&["images"]);
    assert!(
        imgs.starts_with("REPOSITORY   TAG       IMAGE ID       CREATED"),
        "{imgs}"
    );
    assert!(
        imgs.lines()
            .nth(1)
            .unwrap()
            .starts_with("busybox      latest    "),
        "{imgs}"
    );
    env.ok(&["tag", "busybox", "mine:v1"]);
    assert_eq!(
        env.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}", "mine"])
            .trim(),
        "mine:v1"
    );
    env.ok(&["create", "--name", "user1", "busybox", "true"]);
    let out = env.run(&["rmi", "busybox"]);
    // another tag remains: untagging is fine
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.run(&["rmi", "mine:v1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("image is being used by stopped container"),
        "{}",
        stderr(&out)
    );
    env.ok(&["rm", "user1"]);
    assert!(env.ok(&["rmi", "mine:v1"]).contains("Untagged: mine:v1"));
    assert_eq!(env.ok(&["images", "-q"]), "");
}

#[test]
fn bridge_network_and_published_port() {
    require_root!();
    let env = Env::with_netns();
    let ns = env.netns.clone().unwrap();
    // an address of the "host" to reach the published port through
    let st = Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(["sh", "-c", "ip link add lsd0 type veth peer name lsd1 && ip addr add 10.250.0.1/24 dev lsd0 && ip link set lsd0 up && ip link set lsd1 up"])
        .status()
        .unwrap();
    assert!(st.success());
    let id = env.ok(&[
        "run", "-d", "--name", "web", "-p", "18080:80", "busybox", "httpd", "-f", "-p", "80", "-h",
        "/etc",
    ]);
    let id = id.trim();
    let ps = env.ok(&["ps"]);
    assert!(ps.contains("0.0.0.0:18080->80/tcp"), "{ps}");
    assert_eq!(env.ok(&["port", "web"]).trim(), "80/tcp -> 0.0.0.0:18080");
    let ip = env.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web"]);
    assert!(ip.trim().starts_with("172.17."), "{ip}");
    let fetch = |url: &str| {
        Command::new("nsenter")
            .arg(format!("--net={}", ns.display()))
            .args(["curl", "-s", "-m", "3", url])
            .output()
            .unwrap()
    };
    let mut got = String::new();
    wait_for("httpd", || {
        got = stdout(&fetch("http://10.250.0.1:18080/passwd"));
        got.contains("root:x:0:0")
    });
    // hosts and hostname inside the container
    let hosts = env.ok(&["exec", "web", "cat", "/etc/hosts"]);
    assert!(
        hosts.contains(&format!("{} {}", ip.trim(), &id[..12])),
        "{hosts}"
    );
    env.ok(&["rm", "-f", "web"]);
    // the published port is gone with the container
    assert!(!stdout(&fetch("http://10.250.0.1:18080/passwd")).contains("root"));
    let netns_left = std::path::Path::new("/run/netns").join(format!("ls{}", &id[..12]));
    assert!(
        !netns_left.exists(),
        "the container's network namespace was left behind"
    );
}

#[test]
fn run_it_under_a_pseudo_terminal() {
    require_root!();
    let env = Env::new();
    // script(1) gives the command a pseudo-terminal as its stdin and stdout
    let cmd = format!("{BIN} run -it --rm --network none busybox sh");
    let mut c = Command::new("script");
    c.args(["-qec", &cmd, "/dev/null"])
        .env("LONGSHORE_ROOT", env.data())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        let mut input = child.stdin.take().unwrap();
        std::io::Write::write_all(
            &mut input,
            b"tty -s && echo on-a-tty; stty size; echo $TERM\n",
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        std::io::Write::write_all(&mut input, b"exit 7\n").unwrap();
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = child.wait_with_output().unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(7), "{text} {}", stderr(&out));
    assert!(text.contains("on-a-tty"), "{text}");
    assert!(text.contains("xterm"), "{text}");
    wait_for("removal", || env.ok(&["ps", "-aq"]).is_empty());
}

#[test]
fn load_shows_layer_progress_on_a_terminal_both_ways() {
    require_root!();
    // a namespace of its own: the daemon opens the network controller, which makes the
    // default bridge where it runs
    let env = Env::with_netns();
    let d = Daemon::start(&env);
    let saved = env.data().join("busybox.tar");
    env.ok(&["save", "-o", saved.to_str().unwrap(), "busybox"]);
    let layer = env.ok(&["inspect", "-f", "{{index .RootFS.Layers 0}}", "busybox"]);
    let short = &layer.trim().trim_start_matches("sha256:")[..12];
    let saved = saved.to_str().unwrap();
    for host in [None, Some(d.host.as_str())] {
        let tag = if host.is_some() {
            "remote"
        } else {
            "in process"
        };
        // not on a terminal: docker's lines only, no progress
        env.ok(&["rmi", "busybox"]);
        assert_eq!(
            env.ok(&maybe_remote(host, &["load", "-i", saved])),
            "Loaded image: busybox:latest\n",
            "{tag}"
        );
        // on a terminal (150 columns): the layer's line redrawn with a bar, then the result
        env.ok(&["rmi", "busybox"]);
        let remote = host.map(|h| format!("-H {h} ")).unwrap_or_default();
        let cmd = format!("stty rows 40 cols 150; {BIN} {remote}load -i {saved}");
        let out = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .env("LONGSHORE_ROOT", env.data())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text = stdout(&out);
        assert!(out.status.success(), "{tag}: {text}{}", stderr(&out));
        let line = format!("{short}: Loading layer [");
        assert!(
            text.matches(&line).count() >= 3,
            "{tag}: the line drawn at 0, on the way (512 KiB steps) and at the end: {text:?}"
        );
        assert!(
            text.contains("\x1b[2K\r"),
            "{tag}: redrawn in place: {text:?}"
        );
        assert!(
            text.contains(&format!("{line}>{}]", " ".repeat(50))),
            "{tag}: an empty bar first: {text:?}"
        );
        let done = format!("{line}{}>] ", "=".repeat(50));
        let at = text
            .find(&done)
            .unwrap_or_else(|| panic!("{tag}: a full bar: {text:?}"));
        // the end shows the layer's whole size twice: N/N
        let sizes = text[at + done.len()..].split('\r').next().unwrap().trim();
        let (a, b) = sizes.split_once('/').unwrap();
        assert!(a == b && b.ends_with("MB"), "{tag}: {sizes:?}");
        assert!(
            text.trim_end().ends_with("Loaded image: busybox:latest"),
            "{tag}: {text:?}"
        );
        // -q on a terminal: no progress
        env.ok(&["rmi", "busybox"]);
        let cmd = format!("{BIN} {remote}load -q -i {saved}");
        let out = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .env("LONGSHORE_ROOT", env.data())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(
            stdout(&out),
            "Loaded image: busybox:latest\r\n",
            "{tag} -q: {}",
            stderr(&out)
        );
        // a layer the store has is not loaded again, so shows no progress
        let cmd = format!("stty rows 40 cols 150; {BIN} {remote}load -i {saved}");
        let out = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .env("LONGSHORE_ROOT", env.data())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(
            stdout(&out),
            "Loaded image: busybox:latest\r\n",
            "{tag}: {}",
            stderr(&out)
        );
    }
    // a bad archive: the same error either way, nothing loaded
    let bad = env.data().join("bad.tar");
    std::fs::write(&bad, b"not a tar at all").unwrap();
    let out = env.run(&["load", "-i", bad.to_str().unwrap()]);
    let out_r = env.run(&["-H", &d.host, "load", "-i", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        (out.status.code(), stderr(&out)),
        (out_r.status.code(), stderr(&out_r))
    );
}

#[test]
fn volumes_named_bind_and_in_use() {
    require_root!();
    let env = Env::new();
    assert_eq!(env.ok(&["volume", "create", "data1"]).trim(), "data1");
    env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "data1:/data",
        "busybox",
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "data1:/data",
        "busybox",
        "cat",
        "/data/f",
    ]);
    assert_eq!(out, "kept\n");
    let ls = env.ok(&["volume", "ls"]);
    assert!(
        ls.starts_with("DRIVER    VOLUME NAME\nlocal     data1"),
        "{ls}"
    );
    env.ok(&[
        "run",
        "-d",
        "--name",
        "holder",
        "--network",
        "none",
        "-v",
        "data1:/data",
        "busybox",
        "sleep",
        "100",
    ]);
    let out = env.run(&["volume", "rm", "data1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("volume is in use"),
        "{}",
        stderr(&out)
    );
    env.ok(&["rm", "-f", "holder"]);
    env.ok(&["volume", "rm", "data1"]);
    assert_eq!(env.ok(&["volume", "ls", "-q"]), "");
    // a read-only bind of a host directory
    let host = env.data().join("hostdir");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("in"), "from host\n").unwrap();
    let bind = format!("{}:/mnt:ro", host.display());
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &bind,
        "busybox",
        "cat",
        "/mnt/in",
    ]);
    assert_eq!(out, "from host\n");
    let out = env.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &bind,
        "busybox",
        "touch",
        "/mnt/new",
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(!host.join("new").exists());
    let out = env.run(&["volume", "inspect", "nosuch"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("no such volume"), "{}", stderr(&out));
}

#[test]
fn update_and_stats_of_a_running_container() {
    require_root!();
    let env = Env::new();
    env.ok(&[
        "run",
        "-d",
        "--name",
        "st1",
        "--network",
        "none",
        "-m",
        "64m",
        "busybox",
        "sleep",
        "100",
    ]);
    let stats = env.ok(&["stats", "--no-stream", "st1"]);
    let lines: Vec<&str> = stats.lines().collect();
    assert!(
        lines[0].starts_with("CONTAINER ID   NAME      CPU %"),
        "{stats}"
    );
    assert!(
        lines[1].contains("st1") && lines[1].contains("/ 64MiB"),
        "{stats}"
    );
    env.ok(&["update", "-m", "128m", "--pids-limit", "50", "st1"]);
    let stats = env.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.MemUsage}} {{.PIDs}}",
        "st1",
    ]);
    assert!(stats.contains("/ 128MiB"), "{stats}");
    assert_eq!(
        env.ok(&[
            "inspect",
            "-f",
            "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}",
            "st1"
        ])
        .trim(),
        "134217728 50"
    );
    let out = env.run(&["update", "-m", "1m", "st1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Minimum memory limit"),
        "{}",
        stderr(&out)
    );
    env.ok(&["rm", "-f", "st1"]);
}

#[test]
fn eight_processes_share_one_root() {
    require_root!();
    let env = std::sync::Arc::new(Env::new());
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let env = std::sync::Arc::clone(&env);
            std::thread::spawn(move || {
                for round in 0..3 {
                    let name = format!("par{w}x{round}");
                    let id = env.ok(&[
                        "run",
                        "-d",
                        "--name",
                        &name,
                        "--network",
                        "none",
                        "busybox",
                        "sleep",
                        "100",
                    ]);
                    assert_eq!(id.trim().len(), 64);
                    assert!(
                        env.ok(&["ps", "-a", "--format", "{{.Names}}"])
                            .lines()
                            .any(|l| l == name)
                    );
                    assert_eq!(env.ok(&["exec", &name, "echo", "hi"]), "hi\n");
                    env.ok(&["rm", "-f", &name]);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(env.ok(&["ps", "-aq"]), "");
}

#[test]
fn cp_both_ways_and_never_outside_the_container() {
    require_root!();
    let env = Env::new();
    env.ok(&["run", "-d", "--name", "cp1", "--network", "none", "busybox", "sh", "-c", "mkdir -p /data && echo inside > /data/f && ln -s / /data/hostroot && ln -s /etc/passwd /data/pw && exec sleep 100"]);
    wait_for("the file", || {
        env.run(&["exec", "cp1", "cat", "/data/f"]).status.success()
    });
    let out_dir = env.data().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    // out: a file, and a directory
    env.ok(&["cp", "cp1:/data/f", out_dir.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(out_dir.join("f")).unwrap(),
        "inside\n"
    );
    env.ok(&["cp", "cp1:/data", out_dir.join("copy").to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(out_dir.join("copy/f")).unwrap(),
        "inside\n"
    );
    // the container's symlinks come out as symlinks, not as the host's files they name
    assert!(
        std::fs::symlink_metadata(out_dir.join("copy/hostroot"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // a path through a symlink to / resolves inside the container: its passwd, not the host's
    let host_marker = env.data().join("host-only-marker");
    std::fs::write(&host_marker, "host secret\n").unwrap();
    let probe = format!("cp1:/data/hostroot{}", host_marker.display());
    let out = env.run(&["cp", &probe, "-"]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "read a host file through the container's symlink"
    );
    assert!(
        stderr(&out).contains("Could not find the file"),
        "{}",
        stderr(&out)
    );
    // in: a host file into a directory, and under a new name
    let src = env.data().join("src.txt");
    std::fs::write(&src, "from host\n").unwrap();
    env.ok(&["cp", src.to_str().unwrap(), "cp1:/data"]);
    assert_eq!(
        env.ok(&["exec", "cp1", "cat", "/data/src.txt"]),
        "from host\n"
    );
    env.ok(&["cp", src.to_str().unwrap(), "cp1:/data/renamed"]);
    assert_eq!(
        env.ok(&["exec", "cp1", "cat", "/data/renamed"]),
        "from host\n"
    );
    // into a path that escapes through a symlink: lands inside the container, never on the host
    let escape_dir = env.data().join("escape-target");
    std::fs::create_dir(&escape_dir).unwrap();
    let dest = format!("cp1:/data/hostroot{}", escape_dir.display());
    let _ = env.run(&["cp", src.to_str().unwrap(), &dest]);
    assert!(
        !escape_dir.join("src.txt").exists(),
        "cp wrote through the container's symlink onto the host"
    );
    // the container still runs (it was frozen only during the copies)
    assert_eq!(
        env.ok(&["inspect", "-f", "{{.State.Status}}", "cp1"])
            .trim(),
        "running"
    );
    // a stopped container too
    env.ok(&["stop", "-t", "0", "cp1"]);
    let out = env.run(&["cp", "cp1:/data/f", "-"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!out.stdout.is_empty());
    env.ok(&["rm", "cp1"]);
}

#[test]
fn events_logs_options_and_rotation() {
    require_root!();
    let env = Env::new();
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    env.ok(&[
        "run",
        "--name",
        "ev1",
        "--network",
        "none",
        "--log-opt",
        "max-size=2k",
        "--log-opt",
        "max-file=2",
        "busybox",
        "sh",
        "-c",
        "for i in $(seq 1 200); do echo line-$i; done",
    ]);
    // events of another process, read back from disk
    let until = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1)
    .to_string();
    let ev = env.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "container=ev1",
        "--format",
        "{{.Type}} {{.Action}}",
    ]);
    let actions: Vec<&str> = ev.lines().collect();
    assert_eq!(
        actions,
        ["container create", "container start", "container die"],
        "{ev}"
    );
    // rotation kept two files of at most ~2k each; logs reads both, oldest first
    let dir = env.data().join("containers");
    let id = env.ok(&["inspect", "-f", "{{.Id}}", "ev1"]);
    let log = dir.join(id.trim()).join(format!("{}-json.log", id.trim()));
    assert!(log.exists() && std::path::Path::new(&format!("{}.1", log.display())).exists());
    assert!(!std::path::Path::new(&format!("{}.2", log.display())).exists());
    assert!(std::fs::metadata(&log).unwrap().len() <= 2048);
    let all = env.ok(&["logs", "ev1"]);
    assert!(all.ends_with("line-200\n"), "{all}");
    assert!(
        !all.contains("line-1\n"),
        "the oldest lines were rotated away"
    );
    assert_eq!(
        env.ok(&["logs", "--tail", "2", "ev1"]),
        "line-199\nline-200\n"
    );
    let ts = env.ok(&["logs", "-t", "--tail", "1", "ev1"]);
    assert!(ts.starts_with("20") && ts.contains("Z line-200"), "{ts}");
    let later = (until.parse::<u64>().unwrap() + 60).to_string();
    assert_eq!(env.ok(&["logs", "--since", &later, "ev1"]), "");
    // -f returns once the container has stopped
    assert!(
        env.ok(&["logs", "-f", "--tail", "1", "ev1"])
            .contains("line-200")
    );
}

#[test]
fn build_runs_steps_in_containers() {
    require_root!();
    let env = Env::new();
    let ctx = env.data().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("f.txt"), "hello file\n").unwrap();
    std::fs::write(ctx.join("secret.txt"), "not sent\n").unwrap();
    std::fs::write(ctx.join(".dockerignore"), "secret.txt\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nENV GREETING=hi\nWORKDIR /app\nCOPY . .\nRUN echo \"$GREETING from $(hostname)\" > out.txt && cat f.txt >> out.txt && ls /app > list.txt\nCMD [\"cat\", \"/app/out.txt\"]\n",
    )
    .unwrap();
    let out = env.ok(&["build", "-t", "mine:1", ctx.to_str().unwrap()]);
    assert!(out.contains("Step 5/6 : RUN"), "{out}");
    assert!(out.contains("Successfully tagged mine:1"), "{out}");
    let ran = env.ok(&["run", "--rm", "--network", "none", "mine:1"]);
    assert!(
        ran.starts_with("hi from ") && ran.ends_with("hello file\n"),
        "{ran}"
    );
    let list = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "mine:1",
        "cat",
        "/app/list.txt",
    ]);
    assert!(!list.contains("secret.txt"), "{list}");
    // a second build takes every step from the cache
    let again = env.ok(&["build", "-q", "-t", "mine:1", ctx.to_str().unwrap()]);
    let id = env.ok(&["images", "-q", "--no-trunc", "mine:1"]);
    assert_eq!(again.trim(), id.trim());
    // intermediate images are hidden without -a
    assert_eq!(env.ok(&["images", "-q"]).lines().count(), 2);
    // a failing RUN: its code, the step named, nothing left behind
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN exit 3\n").unwrap();
    let out = env.run(&["build", "-t", "bad:1", ctx.to_str().unwrap()]);
    // docker's legacy builder exits with the RUN's own code (its errorDetail's code)
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("RUN exit 3: the command returned a non-zero code: 3"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.ok(&["ps", "-aq"]), "");
    assert!(!env.ok(&["images"]).contains("bad"));
}

#[test]
fn privileged_containers_get_every_capability_and_a_sealed_monitor() {
    require_root!();
    let env = Env::new();
    let id = env.ok(&[
        "run",
        "-d",
        "--privileged",
        "--network",
        "none",
        "busybox",
        "sleep",
        "100",
    ]);
    let id = id.trim();
    // the capabilities this process has, not more (as Docker gives what the daemon has)
    let mine = std::fs::read_to_string("/proc/self/status").unwrap();
    let bnd = mine
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim()
        .to_string();
    let theirs = env.ok(&["exec", id, "sh", "-c", "grep CapEff /proc/self/status"]);
    assert_eq!(theirs.split_whitespace().nth(1).unwrap(), bnd, "{theirs}");
    // a container that may ptrace its processes must never reach this binary: its monitor
    // (the init's parent) runs from a sealed copy
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.data().join(format!("containers/{id}/state.json"))).unwrap(),
    )
    .unwrap();
    let monitor = state["LongshoreMonitorPid"].as_i64().unwrap();
    let exe = std::fs::read_link(format!("/proc/{monitor}/exe")).unwrap();
    assert!(exe.to_string_lossy().starts_with("/memfd:"), "{exe:?}");
    // and a process exec'd into it from this binary runs from a sealed copy as well: the
    // container sees no process whose executable is the host's longshore
    let exes = env.ok(&[
        "exec",
        id,
        "sh",
        "-c",
        "for p in /proc/[0-9]*; do readlink $p/exe; done",
    ]);
    assert!(!exes.contains("longshore"), "{exes}");
    env.ok(&["rm", "-f", id]);
    // without CAP_SYS_PTRACE the monitor needs no copy
    let id = env.ok(&["run", "-d", "--network", "none", "busybox", "sleep", "100"]);
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            env.data()
                .join(format!("containers/{}/state.json", id.trim())),
        )
        .unwrap(),
    )
    .unwrap();
    let monitor = state["LongshoreMonitorPid"].as_i64().unwrap();
    let exe = std::fs::read_link(format!("/proc/{monitor}/exe")).unwrap();
    assert!(!exe.to_string_lossy().starts_with("/memfd:"), "{exe:?}");
}

#[test]
fn run_rm_returns_once_the_container_is_gone() {
    require_root!();
    let env = Env::new();
    for _ in 0..3 {
        // the same name at once: the previous container must be removed when run returns
        let out = env.run(&[
            "run",
            "--rm",
            "--name",
            "again",
            "--network",
            "none",
            "busybox",
            "true",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(env.ok(&["ps", "-aq"]), "");
    }
}

#[test]
fn a_new_volume_gets_the_image_content_and_never_the_hosts() {
    require_root!();
    let env = Env::new();
    // a host directory an image's symlink names
    let secret = env.data().join("host-secret");
    std::fs::create_dir(&secret).unwrap();
    std::fs::write(secret.join("key"), "host only\n").unwrap();
    let script = format!(
        "mkdir /seed && echo hi > /seed/a && chown 5:6 /seed/a && chmod 0750 /seed \
         && ln -s /etc/passwd /seed/link && ln -s {} /evil",
        secret.display()
    );
    env.ok(&[
        "run",
        "--name",
        "mk",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        &script,
    ]);
    env.ok(&["commit", "mk", "seeded:1"]);
    // -c applies Dockerfile instructions over the container's config; -p takes a value
    // only with `=`, so the container's name is not read as one
    env.ok(&["commit", "-c", "ENV SEEDED=1", "-p", "mk", "seeded:2"]);
    env.ok(&["commit", "--pause=false", "-m", "m", "mk", "seeded:3"]);
    let cfg = env.ok(&["inspect", "-f", "{{json .Config.Env}}", "seeded:2"]);
    assert!(cfg.contains("SEEDED=1"), "{cfg}");
    env.ok(&["rmi", "seeded:2", "seeded:3"]);
    // a named volume, new and empty: filled from the image
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "vol1:/seed",
        "seeded:1",
        "cat",
        "/seed/a",
    ]);
    assert_eq!(out, "hi\n");
    let data = env.data().join("volumes/vol1/_data");
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::symlink_metadata(data.join("a")).unwrap();
    assert_eq!((md.uid(), md.gid()), (5, 6));
    assert_eq!(std::fs::metadata(&data).unwrap().mode() & 0o7777, 0o750);
    assert_eq!(
        std::fs::read_link(data.join("link")).unwrap(),
        Path::new("/etc/passwd"),
        "symlinks are copied as symlinks"
    );
    // not filled again once it holds something
    std::fs::remove_file(data.join("a")).unwrap();
    env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "vol1:/seed",
        "seeded:1",
        "true",
    ]);
    assert!(!data.join("a").exists());
    // nocopy and host binds get nothing
    env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "vol2:/seed:nocopy",
        "seeded:1",
        "true",
    ]);
    assert!(!env.data().join("volumes/vol2/_data/a").exists());
    // an anonymous volume is filled too
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "/seed",
        "seeded:1",
        "cat",
        "/seed/a",
    ]);
    assert_eq!(out, "hi\n");
    // the image's symlink to a host path is resolved inside the image: the host's files
    // never reach the volume
    env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "vol3:/evil",
        "seeded:1",
        "true",
    ]);
    let got: Vec<_> = std::fs::read_dir(env.data().join("volumes/vol3/_data"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(got.is_empty(), "the host's directory was copied: {got:?}");
    assert_eq!(
        std::fs::read_to_string(secret.join("key")).unwrap(),
        "host only\n"
    );
}

#[test]
fn health_checks_run_in_the_container_and_show_in_ps_inspect_and_events() {
    require_root!();
    let env = Env::new();
    let id = env.ok(&[
        "run",
        "-d",
        "--name",
        "hc",
        "--network",
        "none",
        "--health-cmd",
        "test -f /tmp/ok && echo fine",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        "busybox",
        "sleep",
        "100",
    ]);
    let id = id.trim();
    let status = || env.ok(&["inspect", "--format", "{{.State.Health.Status}}", "hc"]);
    // State.Health is there from the start, as docker's (it was missing until the prober's
    // first write, which made this test fail now and then under load)
    let first = status();
    assert!(matches!(first.trim(), "starting" | "unhealthy"), "{first}");
    wait_for("unhealthy", || status().trim() == "unhealthy");
    let ps = env.ok(&[
        "ps",
        "--filter",
        "health=unhealthy",
        "--format",
        "{{.Names}} {{.Status}}",
    ]);
    assert!(
        ps.starts_with("hc Up ") && ps.trim_end().ends_with("(unhealthy)"),
        "{ps}"
    );
    env.ok(&["exec", "hc", "touch", "/tmp/ok"]);
    wait_for("healthy", || status().trim() == "healthy");
    let log = env.ok(&["inspect", "--format", "{{json .State.Health}}", "hc"]);
    let h: serde_json::Value = serde_json::from_str(&log).unwrap();
    let last = h["Log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["ExitCode"], 0, "{h}");
    assert_eq!(last["Output"], "fine\n", "{h}");
    assert_eq!(h["FailingStreak"], 0);
    assert!(
        env.ok(&["ps", "--filter", "health=healthy", "-q"])
            .trim()
            .len()
            == 12
    );
    let until = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1)
    .to_string();
    let ev = env.ok(&[
        "events",
        "--since",
        "0",
        "--until",
        &until,
        "--filter",
        &format!("container={id}"),
        "--format",
        "{{.Action}}",
    ]);
    assert!(
        ev.contains("health_status: unhealthy") && ev.contains("health_status: healthy"),
        "{ev}"
    );
    // a check that outlives its timeout fails with Docker's message
    env.ok(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--network",
        "none",
        "--health-cmd",
        "sleep 5",
        "--health-interval",
        "100ms",
        "--health-timeout",
        "300ms",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "100",
    ]);
    wait_for("timed out", || {
        env.ok(&["inspect", "--format", "{{.State.Health.Status}}", "slow"])
            .trim()
            == "unhealthy"
    });
    let log = env.ok(&["inspect", "--format", "{{json .State.Health.Log}}", "slow"]);
    assert!(
        log.contains("Health check exceeded timeout (300ms)"),
        "{log}"
    );
    assert!(log.contains("\"ExitCode\":-1"), "{log}");
    // bad options are refused before anything is created
    let out = env.run(&["run", "--rm", "--health-interval", "5x", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    let out = env.run(&[
        "run",
        "--rm",
        "--no-healthcheck",
        "--health-cmd",
        "true",
        "busybox",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("--no-healthcheck conflicts"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn system_df_prune_and_ps_sizes() {
    require_root!();
    // a namespace of its own: `system prune` prunes networks, and opening the network
    // controller makes the default bridge where it runs
    let env = Env::with_netns();
    env.ok(&[
        "run",
        "--name",
        "writer",
        "--network",
        "none",
        "busybox",
        "dd",
        "if=/dev/zero",
        "of=/big",
        "bs=1000",
        "count=300",
    ]);
    env.ok(&[
        "run",
        "-d",
        "--name",
        "keeper",
        "--network",
        "none",
        "-v",
        "named1:/data",
        "-v",
        "/anon",
        "busybox",
        "sleep",
        "100",
    ]);
    env.ok(&["volume", "create", "spare"]);
    let ps = env.ok(&["ps", "-a", "-s", "--format", "{{.Names}} {{.Size}}"]);
    assert!(ps.contains("writer 300kB (virtual "), "{ps}");
    assert!(ps.contains("keeper 0B (virtual "), "{ps}");
    let df = env.ok(&["system", "df"]);
    let lines: Vec<&str> = df.lines().collect();
    assert!(
        lines[0].starts_with("TYPE")
            && lines[0].contains("TOTAL")
            && lines[0].ends_with("RECLAIMABLE"),
        "{df}"
    );
    let cols = |l: &str| {
        l.split("   ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(cols(lines[1])[..3], ["Images", "1", "1"], "{df}");
    assert_eq!(
        cols(lines[2]),
        ["Containers", "2", "1", "300kB", "300kB (100%)"],
        "{df}"
    );
    assert_eq!(cols(lines[3])[..3], ["Local Volumes", "3", "2"], "{df}");
    let json = env.ok(&["system", "df", "--format", "{{json .}}"]);
    assert_eq!(json.lines().count(), 4);
    // without -f and without a yes, nothing happens
    let out = env
        .command(&["container", "prune"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(stderr(&out).contains("WARNING! This will remove all stopped containers."));
    assert!(env.ok(&["ps", "-a", "-q"]).lines().count() == 2);
    let out = env.ok(&["container", "prune", "-f"]);
    assert!(
        out.starts_with("Deleted Containers:\n") && out.ends_with("Total reclaimed space: 300kB\n"),
        "{out}"
    );
    assert_eq!(env.ok(&["ps", "-a", "--format", "{{.Names}}"]), "keeper\n");
    // volume prune takes anonymous volumes only, unless -a; never one in use
    env.ok(&["volume", "create"]);
    let out = env.ok(&["volume", "prune", "-f"]);
    assert!(out.starts_with("Deleted Volumes:\n"), "{out}");
    assert_eq!(out.lines().nth(1).unwrap().len(), 64, "{out}");
    let left = env.ok(&["volume", "ls", "-q"]);
    assert!(
        left.contains("spare") && left.contains("named1") && left.contains("anon-"),
        "{left}"
    );
    let out = env.ok(&["volume", "prune", "-a", "-f"]);
    assert_eq!(
        out,
        "Deleted Volumes:\nspare\n\nTotal reclaimed space: 0B\n"
    );
    // images in use stay; once unused, prune -a takes them
    let out = env.ok(&["image", "prune", "-a", "-f"]);
    assert_eq!(out, "Total reclaimed space: 0B\n");
    env.ok(&["rm", "-f", "-v", "keeper"]);
    let out = env.ok(&["system", "prune", "-a", "-f", "--volumes"]);
    assert!(
        out.contains("untagged: busybox:latest\ndeleted: sha256:"),
        "{out}"
    );
    assert_eq!(env.ok(&["images", "-q"]), "");
    let df = env.ok(&["system", "df"]);
    assert!(
        df.lines()
            .nth(1)
            .unwrap()
            .starts_with("Images          0         0         0B"),
        "{df}"
    );
}

/// Kills a container's monitor and its init with SIGKILL, as a host crash would end both.
fn kill_everything(env: &Env, name: &str) {
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.data().join(format!(
            "containers/{}/state.json",
            env.ok(&["inspect", "-f", "{{.Id}}", name]).trim()
        )))
        .unwrap(),
    )
    .unwrap();
    let monitor = state["LongshoreMonitorPid"].as_i64().unwrap();
    let init = state["Pid"].as_i64().unwrap();
    assert!(monitor > 0 && init > 0, "{state}");
    for pid in [monitor, init] {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    wait_for("the init to die", || {
        !Path::new(&format!("/proc/{init}")).exists()
            || std::fs::read_to_string(format!("/proc/{init}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    });
}

#[test]
fn policies_survive_a_user_stop_and_a_crash_of_everything() {
    require_root!();
    let env = Env::new();
    for (name, policy) in [
        ("al", "always"),
        ("us", "unless-stopped"),
        ("no", "no"),
        ("st", "unless-stopped"),
    ] {
        env.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--restart",
            policy,
            "--network",
            "none",
            "busybox",
            "sleep",
            "1000",
        ]);
    }
    // a user's stop, then start: the policy applies again (the monitor restarts a kill)
    env.ok(&["stop", "-t", "0", "al"]);
    env.ok(&["start", "al"]);
    let pid = env.ok(&["inspect", "-f", "{{.State.Pid}}", "al"]);
    Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    wait_for("the restart of al", || {
        let now = env.ok(&["inspect", "-f", "{{.State.Status}} {{.State.Pid}}", "al"]);
        now.starts_with("running ") && now.trim_end() != format!("running {}", pid.trim())
    });
    // st was stopped by its user: it stays stopped across the crash
    env.ok(&["stop", "-t", "0", "st"]);
    // the host "crashes": monitors and containers die at once
    for name in ["al", "us", "no"] {
        kill_everything(&env, name);
    }
    // the daemon starts: al and us run again, no and st stay exited
    let tmp = env.data().join("d");
    std::fs::create_dir(&tmp).unwrap();
    let sock = format!("unix://{}/d.sock", tmp.display());
    let pidfile = tmp.join("d.pid");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let daemon = Kill(
        env.command(&["daemon", "-H", &sock, "-p", pidfile.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the daemon's socket", || tmp.join("d.sock").exists());
    let status = |n: &str| env.ok(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", n]);
    assert!(status("al").starts_with("running"), "{}", status("al"));
    assert!(status("us").starts_with("running"), "{}", status("us"));
    assert_eq!(status("no").trim(), "exited 255");
    assert_eq!(status("st").trim(), "exited 137");
    drop(daemon);
}

/// Issue 10's kill loop: the `longshore` process is killed with SIGKILL at pseudo-random
/// points of create, run, rm and commit; every command that follows still works, and
/// once everything is removed the store is consistent and nothing is left: no container
/// record, layer, mount or cgroup.
#[test]
fn killing_the_engine_anywhere_loses_nothing_and_leaks_nothing() {
    require_root!();
    let env = Env::new();
    let data = env.data().to_path_buf();
    env.ok(&[
        "run",
        "--name",
        "base",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
    let mut seed: u64 = std::process::id() as u64 | 1;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut killed = 0;
    let mut seen = std::collections::BTreeSet::new();
    for round in 0..24 {
        let name = format!("kl{round}");
        let tag = format!("kl:{round}");
        let args: Vec<&str> = match round % 4 {
            0 => vec![
                "create",
                "--name",
                &name,
                "--network",
                "none",
                "busybox",
                "sleep",
                "100",
            ],
            1 => vec![
                "run",
                "-d",
                "--name",
                &name,
                "--network",
                "none",
                "busybox",
                "sleep",
                "100",
            ],
            2 => vec!["rm", "-f", "base"],
            _ => vec!["commit", "base", &tag],
        };
        let mut child = env
            .command(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(next() % 40_000));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        // whatever was cut short, the next commands work
        let ps = env.run(&["ps", "-aq", "--no-trunc"]);
        assert!(ps.status.success(), "round {round}: ps: {}", stderr(&ps));
        seen.extend(stdout(&ps).lines().map(String::from));
        if let Ok(rd) = std::fs::read_dir(data.join("containers")) {
            seen.extend(
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.len() == 64),
            );
        }
        env.ok(&["images", "-q"]);
        if round % 4 == 2 {
            // recreate what rm took (or finish the rm the kill cut short)
            let _ = env.run(&["rm", "-f", "base"]);
            env.ok(&[
                "run",
                "--name",
                "base",
                "--network",
                "none",
                "busybox",
                "true",
            ]);
        }
    }
    assert!(killed > 0, "no command was killed before it finished");
    // everything can be removed, and then nothing is left
    for id in env.ok(&["ps", "-aq", "--no-trunc"]).lines() {
        env.ok(&["rm", "-f", "-v", id]);
    }
    for id in env.ok(&["images", "-q", "--no-trunc"]).lines() {
        let _ = env.run(&["rmi", "-f", id]);
    }
    assert_eq!(env.ok(&["ps", "-aq"]), "");
    let store = longshore_graph::Store::open(&data, longshore_graph::StoreOptions::default());
    // a fresh process opening the store cleans what a killed one left incomplete
    let store = store.unwrap();
    let rep = store.check(false).unwrap();
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
    let gc = store.gc().unwrap();
    let _ = gc;
    drop(store);
    let left: Vec<_> = std::fs::read_dir(data.join("containers"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 64)
        .collect();
    assert!(left.is_empty(), "container records left: {left:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = data.to_string_lossy().into_owned();
    let ours: Vec<&str> = mounts.lines().filter(|l| l.contains(&root)).collect();
    assert!(ours.is_empty(), "mounts left: {ours:#?}");
    // no cgroup and no runtime state of any container the test saw
    assert!(seen.len() >= 4, "{seen:?}");
    let mut left = Vec::new();
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap() {
        let hierarchy = hierarchy.unwrap().path();
        for id in &seen {
            // the spec's relative `longshore/<id>`, under the runtime's own parent
            for p in [
                hierarchy.join("longshore").join(id),
                hierarchy.join("longshore/longshore").join(id),
            ] {
                if p.exists() {
                    left.push(p);
                }
            }
        }
    }
    for id in &seen {
        let p = data.join("runtime").join(id);
        if p.exists() {
            left.push(p);
        }
    }
    assert!(left.is_empty(), "left behind: {left:#?}");
}

#[test]
fn a_create_killed_before_its_rename_is_swept_by_the_next_listing() {
    require_root!();
    let env = Env::new();
    let containers = env.data().join("containers");
    env.ok(&[
        "create",
        "--name",
        "keep",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
    let age = |dir: &std::path::Path| {
        std::fs::File::open(dir)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - Duration::from_secs(60))
            .unwrap();
    };
    // what a create killed between its mkdir and its rename leaves (a minute ago)
    let orphan = containers.join(format!(".new-{}", "a".repeat(64)));
    std::fs::create_dir(&orphan).unwrap();
    age(&orphan);
    // a create still running holds the lock of its directory
    let live = containers.join(format!(".new-{}", "b".repeat(64)));
    std::fs::create_dir(&live).unwrap();
    age(&live);
    let held = std::fs::File::open(&live).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();
    // a create between its mkdir and its lock: just made, not locked yet
    let young = containers.join(format!(".new-{}", "c".repeat(64)));
    std::fs::create_dir(&young).unwrap();
    let ps = env.ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert_eq!(ps.trim(), "keep");
    assert!(!orphan.exists(), "the orphan .new- directory was not swept");
    assert!(live.exists(), "a locked .new- directory was swept");
    assert!(young.exists(), "a .new- directory just made was swept");
    drop(held);
    std::fs::remove_dir(&live).unwrap();
    std::fs::remove_dir(&young).unwrap();
    // creating still works after a sweep
    env.ok(&[
        "create",
        "--name",
        "keep2",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
}

#[test]
fn init_reaps_orphans_forwards_signals_and_keeps_the_exit_code() {
    require_root!();
    let env = Env::new();
    let ps = env.ok(&[
        "run",
        "--rm",
        "--init",
        "--network",
        "none",
        "busybox",
        "ps",
        "-o",
        "pid,args",
    ]);
    assert!(
        ps.lines()
            .any(|l| l.trim() == "1 /sbin/docker-init -- ps -o pid,args"),
        "{ps}"
    );
    let out = env.run(&[
        "run",
        "--rm",
        "--init",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7));
    let out = env.run(&[
        "run",
        "--rm",
        "--init",
        "--network",
        "none",
        "busybox",
        "nosuch",
    ]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    // orphans are reparented to the init, which reaps them: no zombie stays
    env.ok(&[
        "run",
        "-d",
        "--init",
        "--name",
        "reaper",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do (sleep 0.1 &); done; sleep 100",
    ]);
    std::thread::sleep(Duration::from_millis(600));
    let ps = env.ok(&["exec", "reaper", "ps", "-o", "stat,args"]);
    assert!(
        !ps.lines().any(|l| l.trim_start().starts_with('Z')),
        "zombies: {ps}"
    );
    assert_eq!(
        env.ok(&["inspect", "-f", "{{.HostConfig.Init}}", "reaper"])
            .trim(),
        "true"
    );
    // stop's SIGTERM reaches the command through the init: it ends at once with 143
    let t = Instant::now();
    env.ok(&["stop", "-t", "20", "reaper"]);
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "stop waited for the kill timeout"
    );
    assert_eq!(
        env.ok(&["inspect", "-f", "{{.State.ExitCode}}", "reaper"])
            .trim(),
        "143"
    );
}

#[test]
fn network_connect_and_disconnect_a_running_container() {
    require_root!();
    let env = Env::with_netns();
    env.ok(&["network", "create", "--subnet", "10.252.1.0/24", "lsna"]);
    env.ok(&["network", "create", "--subnet", "10.252.2.0/24", "lsnb"]);
    for (name, net) in [("ca", "lsna"), ("cb", "lsnb")] {
        env.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            net,
            "busybox",
            "sleep",
            "300",
        ]);
    }
    env.ok(&["network", "connect", "--alias", "db", "lsna", "cb"]);
    let hosts = env.ok(&["exec", "ca", "cat", "/etc/hosts"]);
    assert!(
        hosts.contains(" cb db") || hosts.contains(" cb  db"),
        "{hosts}"
    );
    let ping = env.run(&["exec", "cb", "ping", "-c", "1", "-W", "2", "ca"]);
    assert!(ping.status.success(), "{}", stderr(&ping));
    env.ok(&["network", "disconnect", "lsna", "cb"]);
    let hosts = env.ok(&["exec", "ca", "cat", "/etc/hosts"]);
    // by name, not substring: a container's ID (its hostname here) may hold "cb"
    assert!(
        !hosts.split_whitespace().any(|w| w == "cb" || w == "db"),
        "{hosts}"
    );
    let again = env.run(&["network", "disconnect", "lsna", "cb"]);
    assert!(
        !again.status.success() && stderr(&again).contains("is not connected"),
        "{}",
        stderr(&again)
    );
    let stopped = env.run(&["network", "connect", "lsna", "nosuch"]);
    assert!(
        stderr(&stopped).contains("No such container"),
        "{}",
        stderr(&stopped)
    );
    env.ok(&["rm", "-f", "ca", "cb"]);
    env.ok(&["network", "rm", "lsna", "lsnb"]);
}

/// The engine's network jobs on stopped containers and on the first network: a created
/// container connected to a second network joins it at its start (eth1), and the network
/// it started on can be disconnected while it runs (eth0 goes). Both were refused before.
#[test]
fn network_connect_a_stopped_container_and_disconnect_its_first() {
    require_root!();
    let env = Env::with_netns();
    env.ok(&["network", "create", "--subnet", "10.252.3.0/24", "lsnc"]);
    env.ok(&["network", "create", "--subnet", "10.252.4.0/24", "lsnd"]);
    env.ok(&[
        "create",
        "--name",
        "cc",
        "--network",
        "lsnc",
        "busybox",
        "sleep",
        "300",
    ]);
    env.ok(&[
        "run",
        "-d",
        "--name",
        "cd",
        "--network",
        "lsnd",
        "busybox",
        "sleep",
        "300",
    ]);
    env.ok(&["network", "connect", "--alias", "db", "lsnd", "cc"]);
    env.ok(&["start", "cc"]);
    let addrs = env.ok(&["exec", "cc", "ip", "-4", "-o", "addr"]);
    assert!(
        addrs.contains("eth0") && addrs.contains("10.252.3."),
        "{addrs}"
    );
    assert!(
        addrs.contains("eth1") && addrs.contains("10.252.4."),
        "{addrs}"
    );
    let ping = env.run(&["exec", "cd", "ping", "-c", "1", "-W", "2", "db"]);
    assert!(ping.status.success(), "{}", stderr(&ping));
    env.ok(&["network", "disconnect", "lsnc", "cc"]);
    let links = env.ok(&["exec", "cc", "ip", "-o", "link"]);
    assert!(!links.contains("eth0") && links.contains("eth1"), "{links}");
    let ping = env.run(&["exec", "cc", "ping", "-c", "1", "-W", "2", "cd"]);
    assert!(ping.status.success(), "{}", stderr(&ping));
    env.ok(&["rm", "-f", "cc", "cd"]);
    env.ok(&["network", "rm", "lsnc", "lsnd"]);
}

/// `longshore daemon` on a socket in the test's data root, in the test's network
/// namespace; SIGTERM and wait on drop.
struct Daemon {
    child: std::process::Child,
    host: String,
}

impl Daemon {
    fn start(env: &Env) -> Daemon {
        Daemon::start_with(env, &[])
    }

    /// [`Daemon::start`] with global options before `daemon` (`--insecure-registry`).
    fn start_with(env: &Env, global: &[&str]) -> Daemon {
        let sock = env.data().join("d.sock");
        let host = format!("unix://{}", sock.display());
        let mut args = global.to_vec();
        args.extend(["daemon", "-H", &host]);
        let child = env
            .command(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let d = Daemon {
            child,
            host: format!("unix://{}", sock.display()),
        };
        wait_for("the daemon's socket", || {
            std::os::unix::net::UnixStream::connect(&sock).is_ok()
        });
        d
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the daemon's pid, our own child not yet waited for.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

/// Runs `args` in process and through the daemon (`-H`); both must give the same
/// stdout, stderr and exit code. Returns the output.
fn same(env: &Env, d: &Daemon, args: &[&str]) -> Output {
    let local = env.run(args);
    let mut with_host = vec!["-H", d.host.as_str()];
    with_host.extend_from_slice(args);
    let remote = env.run(&with_host);
    assert_eq!(
        (
            local.status.code(),
            timeless(&stdout(&local)),
            stderr(&local)
        ),
        (
            remote.status.code(),
            timeless(&stdout(&remote)),
            stderr(&remote)
        ),
        "{args:?}: in process (left) and through the daemon (right) differ"
    );
    local
}

/// `text` with docker's relative times ("3 seconds", "Less than a second") as `T`: two
/// runs of a command a moment apart may cross a second.
fn timeless(text: &str) -> String {
    let text = text.replace("Less than a second", "T");
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        let words: Vec<&str> = line.split(' ').collect();
        let mut i = 0;
        while i < words.len() {
            let w = words[i];
            if !w.is_empty()
                && w.chars().all(|c| c.is_ascii_digit())
                && words.get(i + 1).is_some_and(|n| n.starts_with("second"))
            {
                out.push('T');
                i += 2;
                if i < words.len() {
                    out.push(' ');
                }
                continue;
            }
            out.push_str(w);
            i += 1;
            if i < words.len() {
                out.push(' ');
            }
        }
    }
    // and the table padding that follows from them
    let mut squeezed = String::new();
    for c in out.chars() {
        if !(c == ' ' && squeezed.ends_with(' ')) {
            squeezed.push(c);
        }
    }
    squeezed
}

/// Like [`same`], for commands that change state: runs `args` through the daemon only
/// when `remote`, else in process.
fn either(env: &Env, d: &Daemon, remote: bool, args: &[&str]) -> Output {
    if !remote {
        return env.run(args);
    }
    let mut with_host = vec!["-H", d.host.as_str()];
    with_host.extend_from_slice(args);
    env.run(&with_host)
}

/// One side of a test run both ways: the command in process, or through the daemon.
#[derive(Clone, Copy)]
struct Side<'a> {
    env: &'a Env,
    d: &'a Daemon,
    remote: bool,
}

impl Side<'_> {
    /// `l` or `r`, for names and messages.
    fn name(&self) -> &'static str {
        if self.remote { "r" } else { "l" }
    }

    fn run(&self, args: &[&str]) -> Output {
        either(self.env, self.d, self.remote, args)
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{} {args:?}: {}",
            self.name(),
            stderr(&out)
        );
        stdout(&out)
    }

    /// Runs and expects exit `code` with `msg` on stderr.
    fn refused(&self, args: &[&str], code: i32, msg: &str) {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(code), "{} {args:?}", self.name());
        assert!(
            stderr(&out).contains(msg),
            "{} {args:?}: {}",
            self.name(),
            stderr(&out)
        );
    }
}

#[test]
fn client_mode_gives_the_same_output_and_exit_codes_as_in_process() {
    require_root!();
    let env = Env::with_netns();
    let d = Daemon::start(&env);
    let none = ["--network", "none"];
    for remote in [false, true] {
        let run = |args: &[&str]| {
            let mut a = vec!["run", "--rm"];
            a.extend_from_slice(&none);
            a.extend_from_slice(args);
            either(&env, &d, remote, &a)
        };
        let out = run(&["busybox", "echo", "hello"]);
        assert_eq!(
            (out.status.code(), stdout(&out)),
            (Some(0), "hello\n".into())
        );
        let out = run(&["busybox", "sh", "-c", "echo err >&2; exit 3"]);
        assert_eq!((out.status.code(), stderr(&out)), (Some(3), "err\n".into()));
        let out = run(&["busybox", "nosuchcmd"]);
        assert_eq!(
            out.status.code(),
            Some(127),
            "remote={remote} {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("executable file not found"),
            "{}",
            stderr(&out)
        );
        let out = run(&["busybox", "/etc/passwd"]);
        assert_eq!(
            out.status.code(),
            Some(126),
            "remote={remote} {}",
            stderr(&out)
        );
        let out = run(&["--pull", "never", "nosuchimage"]);
        assert_eq!(
            out.status.code(),
            Some(125),
            "remote={remote} {}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("No such image"), "{}", stderr(&out));
        // stdin with -i reaches the container and its end closes the container's stdin
        let mut c = if remote {
            env.command(&[
                "-H",
                &d.host,
                "run",
                "-i",
                "--rm",
                "--network",
                "none",
                "busybox",
                "wc",
                "-c",
            ])
        } else {
            env.command(&[
                "run",
                "-i",
                "--rm",
                "--network",
                "none",
                "busybox",
                "wc",
                "-c",
            ])
        };
        c.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"12345").unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(stdout(&out).trim(), "5", "remote={remote}");
    }
    wait_for("--rm removals", || env.ok(&["ps", "-aq"]).is_empty());
    // a detached container, then every read-only command both ways
    let id = env.ok(&[
        "-H",
        &d.host,
        "run",
        "-d",
        "--name",
        "cm-web",
        "--network",
        "none",
        "-l",
        "k=v",
        "busybox",
        "sh",
        "-c",
        "echo started; echo warn >&2; mkdir /x; exec sleep 100",
    ]);
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    env.ok(&[
        "create",
        "--name",
        "cm-created",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
    wait_for("the container's output", || {
        env.ok(&["logs", "cm-web"]) == "started\n"
    });
    for args in [
        &["ps"][..],
        &[
            "ps",
            "-a",
            "--format",
            "{{.ID}} {{.Image}} {{.Command}} {{.State}} {{.Names}} {{.Labels}}",
        ],
        &["ps", "-aq"],
        &["ps", "-a", "--no-trunc", "-q"],
        &[
            "ps",
            "-a",
            "-f",
            "name=cm-created",
            "--format",
            "{{.Names}}",
        ],
        &["ps", "-a", "-f", "status=running", "-q"],
        &["ps", "-l", "-q"],
        &["ps", "-n", "2", "-q"],
        &["ps", "--format", "table {{.Names}}\t{{.Image}}"],
        &["images"],
        &["images", "-q"],
        &[
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}",
        ],
        &["images", "busybox"],
        &[
            "inspect",
            "-f",
            "{{.State.Status}} {{.Name}} {{.Config.Image}}",
            "cm-web",
        ],
        &["inspect", "--type", "image", "-f", "{{.Id}}", "busybox"],
        &["inspect", "cm-created"],
        &["inspect", "nosuch"],
        &["logs", "cm-web"],
        &["logs", "-n", "1", "cm-web"],
        &["logs", "-t", "cm-web"],
        &["history", "busybox"],
        &["history", "-q", "--no-trunc", "busybox"],
        &["logs", "-f", "cm-created"],
        &[
            "exec",
            "cm-web",
            "sh",
            "-c",
            "echo in; echo err >&2; exit 4",
        ],
        &["exec", "cm-web", "nosuchcmd"],
        &["top", "cm-web"],
        &["diff", "cm-web"],
        &["port", "cm-web"],
        &["port", "cm-web", "80"],
        &[
            "version",
            "--format",
            "{{.Server.Version}} {{.Server.ApiVersion}} {{.Server.Os}}/{{.Server.Arch}}",
        ],
        &[
            "info",
            "--format",
            "{{.Containers}} {{.ContainersRunning}} {{.Images}} {{.Driver}}",
        ],
        &["volume", "ls"],
        &["network", "ls", "-q"],
        &["rm", "nosuch"],
        &["stop", "nosuch"],
        &["logs", "nosuch"],
        &["rmi", "nosuch"],
        &["ps", "--format", "{{.Nope}}"],
        &["ps", "-f", "bad"],
        // sizes, disk usage and stats come from the daemon as from the engine
        &["ps", "-s"],
        &["ps", "-a", "-s", "--format", "{{.Names}} {{.Size}}"],
        &["ps", "-a", "-s", "-q"],
        &["ps", "-a", "--format", "{{.Names}}: {{.Size}}"],
        &["system", "df"],
        &["system", "df", "-v"],
        &["system", "df", "--format", "{{json .}}"],
        &[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}} {{.ID}} {{.PIDs}}",
        ],
        &[
            "stats",
            "--no-stream",
            "-a",
            "--format",
            "{{.Container}} {{.Name}}",
        ],
        &[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}}",
            "cm-web",
            "cm-created",
        ],
        &["stats", "--no-stream", "nosuch"],
    ] {
        same(&env, &d, args);
    }
    // what the daemon's ps -s, df and stats say, not only that both say the same
    let sizes = env.ok(&[
        "-H",
        &d.host,
        "ps",
        "-a",
        "-s",
        "--format",
        "{{.Names}} {{.Size}}",
    ]);
    assert!(sizes.contains("cm-web 0B (virtual "), "{sizes}");
    assert!(!sizes.contains("virtual 0B"), "{sizes}");
    // a format naming .Size gets the sizes without -s, as docker's ps
    let sizes = env.ok(&[
        "-H",
        &d.host,
        "ps",
        "-a",
        "--format",
        "{{.Names}}: {{.Size}}",
    ]);
    assert!(sizes.contains("cm-web: 0B (virtual "), "{sizes}");
    let df = env.ok(&["-H", &d.host, "system", "df"]);
    assert!(df.starts_with("TYPE "), "{df}");
    assert!(
        df.lines()
            .nth(2)
            .unwrap()
            .starts_with("Containers      2         1"),
        "{df}"
    );
    let stats = env.ok(&["-H", &d.host, "stats", "--no-stream", "cm-web"]);
    let mut l = stats.lines();
    assert_eq!(
        l.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        [
            "CONTAINER",
            "ID",
            "NAME",
            "CPU",
            "%",
            "MEM",
            "USAGE",
            "/",
            "LIMIT",
            "MEM",
            "%",
            "PIDS"
        ],
        "{stats}"
    );
    let row: Vec<&str> = l.next().unwrap().split_whitespace().collect();
    assert_eq!(
        (row[0], row[1], row[7]),
        (&id[..12], "cm-web", "1"),
        "{stats}"
    );
    assert!(row[2].ends_with('%') && row[3].ends_with('B'), "{stats}");
    let out = same(
        &env,
        &d,
        &[
            "exec",
            "cm-web",
            "sh",
            "-c",
            "echo in; echo err >&2; exit 4",
        ],
    );
    assert_eq!(
        (out.status.code(), stdout(&out), stderr(&out)),
        (Some(4), "in\n".into(), "err\n".into())
    );
    // export and save give the same archives
    for (args, what) in [
        (&["export", "cm-web"][..], "export"),
        (&["save", "busybox"], "save"),
    ] {
        let a = env.run(args);
        let mut h = vec!["-H", d.host.as_str()];
        h.extend_from_slice(args);
        let b = env.run(&h);
        assert!(
            a.status.success() && b.status.success(),
            "{what}: {}",
            stderr(&b)
        );
        assert_eq!(tar_names(&a.stdout), tar_names(&b.stdout), "{what}");
        assert!(!tar_names(&a.stdout).is_empty(), "{what}");
    }
    // state changes through the daemon, seen in process
    let h = d.host.as_str();
    env.ok(&["-H", h, "pause", "cm-web"]);
    assert_eq!(
        env.ok(&["inspect", "-f", "{{.State.Status}}", "cm-web"])
            .trim(),
        "paused"
    );
    env.ok(&["-H", h, "unpause", "cm-web"]);
    env.ok(&["-H", h, "rename", "cm-web", "cm-web2"]);
    assert_eq!(env.ok(&["ps", "--format", "{{.Names}}"]).trim(), "cm-web2");
    // cp both ways
    let host_file = env.data().join("cp-in.txt");
    std::fs::write(&host_file, "copied\n").unwrap();
    env.ok(&["-H", h, "cp", host_file.to_str().unwrap(), "cm-web2:/x/"]);
    assert_eq!(
        env.ok(&["exec", "cm-web2", "cat", "/x/cp-in.txt"]),
        "copied\n"
    );
    let back = env.data().join("cp-out.txt");
    env.ok(&[
        "-H",
        h,
        "cp",
        "cm-web2:/x/cp-in.txt",
        back.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "copied\n");
    // tag, load, rmi
    env.ok(&["-H", h, "tag", "busybox", "cm-copy:v1"]);
    let saved = env.data().join("saved.tar");
    env.ok(&["-H", h, "save", "-o", saved.to_str().unwrap(), "cm-copy:v1"]);
    assert_eq!(
        env.ok(&["-H", h, "rmi", "cm-copy:v1"]),
        "Untagged: cm-copy:v1\n"
    );
    let out = same(&env, &d, &["rmi", "cm-copy:v1"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        env.ok(&["-H", h, "load", "-i", saved.to_str().unwrap()]),
        "Loaded image: cm-copy:v1\n"
    );
    assert_eq!(
        env.ok(&["-H", h, "rmi", "cm-copy:v1"]),
        "Untagged: cm-copy:v1\n"
    );
    // volumes and networks
    assert_eq!(env.ok(&["-H", h, "volume", "create", "cm-vol"]), "cm-vol\n");
    same(&env, &d, &["volume", "ls"]);
    same(
        &env,
        &d,
        &["volume", "inspect", "-f", "{{.Name}} {{.Driver}}", "cm-vol"],
    );
    assert_eq!(env.ok(&["-H", h, "volume", "rm", "cm-vol"]), "cm-vol\n");
    env.ok(&[
        "-H",
        h,
        "network",
        "create",
        "--subnet",
        "10.251.7.0/24",
        "-o",
        "com.docker.network.bridge.name=lscm0",
        "cm-net",
    ]);
    same(
        &env,
        &d,
        &["network", "inspect", "-f", "{{.Name}}", "cm-net"],
    );
    same(&env, &d, &["network", "ls", "--quiet"]);
    assert_eq!(env.ok(&["-H", h, "network", "rm", "cm-net"]), "cm-net\n");
    // stop, kill, wait, restart, start, rm with docker's answers and codes
    // start -a: the output and the container's exit code
    env.ok(&[
        "create",
        "--name",
        "cm-sa",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo sa; exit 6",
    ]);
    let out = env.run(&["-H", h, "start", "-a", "cm-sa"]);
    assert_eq!(
        (out.status.code(), stdout(&out)),
        (Some(6), "sa\n".into()),
        "{}",
        stderr(&out)
    );
    env.ok(&["-H", h, "rm", "cm-sa"]);
    env.ok(&["-H", h, "start", "cm-created"]);
    assert_eq!(env.ok(&["-H", h, "wait", "cm-created"]), "0\n");
    env.ok(&["-H", h, "restart", "-t", "1", "cm-web2"]);
    assert_eq!(env.ok(&["-H", h, "kill", "cm-web2"]), "cm-web2\n");
    assert_eq!(env.ok(&["-H", h, "wait", "cm-web2"]), "137\n");
    let out = env.run(&["-H", h, "rm", "cm-web2", "cm-created", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "cm-web2\ncm-created\n");
    // events of what happened, the same either way
    same(
        &env,
        &d,
        &[
            "events",
            "--since",
            "0",
            "--until",
            &now_secs(),
            "--format",
            "{{.Type}} {{.Action}}",
            "-f",
            "container=cm-created",
        ],
    );
    assert!(env.ok(&["ps", "-aq"]).is_empty());
    // commit, update and prunes through the daemon
    env.ok(&[
        "create",
        "--name",
        "cm-p",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
    let img = env.ok(&[
        "-H",
        h,
        "commit",
        "-m",
        "through the daemon",
        "cm-p",
        "cm-committed:v1",
    ]);
    assert!(img.starts_with("sha256:"), "{img}");
    assert_eq!(
        env.ok(&["images", "-q", "--no-trunc", "cm-committed:v1"])
            .trim(),
        img.trim()
    );
    same(&env, &d, &["history", "cm-committed:v1"]);
    assert_eq!(
        env.ok(&[
            "-H",
            h,
            "update",
            "-m",
            "64m",
            "--restart",
            "on-failure:2",
            "cm-p"
        ]),
        "cm-p\n"
    );
    assert_eq!(
        env.ok(&[
            "inspect",
            "-f",
            "{{.HostConfig.Memory}} {{.HostConfig.RestartPolicy.Name}}",
            "cm-p"
        ])
        .trim(),
        "67108864 on-failure"
    );
    let full = env.ok(&["inspect", "-f", "{{.Id}}", "cm-p"]);
    let out = env.ok(&["-H", h, "container", "prune", "-f"]);
    assert!(
        out.starts_with(&format!("Deleted Containers:\n{}", full.trim())),
        "{out}"
    );
    assert!(out.contains("Total reclaimed space: "), "{out}");
    env.ok(&["-H", h, "volume", "create", "cm-prune-vol"]);
    let out = env.ok(&["-H", h, "volume", "prune", "-a", "-f"]);
    assert!(out.contains("cm-prune-vol"), "{out}");
    env.ok(&["-H", h, "rmi", "cm-committed:v1"]);
    let out = env.ok(&["-H", h, "image", "prune", "-f"]);
    assert!(out.ends_with("Total reclaimed space: 0B\n"), "{out}");
}

/// `text` with IDs (runs of 12 or more hex digits) as `<id>`.
fn idless(text: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    for c in text.chars().chain(std::iter::once('\n')) {
        if c.is_ascii_hexdigit() {
            run.push(c);
            continue;
        }
        if run.len() >= 12 {
            out.push_str("<id>");
        } else {
            out.push_str(&run);
        }
        run.clear();
        out.push(c);
    }
    out.pop();
    out
}

#[test]
fn client_mode_prunes_as_in_process() {
    require_root!();
    let env = Env::with_netns();
    let d = Daemon::start(&env);
    let mut outputs = Vec::new();
    for remote in [false, true] {
        let ok = |args: &[&str]| {
            let out = either(&env, &d, remote, args);
            assert!(
                out.status.success(),
                "remote={remote} {args:?}: {}",
                stderr(&out)
            );
            stdout(&out)
        };
        // a stopped container with a file, a network no container uses, an anonymous
        // volume, a dangling image (its tag taken by a commit)
        ok(&[
            "run",
            "--name",
            "pr-c",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "echo data > /file",
        ]);
        ok(&["commit", "pr-c", "pr-img:1"]);
        ok(&["commit", "pr-c", "pr-img:1"]);
        ok(&[
            "network",
            "create",
            "-o",
            "com.docker.network.bridge.name=lspr0",
            "--subnet",
            "10.251.9.0/24",
            "pr-net",
        ]);
        ok(&["volume", "create"]);
        ok(&["volume", "create", "pr-named"]);
        // the question, and no without a yes
        let mut c = env.command(&if remote {
            vec!["-H", d.host.as_str(), "system", "prune"]
        } else {
            vec!["system", "prune"]
        });
        let out = c.stdin(std::process::Stdio::null()).output().unwrap();
        assert!(out.status.success());
        assert_eq!(
            stderr(&out),
            "WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n  - all dangling images\nAre you sure you want to continue? [y/N] "
        );
        assert_eq!(ok(&["ps", "-aq"]).lines().count(), 1, "remote={remote}");
        let out = ok(&["system", "prune", "-f", "--volumes"]);
        let sections: Vec<&str> = out.lines().filter(|l| l.starts_with("Deleted")).collect();
        assert_eq!(
            sections,
            [
                "Deleted Containers:",
                "Deleted Networks:",
                "Deleted Volumes:",
                "Deleted Images:"
            ],
            "remote={remote}: {out}"
        );
        assert!(out.contains("Deleted Networks:\npr-net\n\n"), "{out}");
        assert!(out.contains("\ndeleted: sha256:"), "{out}");
        assert!(
            out.contains("\n\nTotal reclaimed space: ") && !out.contains("space: 0B"),
            "remote={remote}: {out}"
        );
        outputs.push(idless(&out));
        assert_eq!(ok(&["ps", "-aq"]), "");
        assert!(!ok(&["network", "ls"]).contains("pr-net"));
        assert_eq!(ok(&["volume", "ls", "-q"]), "pr-named\n");
        // network prune alone, and nothing left to prune
        ok(&[
            "network",
            "create",
            "-o",
            "com.docker.network.bridge.name=lspr0",
            "--subnet",
            "10.251.9.0/24",
            "pr-net2",
        ]);
        assert_eq!(
            ok(&["network", "prune", "-f"]),
            "Deleted Networks:\npr-net2\n\n"
        );
        assert_eq!(ok(&["network", "prune", "-f"]), "");
        ok(&["volume", "rm", "pr-named"]);
        ok(&["rmi", "pr-img:1"]);
    }
    assert_eq!(
        outputs[0], outputs[1],
        "in process (left), through the daemon (right)"
    );
}

#[test]
fn group_verbs_listing_formats_and_filters_both_ways() {
    require_root!();
    let env = Env::with_netns();
    let d = Daemon::start(&env);
    let h = d.host.as_str();
    // docker's management-group verbs, in process and through the daemon
    for remote in [false, true] {
        let ok = |args: &[&str]| {
            let out = either(&env, &d, remote, args);
            assert!(
                out.status.success(),
                "remote={remote} {args:?}: {}",
                stderr(&out)
            );
            stdout(&out)
        };
        let out = ok(&[
            "container",
            "run",
            "--rm",
            "--network",
            "none",
            "busybox",
            "echo",
            "grouped",
        ]);
        assert_eq!(out, "grouped\n");
        ok(&[
            "container",
            "create",
            "--name",
            "gv-c",
            "--network",
            "none",
            "busybox",
            "true",
        ]);
        assert_eq!(
            ok(&["container", "inspect", "-f", "{{.Name}}", "gv-c"]),
            "/gv-c\n"
        );
        assert!(ok(&["image", "inspect", "-f", "{{.Id}}", "busybox"]).starts_with("sha256:"));
        let out = either(&env, &d, remote, &["container", "inspect", "busybox"]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "remote={remote}: an image is no container"
        );
        ok(&["image", "tag", "busybox", "gv-img:1"]);
        assert_eq!(ok(&["image", "rm", "gv-img:1"]), "Untagged: gv-img:1\n");
        assert!(ok(&["image", "history", "-q", "busybox"]).lines().count() >= 1);
        assert!(
            !ok(&["system", "info", "--format", "{{.Driver}}"])
                .trim()
                .is_empty()
        );
        assert_eq!(ok(&["container", "rm", "gv-c"]), "gv-c\n");
        // the global options before the group are kept
        let mut c = env.command(&["--log-level", "error", "container", "ls", "-aq"]);
        assert!(c.output().unwrap().status.success());
    }
    let help = env.ok(&["container", "--help"]);
    assert!(help.contains("Also, as at the top level: attach"), "{help}");
    // and the shell completions know them
    let bash = env.ok(&["completion", "bash"]);
    assert!(
        bash.contains("longshore__subcmd__container,run)"),
        "bash completion"
    );
    assert!(
        bash.contains("longshore__subcmd__image,rm)"),
        "bash completion"
    );
    let zsh = env.ok(&["completion", "zsh"]);
    let container_cmds = zsh
        .split("_longshore__subcmd__container_commands() {")
        .nth(1)
        .and_then(|rest| rest.split("\n}").next())
        .unwrap_or_default();
    assert!(
        container_cmds.contains("'run:Create and run a new container from an image'"),
        "zsh completion: {container_cmds}"
    );
    // a container, volumes and a network to list
    env.ok(&[
        "run",
        "-d",
        "--name",
        "gv-run",
        "--network",
        "none",
        "-v",
        "gv-used:/data",
        "busybox",
        "sleep",
        "100",
    ]);
    env.ok(&["volume", "create", "-l", "a=b", "gv-vol"]);
    env.ok(&[
        "network",
        "create",
        "-o",
        "com.docker.network.bridge.name=lsgv0",
        "--subnet",
        "10.251.11.0/24",
        "gv-net",
    ]);
    let envfile = env.data().join("exec.env");
    std::fs::write(&envfile, "A=from-file\n# a comment\nB=2\n").unwrap();
    let envfile = envfile.to_str().unwrap();
    let labelfile = env.data().join("labels");
    std::fs::write(&labelfile, "from=file\n# a comment\nk=file\n").unwrap();
    let labelfile = labelfile.to_str().unwrap();
    for remote in [false, true] {
        let out = either(
            &env,
            &d,
            remote,
            &[
                "create",
                "--name",
                "gv-l",
                "--label-file",
                labelfile,
                "-l",
                "k=flag",
                "--network",
                "none",
                "busybox",
                "true",
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            env.ok(&["inspect", "-f", "{{json .Config.Labels}}", "gv-l"]),
            "{\"from\":\"file\",\"k\":\"flag\"}\n",
            "remote={remote}"
        );
        env.ok(&["rm", "gv-l"]);
    }
    for args in [
        &["network", "ls"][..],
        &[
            "network",
            "ls",
            "--format",
            "{{.Name}} {{.Driver}} {{.Scope}}",
        ],
        &["network", "ls", "--format", "table {{.ID}}\t{{.Name}}"],
        &["network", "ls", "-f", "name=gv", "--format", "{{.Name}}"],
        &["network", "ls", "-f", "type=custom", "-q"],
        &["network", "ls", "-f", "driver=null", "-q"],
        &[
            "network",
            "ls",
            "--no-trunc",
            "-f",
            "name=gv-net",
            "--format",
            "{{.ID}}",
        ],
        &["network", "ls", "-f", "bogus=1"],
        &[
            "history",
            "--format",
            "{{.ID}}|{{.CreatedBy}}|{{.Size}}",
            "busybox",
        ],
        &["history", "--format", "table {{.ID}}\t{{.Size}}", "busybox"],
        &["history", "--format", "{{.Nope}}", "busybox"],
        &["volume", "ls", "-f", "name=gv-", "-q"],
        &["volume", "ls", "-f", "dangling=true", "-q"],
        &[
            "volume",
            "ls",
            "-f",
            "dangling=false",
            "--format",
            "{{.Name}}",
        ],
        &["volume", "ls", "-f", "label=a=b"],
        &["volume", "ls", "-f", "bogus=1"],
        &[
            "stats",
            "--no-stream",
            "--no-trunc",
            "--format",
            "{{.ID}} {{.Name}}",
            "gv-run",
        ],
        &[
            "exec",
            "--env-file",
            envfile,
            "-e",
            "B=3",
            "gv-run",
            "sh",
            "-c",
            "echo $A $B",
        ],
    ] {
        same(&env, &d, args);
    }
    // stats without --no-stream: the table redrawn every second, both ways (read until
    // the second drawing, then stopped)
    for remote in [false, true] {
        let mut args = vec!["stats", "--format", "{{.Name}} {{.PIDs}}", "gv-run"];
        if remote {
            args.splice(0..0, ["-H", h]);
        }
        let mut child = env
            .command(&args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while String::from_utf8_lossy(&seen).matches("\x1b[2J").count() < 2 {
            let n = std::io::Read::read(&mut out, &mut buf).unwrap();
            assert!(
                n > 0,
                "remote={remote}: stats ended: {:?}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
        let _ = child.kill();
        let _ = child.wait();
        let text = String::from_utf8_lossy(&seen);
        assert!(
            text.matches("\x1b[2J\x1b[Hgv-run 1\n").count() >= 1,
            "remote={remote}: {text:?}"
        );
    }
    // restart -s: the signal reaches the container's trap, both ways
    env.ok(&[
        "run",
        "-d",
        "--name",
        "gv-sig",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "trap 'echo got-usr1; exit 0' USR1; echo up; while true; do sleep 0.1; done",
    ]);
    for (i, remote) in [false, true].into_iter().enumerate() {
        wait_for("the trap", || {
            env.ok(&["logs", "gv-sig"]).matches("up").count() == i + 1
        });
        let out = either(
            &env,
            &d,
            remote,
            &["restart", "-s", "USR1", "-t", "20", "gv-sig"],
        );
        assert_eq!(
            stdout(&out),
            "gv-sig\n",
            "remote={remote}: {}",
            stderr(&out)
        );
        assert_eq!(
            env.ok(&["logs", "gv-sig"]).matches("got-usr1").count(),
            i + 1,
            "remote={remote}"
        );
    }
    env.ok(&["rm", "-f", "gv-sig"]);
    // and what they say
    let run = |args: &[&str]| env.ok(&maybe_remote(Some(h), args));
    assert_eq!(
        run(&["network", "ls", "-f", "name=gv", "--format", "{{.Name}}"]),
        "gv-net\n"
    );
    // -q: the IDs, as docker's (host and none have their names as IDs)
    let net_id = run(&["network", "inspect", "-f", "{{.Id}}", "gv-net"]);
    assert_eq!(
        run(&["network", "ls", "-f", "type=custom", "-q"]),
        format!("{}\n", &net_id[..12])
    );
    assert_eq!(run(&["network", "ls", "-f", "driver=null", "-q"]), "none\n");
    let full = run(&[
        "network",
        "ls",
        "--no-trunc",
        "-f",
        "name=gv-net",
        "--format",
        "{{.ID}}",
    ]);
    assert_eq!(full, net_id);
    assert!(full.trim().len() > 12, "{full}");
    let t = run(&["network", "ls", "--format", "table {{.ID}}\t{{.Name}}"]);
    assert!(t.starts_with("NETWORK ID     NAME\n"), "{t}");
    let out = env.run(&["network", "ls", "-f", "bogus=1"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("invalid filter 'bogus'"),
        "{}",
        stderr(&out)
    );
    let t = run(&["history", "--format", "table {{.ID}}\t{{.Size}}", "busybox"]);
    assert!(t.starts_with("IMAGE          SIZE\n"), "{t}");
    let hist = run(&["history", "--format", "{{.ID}}|{{.CreatedBy}}", "busybox"]);
    assert!(hist.lines().all(|l| l.split('|').count() == 2), "{hist}");
    assert_eq!(
        run(&["volume", "ls", "-f", "name=gv-", "-q"]),
        "gv-used\ngv-vol\n"
    );
    assert_eq!(
        run(&["volume", "ls", "-f", "dangling=true", "-q"]),
        "gv-vol\n"
    );
    assert_eq!(
        run(&["volume", "ls", "-f", "label=a=b", "--format", "{{.Name}}"]),
        "gv-vol\n"
    );
    let st = run(&[
        "stats",
        "--no-stream",
        "--no-trunc",
        "--format",
        "{{.ID}}",
        "gv-run",
    ]);
    assert_eq!(st.trim().len(), 64, "{st}");
    assert_eq!(
        run(&[
            "exec",
            "--env-file",
            envfile,
            "-e",
            "B=3",
            "gv-run",
            "sh",
            "-c",
            "echo $A $B"
        ]),
        "from-file 3\n"
    );
    env.ok(&["network", "rm", "gv-net"]);
}

fn now_secs() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string()
}

fn tar_names(data: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(data);
    let mut names: Vec<String> = a
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn client_mode_refuses_what_it_cannot_do_and_runs_nothing_in_process() {
    require_root!();
    let env = Env::with_netns();
    let d = Daemon::start(&env);
    env.ok(&[
        "create",
        "--name",
        "cm-c",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
    let before = env.ok(&["images", "-q"]);
    // (stats, system df and prune, ps -s work through the daemon since session 6)
    let out = env.run(&[
        "-H",
        d.host.as_str(),
        "run",
        "--lxc-conf",
        "lxc.x=1",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("not supported against a daemon yet"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.ok(&["images", "-q"]), before);
    assert_eq!(env.ok(&["ps", "-aq"]).lines().count(), 1);
    // a daemon that is not there is a clear error, and nothing runs in process
    let out = env.run(&[
        "-H",
        "unix:///nonexistent/longshore.sock",
        "run",
        "--rm",
        "busybox",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("Cannot connect"), "{}", stderr(&out));
    let mut c = env.command(&["ps", "-aq"]);
    c.env("DOCKER_HOST", "unix:///nonexistent/longshore.sock");
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(125), "DOCKER_HOST is honoured");
    let mut c = env.command(&["ps", "-aq"]);
    c.env("LONGSHORE_HOST", &d.host)
        .env("DOCKER_HOST", "unix:///nonexistent/x.sock");
    let out = c.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "LONGSHORE_HOST before DOCKER_HOST: {}",
        stderr(&out)
    );
    let out = env.run(&["-H", "ssh://x", "ps"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("unsupported protocol"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn client_mode_sends_health_checks_to_the_daemon() {
    require_root!();
    let env = Env::with_netns();
    let d = Daemon::start(&env);
    let h = d.host.as_str();
    env.ok(&[
        "-H",
        h,
        "run",
        "-d",
        "--name",
        "cm-hc",
        "--network",
        "none",
        "--health-cmd",
        "test -e /tmp/ok",
        "--health-interval",
        "300ms",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "300",
    ]);
    let status = || env.ok(&["inspect", "-f", "{{.State.Health.Status}}", "cm-hc"]);
    wait_for("unhealthy", || status().trim() == "unhealthy");
    let cfg = env.ok(&["inspect", "-f", "{{json .Config.Healthcheck}}", "cm-hc"]);
    assert!(
        cfg.contains("test -e /tmp/ok") && cfg.contains("300000000"),
        "{cfg}"
    );
    env.ok(&["-H", h, "exec", "cm-hc", "touch", "/tmp/ok"]);
    wait_for("healthy", || status().trim() == "healthy");
    // --no-healthcheck reaches the daemon as Test ["NONE"]
    env.ok(&[
        "-H",
        h,
        "create",
        "--name",
        "cm-nohc",
        "--network",
        "none",
        "--no-healthcheck",
        "busybox",
        "true",
    ]);
    let cfg = env.ok(&["inspect", "-f", "{{json .Config.Healthcheck}}", "cm-nohc"]);
    assert!(cfg.contains("NONE"), "{cfg}");
    env.ok(&["rm", "-f", "cm-hc", "cm-nohc"]);
}

#[test]
fn client_mode_run_and_exec_it_under_a_pseudo_terminal() {
    require_root!();
    let env = Env::with_netns();
    let d = Daemon::start(&env);
    let pty = |cmd: String, input: &[&[u8]]| {
        let mut c = Command::new("script");
        c.args(["-qec", &cmd, "/dev/null"])
            .env("LONGSHORE_ROOT", env.data())
            .env_remove("DOCKER_HOST")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        {
            let mut w = child.stdin.take().unwrap();
            for i in input {
                std::io::Write::write_all(&mut w, i).unwrap();
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        child.wait_with_output().unwrap()
    };
    let out = pty(
        format!(
            "stty rows 40 cols 100; {BIN} -H {} run -it --rm --network none busybox sh",
            d.host
        ),
        &[
            b"tty -s && echo on-a-tty; stty size; echo $TERM\n",
            b"exit 7\n",
        ],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(7), "{text} {}", stderr(&out));
    assert!(text.contains("on-a-tty"), "{text}");
    // the client's window size reached the container's terminal
    assert!(text.contains("40 100"), "{text}");
    wait_for("removal", || env.ok(&["ps", "-aq"]).is_empty());
    env.ok(&[
        "-H",
        &d.host,
        "run",
        "-d",
        "--name",
        "cm-it",
        "--network",
        "none",
        "busybox",
        "sleep",
        "100",
    ]);
    let out = pty(
        format!(
            "stty rows 33 cols 77; {BIN} -H {} exec -it cm-it sh",
            d.host
        ),
        &[b"tty -s && echo exec-on-a-tty; stty size\n", b"exit 5\n"],
    );
    assert!(stdout(&out).contains("33 77"), "{}", stdout(&out));
    assert_eq!(
        out.status.code(),
        Some(5),
        "{} {}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("exec-on-a-tty"), "{}", stdout(&out));
    // detach keys leave the container running
    env.ok(&[
        "-H",
        &d.host,
        "run",
        "-dit",
        "--name",
        "cm-detach",
        "--network",
        "none",
        "busybox",
        "sh",
    ]);
    let out = pty(
        format!("{BIN} -H {} attach cm-detach", d.host),
        &[b"echo attached-here\n", b"\x10\x11"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{} {}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("attached-here"), "{}", stdout(&out));
    assert_eq!(
        env.ok(&["inspect", "-f", "{{.State.Running}}", "cm-detach"])
            .trim(),
        "true"
    );
    // start -ai --detach-keys, in process and through the daemon: ctrl-x leaves it running
    for (name, remote) in [("cm-sd-local", ""), ("cm-sd-remote", d.host.as_str())] {
        env.ok(&[
            "create",
            "-it",
            "--name",
            name,
            "--network",
            "none",
            "busybox",
            "sh",
        ]);
        let h = if remote.is_empty() {
            String::new()
        } else {
            format!("-H {remote} ")
        };
        let out = pty(
            format!("{BIN} {h}start -ai --detach-keys ctrl-x {name}"),
            &[b"echo started-here\n", b"\x18"],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: {} {}",
            stdout(&out),
            stderr(&out)
        );
        assert!(stdout(&out).contains("started-here"), "{}", stdout(&out));
        assert_eq!(
            env.ok(&["inspect", "-f", "{{.State.Running}}", name])
                .trim(),
            "true",
            "{name}"
        );
        env.ok(&["rm", "-f", name]);
    }
}

#[test]
fn client_mode_publishes_ports_on_the_bridge() {
    require_root!();
    let env = Env::with_netns();
    let ns = env.netns.clone().unwrap();
    // an address of the "host" to reach the published port through
    let st = Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(["sh", "-c", "ip link add lsd0 type veth peer name lsd1 && ip addr add 10.250.0.1/24 dev lsd0 && ip link set lsd0 up && ip link set lsd1 up"])
        .status()
        .unwrap();
    assert!(st.success());
    let d = Daemon::start(&env);
    let h = d.host.as_str();
    env.ok(&[
        "-H", h, "run", "-d", "--name", "cm-httpd", "-p", "18080:80", "-p", "9090/udp", "busybox",
        "httpd", "-f", "-p", "80", "-h", "/etc",
    ]);
    let local = env.ok(&["port", "cm-httpd"]);
    let remote = env.ok(&["-H", h, "port", "cm-httpd"]);
    assert_eq!(local, remote);
    assert!(local.contains("80/tcp -> 0.0.0.0:18080"), "{local}");
    assert_eq!(
        env.ok(&["-H", h, "port", "cm-httpd", "80"]),
        "0.0.0.0:18080\n"
    );
    assert_eq!(
        env.ok(&["ps", "--format", "{{.Ports}}"]),
        env.ok(&["-H", h, "ps", "--format", "{{.Ports}}"])
    );
    let mut got = String::new();
    wait_for("httpd", || {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", ns.display()))
            .args(["curl", "-s", "-m", "3", "http://10.250.0.1:18080/passwd"])
            .output()
            .unwrap();
        got = stdout(&out);
        got.contains("root:x:0:0")
    });
}

fn registry_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("longshore-cli-reg-")
        .tempdir()
        .unwrap()
}

/// A docker-registry that wants a login (htpasswd, bcrypt) of `user`/`password`.
fn htpasswd_registry(
    user: &str,
    password: &str,
) -> longshore_test_support::registry::RegistryServer {
    let htpasswd = Command::new("htpasswd")
        .args(["-Bbn", user, password])
        .output()
        .expect("htpasswd (apache2-utils)");
    let pdir = registry_dir();
    let hp = pdir.path().join("htpasswd");
    std::fs::write(&hp, htpasswd.stdout).unwrap();
    longshore_test_support::registry::RegistryServer::start(
        pdir,
        &format!(
            "auth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n",
            hp.display()
        ),
    )
}

/// `with_host` prefixed by `-H HOST` when given.
fn maybe_remote<'a>(host: Option<&'a str>, args: &[&'a str]) -> Vec<&'a str> {
    let mut a = Vec::new();
    if let Some(h) = host {
        a.extend(["-H", h]);
    }
    a.extend_from_slice(args);
    a
}

/// An open docker-registry and one that wants `user`'s login, a private data root and a
/// daemon that reaches both over plain HTTP, all on the host's loopback (only images and
/// registries are used, so nothing touches the host's network).
struct Registries {
    d: Daemon,
    env: Env,
    private: longshore_test_support::registry::RegistryServer,
    open: longshore_test_support::registry::RegistryServer,
    config: PathBuf,
}

impl Registries {
    fn start(user: &str, password: &str) -> Registries {
        let open = longshore_test_support::registry::RegistryServer::start(registry_dir(), "");
        let private = htpasswd_registry(user, password);
        let env = Env::new();
        let config = env.data().join("docker-config");
        let d = Daemon::start_with(
            &env,
            &[
                "--insecure-registry",
                &open.addr,
                "--insecure-registry",
                &private.addr,
            ],
        );
        Registries {
            d,
            env,
            private,
            open,
            config,
        }
    }

    /// Runs `args` with the config directory and both registries reachable, through the
    /// daemon when `host` is given.
    fn run(&self, host: Option<&str>, args: &[&str]) -> Output {
        let mut a = vec![
            "--config",
            self.config.to_str().unwrap(),
            "--insecure-registry",
            &self.open.addr,
            "--insecure-registry",
            &self.private.addr,
        ];
        a.extend(maybe_remote(host, args));
        self.env.run(&a)
    }

    /// [`Registries::run`], expecting success; returns stdout.
    fn ok(&self, host: Option<&str>, args: &[&str]) -> String {
        let out = self.run(host, args);
        assert!(
            out.status.success(),
            "{host:?} {args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }
}

#[test]
fn push_pull_search_login_logout_against_a_registry_both_ways() {
    require_root!();
    let r = Registries::start("alice", "s3cret");
    let (env, open, private, d) = (&r.env, &r.open, &r.private, &r.d);
    let config = r.config.clone();
    let cfg = config.to_str().unwrap();
    for host in [None, Some(d.host.as_str())] {
        let tag = if host.is_some() { "remote" } else { "local" };
        let run = |args: &[&str]| r.run(host, args);
        let okr = |args: &[&str]| r.ok(host, args);
        // push to the open registry: docker's lines
        let name = format!("{}/cm/busybox:{tag}", open.addr);
        okr(&["tag", "busybox", &name]);
        let out = okr(&["push", &name]);
        assert!(
            out.contains(&format!(
                "The push refers to repository [{}/cm/busybox]",
                open.addr
            )),
            "{out}"
        );
        assert!(
            out.contains(": Pushed") || out.contains(": Layer already exists"),
            "{out}"
        );
        assert!(out.contains(&format!("{tag}: digest: sha256:")), "{out}");
        assert!(out.contains(" size: "), "{out}");
        // pull it back under a new name (plain lines: no bars off a terminal)
        okr(&["rmi", &name]);
        let out = okr(&["pull", &name]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], format!("{tag}: Pulling from cm/busybox"), "{out}");
        assert!(
            lines
                .iter()
                .any(|l| l.ends_with(": Already exists") || l.ends_with(": Pull complete")),
            "{out}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("Digest: sha256:")),
            "{out}"
        );
        assert!(
            lines.contains(&format!("Status: Downloaded newer image for {name}").as_str()),
            "{out}"
        );
        assert_eq!(*lines.last().unwrap(), name, "{out}");
        assert!(!out.contains('\x1b') && !out.contains("[="), "{out}");
        let out = okr(&["pull", "-q", &name]);
        assert_eq!(out, format!("{name}\n"));
        let out = run(&["pull", &format!("{}/cm/nosuch:v1", open.addr)]);
        assert_ne!(out.status.code(), Some(0), "{tag}");
        // search the registry's catalog
        let out = okr(&["search", &format!("{}/cm", open.addr)]);
        let mut l = out.lines();
        assert_eq!(
            l.next().unwrap().split_whitespace().collect::<Vec<_>>(),
            ["NAME", "DESCRIPTION", "STARS", "OFFICIAL"],
            "{out}"
        );
        assert!(out.contains("cm/busybox"), "{out}");
        let out = okr(&[
            "search",
            "--format",
            "{{.Name}}:{{.StarCount}}",
            "--limit",
            "1",
            &format!("{}/cm", open.addr),
        ]);
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.ends_with(":0\n"), "{out}");
        let out = okr(&[
            "search",
            "-f",
            "stars=3",
            "--format",
            "{{.Name}}",
            &format!("{}/cm", open.addr),
        ]);
        assert_eq!(out, "", "stars=3 leaves nothing");
        let out = run(&["search", "-f", "bogus=1", &format!("{}/cm", open.addr)]);
        assert_ne!(out.status.code(), Some(0));
        assert!(stderr(&out).contains("invalid filter"), "{}", stderr(&out));
        // the private registry: refused, then login, push, logout, refused again
        let pname = format!("{}/cm/private:{tag}", private.addr);
        okr(&["tag", "busybox", &pname]);
        let out = run(&["push", &pname]);
        assert_ne!(out.status.code(), Some(0), "{tag}: push without login");
        let mut c = env.command(&{
            let mut a = vec!["--config", cfg];
            a.extend(maybe_remote(
                host,
                &["login", "-u", "alice", "--password-stdin", &private.addr],
            ));
            a
        });
        c.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"wrong\n").unwrap();
        let out = child.wait_with_output().unwrap();
        assert_ne!(out.status.code(), Some(0), "{tag}: a wrong password");
        assert!(
            !config.join("config.json").exists()
                || !std::fs::read_to_string(config.join("config.json"))
                    .unwrap()
                    .contains(&private.addr)
        );
        let out = okr(&["login", "-u", "alice", "-p", "s3cret", &private.addr]);
        assert_eq!(out, "Login Succeeded\n");
        let saved = std::fs::read_to_string(config.join("config.json")).unwrap();
        assert!(saved.contains(&private.addr), "{saved}");
        assert!(
            saved.contains("YWxpY2U6czNjcmV0"),
            "base64 alice:s3cret: {saved}"
        );
        let out = okr(&["push", &pname]);
        assert!(out.contains(&format!("{tag}: digest: sha256:")), "{out}");
        // another user (a config without the login) gets nothing of it: the daemon uses
        // a request's X-Registry-Auth for that request only, as Docker's does
        let other = env.data().join("other-config");
        let mut a = vec![
            "--config",
            other.to_str().unwrap(),
            "--insecure-registry",
            &private.addr,
        ];
        a.extend(maybe_remote(host, &["push", &pname]));
        let out = env.run(&a);
        assert_ne!(
            out.status.code(),
            Some(0),
            "{tag}: push by a client that never logged in: {}",
            stdout(&out)
        );
        assert_eq!(
            okr(&["logout", &private.addr]),
            format!("Removing login credentials for {}\n", private.addr)
        );
        assert_eq!(
            okr(&["logout", &private.addr]),
            format!("Not logged in to {}\n", private.addr)
        );
        let out = run(&["push", &pname]);
        assert_ne!(out.status.code(), Some(0), "{tag}: push after logout");
    }
}

#[test]
fn client_mode_forwards_signals_to_the_container() {
    require_root!();
    let env = Env::with_netns();
    let d = Daemon::start(&env);
    let mut child = env
        .command(&[
            "-H",
            &d.host,
            "run",
            "--rm",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "trap 'echo got-term; exit 9' TERM; echo ready; while true; do sleep 0.1; done",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 6];
    std::io::Read::read_exact(&mut out, &mut first).unwrap();
    assert_eq!(&first, b"ready\n");
    // (nsenter execs the client: the child is the client itself)
    let client = child.id() as i32;
    // SAFETY: kill(2) on the client process this test started.
    unsafe {
        libc::kill(client, libc::SIGTERM);
    }
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(rest, "got-term\n");
    assert_eq!(status.code(), Some(9));
}

/// Test certificates (openssl): a CA, a server certificate for 127.0.0.1, a client
/// certificate of the CA (cert.pem/key.pem, as DOCKER_CERT_PATH holds them), and another
/// CA.
fn make_certs(dir: &Path) {
    let script = r#"set -e
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() { key "$1-key.pem"; openssl req -x509 -new -key "$1-key.pem" -out "$1.pem" -days 2 -subj "/CN=longshore-test-$1"; }
leaf() {
  key "$1-key.pem"; openssl req -new -key "$1-key.pem" -out "$1.csr" -subj "/CN=$1"
  printf "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2-key.pem" -CAcreateserial -out "$1-cert.pem" -days 2 -extfile "$1.ext" 2>/dev/null
}
ca ca; ca other
leaf server ca 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n'
leaf client ca 'extendedKeyUsage=clientAuth\n'
mv client-cert.pem cert.pem; mv client-key.pem key.pem
"#;
    let st = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .status()
        .expect("openssl");
    assert!(st.success(), "making the test certificates failed");
}

#[test]
fn client_mode_over_tls_with_a_client_certificate() {
    require_root!();
    let env = Env::with_netns();
    let certs = env.data().join("certs");
    std::fs::create_dir(&certs).unwrap();
    make_certs(&certs);
    let c = |n: &str| certs.join(n).to_str().unwrap().to_string();
    // the test's own network namespace: its loopback has no other listener
    let port = 2376;
    let addr = format!("tcp://127.0.0.1:{port}");
    let child = env
        .command(&[
            "daemon",
            "-H",
            &addr,
            "--tlsverify",
            "--tlscacert",
            &c("ca.pem"),
            "--tlscert",
            &c("server-cert.pem"),
            "--tlskey",
            &c("server-key.pem"),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let d = Daemon {
        child,
        host: addr.clone(),
    };
    let tls = [
        "--tlsverify",
        "--tlscacert",
        &c("ca.pem"),
        "--tlscert",
        &c("cert.pem"),
        "--tlskey",
        &c("key.pem"),
    ];
    wait_for("the daemon on TLS", || {
        let mut a: Vec<&str> = vec!["-H", &d.host];
        a.extend_from_slice(&tls);
        a.push("version");
        env.run(&a).status.success()
    });
    let with = |extra: &[&str], args: &[&str]| {
        let mut a: Vec<&str> = vec!["-H", &d.host];
        a.extend_from_slice(extra);
        a.extend_from_slice(args);
        env.run(&a)
    };
    // attached run (a duplex TLS stream), stdin, exit codes
    let out = with(
        &tls,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "echo over-tls; exit 3",
        ],
    );
    assert_eq!(
        (out.status.code(), stdout(&out)),
        (Some(3), "over-tls\n".into()),
        "{}",
        stderr(&out)
    );
    let mut cmd = env.command(&{
        let mut a: Vec<&str> = vec!["-H", &d.host];
        a.extend_from_slice(&tls);
        a.extend([
            "run",
            "-i",
            "--rm",
            "--network",
            "none",
            "busybox",
            "wc",
            "-c",
        ]);
        a
    });
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"123456").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out).trim(), "6");
    // DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, as docker's client reads them
    let mut cmd = env.command(&["ps", "-a", "--format", "{{.Names}}"]);
    cmd.env("DOCKER_HOST", &d.host)
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", &certs);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // refused: a server of another CA, no client certificate, plain HTTP
    let out = with(
        &[
            "--tlsverify",
            "--tlscacert",
            &c("other.pem"),
            "--tlscert",
            &c("cert.pem"),
            "--tlskey",
            &c("key.pem"),
        ],
        &["ps"],
    );
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("UnknownIssuer"), "{}", stderr(&out));
    let out = with(&["--tls"], &["ps"]);
    assert_eq!(out.status.code(), Some(125));
    let out = with(&[], &["ps"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("--tls"), "{}", stderr(&out));
    let out = with(&["--tlsverify", "--tlscacert", &c("nosuch.pem")], &["ps"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("nosuch.pem"), "{}", stderr(&out));
}

/// The seed's option tables (docker 1.4): `ps --before/--since/-n -1`, `tag -f`, in
/// process and through the daemon.
#[test]
fn seed_ps_before_since_last_and_tag_force_both_ways() {
    require_root!();
    let env = Env::with_netns();
    let d = Daemon::start(&env);
    for n in ["sd-a", "sd-b", "sd-c"] {
        env.ok(&[
            "create",
            "--name",
            n,
            "--network",
            "none",
            "busybox",
            "true",
        ]);
    }
    // --before/--since: containers in every state created before/after the one named
    let out = same(
        &env,
        &d,
        &["ps", "--before", "sd-c", "--format", "{{.Names}}"],
    );
    assert_eq!(stdout(&out), "sd-b\nsd-a\n");
    let out = same(
        &env,
        &d,
        &["ps", "--since", "sd-a", "--format", "{{.Names}}"],
    );
    assert_eq!(stdout(&out), "sd-c\nsd-b\n");
    let out = same(
        &env,
        &d,
        &[
            "ps",
            "--since",
            "sd-a",
            "--before",
            "sd-c",
            "-q",
            "--no-trunc",
        ],
    );
    assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));
    let out = same(&env, &d, &["ps", "--before", "sd-nosuch"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("sd-nosuch"), "{}", stderr(&out));
    // -n -1 is the seed's default: running ones only, as plain ps
    let out = same(&env, &d, &["ps", "-n", "-1", "-q"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    let out = same(&env, &d, &["ps", "-n", "1", "--format", "{{.Names}}"]);
    assert_eq!(stdout(&out), "sd-c\n");
    // tag -f: accepted, and a tag that exists is moved
    for remote in [false, true] {
        let ok = |args: &[&str]| {
            let out = either(&env, &d, remote, args);
            assert!(
                out.status.success(),
                "remote={remote} {args:?}: {}",
                stderr(&out)
            );
            stdout(&out)
        };
        ok(&["commit", "sd-a", "sd-img:other"]);
        ok(&["tag", "busybox", "sd-img:1"]);
        ok(&["tag", "-f", "sd-img:other", "sd-img:1"]);
        ok(&["tag", "--force", "sd-img:other", "sd-img:2"]);
        let other = ok(&["images", "-q", "sd-img:other"]);
        assert_eq!(ok(&["images", "-q", "sd-img:1"]), other, "remote={remote}");
        assert_eq!(ok(&["images", "-q", "sd-img:2"]), other, "remote={remote}");
        ok(&["rmi", "sd-img:1", "sd-img:2", "sd-img:other"]);
    }
}

/// The seed's `pull -a` and push of a whole repository (`push -a` today), `search
/// --automated/-s` and `login -e`, against a real registry, in process and via -H.
#[test]
fn pull_and_push_all_tags_and_seed_search_login_flags_both_ways() {
    require_root!();
    let r = Registries::start("bob", "pa55");
    let (open, private, d) = (&r.open, &r.private, &r.d);
    for host in [None, Some(d.host.as_str())] {
        let side = if host.is_some() { "remote" } else { "local" };
        let run = |args: &[&str]| r.run(host, args);
        let okr = |args: &[&str]| r.ok(host, args);
        let repo = format!("{}/at-{side}/bb", open.addr);
        for t in ["one", "two"] {
            okr(&["tag", "busybox", &format!("{repo}:{t}")]);
        }
        // push -a: every local tag of the repository
        let out = okr(&["push", "-a", &repo]);
        assert!(
            out.starts_with(&format!(
                "The push refers to repository [{}/at-{side}/bb]\n",
                open.addr
            )),
            "{out}"
        );
        assert!(out.contains("one: digest: sha256:"), "{out}");
        assert!(out.contains("two: digest: sha256:"), "{out}");
        assert!(!out.contains("latest"), "{out}");
        let pushed_digest = out
            .lines()
            .find_map(|l| l.strip_prefix("one: digest: "))
            .and_then(|l| l.split_whitespace().next())
            .unwrap()
            .to_string();
        // images --digests: the manifest the registry has, <none> for a local image
        let out = okr(&[
            "images",
            "--digests",
            "--format",
            "{{.Tag}} {{.Digest}}",
            &repo,
        ]);
        assert_eq!(out, format!("one {pushed_digest}\ntwo {pushed_digest}\n"));
        let out = okr(&["images", "--digests", "busybox"]);
        let mut l = out.lines();
        assert_eq!(
            l.next().unwrap().split_whitespace().collect::<Vec<_>>(),
            [
                "REPOSITORY",
                "TAG",
                "DIGEST",
                "IMAGE",
                "ID",
                "CREATED",
                "SIZE"
            ],
            "{out}"
        );
        assert_eq!(
            l.next()
                .unwrap()
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>(),
            ["busybox", "latest", "<none>"],
            "{out}"
        );
        let out = okr(&[
            "image",
            "inspect",
            "-f",
            "{{json .RepoDigests}}",
            &format!("{repo}:one"),
        ]);
        // (the local side's repository too, in the remote round: the same image)
        assert!(
            out.contains(&format!("\"{repo}@{pushed_digest}\"")),
            "{out}"
        );
        let out = run(&["push", "-a", &format!("{repo}:one")]);
        assert_eq!(out.status.code(), Some(125), "{side}");
        assert!(
            stderr(&out).contains("tag can't be used with --all-tags/-a"),
            "{}",
            stderr(&out)
        );
        let out = run(&[
            "push",
            "--all-tags",
            &format!("{}/at-{side}/none", open.addr),
        ]);
        assert_ne!(out.status.code(), Some(0), "{side}: nothing to push");
        assert!(
            stderr(&out).contains("An image does not exist locally with the tag"),
            "{}",
            stderr(&out)
        );
        // pull -a: every tag the registry has
        okr(&["rmi", &format!("{repo}:one"), &format!("{repo}:two")]);
        let out = okr(&["pull", "-a", &repo]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], format!("one: Pulling from at-{side}/bb"), "{out}");
        assert!(
            lines.contains(&format!("two: Pulling from at-{side}/bb").as_str()),
            "{out}"
        );
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.starts_with("Digest: sha256:"))
                .count(),
            2,
            "{out}"
        );
        assert!(
            lines.contains(&format!("Status: Downloaded newer image for {repo}").as_str()),
            "{out}"
        );
        assert_eq!(*lines.last().unwrap(), repo, "{out}");
        let tags = okr(&[
            "images",
            "--digests",
            "--format",
            "{{.Tag}} {{.Digest}}",
            &repo,
        ]);
        let mut tags: Vec<&str> = tags.lines().collect();
        tags.sort();
        assert_eq!(
            tags,
            [
                format!("one {pushed_digest}"),
                format!("two {pushed_digest}")
            ],
            "{side}: {}",
            okr(&["images"])
        );
        let out = okr(&["pull", "--all-tags", "-q", &repo]);
        assert_eq!(out, format!("{repo}\n"));
        let out = run(&["pull", "-a", &format!("{repo}:one")]);
        assert_eq!(out.status.code(), Some(125), "{side}");
        assert!(
            stderr(&out).contains("tag can't be used with --all-tags/-a"),
            "{}",
            stderr(&out)
        );
        let out = run(&["pull", "-a", &format!("{}/at-{side}/nosuch", open.addr)]);
        assert_ne!(out.status.code(), Some(0), "{side}: no such repository");
        // pull --platform: the single-platform image is the host's; another is refused
        let host_platform = format!(
            "linux/{}",
            match std::env::consts::ARCH {
                "x86_64" => "amd64",
                "aarch64" => "arm64",
                a => a,
            }
        );
        okr(&["rmi", &format!("{repo}:one")]);
        let out = okr(&["pull", "--platform", &host_platform, &format!("{repo}:one")]);
        assert!(out.contains("Digest: sha256:"), "{out}");
        okr(&["rmi", &format!("{repo}:one")]);
        let out = run(&["pull", "--platform", "linux/s390x", &format!("{repo}:one")]);
        assert_ne!(out.status.code(), Some(0), "{side}");
        assert!(
            stderr(&out).contains(&format!(
                "does not match the specified platform: wanted linux/s390x, actual: {host_platform}"
            )),
            "{}",
            stderr(&out)
        );
        assert_eq!(okr(&["images", "-q", &format!("{repo}:one")]), "", "{side}");
        let out = run(&["pull", "--platform", "linux", &format!("{repo}:one")]);
        assert_eq!(out.status.code(), Some(125), "{side}");
        assert!(
            stderr(&out).contains("invalid platform"),
            "{}",
            stderr(&out)
        );
        // search -s N / --automated: the stars= and is-automated= filters
        let term = format!("{}/at-{side}", open.addr);
        let out = okr(&["search", "-s", "0", "--format", "{{.Name}}", &term]);
        assert_eq!(out, format!("at-{side}/bb\n"));
        let out = okr(&["search", "--stars", "1", "--format", "{{.Name}}", &term]);
        assert_eq!(out, "");
        let out = okr(&["search", "--automated", "--format", "{{.Name}}", &term]);
        assert_eq!(out, "", "{side}: nothing automated in a private registry");
        // login -e: accepted (registries ignore it), said to be deprecated
        let out = run(&[
            "login",
            "-e",
            "bob@example.com",
            "-u",
            "bob",
            "-p",
            "pa55",
            &private.addr,
        ]);
        assert!(out.status.success(), "{side}: {}", stderr(&out));
        assert_eq!(stdout(&out), "Login Succeeded\n");
        assert!(
            stderr(&out).contains("--email has been deprecated"),
            "{}",
            stderr(&out)
        );
        okr(&["logout", &private.addr]);
    }
}

/// `exec -it --detach-keys` through the daemon leaves the exec'd shell running; in
/// process it is refused, saying why.
#[test]
fn exec_detach_keys_through_the_daemon_and_refused_in_process() {
    require_root!();
    let env = Env::with_netns();
    let d = Daemon::start(&env);
    env.ok(&[
        "run",
        "-d",
        "--name",
        "ed-c",
        "--network",
        "none",
        "busybox",
        "sleep",
        "100",
    ]);
    let mut c = Command::new("script");
    c.args([
        "-qec",
        &format!(
            "{BIN} -H {} exec -it --detach-keys ctrl-x,x ed-c sh",
            d.host
        ),
        "/dev/null",
    ])
    .env("LONGSHORE_ROOT", env.data())
    .env_remove("DOCKER_HOST")
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        let mut w = child.stdin.take().unwrap();
        for i in [&b"echo exec-here; sleep 77 &\n"[..], b"\x18x"] {
            std::io::Write::write_all(&mut w, i).unwrap();
            std::thread::sleep(Duration::from_millis(500));
        }
        // stdin stays open: only the keys may end the client
        wait_for("the exec client to leave", || {
            child.try_wait().unwrap().is_some()
        });
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{} {}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("exec-here"), "{}", stdout(&out));
    // the exec'd shell and its job are still there (ps in the container's pid namespace)
    let ps = env.ok(&["exec", "ed-c", "ps"]);
    assert!(ps.contains("sleep 77"), "{ps}");
    assert!(
        ps.lines().any(|l| l.trim_end().ends_with(" sh")),
        "the exec'd sh lives on: {ps}"
    );
    let out = env.run(&["exec", "-it", "--detach-keys", "ctrl-x", "ed-c", "sh"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("cannot be detached from") && stderr(&out).contains("-H"),
        "{}",
        stderr(&out)
    );
}

/// `logs --details`: the `--log-opt labels=/env=` attributes before each line, as
/// docker's, in process and through the daemon.
#[test]
fn logs_details_show_the_log_attributes_both_ways() {
    require_root!();
    let env = Env::with_netns();
    let d = Daemon::start(&env);
    env.ok(&[
        "run",
        "--name",
        "ld-attrs",
        "--network",
        "none",
        "--log-opt",
        "labels=app,nosuch",
        "--log-opt",
        "env=MODE",
        "-l",
        "app=a b",
        "-e",
        "MODE=x/y",
        "busybox",
        "sh",
        "-c",
        "echo one; echo two >&2",
    ]);
    env.ok(&[
        "run",
        "--name",
        "ld-plain",
        "--network",
        "none",
        "busybox",
        "echo",
        "plain",
    ]);
    let out = same(&env, &d, &["logs", "--details", "ld-attrs"]);
    assert_eq!(stdout(&out), "MODE=x%2Fy,app=a+b one\n");
    assert_eq!(stderr(&out), "MODE=x%2Fy,app=a+b two\n");
    // no attributes: docker's leading space
    let out = same(&env, &d, &["logs", "--details", "ld-plain"]);
    assert_eq!(stdout(&out), " plain\n");
    let out = same(&env, &d, &["logs", "ld-plain"]);
    assert_eq!(stdout(&out), "plain\n");
    // with -t: the time first, then the attributes
    let out = same(&env, &d, &["logs", "-t", "--details", "ld-attrs"]);
    let line = stdout(&out);
    let (time, rest) = line.split_once(' ').unwrap();
    assert!(time.ends_with('Z') && time.contains('T'), "{line}");
    assert_eq!(rest, "MODE=x%2Fy,app=a+b one\n");
    let out = same(&env, &d, &["logs", "--details", "ld-nosuch"]);
    assert_ne!(out.status.code(), Some(0));
}

/// `inspect -s`: SizeRw and SizeRootFs of a container (`?size=1` through the daemon).
#[test]
fn inspect_size_shows_the_containers_sizes_both_ways() {
    require_root!();
    let env = Env::with_netns();
    let d = Daemon::start(&env);
    env.ok(&[
        "run",
        "--name",
        "is-c",
        "--network",
        "none",
        "busybox",
        "dd",
        "if=/dev/zero",
        "of=/big",
        "bs=1000",
        "count=300",
    ]);
    let out = same(
        &env,
        &d,
        &["inspect", "-s", "-f", "{{.SizeRw}} {{.SizeRootFs}}", "is-c"],
    );
    let text = stdout(&out);
    let nums: Vec<u64> = text
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(nums[0] >= 300_000, "{text}");
    let image: u64 = env
        .ok(&["image", "inspect", "-f", "{{.Size}}", "busybox"])
        .trim()
        .parse()
        .unwrap();
    assert_eq!(nums[1], nums[0] + image, "{text}");
    let out = same(&env, &d, &["container", "inspect", "--size", "is-c"]);
    assert!(stdout(&out).contains("\"SizeRootFs\""), "{}", stdout(&out));
    // without -s: no sizes (docker leaves them out)
    let out = same(&env, &d, &["inspect", "is-c"]);
    assert!(!stdout(&out).contains("SizeRw"), "{}", stdout(&out));
    // an image takes -s too (its Size is always there)
    let out = same(&env, &d, &["inspect", "-s", "-f", "{{.Size}}", "busybox"]);
    assert_eq!(stdout(&out).trim(), image.to_string());
}

/// The prunes' `--filter until=/label=/label!=` (container, image, volume, network,
/// system), in process and through the daemon.
#[test]
fn prunes_take_until_and_label_filters_both_ways() {
    require_root!();
    let env = Env::with_netns();
    let d = Daemon::start(&env);
    let tar = env.data().join("rootfs.tar");
    let tar = tar.to_str().unwrap();
    let later = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600)
        .to_string();
    for remote in [false, true] {
        let s = Side {
            env: &env,
            d: &d,
            remote,
        };
        let side = if remote { "r" } else { "l" };
        let run = |args: &[&str]| s.run(args);
        let ok = |args: &[&str]| s.ok(args);
        let names = |args: &[&str]| -> Vec<String> {
            let mut v: Vec<String> = ok(args).lines().map(String::from).collect();
            v.sort();
            v
        };
        // containers
        let a = format!("pf-{side}-a");
        let b = format!("pf-{side}-b");
        let c = format!("pf-{side}-c");
        for (n, l) in [(&a, Some("tier=a")), (&b, Some("tier=b")), (&c, None)] {
            let mut args = vec!["create", "--name", n, "--network", "none"];
            if let Some(l) = l {
                args.extend(["-l", l]);
            }
            args.extend(["busybox", "true"]);
            ok(&args);
        }
        let ps = || names(&["ps", "-a", "--format", "{{.Names}}"]);
        let out = ok(&[
            "container",
            "prune",
            "-f",
            "--filter",
            "until=2001-01-01T00:00:00Z",
        ]);
        assert!(out.starts_with("Total reclaimed space"), "{side}: {out}");
        assert_eq!(ps().len(), 3, "{side}");
        let out = ok(&["container", "prune", "-f", "--filter", "label=tier=a"]);
        assert!(out.starts_with("Deleted Containers:\n"), "{side}: {out}");
        assert_eq!(ps(), [b.clone(), c.clone()], "{side}");
        ok(&["container", "prune", "-f", "--filter", "label!=tier"]);
        assert_eq!(ps(), std::slice::from_ref(&b), "{side}");
        ok(&[
            "container",
            "prune",
            "-f",
            "--filter",
            &format!("until={later}"),
        ]);
        assert!(ps().is_empty(), "{side}");
        // images (labels from import --change)
        let img = format!("pf-{side}-img:1");
        ok(&["import", "-c", "LABEL tier=a", tar, &img]);
        let other = format!("pf-{side}-other:1");
        ok(&["import", tar, &other]);
        let out = ok(&[
            "image",
            "prune",
            "-a",
            "-f",
            "--filter",
            "until=2001-01-01T00:00:00Z",
        ]);
        assert!(
            !out.contains(&img) && !out.contains(&other),
            "{side}: {out}"
        );
        let out = ok(&["image", "prune", "-a", "-f", "--filter", "label=tier=a"]);
        assert!(out.contains(&format!("untagged: {img}")), "{side}: {out}");
        assert!(!out.contains(&other), "{side}: {out}");
        assert_eq!(ok(&["images", "-q", &img]), "", "{side}");
        assert_ne!(ok(&["images", "-q", &other]), "", "{side}");
        ok(&["rmi", &other]);
        // volumes: label; docker's volume prune takes no until
        let va = format!("pf-{side}-va");
        let vb = format!("pf-{side}-vb");
        ok(&["volume", "create", "-l", "tier=a", &va]);
        ok(&["volume", "create", &vb]);
        let out = ok(&["volume", "prune", "-a", "-f", "--filter", "label=tier=a"]);
        assert!(out.contains(&va) && !out.contains(&vb), "{side}: {out}");
        let out = run(&["volume", "prune", "-a", "-f", "--filter", "until=1h"]);
        assert_eq!(out.status.code(), Some(125), "{side}");
        assert!(
            stderr(&out).contains("invalid filter 'until'"),
            "{}",
            stderr(&out)
        );
        ok(&["volume", "rm", &vb]);
        // networks: until (its creation) and label (networks carry none)
        let n = format!("pf-{side}-net");
        ok(&["network", "create", &n]);
        let nets = || names(&["network", "ls", "--format", "{{.Name}}"]);
        ok(&[
            "network",
            "prune",
            "-f",
            "--filter",
            "until=2001-01-01T00:00:00Z",
        ]);
        assert!(nets().contains(&n), "{side}");
        ok(&["network", "prune", "-f", "--filter", "label=tier"]);
        assert!(nets().contains(&n), "{side}");
        let out = ok(&["network", "prune", "-f", "--filter", "label!=tier"]);
        assert_eq!(out, format!("Deleted Networks:\n{n}\n\n"), "{side}");
        // system prune passes them on; until with --volumes is docker's error
        ok(&[
            "create",
            "--name",
            &a,
            "-l",
            "tier=a",
            "--network",
            "none",
            "busybox",
            "true",
        ]);
        ok(&[
            "create",
            "--name",
            &c,
            "--network",
            "none",
            "busybox",
            "true",
        ]);
        let out = ok(&["system", "prune", "-f", "--filter", "label=tier=a"]);
        assert!(out.starts_with("Deleted Containers:\n"), "{side}: {out}");
        assert_eq!(ps(), std::slice::from_ref(&c), "{side}");
        let out = run(&["system", "prune", "-f", "--volumes", "--filter", "until=1h"]);
        assert_eq!(out.status.code(), Some(125), "{side}");
        assert!(
            stderr(&out).contains("The \"until\" filter is not supported with \"--volumes\""),
            "{}",
            stderr(&out)
        );
        // bad filters: refused before anything is pruned
        let out = run(&["container", "prune", "-f", "--filter", "bogus=1"]);
        assert_eq!(out.status.code(), Some(125), "{side}");
        assert!(
            stderr(&out).contains("invalid filter 'bogus'"),
            "{}",
            stderr(&out)
        );
        let out = run(&["container", "prune", "-f", "--filter", "until=soon"]);
        assert_eq!(out.status.code(), Some(125), "{side}");
        assert!(
            stderr(&out).contains("invalid filter 'until=soon'"),
            "{}",
            stderr(&out)
        );
        assert_eq!(ps(), std::slice::from_ref(&c), "{side}");
        ok(&["rm", &c]);
    }
}

/// `volume create -o` of the local driver: a tmpfs or a bound host directory, mounted on
/// the volume's data directory and shared by its containers; `volume rm` unmounts and
/// leaves the host directory's files alone. In process and through the daemon.
#[test]
fn volume_create_opt_mounts_a_tmpfs_or_binds_a_directory_both_ways() {
    require_root!();
    let env = Env::with_netns();
    let d = Daemon::start(&env);
    let mounted = |name: &str| {
        let p = env.data().join("volumes").join(name).join("_data");
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(p.to_str().unwrap()))
    };
    for remote in [false, true] {
        let s = Side {
            env: &env,
            d: &d,
            remote,
        };
        let side = if remote { "r" } else { "l" };
        let run = |args: &[&str]| s.run(args);
        let ok = |args: &[&str]| s.ok(args);
        // tmpfs
        let vt = format!("vo-{side}-tmp");
        ok(&[
            "volume",
            "create",
            "-o",
            "type=tmpfs",
            "-o",
            "device=tmpfs",
            "-o",
            "o=size=1m,mode=0700",
            &vt,
        ]);
        assert!(
            mounted(&vt),
            "{side}: the tmpfs is on the volume's data directory"
        );
        assert_eq!(
            ok(&["volume", "inspect", "-f", "{{json .Options}}", &vt]),
            "{\"device\":\"tmpfs\",\"o\":\"size=1m,mode=0700\",\"type\":\"tmpfs\"}\n"
        );
        let mnt = format!("{vt}:/data");
        let out = ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &mnt,
            "busybox",
            "sh",
            "-c",
            "echo shared > /data/f; df -k /data | tail -1; stat -c %a /data",
        ]);
        let fields: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(fields[0], "tmpfs", "{side}: {out}");
        assert_eq!(fields[1], "1024", "{side}: {out}");
        assert_eq!(*fields.last().unwrap(), "700", "{side}: {out}");
        let out = ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &mnt,
            "busybox",
            "cat",
            "/data/f",
        ]);
        assert_eq!(out, "shared\n", "{side}");
        ok(&["volume", "rm", &vt]);
        assert!(!mounted(&vt), "{side}: unmounted by volume rm");
        // a bound host directory
        let host = env.data().join(format!("host-{side}"));
        std::fs::create_dir(&host).unwrap();
        std::fs::write(host.join("keep"), "host file\n").unwrap();
        let vb = format!("vo-{side}-bind");
        let dev = format!("device={}", host.display());
        ok(&[
            "volume",
            "create",
            "-o",
            "type=none",
            "-o",
            "o=bind",
            "-o",
            &dev,
            &vb,
        ]);
        let mnt = format!("{vb}:/data");
        let out = ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &mnt,
            "busybox",
            "sh",
            "-c",
            "cat /data/keep; echo from-container > /data/new",
        ]);
        assert_eq!(out, "host file\n", "{side}");
        assert_eq!(
            std::fs::read_to_string(host.join("new")).unwrap(),
            "from-container\n"
        );
        ok(&["volume", "rm", &vb]);
        assert!(!mounted(&vb), "{side}");
        // volume rm unmounted, and removed nothing of the host's directory
        assert_eq!(
            std::fs::read_to_string(host.join("keep")).unwrap(),
            "host file\n",
            "{side}"
        );
        assert!(host.join("new").exists(), "{side}");
        // what the local driver here does not do: a clear error, nothing left
        for (opts, msg) in [
            (
                &["-o", "type=nfs", "-o", "o=addr=10.0.0.1"][..],
                "is not supported",
            ),
            (
                &["-o", "type=none", "-o", "o=bind", "-o", "device=rel/path"][..],
                "absolute host path",
            ),
            (&["-o", "size=1m"][..], "invalid option key"),
            (
                &["-o", "type=tmpfs", "-o", "o=bogus"][..],
                "invalid tmpfs option",
            ),
            (&["-o", "noequals"][..], "expected key=value"),
        ] {
            let mut args = vec!["volume", "create"];
            args.extend_from_slice(opts);
            args.push("vo-bad");
            let out = run(&args);
            assert_eq!(out.status.code(), Some(125), "{side} {opts:?}");
            assert!(
                stderr(&out).contains(msg),
                "{side} {opts:?}: {}",
                stderr(&out)
            );
            assert_eq!(ok(&["volume", "ls", "-q"]), "", "{side} {opts:?}");
        }
    }
}

/// rmdir of a `--cgroup-parent`'s directories in every hierarchy (the container's own
/// cgroup goes with it; its parent stays, as with Docker).
struct CgroupParentGuard(String);

impl Drop for CgroupParentGuard {
    fn drop(&mut self) {
        if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
            for h in rd.flatten() {
                let _ = std::fs::remove_dir(h.path().join("longshore").join(&self.0));
            }
        }
    }
}

/// run/create flags beyond the seed's: --shm-size, --sysctl, --group-add, --cpu-period,
/// --cpu-quota, --memory-reservation, --oom-kill-disable, --blkio-weight, --cgroup-parent,
/// --mount, --platform, --ip and --network-alias (user-defined network), and the refused
/// --userns/--runtime/--storage-opt; update's --cpu-period/--cpu-quota/
/// --memory-reservation/--blkio-weight. In process and through the daemon.
#[test]
fn run_and_update_flags_reach_the_container_and_its_cgroups_both_ways() {
    require_root!();
    let env = Env::with_netns();
    let d = Daemon::start(&env);
    let host_dir = env.data().join("mnt-src");
    std::fs::create_dir(&host_dir).unwrap();
    std::fs::write(host_dir.join("f"), "from the host\n").unwrap();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let cg = |ctl: &str, parent: &str, id: &str, file: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{ctl}/{parent}/{id}/{file}"))
            .unwrap_or_else(|e| panic!("{ctl}/{parent}/{id}/{file}: {e}"))
            .trim()
            .to_string()
    };
    for remote in [false, true] {
        let s = Side {
            env: &env,
            d: &d,
            remote,
        };
        let side = if remote { "r" } else { "l" };
        let run = |args: &[&str]| s.run(args);
        let ok = |args: &[&str]| s.ok(args);
        let refused = |args: &[&str], msg: &str| {
            let out = run(args);
            // update reports each container's error and exits 1, as docker's
            let code = if args[0] == "update" { 1 } else { 125 };
            assert_eq!(
                out.status.code(),
                Some(code),
                "{side} {args:?}: {}",
                stdout(&out)
            );
            assert!(
                stderr(&out).contains(msg),
                "{side} {args:?}: {}",
                stderr(&out)
            );
        };
        // /dev/shm, a namespaced sysctl, extra groups
        let out = ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--shm-size",
            "8m",
            "--sysctl",
            "kernel.shm_rmid_forced=1",
            "--group-add",
            "wheel",
            "--group-add",
            "4321",
            "busybox",
            "sh",
            "-c",
            "df -k /dev/shm | tail -1; cat /proc/sys/kernel/shm_rmid_forced; id -G",
        ]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().nth(1),
            Some("8192"),
            "{side}: {out}"
        );
        assert_eq!(lines[1], "1", "{side}: {out}");
        let groups: Vec<&str> = lines[2].split_whitespace().collect();
        assert!(
            groups.contains(&"10") && groups.contains(&"4321"),
            "{side}: {out}"
        );
        refused(
            &[
                "run",
                "--rm",
                "--network",
                "none",
                "--sysctl",
                "vm.swappiness=10",
                "busybox",
                "true",
            ],
            "is not in a separate kernel namespace",
        );
        refused(
            &[
                "create",
                "--network",
                "host",
                "--sysctl",
                "net.ipv4.ip_forward=1",
                "busybox",
            ],
            "not allowed in the host network namespace",
        );
        refused(
            &[
                "run",
                "--rm",
                "--network",
                "none",
                "--group-add",
                "nosuchgroup",
                "busybox",
                "true",
            ],
            "Unable to find group nosuchgroup",
        );
        // CPU period and quota, a memory soft limit, no OOM killer: in the cgroups
        let name = format!("rf-{side}");
        let id = ok(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "none",
            "--cpu-period",
            "50000",
            "--cpu-quota",
            "25000",
            "-m",
            "64m",
            "--memory-reservation",
            "32m",
            "--oom-kill-disable",
            "busybox",
            "sleep",
            "100",
        ])
        .trim()
        .to_string();
        assert_eq!(
            cg("cpu", "longshore/longshore", &id, "cpu.cfs_period_us"),
            "50000"
        );
        assert_eq!(
            cg("cpu", "longshore/longshore", &id, "cpu.cfs_quota_us"),
            "25000"
        );
        assert_eq!(
            cg(
                "memory",
                "longshore/longshore",
                &id,
                "memory.soft_limit_in_bytes"
            ),
            (32 << 20).to_string()
        );
        assert!(
            cg("memory", "longshore/longshore", &id, "memory.oom_control")
                .contains("oom_kill_disable 1"),
            "{side}"
        );
        assert_eq!(
            ok(&[
                "inspect",
                "-f",
                "{{.HostConfig.CpuPeriod}} {{.HostConfig.CpuQuota}} {{.HostConfig.MemoryReservation}} {{.HostConfig.OomKillDisable}}",
                &name,
            ]),
            format!("50000 25000 {} true\n", 32 << 20)
        );
        ok(&[
            "update",
            "--cpu-period",
            "100000",
            "--cpu-quota",
            "30000",
            "--memory-reservation",
            "16m",
            &name,
        ]);
        assert_eq!(
            cg("cpu", "longshore/longshore", &id, "cpu.cfs_period_us"),
            "100000"
        );
        assert_eq!(
            cg("cpu", "longshore/longshore", &id, "cpu.cfs_quota_us"),
            "30000"
        );
        assert_eq!(
            cg(
                "memory",
                "longshore/longshore",
                &id,
                "memory.soft_limit_in_bytes"
            ),
            (16 << 20).to_string()
        );
        refused(
            &["update", "--cpus", "1", "--cpu-quota", "5000", &name],
            "Conflicting options",
        );
        refused(
            &["update", "--memory-reservation", "128m", &name],
            "memory reservation",
        );
        refused(&["update", "--cpu-period", "100", &name], "CPU cfs period");
        // this host's cgroups have no block I/O weight (no CFQ/BFQ): a clear refusal
        refused(
            &["update", "--blkio-weight", "5", &name],
            "Range of blkio weight",
        );
        let blkio = std::path::Path::new("/sys/fs/cgroup/blkio");
        if blkio.join("blkio.weight").exists() || blkio.join("blkio.bfq.weight").exists() {
            ok(&["update", "--blkio-weight", "300", &name]);
        } else {
            refused(
                &["update", "--blkio-weight", "300", &name],
                "--blkio-weight is not supported on this host",
            );
            refused(
                &[
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    "--blkio-weight",
                    "300",
                    "busybox",
                    "true",
                ],
                "--blkio-weight is not supported on this host",
            );
        }
        ok(&["rm", "-f", &name]);
        // --cgroup-parent
        let parent = unique_name("lsparent");
        let _guard = CgroupParentGuard(parent.clone());
        let id = ok(&[
            "run",
            "-d",
            "--network",
            "none",
            "--cgroup-parent",
            &parent,
            "busybox",
            "sleep",
            "100",
        ])
        .trim()
        .to_string();
        let pid = ok(&["inspect", "-f", "{{.State.Pid}}", &id]);
        let procs = std::fs::read_to_string(format!("/proc/{}/cgroup", pid.trim())).unwrap();
        assert!(
            procs.contains(&format!(":/longshore/{parent}/{id}\n")),
            "{side}: {procs}"
        );
        ok(&["rm", "-f", &id]);
        refused(
            &["create", "--cgroup-parent", "../escape", "busybox"],
            "invalid --cgroup-parent",
        );
        // --mount: bind (read only), tmpfs, volume
        let vol = format!("mv-{side}");
        let bind = format!("type=bind,source={},target=/h,readonly", host_dir.display());
        let volm = format!("type=volume,source={vol},target=/v");
        let out = ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--mount",
            &bind,
            "--mount",
            "type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=700",
            "--mount",
            &volm,
            "busybox",
            "sh",
            "-c",
            "cat /h/f; touch /h/x 2>/dev/null || echo read-only; df -k /t | tail -1; stat -c %a /t; echo v > /v/y && echo vol-ok",
        ]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "from the host", "{side}: {out}");
        assert_eq!(lines[1], "read-only", "{side}: {out}");
        assert_eq!(
            lines[2].split_whitespace().nth(1),
            Some("1024"),
            "{side}: {out}"
        );
        assert_eq!(lines[3], "700", "{side}: {out}");
        assert_eq!(lines[4], "vol-ok", "{side}: {out}");
        assert!(
            ok(&["volume", "ls", "-q"]).lines().any(|l| l == vol),
            "{side}"
        );
        refused(
            &[
                "create",
                "--mount",
                "type=bind,source=/nonexistent-longshore,target=/h",
                "busybox",
            ],
            "bind source path does not exist",
        );
        refused(
            &["create", "--mount", "type=nfs,target=/x", "busybox"],
            "is not supported",
        );
        refused(
            &["create", "--mount", "type=volume,source=x", "busybox"],
            "Target must not be empty",
        );
        refused(
            &[
                "create",
                "--mount",
                "type=tmpfs,target=/x,bogus=1",
                "busybox",
            ],
            "unexpected key 'bogus'",
        );
        // --platform: the image's, or a clear refusal
        ok(&[
            "create",
            "--platform",
            &format!("linux/{arch}"),
            "--network",
            "none",
            "busybox",
        ]);
        refused(
            &["create", "--platform", "linux/s390x", "busybox"],
            &format!(
                "does not match the specified platform: wanted linux/s390x, actual: linux/{arch}"
            ),
        );
        // --ip and --network-alias on a user-defined network
        let net = format!("rn-{side}");
        let subnet = format!("10.77.{}.0/24", if remote { 1 } else { 0 });
        let ip = format!("10.77.{}.50", if remote { 1 } else { 0 });
        ok(&["network", "create", "--subnet", &subnet, &net]);
        ok(&[
            "run",
            "-d",
            "--name",
            &format!("rn-a-{side}"),
            "--network",
            &net,
            "--ip",
            &ip,
            "--network-alias",
            "webalias",
            "busybox",
            "sleep",
            "100",
        ]);
        let out = ok(&[
            "run",
            "--rm",
            "--network",
            &net,
            "busybox",
            "cat",
            "/etc/hosts",
        ]);
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("{ip} ")) && l.contains("webalias")),
            "{side}: {out}"
        );
        let out = ok(&[
            "run",
            "--rm",
            "--network",
            &net,
            "busybox",
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "webalias",
        ]);
        assert!(out.contains(&format!("({ip})")), "{side}: {out}");
        refused(
            &["create", "--ip", "172.17.0.9", "busybox"],
            "user defined networks only",
        );
        refused(
            &[
                "create",
                "--network",
                "none",
                "--network-alias",
                "x",
                "busybox",
            ],
            "supported only for containers in user defined networks",
        );
        ok(&["rm", "-f", &format!("rn-a-{side}")]);
        ok(&["network", "rm", &net]);
        // what cannot be honoured here: 125, not silence
        refused(
            &["run", "--rm", "--userns", "host", "busybox", "true"],
            "--userns=host is not supported",
        );
        refused(
            &["run", "--rm", "--runtime", "runsc", "busybox", "true"],
            "--runtime=runsc is not supported",
        );
        refused(
            &["create", "--storage-opt", "size=1G", "busybox"],
            "--storage-opt is not supported",
        );
    }
}

/// `build -H` of a Dockerfile FROM an image of a registry that wants a login: the client
/// sends config.json's credentials as X-Registry-Config, the daemon pulls the base with
/// them for that build only. In process the engine reads config.json itself.
#[test]
fn build_from_a_private_base_image_both_ways() {
    require_root!();
    let private = htpasswd_registry("carol", "b4se");
    // the registry is on the host's loopback; FROM + LABEL runs no container
    let env = Env::new();
    let config = env.data().join("docker-config");
    let cfg = config.to_str().unwrap();
    let other = env.data().join("empty-config");
    let d = Daemon::start_with(&env, &["--insecure-registry", &private.addr]);
    let base = format!("{}/cm/base:1", private.addr);
    let ctx = env.data().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {base}\nLABEL from=private\n"),
    )
    .unwrap();
    let run = |config: &str, host: Option<&str>, args: &[&str]| {
        let mut a = vec!["--config", config, "--insecure-registry", &private.addr];
        a.extend(maybe_remote(host, args));
        env.run(&a)
    };
    let ok = |config: &str, host: Option<&str>, args: &[&str]| {
        let out = run(config, host, args);
        assert!(
            out.status.success(),
            "{host:?} {args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    };
    ok(
        cfg,
        None,
        &["login", "-u", "carol", "-p", "b4se", &private.addr],
    );
    ok(cfg, None, &["tag", "busybox", &base]);
    ok(cfg, None, &["push", &base]);
    for host in [None, Some(d.host.as_str())] {
        let side = if host.is_some() { "remote" } else { "local" };
        // the base is not here: the build pulls it, with the client's login
        ok(cfg, None, &["rmi", &base]);
        let tag = format!("from-private:{side}");
        let out = ok(cfg, host, &["build", "-t", &tag, ctx.to_str().unwrap()]);
        assert!(out.contains(&format!("Pulling {base}")), "{side}: {out}");
        assert_eq!(
            ok(
                cfg,
                None,
                &["image", "inspect", "-f", "{{.Config.Labels.from}}", &tag]
            ),
            "private\n",
            "{side}"
        );
        // a client without the login gets no pull: nothing was kept from the last one
        ok(cfg, None, &["rmi", &base]);
        let out = run(
            other.to_str().unwrap(),
            host,
            &["build", "-t", "nope:1", ctx.to_str().unwrap()],
        );
        assert_ne!(out.status.code(), Some(0), "{side}: {}", stdout(&out));
        assert!(
            stderr(&out).contains("401")
                || stderr(&out).to_lowercase().contains("unauthorized")
                || stderr(&out).to_lowercase().contains("authentication"),
            "{side}: {}",
            stderr(&out)
        );
        ok(cfg, None, &["tag", "busybox", &base]);
    }
}

/// `build --iidfile` and `--network` (the RUN steps' network: host, or a namespace of
/// their own with none/default), in process and through the daemon.
#[test]
fn build_iidfile_and_network_both_ways() {
    require_root!();
    let env = Env::with_netns();
    let d = Daemon::start(&env);
    // a device only the test's namespace (the builder's "host") has
    let ns = env
        .netns
        .as_ref()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let st = Command::new("ip")
        .args([
            "-n", &ns, "link", "add", "lsdum0", "type", "veth", "peer", "name", "lsdum1",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let ctx = env.data().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN cat /proc/net/dev > /links\n",
    )
    .unwrap();
    let c = ctx.to_str().unwrap();
    for remote in [false, true] {
        let s = Side {
            env: &env,
            d: &d,
            remote,
        };
        let side = if remote { "r" } else { "l" };
        let ok = |args: &[&str]| s.ok(args);
        let iid = env.data().join(format!("iid-{side}"));
        let out = ok(&[
            "build",
            "-q",
            "--no-cache",
            "--network",
            "host",
            "--iidfile",
            iid.to_str().unwrap(),
            "-t",
            &format!("bn-host-{side}"),
            c,
        ]);
        let id = std::fs::read_to_string(&iid).unwrap();
        assert!(id.starts_with("sha256:"), "{side}: {id}");
        assert_eq!(out.trim(), id, "{side}: -q prints the same ID");
        assert_eq!(
            ok(&[
                "image",
                "inspect",
                "-f",
                "{{.Id}}",
                &format!("bn-host-{side}")
            ])
            .trim(),
            id
        );
        let links = ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            &format!("bn-host-{side}"),
            "cat",
            "/links",
        ]);
        assert!(links.contains("lsdum0"), "{side}: host network: {links}");
        for mode in ["none", "default"] {
            let tag = format!("bn-{mode}-{side}");
            ok(&[
                "build",
                "-q",
                "--no-cache",
                "--network",
                mode,
                "-t",
                &tag,
                c,
            ]);
            let links = ok(&["run", "--rm", "--network", "none", &tag, "cat", "/links"]);
            assert!(
                !links.contains("lsdum0") && links.contains("lo:"),
                "{side} {mode}: {links}"
            );
        }
        let out = either(&env, &d, remote, &["build", "--network", "bridge2", c]);
        assert_eq!(out.status.code(), Some(125), "{side}");
        assert!(
            stderr(&out).contains("not supported by the builder"),
            "{side}: {}",
            stderr(&out)
        );
    }
}

/// `network create --gateway` and `--label` (inspect, a container's default route, prune
/// by label); `--internal` and `--aux-address` refused, saying so. Both ways.
#[test]
fn network_create_gateway_and_labels_both_ways() {
    require_root!();
    let env = Env::with_netns();
    let d = Daemon::start(&env);
    for remote in [false, true] {
        let s = Side {
            env: &env,
            d: &d,
            remote,
        };
        let side = if remote { "r" } else { "l" };
        let i = if remote { 1 } else { 0 };
        let ok = |args: &[&str]| s.ok(args);
        let refused = |args: &[&str], msg: &str| s.refused(args, 125, msg);
        let net = format!("ng-{side}");
        let subnet = format!("10.78.{i}.0/24");
        let gw = format!("10.78.{i}.254");
        ok(&[
            "network",
            "create",
            "--subnet",
            &subnet,
            "--gateway",
            &gw,
            "--label",
            "tier=db",
            "--label",
            "plain",
            &net,
        ]);
        assert_eq!(
            ok(&[
                "network",
                "inspect",
                "-f",
                "{{(index .IPAM.Config 0).Gateway}} {{json .Labels}}",
                &net
            ]),
            format!("{gw} {{\"plain\":\"\",\"tier\":\"db\"}}\n")
        );
        let out = ok(&["run", "--rm", "--network", &net, "busybox", "ip", "route"]);
        assert!(out.contains(&format!("default via {gw} ")), "{side}: {out}");
        // prune by label: only this network carries it
        let other = format!("ng-other-{side}");
        ok(&["network", "create", &other]);
        let out = ok(&["network", "prune", "-f", "--filter", "label=tier=db"]);
        assert_eq!(out, format!("Deleted Networks:\n{net}\n\n"), "{side}");
        ok(&["network", "rm", &other]);
        refused(
            &["network", "create", "--gateway", "10.78.9.1", "nx"],
            "every ip-range or gateway must have a corresponding subnet",
        );
        refused(
            &[
                "network",
                "create",
                "--subnet",
                "10.78.9.0/24",
                "--gateway",
                "10.79.0.1",
                "nx",
            ],
            "no matching subnet for gateway 10.79.0.1",
        );
        // --aux-address: never handed out
        let an = format!("na-{side}");
        let asub = format!("10.78.{}.0/29", 4 + i);
        let r1 = format!("r1=10.78.{}.2", 4 + i);
        let r2 = format!("r2=10.78.{}.3", 4 + i);
        ok(&[
            "network",
            "create",
            "--subnet",
            &asub,
            "--aux-address",
            &r1,
            "--aux-address",
            &r2,
            &an,
        ]);
        assert_eq!(
            ok(&[
                "network",
                "inspect",
                "-f",
                "{{(index .IPAM.Config 0).AuxiliaryAddresses}}",
                &an
            ]),
            format!("map[r1:10.78.{0}.2 r2:10.78.{0}.3]\n", 4 + i),
            "{side}"
        );
        let out = ok(&[
            "run",
            "--rm",
            "--network",
            &an,
            "busybox",
            "ip",
            "-o",
            "-4",
            "addr",
            "show",
            "eth0",
        ]);
        assert!(
            out.contains(&format!(" 10.78.{}.4/29 ", 4 + i)),
            "{side}: {out}"
        );
        ok(&["network", "rm", &an]);
        refused(
            &[
                "network",
                "create",
                "--subnet",
                "10.78.9.0/24",
                "--aux-address",
                "a=10.79.9.5",
                "nx",
            ],
            "no matching subnet",
        );
        assert!(
            !ok(&["network", "ls", "--format", "{{.Name}}"]).contains("nx"),
            "{side}"
        );
    }
}

/// Deletes a network namespace on drop.
struct NetnsGuard(String);

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// `network create --internal`: a container of an internal network cannot reach an
/// address outside (the attack: ping and a TCP connect to a host past the bridge), while
/// one of a plain network can; members still reach each other. Both ways.
#[test]
fn internal_networks_reach_nothing_outside_both_ways() {
    require_root!();
    let env = Env::with_netns();
    let d = Daemon::start(&env);
    // "outside": another namespace behind a veth of the test's, 10.99.0.2, running a
    // TCP listener
    let ns = env
        .netns
        .as_ref()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let out_ns = unique_name("lso");
    let st = Command::new("ip")
        .args(["netns", "add", &out_ns])
        .status()
        .unwrap();
    assert!(st.success());
    let _guard = NetnsGuard(out_ns.clone());
    let sh = |args: &[&str]| {
        let st = Command::new("ip").args(args).status().unwrap();
        assert!(st.success(), "ip {args:?}");
    };
    sh(&[
        "-n", &ns, "link", "add", "lsout0", "type", "veth", "peer", "name", "lsout1", "netns",
        &out_ns,
    ]);
    sh(&["-n", &ns, "addr", "add", "10.99.0.1/24", "dev", "lsout0"]);
    sh(&["-n", &ns, "link", "set", "lsout0", "up"]);
    sh(&[
        "-n",
        &out_ns,
        "addr",
        "add",
        "10.99.0.2/24",
        "dev",
        "lsout1",
    ]);
    sh(&["-n", &out_ns, "link", "set", "lsout1", "up"]);
    sh(&["-n", &out_ns, "link", "set", "lo", "up"]);
    let mut listener = Command::new("ip")
        .args([
            "netns", "exec", &out_ns, "busybox", "nc", "-ll", "-p", "7777", "-e", "echo", "reached",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the outside listener", || {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &out_ns,
                "busybox",
                "nc",
                "-w",
                "1",
                "127.0.0.1",
                "7777",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("reached"))
    });
    let reach = "ping -c 1 -W 2 10.99.0.2 >/dev/null 2>&1 && echo ping-ok || echo ping-no; \
                 nc -w 2 10.99.0.2 7777 </dev/null 2>/dev/null || echo tcp-no";
    for remote in [false, true] {
        let s = Side {
            env: &env,
            d: &d,
            remote,
        };
        let side = if remote { "r" } else { "l" };
        let i = if remote { 1 } else { 0 };
        let ok = |args: &[&str]| s.ok(args);
        let open = format!("nopen-{side}");
        let internal = format!("nint-{side}");
        ok(&[
            "network",
            "create",
            "--subnet",
            &format!("10.80.{i}.0/24"),
            &open,
        ]);
        ok(&[
            "network",
            "create",
            "--internal",
            "--subnet",
            &format!("10.81.{i}.0/24"),
            &internal,
        ]);
        assert_eq!(
            ok(&["network", "inspect", "-f", "{{.Internal}}", &internal]),
            "true\n"
        );
        let out = ok(&[
            "run",
            "--rm",
            "--network",
            &open,
            "busybox",
            "sh",
            "-c",
            reach,
        ]);
        assert_eq!(
            out, "ping-ok\nreached\n",
            "{side}: a plain network reaches out"
        );
        let out = ok(&[
            "run",
            "--rm",
            "--network",
            &internal,
            "busybox",
            "sh",
            "-c",
            reach,
        ]);
        assert_eq!(
            out, "ping-no\ntcp-no\n",
            "{side}: the internal network must not"
        );
        // its members still reach each other
        ok(&[
            "run",
            "-d",
            "--name",
            &format!("nint-a-{side}"),
            "--network",
            &internal,
            "busybox",
            "sleep",
            "60",
        ]);
        let out = ok(&[
            "run",
            "--rm",
            "--network",
            &internal,
            "busybox",
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            &format!("nint-a-{side}"),
        ]);
        assert!(out.contains("1 packets received"), "{side}: {out}");
        ok(&["rm", "-f", &format!("nint-a-{side}")]);
        ok(&["network", "rm", &open, &internal]);
    }
    let _ = listener.kill();
    let _ = listener.wait();
}

/// `build --platform` (the builder's own only), `--secret` (in process; through the
/// daemon refused: the legacy build API has no secrets), `--progress`, and BuildKit's
/// `--output`/`--ssh` refused.
#[test]
fn build_platform_secret_progress_and_buildkit_flags_both_ways() {
    require_root!();
    let env = Env::with_netns();
    let d = Daemon::start(&env);
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let ctx = env.data().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN --mount=type=secret,id=tok test \"$(cat /run/secrets/tok)\" = s3cr3t && echo seen > /seen\n",
    )
    .unwrap();
    let plain_ctx = env.data().join("plain");
    std::fs::create_dir(&plain_ctx).unwrap();
    std::fs::write(plain_ctx.join("Dockerfile"), "FROM busybox\nLABEL x=y\n").unwrap();
    let secret = env.data().join("tok");
    std::fs::write(&secret, "s3cr3t").unwrap();
    let src = format!("id=tok,src={}", secret.display());
    let (c, p) = (ctx.to_str().unwrap(), plain_ctx.to_str().unwrap());
    // in process the secret reaches the RUN step, and stays out of the image
    env.ok(&["build", "-q", "--secret", &src, "-t", "bs:1", c]);
    assert_eq!(
        env.ok(&["run", "--rm", "--network", "none", "bs:1", "cat", "/seen"]),
        "seen\n"
    );
    let out = env.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "bs:1",
        "cat",
        "/run/secrets/tok",
    ]);
    assert_ne!(out.status.code(), Some(0), "the secret is not in the image");
    for remote in [false, true] {
        let s = Side {
            env: &env,
            d: &d,
            remote,
        };
        let platform = format!("linux/{arch}");
        s.ok(&[
            "build",
            "-q",
            "--platform",
            &platform,
            "--progress",
            "plain",
            p,
        ]);
        s.refused(
            &["build", "--platform", "linux/s390x", p],
            125,
            "this builder builds only for its own platform",
        );
        s.refused(
            &["build", "--progress", "fancy", p],
            125,
            "invalid --progress",
        );
        s.refused(
            &["build", "--output", "type=local,dest=/tmp/x", p],
            125,
            "--output needs BuildKit",
        );
        s.refused(
            &["build", "--ssh", "default", p],
            125,
            "--ssh needs BuildKit",
        );
    }
    let mut a = vec!["-H", d.host.as_str()];
    a.extend(["build", "--secret", &src, c]);
    let out = env.run(&a);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("--secret needs BuildKit"),
        "{}",
        stderr(&out)
    );
}

/// A detached container's monitor keeps none of the descriptors its caller left open: a
/// script that runs `longshore run -d` with a pipe on fd 9 (a CI step capturing output
/// through an extra descriptor) sees the pipe's end when longshore exits, not when the
/// container does (before the fix: 60 s later, when `sleep 60` ended).
#[test]
fn a_detached_monitor_keeps_none_of_its_callers_descriptors() {
    require_root!();
    let env = Env::new();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "exec 9>&1 >/dev/null; {BIN} run -d --network none busybox sleep 60"
        ))
        .env("LONGSHORE_ROOT", env.data())
        .env_remove("LONGSHORE_HOST")
        .env_remove("DOCKER_HOST")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(&mut pipe, &mut rest);
        let _ = tx.send(());
    });
    assert!(child.wait().unwrap().success(), "run -d failed");
    let running = stdout(&env.run(&["ps", "-q"]));
    assert_eq!(running.lines().count(), 1, "the container runs: {running}");
    assert!(
        rx.recv_timeout(Duration::from_secs(20)).is_ok(),
        "the caller's fd 9 is still open 20 s after run -d returned (held by the monitor)"
    );
}
