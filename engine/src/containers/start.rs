//! `start`: the seed's 4.3.2 steps 11–17. The rootfs is mounted (graph driver), the
//! network is set up in a network namespace pinned under `/run/netns` (network driver),
//! the OCI spec is written, and the container's monitor is started: the monitor creates
//! and starts the container through libcontainer (exec driver) as its parent, and stays
//! with it (see [`crate::monitor`]).

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use longshore_network::netns::{NamedNetns, NetnsRef};
use longshore_network::{EndpointConfig, NetMode};

use super::spec::{self, SpecInputs};
use super::{Container, NetworkState, PublishedPort, write_atomic};
use crate::attach::Attached;
use crate::engine::Engine;
use crate::error::{Error, Result, graph};
use crate::monitor::{MONITOR_ENV, MonitorArgs};

/// How to start a container.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct StartOptions {
    /// The monitor starts the process only once a client attached (a foreground `run`
    /// or `start -a`), so that no output is missed.
    pub wait_for_attach: bool,
    /// With `wait_for_attach`: how many clients must attach before the process starts
    /// (0 and 1 both mean one), for callers that attach several connections (one per
    /// stream) before a start.
    pub attach_clients: usize,
}

/// The streams of a client attached from a container's first byte
/// ([`Engine::start_attached`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttachStreams {
    /// It writes the container's stdin.
    pub stdin: bool,
    /// It reads its stdout (or its terminal).
    pub stdout: bool,
    /// It reads its stderr.
    pub stderr: bool,
}

/// Name of the pinned network namespace of a container (`ls` + 12 hex digits).
pub(crate) fn netns_name(id: &str) -> String {
    format!("ls{}", &id[..12])
}

/// Removes a pinned network namespace (unmount, then unlink).
pub(crate) fn unpin_netns(path: &Path) {
    let _ = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH);
    let _ = fs::remove_file(path);
}

impl Engine {
    /// Starts a created or stopped container (`docker start`). Returns once the
    /// container's process runs (or, with `wait_for_attach`, once it waits for a client
    /// on its attach socket). A start that fails undoes its network and mount and records
    /// the error in the container's state.
    pub fn start_container(&self, name_or_id: &str, opts: &StartOptions) -> Result<Container> {
        self.start_with(name_or_id, opts, &[]).map(|(c, _)| c)
    }

    /// Starts a created or stopped container with `clients` attached from its first byte
    /// (a foreground `run`, `start -a`, the API's attaches made before its start). Their
    /// connections are made while the container is set up, and its process starts as
    /// soon as the container is created: one connection per client, in order, each the
    /// connection or why it could not be made. A container that runs already is returned
    /// with no connection.
    pub fn start_attached(
        &self,
        name_or_id: &str,
        clients: &[AttachStreams],
    ) -> Result<(Container, Vec<Result<Attached>>)> {
        let opts = StartOptions {
            wait_for_attach: !clients.is_empty(),
            attach_clients: clients.len(),
        };
        self.start_with(name_or_id, &opts, clients)
    }

    fn start_with(
        &self,
        name_or_id: &str,
        opts: &StartOptions,
        clients: &[AttachStreams],
    ) -> Result<(Container, Vec<Result<Attached>>)> {
        let mut c = self.container(name_or_id)?;
        match c.live_status() {
            "running" | "paused" => return Ok((c, Vec::new())),
            "removing" | "dead" => {
                return Err(Error::WrongState(format!(
                    "container {} is marked for removal and cannot be started",
                    c.record.id
                )));
            }
            _ => {}
        }
        if crate::monitor::monitor_alive(&c.dir) {
            return Err(Error::WrongState(format!(
                "container {} is restarting: wait for it or stop it first",
                c.record.id
            )));
        }
        let res = self.start_inner(&mut c, opts, clients);
        if let Err(e) = &res {
            self.teardown_network(&mut c);
            super::unmount_rootfs(&c.dir);
            c.state.error = e.to_string();
            c.state.status = if c.state.started_at == super::ZERO_TIME {
                "created".into()
            } else {
                "exited".into()
            };
            if let Error::Exec { code, .. } = e {
                c.state.exit_code = *code;
            }
            let _ = self.save_state(&c);
        }
        res.map(|attached| (c, attached))
    }

