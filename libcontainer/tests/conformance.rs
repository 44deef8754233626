//! The runtime spec's behaviours that the OCI runtime-tools validation suite checks and
//! this runtime once fell short of (issue 9), each on real containers, as root.
//! `benches/scripts/runtime-tools.sh` runs the suite itself against longshore-runtime,
//! runc and crun; these tests keep each behaviour without Go.

mod common;

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use common::Fixture;
use longshore_container::Signal;
use longshore_container::{Container, Error, Status, Stdio};
use longshore_test_support::{require_root, unique_name};
use oci_spec::runtime::{Hook, HookBuilder, HooksBuilder, LinuxNamespaceType};

/// A temporary file the container writes its stdout and stderr into.
struct Out(std::fs::File);

impl Out {
    fn new() -> Out {
        Out(tempfile::tempfile().unwrap())
    }

    fn stdio(&self) -> Stdio {
        common::all_to(&self.0)
    }

    fn text(&mut self) -> String {
        let mut s = String::new();
        self.0.seek(std::io::SeekFrom::Start(0)).unwrap();
        self.0.read_to_string(&mut s).unwrap();
        s
    }
}

/// Writes the fixture's spec as the bundle's config.json (for what is read from disk).
fn write_config(f: &Fixture, json: &serde_json::Value) {
    std::fs::write(
        f.bundle().join("config.json"),
        serde_json::to_vec_pretty(json).unwrap(),
    )
    .unwrap();
}

fn spec_json(f: &Fixture) -> serde_json::Value {
    serde_json::to_value(&f.spec).unwrap()
}

/// A builder that reads config.json from the bundle (no spec given).
fn from_disk(f: &Fixture) -> longshore_container::ContainerBuilder {
    Container::builder(&f.id).bundle(f.bundle()).root(f.root())
}

