//! cgroup file-writing logic against fake cgroupfs trees in a tempdir: v2 (this host
//! has no cgroup2 controllers) and v1 hosts without some controllers.
//!
//! Each tree holds the files a real cgroup directory has, with their initial values;
//! the tests assert exactly what was written, and that nothing else changed.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use longshore_container::cgroups::{self, CgroupError, CgroupLayout, FreezerState};
use oci_spec::runtime::{
    LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxHugepageLimitBuilder,
    LinuxMemoryBuilder, LinuxNetworkBuilder, LinuxPidsBuilder, LinuxResources,
    LinuxResourcesBuilder,
};

fn put(dir: &Path, files: &[(&str, &str)]) {
    fs::create_dir_all(dir).unwrap();
    for (name, value) in files {
        fs::write(dir.join(name), value).unwrap();
    }
}

/// Every file under `root` with its content.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    fs::read_to_string(&p).unwrap(),
                );
            }
        }
    }
    out
}

/// Changed files between two snapshots, as (path, new content).
fn changes(
    before: &BTreeMap<PathBuf, String>,
    after: &BTreeMap<PathBuf, String>,
) -> Vec<(String, String)> {
    assert_eq!(before.len(), after.len(), "files were created or removed");
    after
        .iter()
        .filter(|(p, v)| before.get(*p) != Some(v))
        .map(|(p, v)| (p.display().to_string(), v.clone()))
        .collect()
}

const LEAF_V2: &[(&str, &str)] = &[
    ("cgroup.controllers", "cpuset cpu io memory pids"),
    ("cgroup.subtree_control", ""),
    ("cgroup.procs", ""),
    ("cgroup.freeze", "0"),
    ("cgroup.events", "populated 0\nfrozen 0\n"),
    ("cpu.weight", "100"),
    ("cpu.max", "max 100000"),
    (
        "cpu.stat",
        "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
    ),
    ("cpuset.cpus", ""),
    ("cpuset.mems", ""),
    ("memory.max", "max"),
    ("memory.low", "0"),
    ("memory.swap.max", "max"),
    ("memory.current", "4096"),
    ("memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 2\n"),
    ("pids.max", "max"),
    ("pids.current", "3"),
    ("io.weight", "default 100"),
    ("io.max", ""),
];

/// A unified tree: root, `longshore/`, and the container's leaf `longshore/<id>`.
fn v2_tree(id: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::Builder::new()
        .prefix("longshore-cgv2-")
        .tempdir()
        .unwrap();
    let root = tmp.path().to_path_buf();
    put(
        &root,
        &[
            (
                "cgroup.controllers",
                "cpuset cpu io memory hugetlb pids rdma misc",
            ),
            ("cgroup.subtree_control", ""),
        ],
    );
    put(
        &root.join("longshore"),
        &[
            ("cgroup.controllers", "cpuset cpu io memory pids"),
            ("cgroup.subtree_control", "cpu"),
        ],
    );
    put(&root.join("longshore").join(id), LEAF_V2);
    (tmp, root)
}

fn full_resources() -> LinuxResources {
    LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64i64 << 20)
                .swap(96i64 << 20)
                .reservation(32i64 << 20)
                .build()
                .unwrap(),
        )
        .cpu(
            LinuxCpuBuilder::default()
                .shares(1024u64)
                .quota(50_000i64)
                .period(100_000u64)
                .cpus("0-1")
                .mems("0")
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(100).build().unwrap())
        .block_io(
            LinuxBlockIoBuilder::default()
                .weight(500u16)
                .build()
                .unwrap(),
        )
        .devices(vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()
                .unwrap(),
        ])
        .build()
        .unwrap()
}

#[test]
fn v2_create_enables_controllers_in_parents() {
    let (_tmp, root) = v2_tree("c1");
    let before = snapshot(&root);
    let cg = cgroups::manager_at(
        CgroupLayout::Unified,
        &root,
        Path::new("/longshore/c1"),
        "c1",
    )
    .unwrap();
    cg.create().unwrap();
    let got = changes(&before, &snapshot(&root));
    assert_eq!(
        got,
        vec![
            (
                "cgroup.subtree_control".into(),
                "+cpuset +cpu +io +memory +hugetlb +pids +rdma +misc".into()
            ),
            (
                "longshore/cgroup.subtree_control".into(),
                "+cpuset +io +memory +pids".into()
            ),
        ]
    );
    assert_eq!(cg.paths()["unified"], root.join("longshore/c1"));
}