    fn start_inner(
        &self,
        c: &mut Container,
        opts: &StartOptions,
        clients: &[AttachStreams],
    ) -> Result<Vec<Result<Attached>>> {
        let id = c.record.id.clone();
        // the monitor is spawned first and waits for the go below: loading this program
        // again (exec, the dynamic loader, the detaching fork) overlaps the mount, the
        // network and the spec instead of following them. Dropped before the go (a
        // failed start), it ends without making the container.
        let monitor = self.spawn_monitor(c, opts)?;
        // a `--rm` container's layer is mounted volatile (as podman does): its unmount
        // then skips the sync of the whole filesystem under it, on the path of `run --rm`
        let mount = longshore_graph::driver::MountOptions::default()
            .volatile(c.record.host_config.auto_remove);
        // the container's own mount of its layers, made at `<dir>/rootfs`: it outlives
        // this process until the container stops
        let rootfs = c.dir.join("rootfs");
        super::unmount_rootfs(&c.dir);
        fs::create_dir_all(&rootfs).map_err(Error::io(format!("create {}", rootfs.display())))?;
        self.store()?
            .mount_container_at(&id, &rootfs, mount)
            .map_err(graph(format!(
                "mount the root filesystem of {}",
                c.record.name
            )))?;
        make_working_dir(&rootfs, &c.record.config.working_dir, &c.record.name)?;
        let volume_mounts = self.volume_mounts(c, Some(&rootfs))?;
        let netns = self.setup_network(c)?;
        // the networks connected with `network connect` (stopped or running before)
        if let Some(ns) = c.state.netns.clone() {
            self.join_attachments(c, &ns)?;
        }
        let init = if c.record.host_config.init {
            Some(spec::init_binary(&self.root)?)
        } else {
            None
        };
        let spec = spec::build(
            c,
            &SpecInputs {
                rootfs: &rootfs,
                netns: netns.as_deref(),
                volume_mounts: &volume_mounts,
                init: init.as_deref(),
            },
        )?;
        let bundle = c.dir.join("bundle");
        fs::create_dir_all(&bundle).map_err(Error::io(format!("create {}", bundle.display())))?;
        write_atomic(
            &bundle.join("config.json"),
            &serde_json::to_vec(&spec).expect("spec serializes"),
        )?;
        c.state.error.clear();
        c.state.stopped_by_user = false;
        // a user's start undoes a user's stop: the restart policy applies again
        let _ = fs::remove_file(c.dir.join("stopped-by-user"));
        c.state.restart_count = 0;
        self.save_state(c)?;
        let requested = monitor.go(&c.record.name, &id, clients)?;
        // the clients' connections wait in the monitor's queue: it takes them, and starts
        // the process, as soon as the container is created (no round trip through here)
        let attached = requested
            .into_iter()
            .map(|r| r.and_then(|stream| crate::attach::registered(&id, stream)))
            .collect();
        // the monitor wrote the state (running, or created while it waits for a client)
        match self.load_container_dir(c.dir.clone()) {
            Ok(fresh) => c.state = fresh.state,
            // an auto-remove container may have run, exited and been removed by its
            // monitor between the monitor's report and this read (a busy machine): it
            // started, and its exit is for wait and attach to tell
            Err(_) if c.record.host_config.auto_remove && !c.dir.exists() => {}
            Err(e) => return Err(e),
        }
        // the `start` event is the monitor's (before it can record the `die`)
        Ok(attached)
    }

    /// The program the monitors run as.
    pub(crate) fn monitor_program(&self) -> Result<PathBuf> {
        match &self.opts.monitor_program {
            Some(p) => Ok(p.clone()),
            None => fs::read_link("/proc/self/exe").map_err(Error::io("read /proc/self/exe")),
        }
    }