fn wait_gone(c: &Container) {
    for _ in 0..500 {
        if c.status() == Status::Stopped {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("{} did not stop", c.id());
}

/// The spec: "Attempting to delete a container that is not stopped MUST have no effect
/// on the container and MUST generate an error" - for a created container too (runc
/// deletes one anyway). `force` still removes it.
#[test]
fn delete_without_force_of_a_container_not_stopped_fails_and_changes_nothing() {
    require_root!();
    let f = Fixture::new(&["sleep", "100"]);
    let mut c = f.builder().stdio(Stdio::Null).create().unwrap();
    let pid = c.pid();
    let cgroups: Vec<PathBuf> = c.cgroup_paths().values().cloned().collect();
    for status in [Status::Created, Status::Running] {
        let mut other = Container::load(f.root(), &f.id).unwrap();
        assert_eq!(other.status(), status);
        match other.delete(false) {
            Err(Error::WrongState { .. }) => {}
            r => panic!("delete of a {status} container without force: {r:?}"),
        }
        // nothing changed: same state, same live init, cgroups still there
        let again = Container::load(f.root(), &f.id).unwrap();
        assert_eq!(again.status(), status);
        assert_eq!(again.pid(), pid);
        assert!(cgroups.iter().all(|d| d.exists()), "cgroups removed");
        if status == Status::Created {
            c.start().unwrap();
        }
    }
    c.kill(Signal::SIGKILL, false).unwrap();
    c.wait().unwrap();
    c.delete(false).unwrap();
    assert!(matches!(
        Container::load(f.root(), &f.id),
        Err(Error::NotFound(_))
    ));
    // and force deletes a created one
    let f = Fixture::new(&["sleep", "100"]);
    let mut c = f.builder().stdio(Stdio::Null).create().unwrap();
    c.delete(true).unwrap();
    assert!(cgroups_gone(&c));
}

fn cgroups_gone(c: &Container) -> bool {
    c.cgroup_paths().values().all(|d| !d.exists())
}

/// `create --pid-file F`: the file and the state agree (a created container's state
/// carries the init's pid), and the container stays usable by the other commands.
#[test]
fn pid_file_and_state_agree_and_the_container_stays_usable() {
    require_root!();
    let f = Fixture::new(&["sleep", "100"]);
    let pid_file = f.bundle().join("init.pid");
    let _c = f
        .builder()
        .stdio(Stdio::Null)
        .pid_file(&pid_file)
        .create()
        .unwrap();
    let written: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let mut other = Container::load(f.root(), &f.id).unwrap();
    assert_eq!(other.oci_state()["pid"], written);
    assert_eq!(other.oci_state()["status"], "created");
    assert!(Path::new(&format!("/proc/{written}/ns/pid")).exists());
    other.start().unwrap();
    assert_eq!(other.status(), Status::Running);
    other.kill(Signal::SIGKILL, false).unwrap();
    wait_gone(&other);
    other.delete(false).unwrap();
}

/// A created container's state names its live init, whose namespaces are new ones or
/// those joined by path (the suite reads `/proc/<state pid>/ns/*`).
#[test]
fn created_state_carries_the_init_pid_for_new_and_joined_namespaces() {
    require_root!();
    // a network namespace held by a process of our own, joined by path
    let mut holder = std::process::Command::new("unshare")
        .args(["--net", "sleep", "100"])
        .spawn()
        .expect("unshare (util-linux)");
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let holder_pid = holder.id();
    let _kill = Kill(&mut holder);
    let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
    let ns_path = PathBuf::from(format!("/proc/{holder_pid}/ns/net"));
    let mut target = ours.clone();
    for _ in 0..300 {
        target = std::fs::read_link(&ns_path).unwrap();
        if target != ours {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_ne!(target, ours, "unshare --net did not take effect");

    let mut f = Fixture::new(&["sleep", "100"]);
    let linux = f.spec.linux_mut().as_mut().unwrap();
    let mut ns = linux.namespaces().clone().unwrap();
    for n in &mut ns {
        if n.typ() == LinuxNamespaceType::Network {
            n.set_path(Some(ns_path.clone()));
        }
    }
    linux.set_namespaces(Some(ns));
    let _c = f.builder().stdio(Stdio::Null).create().unwrap();
    let loaded = Container::load(f.root(), &f.id).unwrap();
    let st = loaded.oci_state();
    assert_eq!(st["status"], "created");
    let pid = st["pid"].as_i64().unwrap();
    assert!(pid > 0, "state pid {pid}");
    let link = |ns: &str| std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
    assert_eq!(link("net"), target, "joined network namespace");
    for new in ["pid", "ipc", "uts", "mnt"] {
        let mine = std::fs::read_link(format!("/proc/self/ns/{new}")).unwrap();
        assert_ne!(link(new), mine, "{new} namespace is not new");
    }
}

/// A container with a user namespace and uid/gid mappings, created through the exec
/// fifo and started by another handle (as `create` + `start` do), lives until `start`
/// and runs as the mapped root. (The init died before `start`: the fifo was not
/// writable by the mapped root.)
#[test]
fn user_namespace_with_mappings_lives_until_start() {
    require_root!();
    let mut f = Fixture::new(&["sh", "-c", "id -u; cat /proc/self/uid_map"]);
    let linux = f.spec.linux_mut().as_mut().unwrap();
    let mut ns = linux.namespaces().clone().unwrap();
    ns.push(
        oci_spec::runtime::LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::User)
            .build()
            .unwrap(),
    );
    linux.set_namespaces(Some(ns));
    let map = oci_spec::runtime::LinuxIdMappingBuilder::default()
        .container_id(0u32)
        .host_id(1000u32)
        .size(3200u32)
        .build()
        .unwrap();
    linux.set_uid_mappings(Some(vec![map]));
    linux.set_gid_mappings(Some(vec![map]));
    let mut out = Out::new();
    let mut c = f.builder().stdio(out.stdio()).create().unwrap();
    // give a dying init the time to die: it must still be there
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut other = Container::load(f.root(), &f.id).unwrap();
    assert_eq!(other.status(), Status::Created);
    other.start().unwrap();
    assert_eq!(c.wait().unwrap(), 0);
    let text = out.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first(), Some(&"0"), "{text}");
    let fields: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(fields, ["0", "1000", "3200"]);
    c.delete(false).unwrap();
}

/// A hook that runs busybox's sh from the bundle on the host.
fn sh_hook(f: &Fixture, script: &str) -> Hook {
    HookBuilder::default()
        .path(f.bundle().join("rootfs/bin/busybox"))
        .args(vec!["sh".to_string(), "-c".to_string(), script.to_string()])
        .build()
        .unwrap()
}

/// prestart, poststart and poststop hooks get the state on stdin: id, bundle, pid,
/// annotations, with the status of their point of the lifecycle (created, running,
/// stopped).
#[test]
fn hooks_get_the_state_on_stdin_with_their_status() {
    require_root!();
    let mut f = Fixture::new(&["true"]);
    let dir = f.bundle().to_path_buf();
    let save = |name: &str| format!("cat > {}/{name}.json", dir.display());
    let hooks = HooksBuilder::default()
        .prestart(vec![sh_hook(&f, &save("prestart"))])
        .poststart(vec![sh_hook(&f, &save("poststart"))])
        .poststop(vec![sh_hook(&f, &save("poststop"))])
        .build()
        .unwrap();
    f.spec.set_hooks(Some(hooks));
    f.spec.set_annotations(Some(
        [("org.longshore.test".to_string(), "hook stdin".to_string())].into(),
    ));
    let mut c = f.builder().stdio(Stdio::Null).create().unwrap();
    let pid = c.pid();
    c.start().unwrap();
    c.wait().unwrap();
    c.delete(false).unwrap();
    let bundle = f.bundle().canonicalize().unwrap();
    for (hook, status) in [
        ("prestart", "created"),
        ("poststart", "running"),
        ("poststop", "stopped"),
    ] {
        let st: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{hook}.json"))).unwrap())
                .unwrap_or_else(|e| panic!("{hook}: {e}"));
        assert_eq!(st["id"], f.id.as_str(), "{hook}");
        assert_eq!(st["status"], status, "{hook}");
        assert_eq!(st["bundle"], bundle.to_str().unwrap(), "{hook}");
        assert_eq!(
            st["annotations"]["org.longshore.test"], "hook stdin",
            "{hook}"
        );
        if hook != "poststop" {
            assert_eq!(st["pid"], pid, "{hook}");
        }
    }
}

/// The spec's failure semantics: a failing prestart hook fails create, stops the
/// container (its process never runs) and leaves nothing; a failing poststart or
/// poststop hook is a warning, and the remaining hooks and the lifecycle go on.
#[test]
fn failing_hooks_follow_the_spec() {
    require_root!();
    // prestart fails: error, the process never runs, nothing left
    let mut f = Fixture::new(&["touch", "/ran"]);
    f.spec.set_hooks(Some(
        HooksBuilder::default()
            .prestart(vec![sh_hook(&f, "exit 3")])
            .build()
            .unwrap(),
    ));
    match f.builder().stdio(Stdio::Null).create() {
        Err(Error::Hook {
            hook: "prestart", ..
        }) => {}
        r => panic!(
            "a failing prestart hook: {:?}",
            r.map(|c| c.id().to_string())
        ),
    }
    assert!(!f.bundle().join("rootfs/ran").exists(), "the process ran");
    assert!(matches!(
        Container::load(f.root(), &f.id),
        Err(Error::NotFound(_))
    ));

    // poststart and poststop: the first of two fails, the second still runs
    let mut f = Fixture::new(&["true"]);
    let dir = f.bundle().to_path_buf();
    let mark = |name: &str| format!("echo called >> {}/{name}", dir.display());
    f.spec.set_hooks(Some(
        HooksBuilder::default()
            .poststart(vec![sh_hook(&f, "exit 4"), sh_hook(&f, &mark("poststart"))])
            .poststop(vec![sh_hook(&f, "exit 5"), sh_hook(&f, &mark("poststop"))])
            .build()
            .unwrap(),
    ));
    let _c = f.builder().stdio(Stdio::Null).create().unwrap();
    let mut other = Container::load(f.root(), &f.id).unwrap();
    other.start().expect("a failing poststart hook fails start");
    assert_eq!(
        std::fs::read_to_string(dir.join("poststart")).unwrap(),
        "called\n"
    );
    wait_gone(&other);
    other
        .delete(false)
        .expect("a failing poststop hook fails delete");
    assert_eq!(
        std::fs::read_to_string(dir.join("poststop")).unwrap(),
        "called\n"
    );
    let w = other.warnings();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].contains("poststart") && w[0].contains('4'), "{w:?}");
    assert!(w[1].contains("poststop") && w[1].contains('5'), "{w:?}");
    assert!(matches!(
        Container::load(f.root(), &f.id),
        Err(Error::NotFound(_))
    ));
}