#[test]
fn v2_apply_writes_exactly_the_unified_files() {
    let (_tmp, root) = v2_tree("c2");
    let cg = cgroups::manager_at(
        CgroupLayout::Unified,
        &root,
        Path::new("/longshore/c2"),
        "c2",
    )
    .unwrap();
    let before = snapshot(&root);
    // v2 device rules are an eBPF program, not files: they need the real cgroup2
    // hierarchy (cgroups_real.rs v2_device_rules_are_enforced_with_ebpf)
    let mut resources = full_resources();
    resources.set_devices(None);
    cg.apply(&resources).unwrap();
    let got = changes(&before, &snapshot(&root));
    let leaf = |f: &str| format!("longshore/c2/{f}");
    let want: Vec<(String, String)> = vec![
        (leaf("cpu.max"), "50000 100000".into()),
        (leaf("cpu.weight"), "39".into()),
        (leaf("cpuset.cpus"), "0-1".into()),
        (leaf("cpuset.mems"), "0".into()),
        (leaf("io.weight"), "4950".into()),
        (leaf("memory.low"), (32u64 << 20).to_string()),
        (leaf("memory.max"), (64u64 << 20).to_string()),
        (leaf("memory.swap.max"), (32u64 << 20).to_string()),
        (leaf("pids.max"), "100".into()),
    ];
    assert_eq!(got, want);
}

#[test]
fn v2_unset_values_write_nothing() {
    let (_tmp, root) = v2_tree("c3");
    let cg = cgroups::manager_at(
        CgroupLayout::Unified,
        &root,
        Path::new("/longshore/c3"),
        "c3",
    )
    .unwrap();
    let before = snapshot(&root);
    let empty = LinuxResourcesBuilder::default()
        .memory(LinuxMemoryBuilder::default().build().unwrap())
        .cpu(LinuxCpuBuilder::default().build().unwrap())
        .build()
        .unwrap();
    cg.apply(&empty).unwrap();
    assert!(changes(&before, &snapshot(&root)).is_empty());
    assert!(cg.warnings().is_empty(), "{:?}", cg.warnings());
}

#[test]
fn v2_missing_controller_is_an_error_only_for_non_default_values() {
    let (_tmp, root) = v2_tree("c4");
    let leaf = root.join("longshore/c4");
    fs::write(leaf.join("cgroup.controllers"), "cpu memory").unwrap();
    let cg = cgroups::manager_at(
        CgroupLayout::Unified,
        &root,
        Path::new("/longshore/c4"),
        "c4",
    )
    .unwrap();
    // pids -1 is "unlimited", the default: skipped with a note.
    let unlimited = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(-1).build().unwrap())
        .build()
        .unwrap();
    cg.apply(&unlimited).unwrap();
    assert_eq!(fs::read_to_string(leaf.join("pids.max")).unwrap(), "max");
    assert!(
        cg.warnings().iter().any(|w| w.contains("pids")),
        "{:?}",
        cg.warnings()
    );
    let limited = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(10).build().unwrap())
        .build()
        .unwrap();
    let err = cg.apply(&limited).unwrap_err();
    assert!(
        matches!(
            err,
            CgroupError::MissingController {
                controller: "pids",
                ..
            }
        ),
        "{err}"
    );
    let huge = LinuxResourcesBuilder::default()
        .hugepage_limits(vec![
            LinuxHugepageLimitBuilder::default()
                .page_size("2MB")
                .limit(1i64 << 21)
                .build()
                .unwrap(),
        ])
        .build()
        .unwrap();
    let err = cg.apply(&huge).unwrap_err();
    assert!(err.to_string().contains("hugetlb"), "{err}");
}