    fn spawn_monitor(&self, c: &Container, opts: &StartOptions) -> Result<PendingMonitor> {
        let program = self.monitor_program()?;
        let args = MonitorArgs {
            root: self.root.clone(),
            id: c.record.id.clone(),
            driver: self.opts.driver.clone(),
            network: self.opts.network.clone().map(Into::into),
            wait_for_attach: opts.wait_for_attach,
            attach_clients: opts.attach_clients,
            wait_for_go: true,
        };
        // close-on-exec: a monitor another thread spawns at the same time (the daemon
        // starts containers in parallel) must not inherit these pipes; it held the write
        // end for its whole life, so that a monitor dying before its report left this start
        // waiting for an unrelated container to end
        let pipe = || -> Result<(OwnedFd, OwnedFd)> {
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| Error::io("pipe")(e.into()))
        };
        let (rd, wr) = pipe()?;
        let (go_rd, go_wr) = pipe()?;
        // No `pre_exec`: without one std spawns with posix_spawn (a vfork, sharing this
        // process's memory until the exec) rather than fork. A fork of the daemon copied
        // its page tables (0.4 ms under strace -T) and made every heap page it wrote
        // afterwards fault, copy on write (~300 faults of the daemon per `docker run`,
        // perf stat). What the `pre_exec` did, the monitor does first thing instead
        // (`monitor::take_ready_fd`): the report pipe comes as its stdout (the spawn's dup2
        // clears close-on-exec on it), the go pipe as its stdin, and it closes the
        // descriptors it inherited past stderr and leaves for a session of its own. Its
        // own process group from the spawn on keeps a terminal's ^C to the caller's group
        // from it until then.
        let mut cmd = Command::new(&program);
        cmd.arg0("longshore-monitor")
            .env(
                MONITOR_ENV,
                serde_json::to_string(&args).expect("args serialize"),
            )
            .env("LONGSHORE_MONITOR_READY_FD", "1")
            .process_group(0)
            .stdin(Stdio::from(go_rd))
            .stdout(Stdio::from(wr))
            .stderr(Stdio::null());
        let child = cmd.spawn().map_err(Error::io(format!(
            "start the monitor {}",
            program.display()
        )))?;
        // the ends the command held (the monitor's stdin and stdout) go with it: the read
        // sees the end if the monitor dies before its report
        drop(cmd);
        Ok(PendingMonitor {
            child,
            report: Some(BufReader::new(fs::File::from(rd))),
            go: Some(go_wr),
        })
    }

    /// Bind mounts for `-v`, named and anonymous volumes and `--volumes-from`. With
    /// `rootfs` (the container being started) missing sources are created, and a named or
    /// anonymous volume that is empty when first mounted gets a copy of what the image
    /// holds at its path, as Docker does (not with `nocopy`, never for host binds).
    /// Without it (another container's mounts, for `--volumes-from`) they are only named.
    fn volume_mounts(
        &self,
        c: &Container,
        rootfs: Option<&Path>,
    ) -> Result<Vec<(PathBuf, String, bool)>> {
        let mut out = Vec::new();
        for from in c.record.host_config.volumes_from.clone() {
            let (name, mode) = from.split_once(':').unwrap_or((&from, ""));
            let other = self.container(name)?;
            for (src, dest, ro) in self.volume_mounts(&other, None)? {
                out.push((src, dest, ro || mode == "ro"));
            }
        }
        for b in &c.record.host_config.binds {
            let parts: Vec<&str> = b.split(':').collect();
            let (src, dest, opts) = match parts.as_slice() {
                [s, d] => (*s, *d, ""),
                [s, d, o] => (*s, *d, *o),
                _ => continue,
            };
            let ro = opts.split(',').any(|x| x == "ro");
            let src = if src.starts_with('/') {
                let p = PathBuf::from(src);
                if rootfs.is_some() && !p.exists() {
                    fs::create_dir_all(&p)
                        .map_err(Error::io(format!("create bind source {src}")))?;
                }
                p
            } else {
                let p = spec::volume_dir(&self.root, src);
                if let Some(rootfs) = rootfs {
                    fs::create_dir_all(&p).map_err(Error::io(format!("create volume {src}")))?;
                    self.ensure_volume_mounted(src)?;
                    if !opts.split(',').any(|x| x == "nocopy") {
                        copy_up(rootfs, dest, &p, &c.record.name)?;
                    }
                }
                p
            };
            out.push((src, dest.to_string(), ro));
        }
        // anonymous volumes (-v /path and the image's VOLUME): one per path, named by the
        // container's ID and the path, kept in the container's directory
        for v in c.record.config.volumes.keys() {
            if out.iter().any(|(_, d, _)| d == v) {
                continue;
            }
            let p = spec::volume_dir(&self.root, &anonymous_volume(&c.record.id, v));
            if let Some(rootfs) = rootfs {
                fs::create_dir_all(&p).map_err(Error::io(format!("create volume for {v}")))?;
                copy_up(rootfs, v, &p, &c.record.name)?;
            }
            out.push((p, v.clone(), false));
        }
        Ok(out)
    }

    /// Pins a network namespace (bridge and none) and connects it; writes the hosts,
    /// hostname and resolv.conf files into the container's directory.
    fn setup_network(&self, c: &mut Container) -> Result<Option<PathBuf>> {
        let hc = c.record.host_config.clone();
        let mode = hc.network_mode.as_str();
        let (netns, net_mode) = match mode {
            // no network driver at all: a fresh namespace with loopback (or the host's),
            // and the three files written here
            "host" | "none" => {
                self.write_local_files(c, mode == "host")?;
                return Ok(None);
            }
            m if m.starts_with("container:") => {
                let other = self.container(&m["container:".len()..])?;
                if !other.state.is_alive() {
                    return Err(Error::WrongState(format!(
                        "cannot join network of a non running container: {}",
                        other.record.id
                    )));
                }
                let p = PathBuf::from(format!("/proc/{}/ns/net", other.state.pid));
                c.state.netns = None;
                return Ok(Some(p));
            }
            // the network mode's network was disconnected (`network disconnect`): a
            // namespace of its own with loopback, and the networks connected later
            _ if crate::network::Attachments::load(&c.dir).first_disconnected => {
                self.write_local_files(c, false)?;
                c.state.network = None;
                return Ok(Some(self.pin_netns(c)?));
            }
            "bridge" => (Some(self.pin_netns(c)?), NetMode::Bridge("bridge".into())),
            other => (Some(self.pin_netns(c)?), NetMode::Bridge(other.to_string())),
        };
        let ns_ref = match &netns {
            Some(p) => Some(
                NetnsRef::from_path(p)
                    .map_err(Error::network("open the container's network namespace"))?,
            ),
            None => None,
        };
        let mut cfg = EndpointConfig::new(&c.record.id, ns_ref);
        // --network-alias and --ip (user-defined networks; checked at create)
        for a in &hc.network_aliases {
            cfg = cfg.alias(a.clone());
        }
        if let Ok(ip) = hc.ip_address.parse() {
            cfg = cfg.ip(ip);
        }
        cfg.container_name = c.record.name.clone();
        cfg.mode = net_mode;
        cfg.hostname = Some(c.record.config.hostname.clone());
        cfg.files_dir = Some(c.dir.clone());
        for p in &hc.publish {
            cfg.publish.extend(super::create::expand_publish(p)?);
        }
        cfg.publish_all = hc.publish_all_ports;
        for p in c.record.config.exposed_ports.keys() {
            if let Ok(e) = p.parse() {
                cfg.expose.push(e);
            }
        }
        for d in &hc.dns {
            cfg.dns.push(
                d.parse()
                    .map_err(|_| Error::InvalidArgument(format!("invalid --dns {d:?}")))?,
            );
        }
        cfg.dns_search = hc.dns_search.clone();
        for h in &hc.extra_hosts {
            cfg.extra_hosts.push(
                longshore_network::files::HostsEntry::parse_add_host(h).map_err(|e| {
                    Error::InvalidArgument(format!("invalid --add-host {h:?}: {e}"))
                })?,
            );
        }
        for l in &hc.links {
            let (name, alias) = l.split_once(':').unwrap_or((l, l));
            let other = self.container(name)?;
            let ip = other
                .state
                .network
                .as_ref()
                .filter(|_| other.state.is_alive())
                .and_then(|n| n.ip_address.parse().ok())
                .ok_or_else(|| {
                    Error::WrongState(format!(
                        "Cannot link to a non running container: /{} AS /{}/{alias}",
                        other.record.name, c.record.name
                    ))
                })?;
            cfg.links.push(longshore_network::files::Link {
                name: other.record.name.clone(),
                alias: alias.to_string(),
                ip,
                ports: other
                    .record
                    .config
                    .exposed_ports
                    .keys()
                    .filter_map(|p| p.parse().ok())
                    .collect(),
                env: other.record.config.env.clone(),
            });
        }
        if !hc.mac_address.is_empty() {
            cfg.mac = Some(
                longshore_network::parse_mac(&hc.mac_address)
                    .map_err(Error::network("--mac-address"))?,
            );
        }
        // the previous run's veth may still be going (see `wait_veth_gone`)
        crate::network::wait_veth_gone(&c.record.id);
        let ep = self.network()?.connect(&cfg).map_err(|e| match e {
            longshore_network::Error::InvalidInput { .. } => Error::InvalidArgument(e.to_string()),
            e => Error::Network {
                op: format!("connect container {} to network {mode}", c.record.name),
                source: e,
            },
        })?;
        let info = ep.info;
        c.state.network = Some(NetworkState {
            network: info.network.clone().unwrap_or_else(|| mode.to_string()),
            ip_address: info.ip.map(|i| i.ip().to_string()).unwrap_or_default(),
            ip_prefix_len: info.ip.map(|i| i.prefix()).unwrap_or(0),
            gateway: info.gateway.map(|g| g.to_string()).unwrap_or_default(),
            mac_address: info.mac.clone().unwrap_or_default(),
            ports: info
                .ports
                .iter()
                .map(|p| PublishedPort {
                    host_ip: p.host_ip.to_string(),
                    host_port: p.host_port,
                    container_port: p.container_port,
                    proto: p.proto.to_string(),
                })
                .collect(),
        });
        Ok(netns)
    }

    /// `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` for `none` and `host`.
    fn write_local_files(&self, c: &Container, host: bool) -> Result<()> {
        let hostname = if host {
            fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap_or_default()
                .trim()
                .to_string()
        } else {
            c.record.config.hostname.clone()
        };
        let mut hosts = String::from(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
        );
        if host {
            hosts = fs::read_to_string("/etc/hosts").unwrap_or(hosts);
        }
        for h in &c.record.host_config.extra_hosts {
            let e = longshore_network::files::HostsEntry::parse_add_host(h)
                .map_err(|e| Error::InvalidArgument(format!("invalid --add-host {h:?}: {e}")))?;
            hosts.push_str(&format!("{}\t{}\n", e.ip, e.names.join(" ")));
        }
        let resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        for (name, data) in [
            ("hosts", hosts),
            ("hostname", format!("{hostname}\n")),
            ("resolv.conf", resolv),
        ] {
            write_atomic(&c.dir.join(name), data.as_bytes())?;
        }
        Ok(())
    }

    fn pin_netns(&self, c: &mut Container) -> Result<PathBuf> {
        let name = netns_name(&c.record.id);
        let path = Path::new(NamedNetns::DIR).join(&name);
        if path.exists() {
            unpin_netns(&path);
        }
        let ns = NamedNetns::create(&name)
            .map_err(Error::network(format!("create network namespace {name}")))?;
        // kept past this process: the container and its monitor use it; the monitor (or
        // `teardown_network`) removes it when the container stops for good. The handle's
        // file is closed: a daemon that kept it (this was a `mem::forget`) kept every
        // stopped container's namespace and veth alive, and a second start met the old
        // veth ("File exists")
        let p = ns.keep();
        c.state.netns = Some(p.clone());
        Ok(p)
    }

    /// Disconnects a container from its network and removes its pinned namespace.
    pub(crate) fn teardown_network(&self, c: &mut Container) {
        if crate::network::has_endpoints(&c.state, &c.dir)
            && let Ok(ctl) = self.network()
        {
            crate::network::disconnect_all(ctl, &c.record.id, false);
        }
        if let Some(p) = c.state.netns.take() {
            unpin_netns(&p);
        }
        c.state.network = None;
    }
}

