//! Real cgroup tests on the host's hierarchies (v1/hybrid here; unified works too).
//!
//! Every cgroup is named `longshore-<unique>` and removed by a Drop guard, also when a
//! test fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use longshore_container::cgroups::{self, CgroupError, CgroupLayout, CgroupManager, FreezerState};
use longshore_test_support::{busybox_binary, require_root, unique_name};
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder,
    LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};

/// Kills what the test started and removes its cgroup directories, whatever happened.
struct Guard {
    cg: Box<dyn CgroupManager>,
    children: Vec<Child>,
    extra_dirs: Vec<PathBuf>,
}

impl Guard {
    fn new(path: &str) -> Guard {
        let cg = cgroups::manager(Path::new(path), "unused").expect("manager");
        Guard {
            cg,
            children: Vec::new(),
            extra_dirs: Vec::new(),
        }
    }

    /// A `sleep` child placed in the cgroup.
    fn spawn_sleep(&mut self) -> i32 {
        let child = Command::new(busybox_binary().unwrap())
            .args(["sleep", "60"])
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        self.children.push(child);
        self.cg.add_task(pid).expect("add_task");
        pid
    }

    /// Runs a task in the cgroup, kills it, waits for the cgroup to empty and destroys it.
    fn used_then_destroyed(&mut self) {
        self.spawn_sleep();
        self.cg.kill_all(libc::SIGKILL).unwrap();
        let _ = self.children[0].wait();
        self.children.clear();
        wait_until("empty cgroup", || self.cg.pids().unwrap().is_empty());
        self.cg.destroy().unwrap();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = self.cg.thaw();
        let _ = self.cg.kill_all(libc::SIGKILL);
        for _ in 0..50 {
            if self.cg.destroy().is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for d in self.extra_dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn layout() -> CgroupLayout {
    cgroups::detect().expect("detect")
}

/// The file holding a value: v1 name in the controller's hierarchy, or the v2 name.
fn file(cg: &dyn CgroupManager, controller: &str, v1: &str, v2: &str) -> PathBuf {
    let paths = cg.paths();
    match cg.layout() {
        CgroupLayout::Unified => paths["unified"].join(v2),
        _ => paths[controller].join(v1),
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn memory_and_pids(limit: i64, swap: Option<i64>, pids: i64) -> LinuxResources {
    let mut mem = LinuxMemoryBuilder::default().limit(limit);
    if let Some(s) = swap {
        mem = mem.swap(s);
    }
    LinuxResourcesBuilder::default()
        .memory(mem.build().unwrap())
        .pids(LinuxPidsBuilder::default().limit(pids).build().unwrap())
        .build()
        .unwrap()
}

#[test]
fn limits_tasks_stats_freeze_kill_destroy() {
    require_root!();
    let mut g = Guard::new(&format!("/longshore-{}", unique_name("cg")));
    g.cg.create().unwrap();
    let cpu = LinuxCpuBuilder::default()
        .shares(512u64)
        .quota(50_000i64)
        .period(100_000u64)
        .build()
        .unwrap();
    let mut res = memory_and_pids(64 << 20, None, 32);
    res.set_cpu(Some(cpu));
    g.cg.apply(&res).unwrap();

    let cg = g.cg.as_ref();
    assert_eq!(
        read(&file(cg, "memory", "memory.limit_in_bytes", "memory.max")),
        "67108864"
    );
    assert_eq!(read(&file(cg, "pids", "pids.max", "pids.max")), "32");
    if cg.layout() != CgroupLayout::Unified {
        assert_eq!(read(&file(cg, "cpu", "cpu.shares", "")), "512");
        assert_eq!(read(&file(cg, "cpu", "cpu.cfs_quota_us", "")), "50000");
        assert_eq!(read(&file(cg, "cpu", "cpu.cfs_period_us", "")), "100000");
    } else {
        assert_eq!(read(&file(cg, "cpu", "", "cpu.weight")), "20");
        assert_eq!(read(&file(cg, "cpu", "", "cpu.max")), "50000 100000");
    }

    // A shell that joins first, then uses memory and CPU (v1 does not move charges
    // made before joining), then becomes `sleep`.
    let bb = busybox_binary().unwrap();
    let script = format!(
        "read go; {bb} dd if=/dev/zero of=/dev/null bs=4M count=8; exec {bb} sleep 60",
        bb = bb.display()
    );
    let mut child = Command::new(&bb)
        .args(["sh", "-c", &script])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let stdin = child.stdin.take();
    g.children.push(child);
    g.cg.add_task(pid).unwrap();
    stdin.unwrap().write_all(b"go\n").unwrap();
    let cg = g.cg.as_ref();
    wait_until("dd to finish", || {
        std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.split('\0').nth(1) == Some("sleep"))
            && cg.pids().unwrap() == vec![pid]
    });
    let stats = cg.stats().unwrap();
    assert_eq!(stats.pids_current, 1);
    assert_eq!(stats.pids_limit, Some(32));
    assert_eq!(stats.memory_limit, Some(64 << 20));
    assert!(
        stats.memory_max_usage.unwrap_or(stats.memory_usage) > 0,
        "{stats:?}"
    );
    assert!(stats.cpu_usage_ns > 0, "{stats:?}");

    // The child really is in every hierarchy.
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for dir in cg.paths().values() {
        let name = dir.file_name().unwrap().to_str().unwrap();
        assert!(own.contains(name), "{own} lacks {name}");
    }

    cg.freeze().unwrap();
    assert_eq!(cg.freezer_state().unwrap(), FreezerState::Frozen);
    cg.thaw().unwrap();
    assert_eq!(cg.freezer_state().unwrap(), FreezerState::Thawed);

    cg.kill_all(libc::SIGKILL).unwrap();
    let status = g.children[0].wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    g.children.clear();
    wait_until("empty cgroup", || g.cg.pids().unwrap().is_empty());

    let dirs: Vec<PathBuf> = g.cg.paths().into_values().collect();
    g.cg.destroy().unwrap();
    for d in &dirs {
        assert!(!d.exists(), "{} survived destroy", d.display());
    }
    // Idempotent.
    g.cg.destroy().unwrap();
}

#[test]
fn process_over_memory_limit_is_oom_killed() {
    require_root!();
    let g = Guard::new(&format!("/longshore-{}", unique_name("oom")));
    g.cg.create().unwrap();
    // memory+swap = memory: no escape into swap.
    g.cg.apply(&memory_and_pids(16 << 20, Some(16 << 20), 16))
        .unwrap();
    let bb = busybox_binary().unwrap();
    let script = format!(
        "read go; exec {} dd if=/dev/zero of=/dev/null bs=64M count=1",
        bb.display()
    );
    let mut child = Command::new(&bb)
        .args(["sh", "-c", &script])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    g.cg.add_task(child.id() as i32).unwrap();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    let stats = g.cg.stats().unwrap();
    assert!(stats.oom_kills >= 1, "{stats:?}");
}

#[test]
fn pids_limit_stops_forks() {
    require_root!();
    let g = Guard::new(&format!("/longshore-{}", unique_name("pid")));
    g.cg.create().unwrap();
    g.cg.apply(&memory_and_pids(-1, None, 2)).unwrap();
    let bb = busybox_binary().unwrap();
    // The shell and one child fit; the next forks fail.
    let script = format!(
        "read go; for i in 1 2 3; do {bb} sleep 5 >/dev/null 2>&1 & done; echo done",
        bb = bb.display()
    );
    let mut child = Command::new(&bb)
        .args(["sh", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    g.cg.add_task(child.id() as i32).unwrap();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fork"),
        "stderr {err:?}, stdout {:?}",
        out.stdout
    );
    assert!(g.cg.pids().unwrap().len() <= 2);
    g.cg.kill_all(libc::SIGKILL).unwrap();
}

#[test]
fn nested_path_inherits_cpuset_and_is_removed_with_longshore_parents() {
    require_root!();
    if layout() == CgroupLayout::Unified {
        eprintln!("v1-only test (cpuset inheritance), host is unified: skipped");
        return;
    }
    let top = format!("longshore-{}", unique_name("cs"));
    let mut g = Guard::new(&format!("/{top}/longshore-mid/leaf"));
    let cpuset = g.cg.paths()["cpuset"].clone();
    let mount = cpuset.ancestors().nth(3).unwrap().to_path_buf();
    g.extra_dirs = vec![mount.join(&top), mount.join(&top).join("longshore-mid")];
    g.cg.create().unwrap();
    let root_cpus = read(&mount.join("cpuset.cpus"));
    assert_eq!(read(&cpuset.join("cpuset.cpus")), root_cpus);
    assert_eq!(
        read(&cpuset.parent().unwrap().join("cpuset.mems")),
        read(&mount.join("cpuset.mems"))
    );
    // Without the copy, joining an empty cpuset fails with ENOSPC.
    g.spawn_sleep();
    let res = LinuxResourcesBuilder::default()
        .cpu(
            LinuxCpuBuilder::default()
                .cpus("0")
                .mems("0")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    g.cg.apply(&res).unwrap();
    assert_eq!(read(&cpuset.join("cpuset.cpus")), "0");
    g.cg.kill_all(libc::SIGKILL).unwrap();
    let _ = g.children[0].wait();
    g.children.clear();
    wait_until("empty cgroup", || g.cg.pids().unwrap().is_empty());
    g.cg.destroy().unwrap();
    assert!(!cpuset.exists());
    assert!(
        !mount.join(&top).exists(),
        "empty longshore parents are removed too"
    );
}

#[test]
fn device_rules_are_written_in_order() {
    require_root!();
    if layout() == CgroupLayout::Unified {
        eprintln!("v1 devices test, host is unified: skipped");
        return;
    }
    let g = Guard::new(&format!("/longshore-{}", unique_name("dev")));
    g.cg.create().unwrap();
    let rule = |allow: bool, typ, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(typ)
            .access(access.to_string());
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build().unwrap()
    };
    let res = LinuxResourcesBuilder::default()
        .devices(vec![
            rule(false, LinuxDeviceType::A, None, None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(1), Some(3), "rwm"),
            rule(true, LinuxDeviceType::C, Some(1), Some(5), "rw"),
            rule(true, LinuxDeviceType::C, Some(136), None, "rwm"),
            rule(false, LinuxDeviceType::C, Some(1), Some(5), "w"),
        ])
        .build()
        .unwrap();
    g.cg.apply(&res).unwrap();
    let list = read(&g.cg.paths()["devices"].join("devices.list"));
    assert_eq!(list, "c 1:3 rwm\nc 1:5 r\nc 136:* rwm");
}

#[test]
fn manager_rebuilt_from_saved_paths_drives_the_same_cgroup() {
    require_root!();
    let mut g = Guard::new(&format!("/longshore-{}", unique_name("st")));
    g.cg.create().unwrap();
    let pid = g.spawn_sleep();
    let saved = serde_json::to_string(&g.cg.paths()).unwrap();
    let paths = serde_json::from_str(&saved).unwrap();
    let again = cgroups::manager_from_state(g.cg.layout(), &paths).unwrap();
    assert_eq!(again.pids().unwrap(), vec![pid]);
    assert_eq!(again.paths(), g.cg.paths());
    again.kill_all(libc::SIGTERM).unwrap();
    let status = g.children[0].wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGTERM));
    g.children.clear();
    wait_until("empty cgroup", || again.pids().unwrap().is_empty());
    again.destroy().unwrap();
    assert!(paths.values().all(|d: &PathBuf| !d.exists()));
}

#[test]
fn kill_all_reaches_every_process() {
    require_root!();
    let mut g = Guard::new(&format!("/longshore-{}", unique_name("ka")));
    g.cg.create().unwrap();
    g.spawn_sleep();
    g.spawn_sleep();
    g.spawn_sleep();
    assert_eq!(g.cg.pids().unwrap().len(), 3);
    g.cg.kill_all(libc::SIGKILL).unwrap();
    for c in &mut g.children {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(c.wait().unwrap().signal(), Some(libc::SIGKILL));
    }
    g.children.clear();
    assert!(matches!(
        g.cg.kill_all(12345),
        Err(CgroupError::InvalidValue { .. })
    ));
}

#[test]
fn systemd_path_is_refused() {
    let err = cgroups::manager(Path::new("system.slice:longshore:abc"), "abc").unwrap_err();
    assert!(
        err.to_string()
            .contains("systemd cgroup driver is not supported"),
        "{err}"
    );
}

/// The real cgroup2 code path on this hybrid host: its cgroup2 hierarchy has no
/// controllers enabled, but the core files (cgroup.procs, cgroup.freeze, cgroup.events,
/// cgroup.kill, cpu.stat) are real. The test's own subtree stands in for the mount so
/// that nothing is enabled in the host's root.
#[test]
fn v2_core_files_on_the_real_cgroup2_hierarchy() {
    require_root!();
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mounts = cgroups::mountinfo::parse_mountinfo(&text).unwrap();
    let Some(unified) = mounts.unified else {
        eprintln!("no cgroup2 mount on this host: skipped");
        return;
    };
    let top = unified.join(format!("longshore-{}", unique_name("v2")));
    std::fs::create_dir(&top).unwrap();
    let cg = cgroups::manager_at(CgroupLayout::Unified, &top, Path::new("/ctr"), "ctr").unwrap();
    let mut g = Guard {
        cg,
        children: Vec::new(),
        extra_dirs: vec![top.clone()],
    };
    g.cg.create().unwrap();
    let dir = g.cg.paths()["unified"].clone();
    assert_eq!(dir, top.join("ctr"));
    assert!(dir.join("cgroup.procs").exists());

    // Controllers this hierarchy does not have: a limit is an error naming the
    // controller, "unlimited" is skipped with a note, device rules are a note.
    let err =
        g.cg.apply(&memory_and_pids(64 << 20, None, 10))
            .unwrap_err();
    assert!(
        matches!(
            err,
            CgroupError::MissingController {
                controller: "memory",
                ..
            }
        ),
        "{err}"
    );
    let defaults = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(-1).build().unwrap())
        .devices(vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()
                .unwrap(),
        ])
        .build()
        .unwrap();
    g.cg.apply(&defaults).unwrap();
    let notes = g.cg.warnings().join("\n");
    assert!(notes.contains("pids"), "{notes}");
    // the device rules are enforced (an eBPF program), not noted
    assert!(!notes.contains("device"), "{notes}");
    assert_eq!(cgroups::devices::attached_programs(&dir).unwrap(), 1);

    let pid = g.spawn_sleep();
    assert_eq!(g.cg.pids().unwrap(), vec![pid]);
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let rel = dir.strip_prefix(&unified).unwrap();
    assert!(
        own.lines().any(|l| l == format!("0::/{}", rel.display())),
        "{own}"
    );

    g.cg.freeze().unwrap();
    assert_eq!(g.cg.freezer_state().unwrap(), FreezerState::Frozen);
    assert!(read(&dir.join("cgroup.events")).contains("frozen 1"));
    g.cg.thaw().unwrap();
    wait_until("thaw", || {
        g.cg.freezer_state().unwrap() == FreezerState::Thawed
            && read(&dir.join("cgroup.events")).contains("frozen 0")
    });

    // SIGKILL goes through cgroup.kill.
    g.cg.kill_all(libc::SIGKILL).unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(g.children[0].wait().unwrap().signal(), Some(libc::SIGKILL));
    g.children.clear();
    wait_until("empty cgroup", || g.cg.pids().unwrap().is_empty());
    g.cg.destroy().unwrap();
    assert!(!dir.exists());
    assert!(!top.exists(), "the empty longshore-named parent goes too");
}

#[test]
fn signalling_a_paused_cgroup_keeps_it_paused() {
    require_root!();
    let mut g = Guard::new(&format!("/longshore-{}", unique_name("pz")));
    g.cg.create().unwrap();
    g.spawn_sleep();
    g.cg.freeze().unwrap();
    g.cg.kill_all(libc::SIGTERM).unwrap();
    assert_eq!(g.cg.freezer_state().unwrap(), FreezerState::Frozen);
    // The signal is pending; it lands on thaw.
    assert_eq!(g.children[0].try_wait().unwrap(), None);
    g.cg.thaw().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(g.children[0].wait().unwrap().signal(), Some(libc::SIGTERM));
    g.children.clear();
}

/// Containers created and destroyed concurrently under one shared `longshore-*` parent,
/// which each destroy removes when it is empty: creates must survive the parent
/// vanishing under them (cpuset copies included), and nothing is left at the end.
#[test]
fn concurrent_create_destroy_under_a_shared_parent() {
    require_root!();
    let top = format!("longshore-{}", unique_name("cc"));
    let probe = cgroups::manager(Path::new(&format!("/{top}/probe")), "x").unwrap();
    let tops: Vec<PathBuf> = probe
        .paths()
        .values()
        .map(|d| d.parent().unwrap().to_path_buf())
        .collect();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let top = top.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    let cg = cgroups::manager(Path::new(&format!("/{top}/c{t}-{i}")), "x").unwrap();
                    let made = cg.create();
                    let gone = cg.destroy();
                    made.unwrap();
                    gone.unwrap();
                }
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join()).collect();
    let leftovers: Vec<_> = tops.iter().filter(|d| d.exists()).collect();
    for d in &leftovers {
        let _ = std::fs::remove_dir(d);
    }
    assert!(results.iter().all(|r| r.is_ok()), "a thread failed");
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

