//! Parsing `/proc/self/mountinfo` into the host's cgroup hierarchies.
//!
//! The parser is a pure function over the file's text so that v1-only, unified and
//! hybrid hosts can all be unit-tested from samples.

use std::path::{Path, PathBuf};

use super::{CgroupError, CgroupLayout};

/// The v1 controllers (subsystems) the kernel knows. Anything else in a cgroup mount's
/// super options (`rw`, `clone_children`, `release_agent=...`) is not a controller.
pub(crate) const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "blkio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

/// One v1 hierarchy: a cgroup filesystem mount with its controllers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    /// Where it is mounted (e.g. `/sys/fs/cgroup/memory`).
    pub mount_point: PathBuf,
    /// The cgroup (inside the hierarchy) that is the root of this mount, usually `/`.
    pub root: PathBuf,
    /// Controllers attached (`["cpu", "cpuacct"]` when co-mounted), or the named
    /// hierarchy as `name=systemd`.
    pub controllers: Vec<String>,
}

/// Every cgroup filesystem mounted on the host, as read from mountinfo.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupMounts {
    /// v1 hierarchies, in mount order, one entry per distinct controller set.
    pub v1: Vec<V1Hierarchy>,
    /// The first cgroup2 mount point, if any.
    pub unified: Option<PathBuf>,
    /// The root of the cgroup2 mount (usually `/`).
    pub unified_root: Option<PathBuf>,
}

impl CgroupMounts {
    /// The layout these mounts make: v1 controllers decide (hybrid when a cgroup2
    /// mount sits beside them); cgroup2 alone is unified.
    pub fn layout(&self) -> Result<CgroupLayout, CgroupError> {
        let has_v1_controller = self
            .v1
            .iter()
            .any(|h| h.controllers.iter().any(|c| !c.starts_with("name=")));
        match (has_v1_controller, self.unified.is_some()) {
            (true, true) => Ok(CgroupLayout::Hybrid),
            (true, false) => Ok(CgroupLayout::V1),
            (false, true) => Ok(CgroupLayout::Unified),
            (false, false) => Err(CgroupError::NoCgroupFs),
        }
    }

    /// The v1 hierarchy a controller is attached to.
    pub fn v1_hierarchy(&self, controller: &str) -> Option<&V1Hierarchy> {
        self.v1
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
    }
}

/// Parses mountinfo text (see `proc(5)`) and keeps the cgroup and cgroup2 mounts.
///
/// Malformed lines are an error naming the line: the file comes from the kernel, so a
/// line that does not parse means we are reading something else.
pub fn parse_mountinfo(text: &str) -> Result<CgroupMounts, CgroupError> {
    let mut mounts = CgroupMounts::default();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = || CgroupError::Mountinfo {
            line: n + 1,
            text: line.to_string(),
        };
        let (pre, post) = line.split_once(" - ").ok_or_else(bad)?;
        let pre: Vec<&str> = pre.split(' ').collect();
        if pre.len() < 6 {
            return Err(bad());
        }
        let mut post = post.split(' ');
        let fstype = post.next().ok_or_else(bad)?;
        let _source = post.next().ok_or_else(bad)?;
        let super_opts = post.next().unwrap_or("");
        let root = PathBuf::from(unescape(pre[3]));
        let mount_point = PathBuf::from(unescape(pre[4]));
        match fstype {
            "cgroup2" if mounts.unified.is_none() => {
                mounts.unified = Some(mount_point);
                mounts.unified_root = Some(root);
            }
            "cgroup" => {
                let controllers: Vec<String> = super_opts
                    .split(',')
                    .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                    .map(str::to_string)
                    .collect();
                if controllers.is_empty() {
                    continue;
                }
                // A hierarchy may be mounted more than once (bind mounts): keep the first.
                if mounts.v1.iter().any(|h| h.controllers == controllers) {
                    continue;
                }
                mounts.v1.push(V1Hierarchy {
                    mount_point,
                    root,
                    controllers,
                });
            }
            _ => {}
        }
    }
    Ok(mounts)
}