/// Unknown annotations and unknown fields of config.json are accepted; an invalid
/// `ociVersion` is refused before anything is created.
#[test]
fn unknown_fields_pass_and_a_bad_version_is_refused_before_anything_exists() {
    require_root!();
    let f = Fixture::new(&["true"]);
    let mut json = spec_json(&f);
    json["unknown"] = "unknown".into();
    json["process"]["unknownToo"] = 7.into();
    json["annotations"] = serde_json::json!({ format!("org.{}", f.id): "" });
    write_config(&f, &json);
    let mut c = from_disk(&f).stdio(Stdio::Null).create().unwrap();
    c.start().unwrap();
    assert_eq!(c.wait().unwrap(), 0);
    c.delete(false).unwrap();

    let f = Fixture::new(&["true"]);
    let mut json = spec_json(&f);
    json["ociVersion"] = "invalid".into();
    json["linux"]["cgroupsPath"] = format!("/longshore-{}", unique_name("bv")).into();
    write_config(&f, &json);
    match from_disk(&f).stdio(Stdio::Null).create() {
        Err(Error::BadBundle { reason, .. }) => assert!(reason.contains("invalid"), "{reason}"),
        r => panic!(
            "ociVersion \"invalid\": {:?}",
            r.map(|c| c.id().to_string())
        ),
    }
    assert!(!f.root().join(&f.id).exists(), "state left");
    let cg = json["linux"]["cgroupsPath"].as_str().unwrap();
    assert!(
        !Path::new(&format!("/sys/fs/cgroup/memory{cg}")).exists(),
        "cgroup made"
    );
}