/// Creates the container's working directory in its root filesystem when it is missing
/// (`-w /new/dir`, or an image's `WORKDIR` its layers never made), as Docker does before a
/// start: owned by root, mode 0755. Every component is resolved inside the root
/// (`openat2(RESOLVE_IN_ROOT)`) and made with `mkdirat` beneath its resolved parent; a
/// dangling symlink is followed inside the root (its target is made), so a symlink in the
/// image never leads the creation outside the container.
fn make_working_dir(rootfs: &Path, dir: &str, name: &str) -> Result<()> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    fn split(p: &str) -> Vec<String> {
        p.split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .map(String::from)
            .collect()
    }
    let mut comps = split(dir);
    if comps.is_empty() {
        return Ok(());
    }
    let failed = |what: &str| {
        let what = format!("{what} the working directory {dir} of {name}");
        move |e: rustix::io::Errno| Error::io(what)(e.into())
    };
    let root = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(failed("open the root for"))?;
    let open = |comps: &[String]| {
        let rel = comps.join("/");
        rustix::fs::openat2(
            &root,
            if rel.is_empty() { "." } else { rel.as_str() },
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV,
        )
    };
    let mut links = 0;
    let mut i = 1;
    while i <= comps.len() {
        match open(&comps[..i]) {
            Ok(_) => {
                i += 1;
                continue;
            }
            Err(rustix::io::Errno::NOENT) => {}
            Err(rustix::io::Errno::NOTDIR) => {
                return Err(Error::InvalidArgument(format!(
                    "the working directory {dir} of {name} is not a directory in the container"
                )));
            }
            Err(e) => return Err(failed("resolve")(e)),
        }
        let parent = open(&comps[..i - 1]).map_err(failed("resolve"))?;
        match rustix::fs::mkdirat(&parent, comps[i - 1].as_str(), Mode::from_raw_mode(0o755)) {
            Ok(()) => i += 1,
            // a dangling symlink: its target (inside the root) is what to make
            Err(rustix::io::Errno::EXIST) => {
                let target = rustix::fs::readlinkat(&parent, comps[i - 1].as_str(), Vec::new())
                    .map_err(failed("resolve"))?;
                links += 1;
                if links > 40 {
                    return Err(failed("resolve")(rustix::io::Errno::LOOP));
                }
                let target = target.to_string_lossy().into_owned();
                let mut next = if target.starts_with('/') {
                    Vec::new()
                } else {
                    comps[..i - 1].to_vec()
                };
                next.extend(split(&target));
                next.extend(comps[i..].iter().cloned());
                comps = next;
                i = 1;
            }
            Err(e) => return Err(failed("create")(e)),
        }
    }
    Ok(())
}

