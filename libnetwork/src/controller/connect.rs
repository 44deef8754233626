//! Connecting and disconnecting containers, their files and their peers' hosts entries.

use std::fs;
use std::net::IpAddr;

use crate::error::{Error, Result, file_err};
use crate::files::{ContainerFiles, HostsEntry, Link, hosts_file, resolv_conf};
use crate::reaper::ReaperStats;
use crate::store::{self};

use crate::controller::*;

impl Controller {
    /// Every endpoint record of the state directory.
    pub fn endpoints(&self) -> Result<Vec<EndpointInfo>> {
        let dir = self.state.join("endpoints");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(file_err(&dir, "list"))? {
            let p = e.map_err(file_err(&dir, "list"))?.path();
            if p.extension().is_some_and(|x| x == "json") {
                let Some(id) = p.file_stem().and_then(|s| s.to_str()) else {
                    continue;
                };
                if let Some(ep) = Self::read_endpoint(&p, id)? {
                    out.push(ep);
                }
            }
        }
        Ok(out)
    }

    /// The endpoint of a container, by id or name.
    pub fn endpoint(&self, id_or_name: &str) -> Result<EndpointInfo> {
        if safe_name("container id", id_or_name).is_ok()
            && let Some(e) = Self::read_endpoint(&self.endpoint_path(id_or_name), id_or_name)?
        {
            return Ok(e);
        }
        self.endpoints()?
            .into_iter()
            .find(|e| e.container_name == id_or_name.trim_start_matches('/'))
            .ok_or_else(|| Error::EndpointNotFound(id_or_name.into()))
    }