fn read_cg(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

/// The cgroup directory of `pid` in a v1 hierarchy, from /proc/<pid>/cgroup.
fn v1_dir_of(pid: i32, controller: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let rel = text
        .lines()
        .find_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_, ctrls, path) = (it.next()?, it.next()?, it.next()?);
            ctrls.split(',').any(|c| c == controller).then_some(path)
        })
        .unwrap_or_else(|| panic!("no {controller} line in /proc/{pid}/cgroup"));
    PathBuf::from(format!("/sys/fs/cgroup/{controller}{rel}"))
}

/// memory (limit, reservation, swap, kernelTCP, swappiness, OOM killer) and pids limits
/// read back as set, for an absolute and for a relative `cgroupsPath` (the suite's
/// linux_cgroups_memory/pids and their relative twins). kernelTCP was ignored.
#[test]
fn memory_and_pids_limits_read_back_for_absolute_and_relative_paths() {
    require_root!();
    if !Path::new("/sys/fs/cgroup/memory/memory.kmem.tcp.limit_in_bytes").exists() {
        longshore_test_support::skip!("no cgroup v1 memory hierarchy with kmem.tcp here");
    }
    let limit: i64 = 50593792;
    for path in [
        format!("/longshore-{}", unique_name("ab")),
        // (every level named longshore*: delete removes the empty parents so named)
        format!("longshore-{}/longshore-ct/container", unique_name("rl")),
    ] {
        let mut f = Fixture::new(&["sleep", "100"]);
        let mut json = spec_json(&f);
        json["linux"]["cgroupsPath"] = path.clone().into();
        json["linux"]["resources"]["memory"] = serde_json::json!({
            "limit": limit, "reservation": limit, "swap": limit, "kernelTCP": limit,
            "swappiness": 50, "disableOOMKiller": true
        });
        json["linux"]["resources"]["pids"] = serde_json::json!({ "limit": 42 });
        f.spec = serde_json::from_value(json).unwrap();
        let c = f.builder().stdio(Stdio::Null).create().unwrap();
        let mem = v1_dir_of(c.pid(), "memory");
        assert!(
            mem.to_str().unwrap().contains(path.trim_start_matches('/')),
            "{path} not in {}",
            mem.display()
        );
        if path.starts_with('/') {
            // absolute: relative to the hierarchy's mount point
            assert_eq!(mem, PathBuf::from(format!("/sys/fs/cgroup/memory{path}")));
        }
        let l = limit.to_string();
        assert_eq!(read_cg(&mem, "memory.limit_in_bytes"), l, "{path}");
        assert_eq!(read_cg(&mem, "memory.soft_limit_in_bytes"), l, "{path}");
        if mem.join("memory.memsw.limit_in_bytes").exists() {
            assert_eq!(read_cg(&mem, "memory.memsw.limit_in_bytes"), l, "{path}");
        }
        assert_eq!(read_cg(&mem, "memory.kmem.tcp.limit_in_bytes"), l, "{path}");
        assert_eq!(read_cg(&mem, "memory.swappiness"), "50", "{path}");
        assert!(
            read_cg(&mem, "memory.oom_control").contains("oom_kill_disable 1"),
            "{path}"
        );
        assert_eq!(
            read_cg(&v1_dir_of(c.pid(), "pids"), "pids.max"),
            "42",
            "{path}"
        );
        drop(c);
        drop(f);
        assert!(!mem.exists(), "{} left", mem.display());
    }
}