/// The name of container `id`'s anonymous volume at `path`.
fn anonymous_volume(id: &str, path: &str) -> String {
    format!(
        "anon-{}-{}",
        &id[..12],
        path.trim_matches('/').replace('/', "-")
    )
}

/// Copies what the image holds at `dest` (resolved inside `rootfs`, so a symlink in the
/// image cannot name a host path) into the volume directory `volume` if that is empty.
/// Symlinks are copied as symlinks and the copy goes through libgraph's layer apply, which
/// keeps every entry inside the volume; owners, modes and times are kept.
fn copy_up(rootfs: &Path, dest: &str, volume: &Path, name: &str) -> Result<()> {
    let empty = fs::read_dir(volume)
        .map_err(Error::io(format!("read volume {}", volume.display())))?
        .next()
        .is_none();
    if !empty {
        return Ok(());
    }
    let src = match super::copy::resolve_in_root(rootfs, dest, name) {
        Ok(p) => p,
        // nothing at that path in the image (or it crosses a mount): nothing to copy
        Err(_) => return Ok(()),
    };
    match fs::symlink_metadata(&src) {
        Ok(md) if md.is_dir() => {}
        _ => return Ok(()),
    }
    let src_dir = src.clone();
    let (rd, wr) = std::io::pipe().map_err(Error::io("pipe"))?;
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let mut b = tar::Builder::new(wr);
        b.follow_symlinks(false);
        b.append_dir_all(".", &src)?;
        b.finish()
    });
    let applied =
        longshore_graph::apply_layer(rd, volume, &longshore_graph::ApplyOptions::default());
    let written = writer
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the copy panicked")));
    applied.map_err(|e| {
        Error::InvalidArgument(format!("copy the image's {dest} into its volume: {e}"))
    })?;
    written.map_err(Error::io(format!(
        "copy the image's {dest} into its volume"
    )))?;
    // the volume's root takes the owner and mode of the image's directory
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let md =
        fs::symlink_metadata(&src_dir).map_err(Error::io(format!("stat the image's {dest}")))?;
    std::os::unix::fs::lchown(volume, Some(md.uid()), Some(md.gid()))
        .map_err(Error::io(format!("chown volume {}", volume.display())))?;
    fs::set_permissions(volume, fs::Permissions::from_mode(md.mode() & 0o7777))
        .map_err(Error::io(format!("chmod volume {}", volume.display())))?;
    Ok(())
}

