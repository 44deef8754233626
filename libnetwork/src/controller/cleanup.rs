//! Crash cleanup: what dead processes left behind.

use std::fs;
use std::path::Path;

use crate::error::{Result, file_err};
use crate::netlink::Netlink;
use crate::nft;
use crate::store::{self};

use crate::controller::*;

impl Controller {
    /// Removes what crashed processes left: endpoints whose owner process is dead (or is this
    /// process under an earlier controller instance), and veths on our bridges, rules, leases
    /// and host ports that no endpoint record accounts for. Safe to run while controllers (in
    /// this or other processes) connect containers: it waits for the connects in progress,
    /// and new ones wait for it.
    pub fn cleanup(&self) -> Result<CleanupReport> {
        // no connect is half done while this looks for orphans (see connect_lock)
        let _alone = self.connect_lock(true)?;
        // veths still queued have no record any more: delete them first, so that they are
        // not reported as orphans (whatever the thread could not delete is swept below)
        let mut first_err = self.reaper.flush().err();
        let mut report = CleanupReport::default();
        let mut live = Vec::new();
        for ep in self.endpoints()? {
            let dead = !pid_alive(ep.owner_pid)
                || (ep.owner_pid == std::process::id() && ep.owner_token != self.token);
            if dead {
                match self.teardown(&ep) {
                    Ok(()) => report.endpoints.push(ep.container_id.clone()),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            } else {
                live.push(ep);
            }
        }
        if let Err(e) = self.reaper.flush() {
            first_err.get_or_insert(e);
        }
        let bridges: Vec<String> = self
            .list_networks()?
            .into_iter()
            .map(|n| n.bridge)
            .collect();
        let known: Vec<String> = live.iter().filter_map(|e| e.veth.clone()).collect();
        report.orphan_veths = self.host.run(|| {
            let mut nl = Netlink::open()?;
            let links = nl.links()?;
            let bridge_idx: Vec<u32> = links
                .iter()
                .filter(|l| bridges.contains(&l.name))
                .map(|l| l.index)
                .collect();
            let mut gone = Vec::new();
            for l in links {
                if l.controller.is_some_and(|c| bridge_idx.contains(&c))
                    && l.name.starts_with("lsv")
                    && !known.contains(&l.name)
                    && nl.delete_link(&l.name)?
                {
                    gone.push(l.name);
                }
            }
            Ok(gone)
        })?;
        if self.opts.iptables {
            let ids: Vec<String> = live
                .iter()
                .map(|e| format!("ep:{}", e.container_id))
                .collect();
            let mut tags = nft::tags(&self.host)?;
            tags.sort();
            tags.dedup();
            for tag in tags {
                if tag.starts_with("ep:") && !ids.contains(&tag) {
                    nft::delete_tagged(&self.host, &tag)?;
                    report.orphan_rules.push(tag);
                }
            }
        }
        let owners: Vec<&str> = live.iter().map(|e| e.container_id.as_str()).collect();
        for net in self.list_networks()? {
            for (ip, owner) in self.ipam.leases(&net.name)? {
                if !owners.contains(&owner.as_str()) && self.ipam.release(&net.name, ip)? {
                    report.orphan_leases.push(format!("{}/{ip}", net.name));
                }
            }
        }
        for (key, owner) in self.ports.used()? {
            if !owners.contains(&owner.as_str()) {
                self.ports.release_owner(&owner)?;
                report.orphan_ports.push(key);
            }
        }
        report.temp_files = self.remove_stale_temp_files()?;
        match first_err {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Removes the temporary files (`*.tmp<pid>-<n>`) of dead processes from the state
    /// directory and its subdirectories.
    pub(crate) fn remove_stale_temp_files(&self) -> Result<Vec<String>> {
        let mut gone = Vec::new();
        for sub in ["", "endpoints", "networks", "ipam"] {
            let dir = self.state.join(sub);
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(file_err(&dir, "list")(e)),
            };
            for e in entries {
                let e = e.map_err(file_err(&dir, "list"))?;
                let name = e.file_name();
                let Some(pid) = name.to_str().and_then(store::stale_tmp_pid) else {
                    continue;
                };
                if pid != std::process::id() && !pid_alive(pid) {
                    store::remove(&e.path())?;
                    gone.push(Path::new(sub).join(&name).display().to_string());
                }
            }
        }
        gone.sort();
        Ok(gone)
    }
}