/// The "/" mount line of the container's own mountinfo.
fn root_mount_line(mountinfo: &str) -> String {
    mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .unwrap_or_else(|| panic!("no / in {mountinfo}"))
        .to_string()
}

/// `linux.rootfsPropagation` is applied to the container's root: shared, slave,
/// private and unbindable (shared failed: pivot_root refuses a shared parent).
#[test]
fn rootfs_propagation_is_applied() {
    require_root!();
    // (slave shows "master:" only where the host's mount holding the bundle is shared:
    // everywhere it is not shared, and private has no tag at all)
    for (prop, want, never) in [
        ("shared", Some("shared:"), "master:"),
        ("slave", None, "shared:"),
        ("private", None, ":"),
        ("unbindable", Some("unbindable"), "shared:"),
    ] {
        let mut f = Fixture::new(&["cat", "/proc/self/mountinfo"]);
        f.spec
            .linux_mut()
            .as_mut()
            .unwrap()
            .set_rootfs_propagation(Some(prop.to_string()));
        let (code, out) = f.run();
        assert_eq!(code, 0, "{prop}: {out}");
        let line = root_mount_line(&out);
        // the optional fields sit between the mount options and " - "
        let optional = line.split(" - ").next().unwrap();
        let optional: Vec<&str> = optional.split(' ').skip(6).collect();
        if let Some(tag) = want {
            assert!(
                optional.iter().any(|o| o.starts_with(tag)),
                "{prop}: {line}"
            );
        }
        assert!(
            !optional.iter().any(|o| o.contains(never)),
            "{prop}: {line}"
        );
    }
}

/// Seccomp rules with argument conditions: `kill(pid, 0)` is refused, other signals to
/// the same pid are not.
#[test]
fn seccomp_rules_with_argument_conditions_apply_in_the_container() {
    require_root!();
    let mut f = Fixture::new(&[
        "sh",
        "-c",
        "kill -0 1 2>/dev/null; echo zero=$?; kill -CONT 1; echo cont=$?",
    ]);
    let json = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{
            "names": ["kill"], "action": "SCMP_ACT_ERRNO",
            "args": [{ "index": 1, "value": 0, "op": "SCMP_CMP_EQ" }]
        }]
    });
    f.spec
        .linux_mut()
        .as_mut()
        .unwrap()
        .set_seccomp(Some(serde_json::from_value(json).unwrap()));
    let (code, out) = f.run();
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.trim(), "zero=1\ncont=0", "{out}");
}

/// "Any updates to config.json after [create] MUST NOT affect the container": the
/// bundle's config.json replaced by a bare one before `start` (from another handle,
/// as `start` in another process) changes nothing the container got.
#[test]
fn config_changes_after_create_do_not_affect_the_container() {
    require_root!();
    let f = Fixture::new(&[
        "sh",
        "-c",
        "cat /proc/sys/net/ipv4/ip_forward /proc/self/oom_score_adj; ulimit -n; hostname",
    ]);
    let mut json = spec_json(&f);
    json["linux"]["sysctl"] = serde_json::json!({ "net.ipv4.ip_forward": "1" });
    json["process"]["oomScoreAdj"] = 100.into();
    json["process"]["rlimits"] =
        serde_json::json!([{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }]);
    json["linux"]["rootfsPropagation"] = "shared".into();
    json["linux"]["maskedPaths"] = serde_json::json!(["/proc/kcore"]);
    json["linux"]["readonlyPaths"] = serde_json::json!(["/proc/fs"]);
    write_config(&f, &json);
    let mut out = Out::new();
    let mut c = from_disk(&f).stdio(out.stdio()).create().unwrap();
    write_config(&f, &serde_json::json!({ "ociVersion": "1.0.0" }));
    let mut other = Container::load(f.root(), &f.id).unwrap();
    other.start().unwrap();
    assert_eq!(c.wait().unwrap(), 0);
    assert_eq!(out.text(), "1\n100\n1024\nlongshore\n");
    c.delete(false).unwrap();
}