#[test]
fn v2_tasks_freezer_stats_and_state_round_trip() {
    let (_tmp, root) = v2_tree("c5");
    let leaf = root.join("longshore/c5");
    let cg = cgroups::manager_at(
        CgroupLayout::Unified,
        &root,
        Path::new("/longshore/c5"),
        "c5",
    )
    .unwrap();
    cg.add_task(4242).unwrap();
    assert_eq!(
        fs::read_to_string(leaf.join("cgroup.procs")).unwrap(),
        "4242"
    );
    assert_eq!(cg.pids().unwrap(), vec![4242]);

    // The kernel would flip cgroup.events; the fake says "frozen 1" up front.
    fs::write(leaf.join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
    cg.freeze().unwrap();
    assert_eq!(fs::read_to_string(leaf.join("cgroup.freeze")).unwrap(), "1");
    assert_eq!(cg.freezer_state().unwrap(), FreezerState::Frozen);
    cg.thaw().unwrap();
    assert_eq!(fs::read_to_string(leaf.join("cgroup.freeze")).unwrap(), "0");
    assert_eq!(cg.freezer_state().unwrap(), FreezerState::Thawed);

    fs::write(leaf.join("memory.max"), "67108864").unwrap();
    let s = cg.stats().unwrap();
    assert_eq!(s.cpu_usage_ns, 1_500_000);
    assert_eq!(s.cpu_user_ns, 1_000_000);
    assert_eq!(s.cpu_system_ns, 500_000);
    assert_eq!(s.memory_usage, 4096);
    assert_eq!(s.memory_limit, Some(64 << 20));
    assert_eq!(s.oom_kills, 2);
    assert_eq!(s.pids_current, 3);
    assert_eq!(s.pids_limit, None);

    let again = cgroups::manager_from_state(CgroupLayout::Unified, &cg.paths()).unwrap();
    assert_eq!(again.paths(), cg.paths());
    again.add_task(7).unwrap();
    assert_eq!(fs::read_to_string(leaf.join("cgroup.procs")).unwrap(), "7");
}

#[test]
fn v2_create_and_destroy_a_fresh_leaf() {
    let (_tmp, root) = v2_tree("other");
    let cg = cgroups::manager_at(
        CgroupLayout::Unified,
        &root,
        Path::new("/longshore/c6"),
        "c6",
    )
    .unwrap();
    cg.create().unwrap();
    assert!(root.join("longshore/c6").is_dir());
    cg.destroy().unwrap();
    assert!(!root.join("longshore/c6").exists());
    // Idempotent, and the shared parent (still holding files here) is kept.
    cg.destroy().unwrap();
    assert!(root.join("longshore").is_dir());
}

#[test]
fn v2_unified_keys_are_written_and_checked() {
    let (_tmp, root) = v2_tree("c7");
    let leaf = root.join("longshore/c7");
    fs::write(leaf.join("memory.high"), "max").unwrap();
    let cg = cgroups::manager_at(
        CgroupLayout::Unified,
        &root,
        Path::new("/longshore/c7"),
        "c7",
    )
    .unwrap();
    let mut r = LinuxResources::default();
    r.set_unified(Some(
        [("memory.high".to_string(), "1000000".to_string())].into(),
    ));
    cg.apply(&r).unwrap();
    assert_eq!(
        fs::read_to_string(leaf.join("memory.high")).unwrap(),
        "1000000"
    );
    for bad in ["../../etc/passwd", "cgroup.procs", "nosuch.file"] {
        r.set_unified(Some([(bad.to_string(), "1".to_string())].into()));
        assert!(cg.apply(&r).is_err(), "{bad} accepted");
    }
}

/// A v1 host with memory, pids and cpuset but no hugetlb, net_cls or net_prio.
fn v1_tree(id: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::Builder::new()
        .prefix("longshore-cgv1-")
        .tempdir()
        .unwrap();
    let root = tmp.path().to_path_buf();
    put(
        &root.join("cpuset"),
        &[("cpuset.cpus", "0-3"), ("cpuset.mems", "0")],
    );
    put(
        &root.join("cpuset/longshore"),
        &[("cpuset.cpus", "0-3"), ("cpuset.mems", "0")],
    );
    put(
        &root.join("cpuset/longshore").join(id),
        &[
            ("cpuset.cpus", ""),
            ("cpuset.mems", ""),
            ("cgroup.procs", ""),
        ],
    );
    put(
        &root.join("memory/longshore").join(id),
        &[
            ("memory.limit_in_bytes", "9223372036854771712"),
            ("memory.memsw.limit_in_bytes", "9223372036854771712"),
            ("memory.soft_limit_in_bytes", "9223372036854771712"),
            ("memory.swappiness", "60"),
            ("cgroup.procs", ""),
        ],
    );
    put(
        &root.join("pids/longshore").join(id),
        &[("pids.max", "max"), ("cgroup.procs", "")],
    );
    put(
        &root.join("cpu,cpuacct/longshore").join(id),
        &[
            ("cpu.shares", "1024"),
            ("cpu.cfs_quota_us", "-1"),
            ("cpu.cfs_period_us", "100000"),
            ("cgroup.procs", ""),
        ],
    );
    (tmp, root)
}

#[test]
fn v1_writes_and_comounted_cpu_cpuacct() {
    let (_tmp, root) = v1_tree("a");
    let cg = cgroups::manager_at(CgroupLayout::V1, &root, Path::new("/longshore/a"), "a").unwrap();
    let paths = cg.paths();
    assert_eq!(paths["cpu"], paths["cpuacct"]);
    assert_eq!(paths["cpu"], root.join("cpu,cpuacct/longshore/a"));
    let before = snapshot(&root);
    let r = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64i64 << 20)
                .swap(128i64 << 20)
                .swappiness(10u64)
                .build()
                .unwrap(),
        )
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(20_000i64)
                .cpus("1")
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(50).build().unwrap())
        .build()
        .unwrap();
    cg.apply(&r).unwrap();
    let got = changes(&before, &snapshot(&root));
    let want: Vec<(String, String)> = vec![
        (
            "cpu,cpuacct/longshore/a/cpu.cfs_quota_us".into(),
            "20000".into(),
        ),
        ("cpu,cpuacct/longshore/a/cpu.shares".into(), "512".into()),
        ("cpuset/longshore/a/cpuset.cpus".into(), "1".into()),
        (
            "memory/longshore/a/memory.limit_in_bytes".into(),
            (64u64 << 20).to_string(),
        ),
        (
            "memory/longshore/a/memory.memsw.limit_in_bytes".into(),
            (128u64 << 20).to_string(),
        ),
        ("memory/longshore/a/memory.swappiness".into(), "10".into()),
        ("pids/longshore/a/pids.max".into(), "50".into()),
    ];
    assert_eq!(got, want);
    cg.add_task(99).unwrap();
    for d in cg.paths().values() {
        assert_eq!(fs::read_to_string(d.join("cgroup.procs")).unwrap(), "99");
    }
}