/// Updating limits of a live cgroup: memory+swap must stay >= memory at every write, so
/// raising both writes swap first and lowering both writes memory first (runc's order).
#[test]
fn memory_and_swap_limits_can_be_raised_and_lowered() {
    require_root!();
    if layout() == CgroupLayout::Unified {
        eprintln!("v1 memsw ordering test, host is unified: skipped");
        return;
    }
    let g = Guard::new(&format!("/longshore-{}", unique_name("up")));
    g.cg.create().unwrap();
    let dir = g.cg.paths()["memory"].clone();
    if !dir.join("memory.memsw.limit_in_bytes").exists() {
        eprintln!("no swap accounting on this host: skipped");
        return;
    }
    for mib in [64i64, 128, 32, 256, 16] {
        let bytes = mib << 20;
        g.cg.apply(&memory_and_pids(bytes, Some(bytes), 0)).unwrap();
        assert_eq!(read(&dir.join("memory.limit_in_bytes")), bytes.to_string());
        assert_eq!(
            read(&dir.join("memory.memsw.limit_in_bytes")),
            bytes.to_string()
        );
    }
    // Back to unlimited: -1 for memory alone sets memory+swap unlimited too.
    g.cg.apply(&memory_and_pids(-1, None, 0)).unwrap();
    assert_eq!(g.cg.stats().unwrap().memory_limit, None);
    let memsw: u64 = read(&dir.join("memory.memsw.limit_in_bytes"))
        .parse()
        .unwrap();
    assert!(memsw > 1 << 62);
}