/// `linux.devices` with a fifo (type `p`): made as a fifo, whatever major/minor the
/// spec gives it (mknod ignores them for a fifo; the suite's linux_devices gives 8:666),
/// beside a char and a block device with theirs.
#[test]
fn devices_of_every_type_are_made_including_a_fifo_with_a_device_number() {
    require_root!();
    let mut f = Fixture::new(&[
        "sh",
        "-c",
        "for d in test1 test2 test3; do stat -c '%n %F %t:%T %a' /dev/$d; done",
    ]);
    let devices = serde_json::json!([
        { "path": "/dev/test1", "type": "c", "major": 10, "minor": 666, "fileMode": 432 },
        { "path": "/dev/test2", "type": "b", "major": 8, "minor": 666, "fileMode": 432 },
        { "path": "/dev/test3", "type": "p", "major": 8, "minor": 666, "fileMode": 432 }
    ]);
    f.spec
        .linux_mut()
        .as_mut()
        .unwrap()
        .set_devices(Some(serde_json::from_value(devices).unwrap()));
    let (code, out) = f.run();
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.trim(),
        "/dev/test1 character special file a:29a 660\n\
         /dev/test2 block special file 8:29a 660\n\
         /dev/test3 fifo 0:0 660",
        "{out}"
    );
}

/// A seccomp filter that denies `getcwd` (the suite's linux_seccomp: errno for getcwd,
/// allow the rest) does not stop the container from starting: the cwd is entered and
/// checked before the filter is loaded; the process then finds getcwd denied.
#[test]
fn a_filter_denying_getcwd_lets_the_container_start() {
    require_root!();
    let mut f = Fixture::new(&["sh", "-c", "cd /tmp && /bin/pwd -P; echo pwd=$?"]);
    // without no_new_privileges the filter is loaded before the user is set (as runc)
    f.spec
        .process_mut()
        .as_mut()
        .unwrap()
        .set_no_new_privileges(Some(false));
    let json = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{ "names": ["getcwd"], "action": "SCMP_ACT_ERRNO" }]
    });
    f.spec
        .linux_mut()
        .as_mut()
        .unwrap()
        .set_seccomp(Some(serde_json::from_value(json).unwrap()));
    let (code, out) = f.run();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.trim_end().ends_with("pwd=1"),
        "getcwd was not denied: {out}"
    );
}

/// Runs the ignored test `name` of this binary in a child process (for what must not
/// touch this process: a signal disposition, a mount namespace) and checks it passed.
fn run_child_test(name: &str) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LONGSHORE_CHILD_TEST", name)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{name}: {:?}\n{text}",
        out.status
    );
}

/// Asserts this is the child process [`run_child_test`] started for `name`.
fn in_child_test(name: &str) {
    assert_eq!(
        std::env::var("LONGSHORE_CHILD_TEST").as_deref(),
        Ok(name),
        "{name} runs only in the child process its parent test starts"
    );
}

/// A hook that exits without reading the state on its stdin does not kill the runtime
/// with SIGPIPE when the embedding program has SIGPIPE at its default disposition (as
/// `longshore-runtime` has: it resets every signal): the hook's exit status decides.
/// (The suite's prestart_fail and poststart: `create` / `start` died of SIGPIPE.)
#[test]
fn a_hook_that_ignores_its_stdin_does_not_kill_the_runtime() {
    require_root!();
    run_child_test("hook_ignoring_stdin_child");
}

