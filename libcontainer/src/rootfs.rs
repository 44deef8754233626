//! The container's root filesystem: mounts from the spec, devices, `pivot_root`, masked
//! and read-only paths. Every path from the spec is resolved *inside* the root (symlinks
//! included), and every mount target is opened with `openat2(RESOLVE_IN_ROOT)` and
//! mounted through `/proc/self/fd/N`, so a hostile rootfs cannot redirect a mount to
//! the host.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{Mode, SFlag, makedev};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};
use rustix::fs::{OFlags, ResolveFlags};

use crate::error::{Error, Result, SysContext};
use crate::sys;

/// A cgroup v1 hierarchy of the host, for `cgroup` mounts in the container.
#[derive(Debug, Clone)]
pub(crate) struct Hierarchy {
    /// Directory name under /sys/fs/cgroup (e.g. `memory`, `cpu,cpuacct`, `systemd`).
    pub name: String,
    /// Superblock options naming the controllers (e.g. `memory`, `name=systemd`).
    pub options: String,
    /// The container's own cgroup directory in this hierarchy, when it has one.
    pub container_dir: Option<PathBuf>,
}

/// Reads the host's cgroup v1 hierarchies from `/proc/self/mountinfo`.
pub(crate) fn host_hierarchies() -> Vec<Hierarchy> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post = post.split(' ');
        if post.next() != Some("cgroup") {
            continue;
        }
        let superopts = post.nth(1).unwrap_or("");
        let Some(mountpoint) = pre.split(' ').nth(4) else {
            continue;
        };
        let Some(name) = Path::new(mountpoint).file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let options: Vec<&str> = superopts
            .split(',')
            .filter(|o| !matches!(*o, "rw" | "ro") && !o.starts_with("release_agent"))
            .filter(|o| {
                !matches!(
                    *o,
                    "relatime" | "noatime" | "nosuid" | "nodev" | "noexec" | "xattr"
                )
            })
            .collect();
        let options = options.join(",");
        // a hierarchy may be mounted more than once (/sys/fs/cgroup bound into a chroot):
        // it gets one mount in the container, named after its first mount point
        if out.iter().any(|h: &Hierarchy| h.options == options) {
            continue;
        }
        out.push(Hierarchy {
            name: name.to_string(),
            options,
            container_dir: None,
        });
    }
    out
}

/// Joins `path` onto `root` the way a process chrooted at `root` would see it: `..` and
/// symlinks (absolute ones too) never leave `root`.
pub fn secure_join(root: &Path, path: &Path) -> io::Result<PathBuf> {
    fn parts(p: &Path) -> impl Iterator<Item = OsString> + '_ {
        p.components().filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
    }
    let mut resolved = PathBuf::new();
    let mut queue: VecDeque<OsString> = parts(path).collect();
    let mut links = 0;
    while let Some(c) = queue.pop_front() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&c);
        let full = root.join(&candidate);
        match fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 255 {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = fs::read_link(&full)?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                let mut next: VecDeque<OsString> = parts(&target).collect();
                next.extend(queue);
                queue = next;
            }
            _ => resolved = candidate,
        }
    }
    Ok(root.join(resolved))
}