/// A monitor spawned for a start, waiting for the engine's go (one byte on its stdin)
/// before it makes the container (until then it only holds its lock, has read its config
/// and listens on its attach socket). Dropped without [`PendingMonitor::go`], it is told
/// nothing (the end of the pipe) and waited for: it removes its socket and exits, and a
/// later start does not find its lock held.
struct PendingMonitor {
    child: std::process::Child,
    report: Option<BufReader<fs::File>>,
    go: Option<OwnedFd>,
}

impl PendingMonitor {
    /// Lets the monitor start the container (its bundle and state are written), and waits
    /// for its report: running, or waiting for attach clients. A monitor that waits for
    /// clients says first that its socket listens: `clients` are connected then, while it
    /// creates the container.
    fn go(
        mut self,
        name: &str,
        id: &str,
        clients: &[AttachStreams],
    ) -> Result<Vec<Result<std::os::unix::net::UnixStream>>> {
        let go = self.go.take().expect("go is sent once");
        let sent = rustix::io::write(&go, b"g");
        drop(go);
        let mut requested = Vec::new();
        let mut line = self.read_line();
        if let Ok(Some(l)) = &line
            && l.trim_end() == crate::monitor::LISTENING
        {
            requested = clients
                .iter()
                .map(|a| crate::attach::request_attach(id, a.stdin, a.stdout, a.stderr))
                .collect();
            line = self.read_line();
        }
        self.reap();
        match line? {
            Some(line) => crate::monitor::parse_report(line.trim_end()).map(|()| requested),
            None => Err(Error::Io {
                what: format!("start container {name}"),
                source: std::io::Error::other(match sent {
                    Ok(_) => "the monitor exited before reporting".to_string(),
                    Err(e) => format!("the monitor exited before its start: {e}"),
                }),
            }),
        }
    }

    /// The monitor's next line, or None when it ended without one.
    fn read_line(&mut self) -> Result<Option<String>> {
        let Some(rd) = self.report.as_mut() else {
            return Ok(None);
        };
        let mut line = String::new();
        let n = rd
            .read_line(&mut line)
            .map_err(Error::io("read the monitor's report"))?;
        Ok((n > 0).then_some(line))
    }

    /// Closes the report pipe and reaps the spawned process (the monitor runs on in a
    /// detached child).
    fn reap(&mut self) {
        self.report = None;
        let _ = self.child.wait();
    }
}

impl Drop for PendingMonitor {
    fn drop(&mut self) {
        if self.go.take().is_some() {
            // the end of the go pipe: the monitor (and its detached child) exit; the end of
            // the report pipe says they did
            while let Ok(Some(_)) = self.read_line() {}
            self.reap();
        }
    }
}