/// cgroup v2 device rules are enforced for real (issue 9): on this host's cgroup2
/// hierarchy (no controller needed), a process in the cgroup opens an allowed device
/// (/dev/null, 1:3) and is refused a denied one (/dev/zero, 1:5); an update replaces the
/// program rather than adding one.
#[test]
fn v2_device_rules_are_enforced_with_ebpf() {
    require_root!();
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mounts = cgroups::mountinfo::parse_mountinfo(&text).unwrap();
    let Some(unified) = mounts.unified else {
        longshore_test_support::skip!("no cgroup2 mount on this host");
    };
    let top = unified.join(format!("longshore-{}", unique_name("dv")));
    std::fs::create_dir(&top).unwrap();
    let cg = cgroups::manager_at(CgroupLayout::Unified, &top, Path::new("/ctr"), "ctr").unwrap();
    let g = Guard {
        cg,
        children: Vec::new(),
        extra_dirs: vec![top.clone()],
    };
    g.cg.create().unwrap();
    let dir = g.cg.paths()["unified"].clone();
    let rule = |allow: bool, major: Option<i64>, minor: Option<i64>| {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .access("rwm");
        if let Some(m) = major {
            b = b.typ(oci_spec::runtime::LinuxDeviceType::C).major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build().unwrap()
    };
    let with = |rules| {
        LinuxResourcesBuilder::default()
            .devices(rules)
            .build()
            .unwrap()
    };
    // a shell that moves itself into the cgroup, then opens both devices
    let probe = || {
        let script = format!(
            "echo $$ > {}/cgroup.procs || exit 9; \
             (exec 3</dev/null) 2>/dev/null && echo null-ok || echo null-denied; \
             (exec 3</dev/zero) 2>/dev/null && echo zero-ok || echo zero-denied",
            dir.display()
        );
        let out = Command::new("sh").args(["-c", &script]).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    g.cg.apply(&with(vec![
        rule(false, None, None),
        rule(true, Some(1), Some(3)),
    ]))
    .unwrap();
    assert_eq!(probe(), "null-ok zero-denied");
    // an update replaces the program: now /dev/zero too
    g.cg.apply(&with(vec![
        rule(false, None, None),
        rule(true, Some(1), Some(3)),
        rule(true, Some(1), Some(5)),
    ]))
    .unwrap();
    assert_eq!(probe(), "null-ok zero-ok");
    assert_eq!(cgroups::devices::attached_programs(&dir).unwrap(), 1);
    drop(g);
}

/// The real cgroup, except that its freezer never reaches FROZEN (a task the freezer
/// cannot stop, as on a loaded machine where `rm -f` once left a container running).
#[derive(Debug)]
struct Unfreezable(Box<dyn CgroupManager>);

impl CgroupManager for Unfreezable {
    fn layout(&self) -> CgroupLayout {
        self.0.layout()
    }
    fn create(&self) -> Result<(), CgroupError> {
        self.0.create()
    }
    fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        self.0.apply(resources)
    }
    fn add_task(&self, pid: i32) -> Result<(), CgroupError> {
        self.0.add_task(pid)
    }
    fn freeze(&self) -> Result<(), CgroupError> {
        Err(CgroupError::FreezeTimeout {
            path: PathBuf::from("freezer.state"),
            waited: Duration::from_secs(5),
            state: "FREEZING".into(),
        })
    }
    fn thaw(&self) -> Result<(), CgroupError> {
        self.0.thaw()
    }
    fn freezer_state(&self) -> Result<FreezerState, CgroupError> {
        self.0.freezer_state()
    }
    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        self.0.pids()
    }
    fn stats(&self) -> Result<cgroups::Stats, CgroupError> {
        self.0.stats()
    }
    fn destroy(&self) -> Result<(), CgroupError> {
        self.0.destroy()
    }
    fn paths(&self) -> std::collections::BTreeMap<String, PathBuf> {
        self.0.paths()
    }
}