#[test]
fn v1_missing_controllers_are_skipped_or_named_in_the_error() {
    let (_tmp, root) = v1_tree("b");
    let cg = cgroups::manager_at(CgroupLayout::V1, &root, Path::new("/longshore/b"), "b").unwrap();
    // The default (empty) device list and no hugepage limits: fine without the hierarchies,
    // and nothing to warn about (warnings are what a container asked for and did not get,
    // not a description of the host)
    cg.apply(&LinuxResources::default()).unwrap();
    assert!(cg.warnings().is_empty(), "{:?}", cg.warnings());
    let huge = LinuxResourcesBuilder::default()
        .hugepage_limits(vec![
            LinuxHugepageLimitBuilder::default()
                .page_size("2MB")
                .limit(1i64 << 21)
                .build()
                .unwrap(),
        ])
        .build()
        .unwrap();
    let err = cg.apply(&huge).unwrap_err();
    assert!(
        matches!(
            err,
            CgroupError::MissingController {
                controller: "hugetlb",
                ..
            }
        ),
        "{err}"
    );
    let net = LinuxResourcesBuilder::default()
        .network(
            LinuxNetworkBuilder::default()
                .class_id(0x100001u32)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let err = cg.apply(&net).unwrap_err();
    assert!(err.to_string().contains("net_cls"), "{err}");
    // No freezer: pause names the controller.
    let err = cg.freeze().unwrap_err();
    assert!(err.to_string().contains("freezer"), "{err}");
}

#[test]
fn bad_cgroups_paths_are_refused() {
    let (_tmp, root) = v2_tree("x");
    for bad in ["/", "/a/../../etc", "machine.slice:libpod:abc"] {
        assert!(
            cgroups::manager_at(CgroupLayout::Unified, &root, Path::new(bad), "x").is_err(),
            "{bad} accepted"
        );
    }
}

/// Each bad value is refused with an error naming it, and no file changes, on v1 and v2.
#[test]
fn bad_resource_values_are_refused_before_anything_is_written() {
    let json = |s: &str| -> LinuxResources { serde_json::from_str(s).unwrap() };
    let bad = [
        (
            r#"{"memory":{"limit":67108864},"cpu":{"shares":1}}"#,
            "cpu.shares",
        ),
        (
            r#"{"memory":{"limit":67108864,"swap":1048576}}"#,
            "memory.swap",
        ),
        (r#"{"memory":{"limit":-5}}"#, "memory.limit"),
        (
            r#"{"pids":{"limit":5},"memory":{"swappiness":200}}"#,
            "memory.swappiness",
        ),
        (
            r#"{"pids":{"limit":5},"devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rwx"}]}"#,
            "device rule access",
        ),
        (
            r#"{"pids":{"limit":5},"cpu":{"cpus":"0-1; rm -rf /"}}"#,
            "cpu.cpus",
        ),
        (
            r#"{"pids":{"limit":5},"hugepageLimits":[{"pageSize":"../../x","limit":1}]}"#,
            "hugepage pageSize",
        ),
        (
            r#"{"pids":{"limit":5},"unified":{"../../../etc/passwd":"x"}}"#,
            "unified key",
        ),
    ];
    let (_t1, v1root) = v1_tree("bad");
    let (_t2, v2root) = v2_tree("bad");
    let v1 = cgroups::manager_at(
        CgroupLayout::V1,
        &v1root,
        Path::new("/longshore/bad"),
        "bad",
    )
    .unwrap();
    let v2 = cgroups::manager_at(
        CgroupLayout::Unified,
        &v2root,
        Path::new("/longshore/bad"),
        "bad",
    )
    .unwrap();
    for (spec, field) in bad {
        for (cg, root) in [(&v1, &v1root), (&v2, &v2root)] {
            let before = snapshot(root);
            let err = cg.apply(&json(spec)).unwrap_err();
            assert!(
                matches!(err, CgroupError::InvalidValue { .. }),
                "{spec}: {err}"
            );
            assert!(err.to_string().contains(field), "{spec}: {err}");
            assert!(
                changes(&before, &snapshot(root)).is_empty(),
                "{spec} wrote something"
            );
        }
    }
}