/// Opens `path` (absolute inside the container) with `flags`, resolved by the kernel
/// inside `root_fd` (`RESOLVE_IN_ROOT`); refuses magic links.
fn openat_in_root(root_fd: &OwnedFd, path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    rustix::fs::openat2(
        root_fd,
        rel,
        flags | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(io::Error::from)
}

/// Opens `path` (absolute inside the container) as an `O_PATH` descriptor inside the root.
fn open_in_root(root_fd: &OwnedFd, path: &Path) -> Result<OwnedFd> {
    openat_in_root(root_fd, path, OFlags::PATH)
        .ctx(|| format!("open mount target {} inside the rootfs", path.display()))
}

/// The components of `path` (absolute inside the container), `.` and the root dropped.
fn components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

fn join(parts: &[OsString]) -> PathBuf {
    let mut p = PathBuf::from("/");
    p.extend(parts);
    p
}

/// Opens the directory `path` inside the root, `O_PATH`.
fn open_dir_in_root(root_fd: &OwnedFd, path: &Path) -> io::Result<OwnedFd> {
    openat_in_root(root_fd, path, OFlags::PATH | OFlags::DIRECTORY)
}

/// `mkdir -p` inside the root with no path ever resolved in the host's: each missing
/// directory is made with `mkdirat` on its parent, itself opened from `root_fd` with
/// `RESOLVE_IN_ROOT`, so a symlink swapped in at any moment (CVE-2019-19921,
/// CVE-2021-30465) still resolves inside the root. A dangling symlink is followed (inside
/// the root) by creating its target. Returns the last directory, opened `O_PATH`.
fn mkdir_all_in_root(root_fd: &OwnedFd, path: &Path) -> io::Result<OwnedFd> {
    let mut todo = components(path);
    let mut done: Vec<OsString> = Vec::new();
    let mut cur = open_dir_in_root(root_fd, Path::new("/"))?;
    let mut links = 0;
    while !todo.is_empty() {
        let name = todo.remove(0);
        let mut next = done.clone();
        next.push(name.clone());
        match open_dir_in_root(root_fd, &join(&next)) {
            Ok(fd) => {
                cur = fd;
                done = next;
                continue;
            }
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            Err(_) => {}
        }
        match rustix::fs::mkdirat(
            &cur,
            name.as_os_str(),
            rustix::fs::Mode::from_raw_mode(0o755),
        ) {
            Ok(()) => {
                cur = open_dir_in_root(root_fd, &join(&next))?;
                done = next;
            }
            Err(rustix::io::Errno::EXIST) => {
                // a dangling symlink: create what it names, inside the root
                let target = rustix::fs::readlinkat(&cur, name.as_os_str(), Vec::new())
                    .map_err(io::Error::from)?;
                links += 1;
                if links > 40 {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = PathBuf::from(std::ffi::OsStr::from_bytes(target.as_bytes()));
                let mut rest = if target.is_absolute() {
                    components(&target)
                } else {
                    let mut r = done.clone();
                    r.extend(components(&target));
                    r
                };
                rest.extend(todo);
                todo = rest;
                done.clear();
                cur = open_dir_in_root(root_fd, Path::new("/"))?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(cur)
}

/// The parent directory of `path` inside the root (made if missing) and the last name.
fn parent_in_root(root_fd: &OwnedFd, path: &Path) -> io::Result<(OwnedFd, OsString)> {
    let mut parts = components(path);
    let name = parts
        .pop()
        .filter(|n| n != "..")
        .ok_or_else(|| io::Error::other(format!("{} names no file", path.display())))?;
    Ok((mkdir_all_in_root(root_fd, &join(&parts))?, name))
}

/// Creates an empty file at `path` inside the root unless something is there already
/// (never through a symlink in the host's root).
fn create_file_in_root(root_fd: &OwnedFd, path: &Path, mode: u32) -> io::Result<()> {
    let (dir, name) = parent_in_root(root_fd, path)?;
    match rustix::fs::openat(
        &dir,
        name.as_os_str(),
        OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::WRONLY | OFlags::CLOEXEC,
        rustix::fs::Mode::from_raw_mode(mode),
    ) {
        Ok(_) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Mount flags, propagation flags and filesystem data parsed from mount options.
#[derive(Debug, PartialEq)]
pub(crate) struct MountOptions {
    pub flags: MsFlags,
    pub clear: MsFlags,
    pub propagation: MsFlags,
    pub data: Vec<String>,
    pub bind: bool,
    /// Recursive attributes (`rro`, `rnosuid`, ...) to set and clear on the whole tree
    /// with `mount_setattr(AT_RECURSIVE)`.
    pub rec_set: u64,
    pub rec_clear: u64,
}

/// `MOUNT_ATTR_*` for a recursive option: (attribute, true to set / false to clear).
fn recursive_attr(opt: &str) -> Option<(u64, bool)> {
    Some(match opt {
        "rro" => (sys::MOUNT_ATTR_RDONLY, true),
        "rrw" => (sys::MOUNT_ATTR_RDONLY, false),
        "rnosuid" => (sys::MOUNT_ATTR_NOSUID, true),
        "rsuid" => (sys::MOUNT_ATTR_NOSUID, false),
        "rnodev" => (sys::MOUNT_ATTR_NODEV, true),
        "rdev" => (sys::MOUNT_ATTR_NODEV, false),
        "rnoexec" => (sys::MOUNT_ATTR_NOEXEC, true),
        "rexec" => (sys::MOUNT_ATTR_NOEXEC, false),
        "rnodiratime" => (sys::MOUNT_ATTR_NODIRATIME, true),
        "rdiratime" => (sys::MOUNT_ATTR_NODIRATIME, false),
        "rnoatime" => (sys::MOUNT_ATTR_NOATIME, true),
        "rstrictatime" => (sys::MOUNT_ATTR_STRICTATIME, true),
        "rnosymfollow" => (sys::MOUNT_ATTR_NOSYMFOLLOW, true),
        "rsymfollow" => (sys::MOUNT_ATTR_NOSYMFOLLOW, false),
        _ => return None,
    })
}

/// Parses OCI/fstab-style mount options.
pub(crate) fn parse_options(options: &[String]) -> MountOptions {
    let mut o = MountOptions {
        flags: MsFlags::empty(),
        clear: MsFlags::empty(),
        propagation: MsFlags::empty(),
        data: Vec::new(),
        bind: false,
        rec_set: 0,
        rec_clear: 0,
    };
    for opt in options {
        let (set, clear) = match opt.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "bind" => {
                o.bind = true;
                continue;
            }
            "rbind" => {
                o.bind = true;
                o.flags |= MsFlags::MS_REC;
                continue;
            }
            p @ ("private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave"
            | "unbindable" | "runbindable") => {
                o.propagation |= propagation(p).unwrap_or(MsFlags::empty());
                continue;
            }
            "nosymfollow" => (
                MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW),
                MsFlags::empty(),
            ),
            "symfollow" => (
                MsFlags::empty(),
                MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW),
            ),
            other => {
                match recursive_attr(other) {
                    Some((attr, true)) => o.rec_set |= attr,
                    Some((attr, false)) => o.rec_clear |= attr,
                    None => o.data.push(other.to_string()),
                }
                continue;
            }
        };
        o.flags |= set;
        o.flags &= !clear;
        o.clear |= clear;
    }
    o
}

/// Propagation flags for a propagation name.
pub(crate) fn propagation(name: &str) -> Option<MsFlags> {
    Some(match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// What the rootfs setup needs besides the spec.
pub(crate) struct RootfsContext<'a> {
    pub spec: &'a Spec,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub hierarchies: &'a [Hierarchy],
    pub new_cgroupns: bool,
    pub in_userns: bool,
}

/// Everything before `pivot_root`: propagation, the rootfs bind, the spec's mounts and
/// the devices.
pub(crate) fn prepare(ctx: &RootfsContext<'_>) -> Result<()> {
    let linux = ctx.spec.linux().as_ref();
    let prop = root_propagation(ctx.spec)?;
    mount(None::<&str>, "/", None::<&str>, prop, None::<&str>)
        .ctx(|| "set propagation of / in the container's mount namespace".into())?;
    if prop.intersects(MsFlags::MS_SHARED | MsFlags::MS_UNBINDABLE) {
        // pivot_root refuses a new root whose parent mount is shared, and an unbindable
        // mount cannot be bound: the mount holding the rootfs becomes private (in this
        // mount namespace only); `/` gets the asked propagation back after the pivot
        let parent = mount_point_of(ctx.rootfs)?;
        mount(
            None::<&str>,
            &parent,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .ctx(|| format!("make {} private", parent.display()))?;
    }
    mount(
        Some(ctx.rootfs),
        ctx.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .ctx(|| format!("bind the rootfs {} onto itself", ctx.rootfs.display()))?;

    let root_fd = rustix::fs::open(
        ctx.rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(io::Error::from)
    .ctx(|| format!("open rootfs {}", ctx.rootfs.display()))?;
    let mut dev_is_tmpfs = false;
    for m in ctx.spec.mounts().iter().flatten() {
        if m.destination() == Path::new("/dev") && m.typ().as_deref() == Some("tmpfs") {
            dev_is_tmpfs = true;
        }
        mount_one(ctx, &root_fd, m)?;
    }
    if dev_is_tmpfs {
        create_devices(ctx, &root_fd)?;
    }
    if let Some(devices) = linux.and_then(|l| l.devices().as_ref()) {
        for d in devices {
            create_device(ctx, &root_fd, d)?;
        }
    }
    if let Some(linux) = linux {
        protect_paths(
            &root_fd,
            linux.masked_paths().as_deref().unwrap_or(&[]),
            linux.readonly_paths().as_deref().unwrap_or(&[]),
        )?;
    }
    Ok(())
}

fn mount_one(ctx: &RootfsContext<'_>, root_fd: &OwnedFd, m: &Mount) -> Result<()> {
    let typ = m.typ().as_deref().unwrap_or("");
    let dest_in = m.destination();
    if !dest_in.is_absolute() {
        return Err(Error::InvalidSpec(format!(
            "mount destination {} is not absolute",
            dest_in.display()
        )));
    }
    let opts = parse_options(m.options().as_deref().unwrap_or(&[]));
    let bind = opts.bind || typ == "bind";
    let dest = secure_join(ctx.rootfs, dest_in).ctx(|| format!("resolve {}", dest_in.display()))?;
    let what = || {
        format!(
            "mount {} on {}",
            m.source().as_deref().unwrap_or(Path::new(typ)).display(),
            dest_in.display()
        )
    };

    let source = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
    let source = if bind && source.is_relative() {
        ctx.bundle.join(source)
    } else {
        source
    };
    if bind
        && !fs::metadata(&source)
            .map(|m| m.is_dir())
            .ctx(|| format!("bind source {}", source.display()))?
    {
        create_file_in_root(root_fd, dest_in, 0o644).ctx(what)?;
    } else {
        mkdir_all_in_root(root_fd, dest_in).ctx(what)?;
    }
    let target_fd = open_in_root(root_fd, dest_in)?;
    check_proc_destination(ctx.rootfs, &dest, &target_fd, typ, bind, dest_in)?;
    let target = fd_path(&target_fd);

    if typ == "cgroup" {
        return mount_cgroups(ctx, root_fd, dest_in, &target, &opts);
    }
    let data = (!opts.data.is_empty()).then(|| opts.data.join(","));
    if bind {
        mount(
            Some(&source),
            target.as_str(),
            None::<&str>,
            MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC),
            None::<&str>,
        )
        .ctx(what)?;
        let extra = opts.flags & !(MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        if !extra.is_empty() {
            let fd = open_in_root(root_fd, dest_in)?;
            remount(&fd_path(&fd), extra | MsFlags::MS_BIND).ctx(what)?;
        }
    } else {
        let r = mount(
            Some(&source),
            target.as_str(),
            Some(typ),
            opts.flags,
            data.as_deref(),
        );
        match r {
            // sysfs cannot be mounted fresh without a private network namespace (or in a
            // user namespace): bind the host's, as runc does.
            Err(nix::errno::Errno::EPERM) if typ == "sysfs" => {
                mount(
                    Some("/sys"),
                    target.as_str(),
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .ctx(what)?;
                let fd = open_in_root(root_fd, dest_in)?;
                remount(&fd_path(&fd), opts.flags | MsFlags::MS_BIND).ctx(what)?;
            }
            r => r.ctx(what)?,
        }
    }
    if opts.rec_set != 0 || opts.rec_clear != 0 {
        let fd = open_in_root(root_fd, dest_in)?;
        sys::mount_setattr_recursive(&fd, opts.rec_set, opts.rec_clear).ctx(what)?;
    }
    if !opts.propagation.is_empty() {
        let fd = open_in_root(root_fd, dest_in)?;
        mount(
            None::<&str>,
            fd_path(&fd).as_str(),
            None::<&str>,
            opts.propagation,
            None::<&str>,
        )
        .ctx(what)?;
    }
    Ok(())
}

/// Remounts a mount point with `flags`, keeping the flags the kernel locks (nodev,
/// nosuid, noexec... inherited from a more privileged mount namespace).
fn remount(target: &str, flags: MsFlags) -> nix::Result<()> {
    let locked = nix::sys::statvfs::statvfs(target)
        .map(|s| {
            use nix::sys::statvfs::FsFlags as F;
            let f = s.flags();
            let mut m = MsFlags::empty();
            for (a, b) in [
                (F::ST_NOSUID, MsFlags::MS_NOSUID),
                (F::ST_NODEV, MsFlags::MS_NODEV),
                (F::ST_NOEXEC, MsFlags::MS_NOEXEC),
                (F::ST_NOATIME, MsFlags::MS_NOATIME),
                (F::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
                (F::ST_RELATIME, MsFlags::MS_RELATIME),
            ] {
                if f.contains(a) {
                    m |= b;
                }
            }
            m
        })
        .unwrap_or(MsFlags::empty());
    mount(
        None::<&str>,
        target,
        None::<&str>,
        flags | locked | MsFlags::MS_REMOUNT,
        None::<&str>,
    )
}

/// A `cgroup` mount: a tmpfs holding one mount per v1 hierarchy (the hierarchy itself in
/// a private cgroup namespace, else a bind of the container's own cgroup directory).
fn mount_cgroups(
    ctx: &RootfsContext<'_>,
    root_fd: &OwnedFd,
    dest: &Path,
    target: &str,
    opts: &MountOptions,
) -> Result<()> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(
        Some("tmpfs"),
        target,
        Some("tmpfs"),
        flags,
        Some("mode=755"),
    )
    .ctx(|| format!("mount tmpfs for cgroups on {}", dest.display()))?;
    // the fresh tmpfs, reached through the root again (the old descriptor is below it)
    let tmpfs = open_in_root(root_fd, dest)?;
    for h in ctx.hierarchies {
        let sub = dest.join(&h.name);
        let what = || format!("mount cgroup hierarchy {} on {}", h.options, sub.display());
        match rustix::fs::mkdirat(
            &tmpfs,
            h.name.as_str(),
            rustix::fs::Mode::from_raw_mode(0o755),
        ) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(io::Error::from(e)).ctx(what),
        }
        let sub_fd = rustix::fs::openat(
            &tmpfs,
            h.name.as_str(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(io::Error::from)
        .ctx(what)?;
        let sub_path = fd_path(&sub_fd);
        // cgroup v1 cannot be mounted fresh inside a user namespace: bind instead
        if ctx.new_cgroupns && !ctx.in_userns {
            mount(
                Some("cgroup"),
                sub_path.as_str(),
                Some("cgroup"),
                flags | (opts.flags & MsFlags::MS_RDONLY),
                Some(h.options.as_str()),
            )
            .ctx(what)?;
        } else if let Some(dir) = &h.container_dir {
            mount(
                Some(dir),
                sub_path.as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .ctx(what)?;
            if opts.flags.contains(MsFlags::MS_RDONLY) {
                let top = open_in_root(root_fd, &sub)?;
                remount(&fd_path(&top), MsFlags::MS_BIND | MsFlags::MS_RDONLY).ctx(what)?;
            }
        }
    }
    if opts.flags.contains(MsFlags::MS_RDONLY) {
        remount(&fd_path(&tmpfs), flags | MsFlags::MS_RDONLY)
            .ctx(|| format!("make {} read-only", dest.display()))?;
    }
    Ok(())
}

/// The devices every container gets (as runc): null, zero, full, random, urandom, tty.
fn default_devices() -> Vec<(&'static str, u64, u64)> {
    vec![
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ]
}

fn create_devices(ctx: &RootfsContext<'_>, root_fd: &OwnedFd) -> Result<()> {
    for (path, major, minor) in default_devices() {
        make_node(
            ctx,
            root_fd,
            Path::new(path),
            SFlag::S_IFCHR,
            major,
            minor,
            0o666,
            0,
            0,
        )?;
    }
    let dev = mkdir_all_in_root(root_fd, Path::new("/dev")).ctx(|| "open /dev".into())?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("pts/ptmx", "ptmx"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        match rustix::fs::symlinkat(target, &dev, name) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(io::Error::from(e)).ctx(|| format!("symlink /dev/{name}")),
        }
    }
    Ok(())
}

fn create_device(ctx: &RootfsContext<'_>, root_fd: &OwnedFd, d: &LinuxDevice) -> Result<()> {
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(Error::InvalidSpec(format!(
                "device {}: type 'a' is only for cgroup rules",
                d.path().display()
            )));
        }
    };
    make_node(
        ctx,
        root_fd,
        d.path(),
        kind,
        d.major() as u64,
        d.minor() as u64,
        d.file_mode().unwrap_or(0o666),
        d.uid().unwrap_or(0),
        d.gid().unwrap_or(0),
    )
}

#[allow(clippy::too_many_arguments)]
fn make_node(
    ctx: &RootfsContext<'_>,
    root_fd: &OwnedFd,
    path: &Path,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<()> {
    let what = || format!("create device {}", path.display());
    let (dir, name) = parent_in_root(root_fd, path).ctx(what)?;
    let name = name.as_os_str();
    match rustix::fs::unlinkat(&dir, name, rustix::fs::AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(io::Error::from(e)).ctx(what),
    }
    let perm = mode & 0o7777;
    let made = if ctx.in_userns {
        Err(rustix::io::Errno::PERM)
    } else {
        // the exact mode: no umask while the node is made (so no chmod by path after)
        let old = rustix::process::umask(rustix::fs::Mode::empty());
        let r = rustix::fs::mknodat(
            &dir,
            name,
            rustix::fs::FileType::from_raw_mode(kind.bits()),
            rustix::fs::Mode::from_raw_mode(perm),
            makedev(major, minor),
        );
        rustix::process::umask(old);
        r
    };
    match made {
        Ok(()) => {
            // chown what we made, through a descriptor that did not follow a symlink
            let node = rustix::fs::openat(
                &dir,
                name,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .map_err(io::Error::from)
            .ctx(what)?;
            let st = rustix::fs::fstat(&node)
                .map_err(io::Error::from)
                .ctx(what)?;
            // a fifo has no device number (mknod ignores the spec's major/minor for it)
            let is_dev = kind == SFlag::S_IFCHR || kind == SFlag::S_IFBLK;
            if st.st_mode & libc::S_IFMT != kind.bits()
                || (is_dev && st.st_rdev != makedev(major, minor))
            {
                return Err(Error::Init(format!(
                    "device {} was replaced while it was being made",
                    path.display()
                )));
            }
            rustix::fs::chownat(
                &node,
                "",
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
                rustix::fs::AtFlags::EMPTY_PATH,
            )
            .map_err(io::Error::from)
            .ctx(what)?;
        }
        Err(rustix::io::Errno::PERM) => {
            // in a user namespace: bind the host's node instead
            create_file_in_root(root_fd, path, 0o644).ctx(what)?;
            let fd = open_in_root(root_fd, path)?;
            mount(
                Some(path),
                fd_path(&fd).as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .ctx(what)?;
        }
        Err(e) => return Err(io::Error::from(e)).ctx(what),
    }
    Ok(())
}

/// The `linux.rootfsPropagation` the spec asks for; rslave when it names none.
fn root_propagation(spec: &Spec) -> Result<MsFlags> {
    Ok(spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
        .filter(|p| !p.is_empty())
        .map(|p| {
            propagation(p)
                .ok_or_else(|| Error::InvalidSpec(format!("unknown rootfsPropagation {p:?}")))
        })
        .transpose()?
        .unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC))
}

/// The mount point of the mount that holds `path` (the longest mount point above it in
/// this mount namespace).
fn mount_point_of(path: &Path) -> Result<PathBuf> {
    let text = std::fs::read_to_string("/proc/thread-self/mountinfo")
        .ctx(|| "read /proc/thread-self/mountinfo".into())?;
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(crate::cgroups::mountinfo::unescape(m)))
        .filter(|m| path.starts_with(m))
        .max_by_key(|m| m.as_os_str().len())
        .ok_or_else(|| Error::Init(format!("no mount holds {}", path.display())))
}

/// After the pivot: a shared or unbindable `rootfsPropagation` is given to the new root
/// (the others were set on the whole tree before it and carried over).
pub(crate) fn root_propagation_after_pivot(spec: &Spec) -> Result<()> {
    let prop = root_propagation(spec)?;
    if prop.intersects(MsFlags::MS_SHARED | MsFlags::MS_UNBINDABLE) {
        mount(None::<&str>, "/", None::<&str>, prop, None::<&str>)
            .ctx(|| "set rootfsPropagation on the container's root".into())?;
    }
    Ok(())
}

/// Makes `rootfs` the root with `pivot_root`, and detaches the old root.
pub(crate) fn pivot(rootfs: &Path) -> Result<()> {
    let old = nix::fcntl::open(
        "/",
        nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| "open old root".into())?;
    nix::unistd::chdir(rootfs).ctx(|| format!("chdir {}", rootfs.display()))?;
    nix::unistd::pivot_root(".", ".").ctx(|| format!("pivot_root into {}", rootfs.display()))?;
    nix::unistd::fchdir(&old).ctx(|| "fchdir old root".into())?;
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .ctx(|| "make the old root a slave".into())?;
    umount2(".", MntFlags::MNT_DETACH).ctx(|| "detach the old root".into())?;
    nix::unistd::chdir("/").ctx(|| "chdir /".into())?;
    Ok(())
}

/// Without `pivot_root` (rootfs on ramfs): move the rootfs over / and chroot.
pub(crate) fn move_root(rootfs: &Path) -> Result<()> {
    nix::unistd::chdir(rootfs).ctx(|| format!("chdir {}", rootfs.display()))?;
    mount(
        Some(rootfs),
        "/",
        None::<&str>,
        MsFlags::MS_MOVE,
        None::<&str>,
    )
    .ctx(|| "move the rootfs to /".into())?;
    nix::unistd::chroot(".").ctx(|| "chroot".into())?;
    nix::unistd::chdir("/").ctx(|| "chdir /".into())?;
    Ok(())
}

/// After `pivot_root`: a read-only root if asked.
pub(crate) fn finish(spec: &Spec) -> Result<()> {
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        remount("/", MsFlags::MS_BIND | MsFlags::MS_RDONLY)
            .ctx(|| "make the root read-only".into())?;
    }
    Ok(())
}

/// The files runc lets a bind mount cover under `/proc` (what LXCFS provides): plain
/// files whose reads it virtualises. Anything else on or under `/proc` is refused.
const PROC_BIND_ALLOWED: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
];

/// Refuses a mount on or under the container's `/proc` other than procfs itself at
/// `/proc` (CVE-2019-16884, CVE-2023-27561): judged on the destination as resolved in
/// the root (`dest`) and on the filesystem the opened target lies on, never on the
/// spec's string. Bind mounts of LXCFS's files are let through, as runc does.
fn check_proc_destination(
    rootfs: &Path,
    dest: &Path,
    target: &OwnedFd,
    typ: &str,
    bind: bool,
    dest_in: &Path,
) -> Result<()> {
    let inside = Path::new("/").join(dest.strip_prefix(rootfs).unwrap_or(dest));
    let on_procfs = rustix::fs::fstatfs(target)
        .map(|s| s.f_type as u64 == PROC_SUPER_MAGIC)
        .unwrap_or(false);
    let under_proc = inside.starts_with("/proc");
    if !under_proc && !on_procfs {
        return Ok(());
    }
    if inside == Path::new("/proc") && typ == "proc" && !bind && !on_procfs {
        return Ok(());
    }
    let is_file = rustix::fs::fstat(target)
        .map(|s| {
            rustix::fs::FileType::from_raw_mode(s.st_mode) == rustix::fs::FileType::RegularFile
        })
        .unwrap_or(false);
    if bind && is_file && PROC_BIND_ALLOWED.iter().any(|p| inside == Path::new(p)) {
        return Ok(());
    }
    Err(Error::InvalidSpec(format!(
        "mount destination {} resolves to {} on or under /proc: only procfs itself may be \
         mounted there (and bind mounts of LXCFS's files)",
        dest_in.display(),
        inside.display()
    )))
}

/// `PROC_SUPER_MAGIC`.
const PROC_SUPER_MAGIC: u64 = 0x9fa0;

/// The host's `/dev/null`, opened `O_PATH` without following a symlink and checked to be
/// the character device 1:3: the source of every masking bind (CVE-2025-31133). The
/// image's `/dev/null` is never used: it may be anything, a symlink to a /proc/sys file
/// included.
fn trusted_dev_null() -> Result<OwnedFd> {
    let fd = rustix::fs::open(
        "/dev/null",
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(io::Error::from)
    .ctx(|| "open the host's /dev/null".into())?;
    let st = rustix::fs::fstat(&fd)
        .map_err(io::Error::from)
        .ctx(|| "stat the host's /dev/null".into())?;
    let chr =
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::CharacterDevice;
    if !chr || st.st_rdev != makedev(1, 3) {
        return Err(Error::Init(
            "the host's /dev/null is not the character device 1:3: refusing to mask from it".into(),
        ));
    }
    Ok(fd)
}

/// Masked and read-only paths, before `pivot_root`: every target is opened inside the
/// root (`RESOLVE_IN_ROOT`), files are masked with a bind of the host's checked
/// `/dev/null`, directories with an empty tmpfs that is read-only, nosuid, nodev and
/// noexec.
fn protect_paths(root_fd: &OwnedFd, masked: &[String], readonly: &[String]) -> Result<()> {
    let mut null: Option<OwnedFd> = None;
    for path in masked {
        let what = || format!("mask {path}");
        let target = match open_in_root(root_fd, Path::new(path)) {
            Ok(fd) => fd,
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let st = rustix::fs::fstat(&target)
            .map_err(io::Error::from)
            .ctx(what)?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory {
            mount(
                Some("tmpfs"),
                fd_path(&target).as_str(),
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("size=0,mode=755"),
            )
            .ctx(what)?;
        } else {
            let null = match &null {
                Some(fd) => fd,
                None => null.insert(trusted_dev_null()?),
            };
            mount(
                Some(fd_path(null).as_str()),
                fd_path(&target).as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .ctx(what)?;
        }
    }
    for path in readonly {
        let what = || format!("make {path} read-only");
        let target = match open_in_root(root_fd, Path::new(path)) {
            Ok(fd) => fd,
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let t = fd_path(&target);
        mount(
            Some(t.as_str()),
            t.as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .ctx(what)?;
        // the new mount sits on top of the old path: reopen to reach it
        let top = open_in_root(root_fd, Path::new(path))?;
        remount(
            &fd_path(&top),
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY,
        )
        .ctx(what)?;
    }
    Ok(())
}

/// Writes the spec's sysctls through the trusted procfs (they apply to the writer's
/// network, UTS and IPC namespaces, whatever the container's `/proc` holds).
pub(crate) fn sysctls(spec: &Spec, proc: crate::procfs::ProcFs<'_>) -> Result<()> {
    for (key, value) in spec
        .linux()
        .as_ref()
        .and_then(|l| l.sysctl().as_ref())
        .into_iter()
        .flatten()
    {
        if key.contains("..") || key.contains('/') && key.contains('.') {
            return Err(Error::InvalidSpec(format!(
                "sysctl {key:?} is not a valid name"
            )));
        }
        // "net.ipv4.conf.eth0/1.forwarding" style keys name an interface with a dot
        let path = if key.contains('/') {
            format!("sys/{key}")
        } else {
            format!("sys/{}", key.replace('.', "/"))
        };
        proc.write(&path, value.as_bytes())
            .ctx(|| format!("set sysctl {key}={value}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_join_stays_inside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", root.join("rel")).unwrap();
        std::os::unix::fs::symlink("loop2", root.join("loop1")).unwrap();
        std::os::unix::fs::symlink("loop1", root.join("loop2")).unwrap();
        assert_eq!(
            secure_join(root, Path::new("/abs/passwd")).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            secure_join(root, Path::new("rel/passwd")).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            secure_join(root, Path::new("/../../x")).unwrap(),
            root.join("x")
        );
        assert_eq!(
            secure_join(root, Path::new("/a/./b/../c")).unwrap(),
            root.join("a/c")
        );
        let e = secure_join(root, Path::new("/loop1/x")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
    }

    #[test]
    fn options() {
        let o = parse_options(&[
            "nosuid".into(),
            "ro".into(),
            "rbind".into(),
            "rslave".into(),
            "mode=755".into(),
            "size=65536k".into(),
        ]);
        assert!(o.bind);
        assert_eq!(
            o.flags,
            MsFlags::MS_NOSUID | MsFlags::MS_RDONLY | MsFlags::MS_REC
        );
        assert_eq!(o.propagation, MsFlags::MS_SLAVE | MsFlags::MS_REC);
        assert_eq!(
            o.data,
            vec!["mode=755".to_string(), "size=65536k".to_string()]
        );
        let o = parse_options(&["ro".into(), "rw".into()]);
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn hierarchies_found_here() {
        // on any Linux host with v1 controllers, names and options are non-empty
        for h in host_hierarchies() {
            assert!(!h.name.is_empty());
            assert!(!h.options.contains("rw"), "{h:?}");
        }
    }
}