#[test]
#[ignore = "run by a_hook_that_ignores_its_stdin_does_not_kill_the_runtime"]
fn hook_ignoring_stdin_child() {
    in_child_test("hook_ignoring_stdin_child");
    longshore_container::process::reset_signals();
    // the state is made larger than a pipe's buffer (an annotation of 96 KiB), so the
    // write meets the hook's exit whatever the timing
    let big = || Some([("org.longshore.big".to_string(), "x".repeat(96 * 1024))].into());
    let mut f = Fixture::new(&["true"]);
    f.spec.set_annotations(big());
    f.spec.set_hooks(Some(
        HooksBuilder::default()
            .prestart(vec![sh_hook(&f, "exit 0")])
            .poststart(vec![sh_hook(&f, "exit 0")])
            .build()
            .unwrap(),
    ));
    let mut c = f.builder().stdio(Stdio::Null).create().unwrap();
    c.start().unwrap();
    c.wait().unwrap();
    c.delete(false).unwrap();
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    // a prestart hook that fails without reading: create fails, nothing is left
    let mut f = Fixture::new(&["true"]);
    f.spec.set_annotations(big());
    f.spec.set_hooks(Some(
        HooksBuilder::default()
            .prestart(vec![sh_hook(&f, "exit 1")])
            .build()
            .unwrap(),
    ));
    assert!(matches!(
        f.builder().stdio(Stdio::Null).create(),
        Err(Error::Hook {
            hook: "prestart",
            ..
        })
    ));
    assert!(matches!(
        Container::load(f.root(), &f.id),
        Err(Error::NotFound(_))
    ));
}

/// A host where a cgroup v1 hierarchy is mounted twice (/sys/fs/cgroup bound into a
/// chroot, as another user of this machine had) still runs containers: the container's
/// /sys/fs/cgroup gets each hierarchy once (it mounted `cpu` a second time: EBUSY).
/// The second mount is made in the child's own mount namespace only.
#[test]
fn a_hierarchy_mounted_twice_on_the_host_is_mounted_once_in_the_container() {
    require_root!();
    run_child_test("hierarchy_mounted_twice_child");
}

#[test]
#[ignore = "run by a_hierarchy_mounted_twice_on_the_host_is_mounted_once_in_the_container"]
fn hierarchy_mounted_twice_child() {
    use nix::mount::{MsFlags, mount};
    in_child_test("hierarchy_mounted_twice_child");
    // this (only) thread gets a private mount namespace: /proc/self is this process
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .unwrap();
    let again = tempfile::Builder::new()
        .prefix("longshore-cg-")
        .tempdir()
        .unwrap();
    let hier = ["pids", "cpu", "memory"]
        .iter()
        .map(|h| Path::new("/sys/fs/cgroup").join(h))
        .find(|p| p.join("cgroup.procs").exists())
        .expect("a v1 hierarchy");
    mount(
        Some(&hier),
        again.path(),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    let mut f = Fixture::new(&["sh", "-c", "ls /sys/fs/cgroup"]);
    // a cgroup namespace of its own: the hierarchies are mounted, not bound
    f.spec
        .linux_mut()
        .as_mut()
        .unwrap()
        .namespaces_mut()
        .as_mut()
        .unwrap()
        .push(
            oci_spec::runtime::LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Cgroup)
                .build()
                .unwrap(),
        );
    let (code, out) = f.run();
    assert_eq!(code, 0, "{out}");
    let name = hier.file_name().unwrap().to_str().unwrap();
    assert!(out.lines().any(|l| l == name), "{out}");
}

/// Annotations are the user's to fill (Kubernetes allows 256 KiB of them): a state of
/// 200 KiB passes through the init channel to the hooks whole (a message of more than
/// 8 KiB was cut: "garbled message on the init channel").
#[test]
fn large_annotations_reach_the_hooks_whole() {
    require_root!();
    let mut f = Fixture::new(&["true"]);
    let dir = f.bundle().to_path_buf();
    f.spec.set_annotations(Some(
        [("org.longshore.big".to_string(), "y".repeat(200 * 1024))].into(),
    ));
    f.spec.set_hooks(Some(
        HooksBuilder::default()
            .prestart(vec![sh_hook(
                &f,
                &format!("cat > {}/state.json", dir.display()),
            )])
            .build()
            .unwrap(),
    ));
    let mut c = f.builder().stdio(Stdio::Null).create().unwrap();
    c.start().unwrap();
    c.wait().unwrap();
    c.delete(false).unwrap();
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
    assert_eq!(
        st["annotations"]["org.longshore.big"]
            .as_str()
            .map(str::len),
        Some(200 * 1024)
    );
}