/// Undoes mountinfo's octal escapes (`\040` for space, `\011` tab, `\012` newline,
/// `\134` backslash).
pub(crate) fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = u32::from(b[i + 1] - b'0') * 64
                + u32::from(b[i + 2] - b'0') * 8
                + u32::from(b[i + 3] - b'0');
            if let Ok(v) = u8::try_from(v) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where a cgroup (given relative to its hierarchy's root) lives under a mount whose own
/// root is `mount_root` (not `/` inside a cgroup namespace or a bind-mounted subtree):
/// the mount's root prefix is dropped when the path starts with it, as runc does.
pub(crate) fn dir_in_mount(mount_point: &Path, mount_root: &Path, rel: &Path) -> PathBuf {
    let abs = Path::new("/").join(rel);
    let inside = if mount_root != Path::new("/") {
        abs.strip_prefix(mount_root).unwrap_or(rel)
    } else {
        rel
    };
    let inside = inside.strip_prefix("/").unwrap_or(inside);
    mount_point.join(inside)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine: v1 controllers, cpu and cpuacct apart, empty cgroup2 at unified.
    const HYBRID: &str = "\
23 1 0:21 / /sys rw,nosuid - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// A classic v1-only host (CentOS 7 style) with co-mounted cpu,cpuacct.
    const V1_ONLY: &str = "\
25 18 0:21 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:8 - tmpfs tmpfs ro,mode=755
26 25 0:22 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd
29 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,cpu,cpuacct
30 25 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,memory
31 25 0:27 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,net_cls,net_prio
32 25 0:28 / /sys/fs/cgroup/hugetlb rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,hugetlb
33 25 0:29 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpuset,clone_children
40 25 0:29 / /mnt/again rw,relatime shared:14 - cgroup cgroup rw,cpuset,clone_children
";

    /// A unified host (Debian 12, Fedora).
    const UNIFIED: &str = "\
22 1 0:20 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
26 21 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn hybrid_host_with_separate_cpu_and_cpuacct() {
        let m = parse_mountinfo(HYBRID).unwrap();
        assert_eq!(m.layout().unwrap(), CgroupLayout::Hybrid);
        assert_eq!(m.v1.len(), 9);
        assert_eq!(
            m.v1_hierarchy("cpu").unwrap().mount_point,
            Path::new("/sys/fs/cgroup/cpu")
        );
        assert_eq!(
            m.v1_hierarchy("cpuacct").unwrap().mount_point,
            Path::new("/sys/fs/cgroup/cpuacct")
        );
        assert_eq!(
            m.v1_hierarchy("name=systemd").unwrap().mount_point,
            Path::new("/sys/fs/cgroup/systemd")
        );
        assert!(m.v1_hierarchy("hugetlb").is_none());
        assert_eq!(
            m.unified.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn v1_host_with_comounted_controllers() {
        let m = parse_mountinfo(V1_ONLY).unwrap();
        assert_eq!(m.layout().unwrap(), CgroupLayout::V1);
        let cpu = m.v1_hierarchy("cpu").unwrap();
        assert_eq!(cpu.controllers, ["cpu", "cpuacct"]);
        assert_eq!(cpu, m.v1_hierarchy("cpuacct").unwrap());
        assert_eq!(cpu.mount_point, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(
            m.v1_hierarchy("net_prio").unwrap().mount_point,
            Path::new("/sys/fs/cgroup/net_cls,net_prio")
        );
        // clone_children is an option, not a controller; the second cpuset mount is ignored.
        let cpuset = m.v1_hierarchy("cpuset").unwrap();
        assert_eq!(cpuset.controllers, ["cpuset"]);
        assert_eq!(cpuset.mount_point, Path::new("/sys/fs/cgroup/cpuset"));
        assert_eq!(m.v1.len(), 6);
        assert!(m.unified.is_none());
        assert!(m.v1_hierarchy("pids").is_none());
    }

    #[test]
    fn unified_host() {
        let m = parse_mountinfo(UNIFIED).unwrap();
        assert_eq!(m.layout().unwrap(), CgroupLayout::Unified);
        assert!(m.v1.is_empty());
        assert_eq!(m.unified.as_deref(), Some(Path::new("/sys/fs/cgroup")));
    }

    #[test]
    fn no_cgroup_mounts_is_an_error() {
        let m = parse_mountinfo("22 1 0:20 / /proc rw - proc proc rw\n").unwrap();
        assert!(matches!(m.layout(), Err(CgroupError::NoCgroupFs)));
    }

    #[test]
    fn malformed_line_is_an_error_naming_it() {
        let err = parse_mountinfo("22 1 0:20 / /proc rw - proc proc rw\ngarbage\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn escaped_mount_points() {
        let m =
            parse_mountinfo("50 25 0:40 / /mnt/my\\040cg rw - cgroup cgroup rw,memory\n").unwrap();
        assert_eq!(m.v1[0].mount_point, Path::new("/mnt/my cg"));
    }

    #[test]
    fn mount_root_is_stripped() {
        let mp = Path::new("/sys/fs/cgroup/memory");
        assert_eq!(
            dir_in_mount(mp, Path::new("/"), Path::new("longshore/a")),
            Path::new("/sys/fs/cgroup/memory/longshore/a")
        );
        assert_eq!(
            dir_in_mount(
                mp,
                Path::new("/docker/x"),
                Path::new("docker/x/longshore/a")
            ),
            Path::new("/sys/fs/cgroup/memory/longshore/a")
        );
        assert_eq!(
            dir_in_mount(mp, Path::new("/docker/x"), Path::new("longshore/a")),
            Path::new("/sys/fs/cgroup/memory/longshore/a")
        );
    }
}