#[test]
fn sigkill_reaches_a_cgroup_that_does_not_freeze() {
    require_root!();
    let path = format!("/longshore-{}", unique_name("nofreeze"));
    let mut g = Guard::new(&path);
    g.cg.create().unwrap();
    g.spawn_sleep();
    let u = Unfreezable(cgroups::manager(Path::new(&path), "unused").unwrap());
    // another signal reports the freezer's failure (nothing was sent)
    assert!(matches!(
        u.kill_all(libc::SIGTERM),
        Err(CgroupError::FreezeTimeout { .. })
    ));
    // a kill goes through unfrozen
    u.kill_all(libc::SIGKILL).unwrap();
    let status = g.children[0].wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    g.children.clear();
    wait_until("empty cgroup", || g.cg.pids().unwrap().is_empty());
}

/// The shared default parent (`longshore`, as Docker keeps `docker`) outlives its last
/// container, so the next start makes one directory per hierarchy instead of three; a
/// caller's own `longshore-*` parent below it still goes with its last child.
#[test]
fn the_shared_longshore_parent_stays_and_a_callers_own_parent_goes() {
    require_root!();
    let own = format!("longshore-{}", unique_name("keep"));
    let mut g = Guard::new(&format!("/longshore/{own}/leaf"));
    g.cg.create().unwrap();
    let paths = g.cg.paths();
    assert!(!paths.is_empty());
    g.used_then_destroyed();
    for leaf in paths.values() {
        let own_dir = leaf.parent().unwrap();
        let shared = own_dir.parent().unwrap();
        assert!(!leaf.exists(), "{}", leaf.display());
        assert!(!own_dir.exists(), "{}", own_dir.display());
        assert!(shared.is_dir(), "{} was removed", shared.display());
        assert_eq!(shared.file_name().unwrap(), "longshore");
    }
}

/// A container's cgroup is removed with one rmdir when it has no child; one that has
/// cgroups of its own below it (a container running systemd, or nested containers, makes
/// them) is listed and removed deepest first, whatever the kernel answers the first rmdir.
#[test]
fn destroy_removes_child_cgroups_made_inside() {
    require_root!();
    let mut g = Guard::new(&format!("/longshore-{}", unique_name("nest")));
    g.cg.create().unwrap();
    let paths = g.cg.paths();
    assert!(!paths.is_empty());
    let mut made = Vec::new();
    for dir in paths.values() {
        let deep = dir.join("inner").join("deeper");
        std::fs::create_dir_all(&deep).unwrap();
        made.push(deep);
    }
    g.used_then_destroyed();
    for (dir, deep) in paths.values().zip(&made) {
        assert!(!deep.exists(), "{}", deep.display());
        assert!(!dir.exists(), "{}", dir.display());
    }
}