    pub(crate) fn driver(&self, mode: &NetMode) -> &'static dyn Driver {
        match mode {
            NetMode::Bridge(_) => &BridgeDriver,
            NetMode::Host => &HostDriver,
            NetMode::None => &NoneDriver,
            NetMode::Container(_) => &ContainerDriver,
        }
    }

    /// The driver an endpoint record names; an unknown name is an error (a record of a
    /// newer version, or a damaged one), never the bridge.
    pub(crate) fn driver_by_name(name: &str) -> Result<&'static dyn Driver> {
        match name {
            "bridge" => Ok(&BridgeDriver),
            "host" => Ok(&HostDriver),
            "none" => Ok(&NoneDriver),
            "container" => Ok(&ContainerDriver),
            _ => Err(Error::UnknownDriver {
                driver: name.into(),
            }),
        }
    }

    /// Serialises the hosts-file updates of one user-defined network (none for the other
    /// networks): a member's file is built from the records and its peers' files are
    /// rewritten under it, so two containers joining at once each end up in the other's
    /// file.
    fn hosts_lock(&self, ep: &EndpointInfo) -> Result<Option<nix::fcntl::Flock<fs::File>>> {
        let Some(net) = ep.network.as_deref().filter(|n| *n != DEFAULT_NETWORK) else {
            return Ok(None);
        };
        let path = self
            .state
            .join("networks")
            .join(format!("{net}.hosts.lock"));
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(file_err(&path, "open lock file"))?;
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map(Some)
            .map_err(|(_, e)| Error::File {
                path,
                what: "lock",
                source: e.into(),
            })
    }

    /// Connects a container: runs its driver, publishes ports, builds its files and link
    /// environment. On error everything done so far is undone.
    pub fn connect(&self, cfg: &EndpointConfig) -> Result<Endpoint> {
        safe_name("container id", &cfg.container_id)?;
        let _connecting = self.connect_lock(false)?;
        let path = self.endpoint_path(&cfg.container_id);
        if path.exists() {
            return Err(Error::AlreadyConnected(cfg.container_id.clone()));
        }
        Self::check_config(cfg)?;
        let driver = self.driver(&cfg.mode);
        let hostname = cfg
            .hostname
            .clone()
            .unwrap_or_else(|| cfg.container_id.chars().take(12).collect());
        let mut exposed = cfg.expose.clone();
        exposed.extend(cfg.publish.iter().map(|p| p.container));
        exposed.sort();
        exposed.dedup();
        let mut ep = EndpointInfo {
            container_id: cfg.container_id.clone(),
            container_name: cfg.container_name.trim_start_matches('/').to_string(),
            aliases: cfg.aliases.clone(),
            driver: driver.name().into(),
            network: None,
            ip: None,
            gateway: None,
            mac: None,
            veth: None,
            ports: vec![],
            rule_handles: vec![],
            rules_table: None,
            exposed,
            netns: cfg
                .netns
                .as_ref()
                .map(|n| n.path().to_path_buf())
                .unwrap_or_default(),
            hostname,
            files_dir: cfg.files_dir.clone(),
            owner_pid: std::process::id(),
            owner_token: self.token.clone(),
        };
        driver.join(self, cfg, &mut ep)?;
        let built = self.hosts_lock(&ep).and_then(|lock| {
            let files = self.build_files(cfg, &ep)?;
            if let Some(d) = &cfg.files_dir {
                files.write_to(d)?;
            }
            self.update_peer_hosts(&ep, true);
            drop(lock);
            Ok(files)
        });
        let files = match built {
            Ok(f) => f,
            Err(e) => {
                let _ = self.teardown(&ep);
                return Err(e);
            }
        };
        let link_env = cfg
            .links
            .iter()
            .flat_map(|l| l.env_vars(&ep.container_name))
            .collect();
        Ok(Endpoint {
            info: ep,
            files,
            link_env,
        })
    }

    pub(crate) fn check_config(cfg: &EndpointConfig) -> Result<()> {
        use crate::files::check_name;
        check_name("container name", cfg.container_name.trim_start_matches('/'))?;
        for a in &cfg.aliases {
            check_name("--network-alias", a)?;
        }
        if let Some(h) = &cfg.hostname {
            check_name("hostname", h)?;
        }
        if let Some(i) = &cfg.interface
            && (i.is_empty()
                || i.len() > 15
                || i == "lo"
                || !i
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
        {
            return Err(Error::InvalidInput {
                what: "interface name",
                value: i.clone(),
                reason: "1 to 15 letters, digits, '-', '_' or '.', not lo".into(),
            });
        }
        if let Some(d) = &cfg.domainname {
            check_name("domain name", d)?;
        }
        for s in &cfg.dns_search {
            check_name("--dns-search domain", s)?;
        }
        for e in &cfg.extra_hosts {
            for n in &e.names {
                check_name("--add-host name", n)?;
            }
        }
        for l in &cfg.links {
            check_name("--link alias", &l.alias)?;
            check_name("--link name", &l.name)?;
            if !l
                .alias
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(Error::InvalidInput {
                    what: "--link alias",
                    value: l.alias.clone(),
                    reason:
                        "use letters, digits, '-', '_' and '.' (it names environment variables)"
                            .into(),
                });
            }
        }
        Ok(())
    }

    pub(crate) fn build_files(
        &self,
        cfg: &EndpointConfig,
        ep: &EndpointInfo,
    ) -> Result<ContainerFiles> {
        let host_resolv = match fs::read_to_string(&self.opts.host_resolv_conf) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(file_err(&self.opts.host_resolv_conf, "read")(e)),
        };
        let mut extra = cfg.extra_hosts.clone();
        extra.extend(cfg.links.iter().map(Link::hosts_entry));
        // DNS-free name resolution on user-defined networks: the other members' names
        if let Some(net) = ep.network.as_deref().filter(|n| *n != DEFAULT_NETWORK) {
            for other in self.endpoints()? {
                if other.network.as_deref() == Some(net)
                    && other.container_id != ep.container_id
                    && let Some(ip) = other.ip
                {
                    extra.push(HostsEntry {
                        ip: IpAddr::V4(ip.ip()),
                        names: other.names(),
                    });
                }
            }
        }
        Ok(ContainerFiles {
            hosts: hosts_file(
                ep.ip.map(|i| IpAddr::V4(i.ip())),
                &ep.hostname,
                cfg.domainname.as_deref(),
                &extra,
            ),
            resolv_conf: resolv_conf(&host_resolv, &cfg.dns, &cfg.dns_search),
            hostname: format!("{}\n", ep.hostname),
        })
    }

    /// Disconnects a container: removes its rules, proxies, ports, lease, record and its name
    /// from its peers' hosts files before returning, and hands its veth to a background
    /// thread (deleting a veth blocks for about 20 ms in the kernel). [`Controller::flush`]
    /// waits for that thread; a new container never gets the name or address of a veth still
    /// waiting.
    pub fn disconnect(&self, container_id: &str) -> Result<()> {
        self.disconnect_as(container_id, false)
    }

    /// Disconnects a container whose network namespace is about to be destroyed (its last
    /// process is gone and the runtime drops its last reference): as [`Controller::disconnect`],
    /// but the veth pair is left to the kernel, which removes both ends with the namespace.
    /// Should the namespace live on after all, the background thread deletes the veth after
    /// a grace period (`NETNS_GRACE` in `src/reaper.rs`) or at the next [`Controller::flush`].
    ///
    /// Dropping the controller does not wait for such a veth when the namespace's path
    /// (the record's `netns`, e.g. a pinned `/run/netns/<name>`) no longer exists: a runtime
    /// that releases the namespace first and then calls this returns without the kernel's
    /// 20 ms deletion. If the namespace lives on through another reference after all, the
    /// veth is left for [`Controller::cleanup`].
    pub fn disconnect_dying(&self, container_id: &str) -> Result<()> {
        self.disconnect_as(container_id, true)
    }

    pub(crate) fn disconnect_as(&self, container_id: &str, netns_dying: bool) -> Result<()> {
        safe_name("container id", container_id)?;
        let ep = Self::read_endpoint(&self.endpoint_path(container_id), container_id)?
            .ok_or_else(|| Error::EndpointNotFound(container_id.into()))?;
        self.teardown_as(&ep, netns_dying)
    }

    /// Waits until every veth handed to the background thread is deleted; returns the first
    /// error the thread met since the last flush. Dropping the controller flushes too.
    pub fn flush(&self) -> Result<()> {
        self.reaper.flush()
    }

    /// What the background veth thread did so far.
    pub fn reaper_stats(&self) -> ReaperStats {
        self.reaper.stats()
    }

    /// On user-defined networks, adds (or removes) `ep`'s name in the `/etc/hosts` of the
    /// other members whose files this controller wrote. Best effort: a member whose file
    /// cannot be rewritten keeps its old entries.
    pub(crate) fn update_peer_hosts(&self, ep: &EndpointInfo, add: bool) {
        let (Some(net), Some(ip)) = (ep.network.as_deref(), ep.ip) else {
            return;
        };
        if net == DEFAULT_NETWORK {
            return;
        }
        let line = format!("{} {}", ip.ip(), ep.names().join(" "));
        let Ok(all) = self.endpoints() else {
            return;
        };
        for other in all {
            if other.network.as_deref() != Some(net) || other.container_id == ep.container_id {
                continue;
            }
            let Some(dir) = &other.files_dir else {
                continue;
            };
            let path = dir.join("hosts");
            let Ok(old) = fs::read_to_string(&path) else {
                continue;
            };
            let mut lines: Vec<&str> = old.lines().filter(|l| *l != line).collect();
            if add {
                lines.push(&line);
            }
            let mut new = lines.join("\n");
            new.push('\n');
            if new != old
                && let Err(e) = fs::write(&path, new)
            {
                eprintln!("longshore-network: update {}: {e}", path.display());
            }
        }
    }

    pub(crate) fn teardown(&self, ep: &EndpointInfo) -> Result<()> {
        self.teardown_as(ep, false)
    }

    pub(crate) fn teardown_as(&self, ep: &EndpointInfo, netns_dying: bool) -> Result<()> {
        match self.hosts_lock(ep) {
            Ok(lock) => {
                self.update_peer_hosts(ep, false);
                drop(lock);
            }
            Err(e) => eprintln!("longshore-network: {e}"),
        }
        let r = Self::driver_by_name(&ep.driver).and_then(|d| d.leave(self, ep));
        if let Some(v) = &ep.veth {
            self.reaper
                .queue(v, ep.ip.map(|i| i.ip()), &ep.netns, netns_dying);
        }
        // gone from the directory now; its file is kept for the next record
        let path = self.endpoint_path(&ep.container_id);
        let r2 = match store::retire(&path) {
            Ok(Some(aside)) => {
                self.keep_spare(aside);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(_) => store::remove(&path),
        };
        r.and(r2)
    }
}
