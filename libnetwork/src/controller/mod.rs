//! The controller: networks, endpoints, drivers, teardown and crash cleanup.
//!
//! [`config`] has the types a caller fills in and gets back; the controller's methods are
//! grouped by subject: network CRUD ([`networks`]), connect and disconnect ([`connect`]),
//! published ports ([`publish`]), crash cleanup ([`cleanup`]); one file per driver under
//! [`drivers`].

mod cleanup;
mod config;
mod connect;
mod drivers;
mod networks;
mod publish;

use std::collections::HashMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result, file_err};
use crate::ipam::Ipam;
use crate::libnft::NftSession;
use crate::netns::NetnsRef;
use crate::nfnl::NfTables;
use crate::ports::PortAllocator;
use crate::proxy::{Proxy, ProxyRuntime};
use crate::reaper::Reaper;
use crate::store::{self};
use drivers::{BridgeDriver, ContainerDriver, Driver, HostDriver, NoneDriver};

pub use config::*;

/// Owns the networks of one state directory in one host namespace.
pub struct Controller {
    state: PathBuf,
    host: NetnsRef,
    opts: DaemonOptions,
    token: String,
    ipam: Ipam,
    ports: PortAllocator,
    proxies: Mutex<HashMap<String, Vec<Proxy>>>,
    proxy_rt: ProxyRuntime,
    reaper: Reaper,
    nft: Option<NftSession>,
    nfnl: Option<Mutex<NfTables>>,
    /// Retired endpoint record files, reused for new records (see [`store::create_json_in`]).
    spares: Mutex<Vec<PathBuf>>,
    /// The kernel's handle of the table `ip longshore` when the controller opened (see
    /// [`EndpointInfo`]'s `rules_table`).
    table: Option<u64>,
}

/// How many retired record files a controller keeps for reuse.
const MAX_SPARE_RECORDS: usize = 16;

impl Drop for Controller {
    fn drop(&mut self) {
        // unlinked by the reaper thread, which the reaper's own drop then waits for
        let spares = std::mem::take(self.spares.get_mut().unwrap_or_else(|p| p.into_inner()));
        for f in spares {
            self.reaper.remove_file(f);
        }
    }
}

pub(crate) fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

pub(crate) fn mac_string(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff` (`--mac-address`).
pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let bad = |r: &str| Error::InvalidInput {
        what: "MAC address",
        value: s.into(),
        reason: r.into(),
    };
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(bad("expected six hex bytes separated by ':'"));
    }
    let mut m = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return Err(bad("each byte needs two hex digits"));
        }
        m[i] = u8::from_str_radix(p, 16).map_err(|_| bad("not hex"))?;
    }
    if m[0] & 1 == 1 {
        return Err(bad("multicast addresses cannot be assigned"));
    }
    Ok(m)
}

pub(crate) fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

/// The host-side veth name of a container: `lsv` + 12 hex digits of a hash of its id.
pub fn veth_name(container_id: &str) -> String {
    format!("lsv{:012x}", fnv(container_id) & 0xffff_ffff_ffff)
}

pub(crate) fn safe_name(what: &'static str, s: &str) -> Result<()> {
    if s.is_empty()
        || s.len() > 128
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        || s.starts_with('.')
    {
        return Err(Error::InvalidInput {
            what,
            value: s.into(),
            reason: "use letters, digits, '-', '_' and '.' only".into(),
        });
    }
    Ok(())
}

pub(crate) fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

impl Controller {
    /// Opens the state directory, prepares the host namespace (`--ip-forward`, the nftables
    /// table) and creates or reuses the default bridge network.
    ///
    /// `host` is the namespace that plays the host: the bridge, the veths' host sides, the
    /// rules and the proxies live there.
    pub fn new(state_dir: impl Into<PathBuf>, host: NetnsRef, opts: DaemonOptions) -> Result<Self> {
        let state = state_dir.into();
        fs::create_dir_all(state.join("endpoints"))
            .map_err(file_err(state.join("endpoints"), "create state directory"))?;
        fs::create_dir_all(state.join("networks"))
            .map_err(file_err(state.join("networks"), "create state directory"))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        // the per-container rules go through a raw nf_tables socket (libnftables or nft
        // only when it cannot be opened)
        let nfnl = if opts.iptables {
            NfTables::open_in(&host).ok().map(Mutex::new)
        } else {
            None
        };
        let nfnl_missing = nfnl.is_none();
        let mut ctl = Self {
            reaper: Reaper::start(&host)?,
            proxy_rt: ProxyRuntime::new(&host),
            nfnl,
            nft: if opts.iptables && nfnl_missing {
                NftSession::start(&host)
            } else {
                None
            },
            ipam: Ipam::new(&state),
            ports: PortAllocator::new(&state),
            state,
            host,
            token: format!("{}-{nanos:x}", std::process::id()),
            opts,
            proxies: Mutex::new(HashMap::new()),
            spares: Mutex::new(Vec::new()),
            table: None,
        };
        if ctl.opts.ip_forward {
            ctl.host.run(|| {
                let p = Path::new("/proc/sys/net/ipv4/ip_forward");
                fs::write(p, "1\n").map_err(file_err(p, "enable IP forwarding"))
            })?;
        }
        // the base chains and the default network's rules in one transaction; alone, so that
        // two processes starting controllers on one state directory (a container's monitor
        // tearing down while the next `run` starts) never delete each other's rule handles
        {
            let _alone = ctl.connect_lock(true)?;
            ctl.table = ctl.ensure_default_network()?;
        }
        Ok(ctl)
    }

    /// The host namespace.
    pub fn host_netns(&self) -> &NetnsRef {
        &self.host
    }

    /// The daemon options.
    pub fn options(&self) -> &DaemonOptions {
        &self.opts
    }

    pub(crate) fn network_path(&self, name: &str) -> PathBuf {
        self.state.join("networks").join(format!("{name}.json"))
    }

    pub(crate) fn endpoint_path(&self, id: &str) -> PathBuf {
        self.state.join("endpoints").join(format!("{id}.json"))
    }

    /// The record of container `id` at `path`. A record file is reused for another
    /// container once retired, so a reader that opened it under the old name may find the
    /// new container's record: that counts as not found.
    pub(crate) fn read_endpoint(path: &Path, id: &str) -> Result<Option<EndpointInfo>> {
        Ok(store::read_record::<EndpointInfo>(path)?.filter(|e| e.container_id == id))
    }

    /// Writes the first record of an endpoint, into a retired record file when there is
    /// one; false when the container has a record already.
    pub(crate) fn create_record(&self, ep: &EndpointInfo) -> Result<bool> {
        let path = self.endpoint_path(&ep.container_id);
        let spare = self.spares.lock().unwrap_or_else(|p| p.into_inner()).pop();
        if let Some(spare) = spare {
            match store::create_json_in(&path, ep, spare.clone()) {
                Ok(None) => return Ok(true),
                Ok(Some(unused)) => {
                    self.keep_spare(unused);
                    return Ok(false);
                }
                // a new file instead
                Err(_) => self.reaper.remove_file(spare),
            }
        }
        store::create_json(&path, ep)
    }

    pub(crate) fn keep_spare(&self, f: PathBuf) {
        let mut spares = self.spares.lock().unwrap_or_else(|p| p.into_inner());
        if spares.len() < MAX_SPARE_RECORDS {
            spares.push(f);
        } else {
            drop(spares);
            self.reaper.remove_file(f);
        }
    }

    /// The state directory's connect lock: every `connect` (in any process) holds it shared
    /// for its whole run and `cleanup` holds it exclusive. Without it, a record written after
    /// cleanup listed the endpoints would make the new lease, port and rules look orphaned.
    pub(crate) fn connect_lock(&self, exclusive: bool) -> Result<nix::fcntl::Flock<fs::File>> {
        let path = self.state.join("connect.lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(file_err(&path, "open lock file"))?;
        let arg = if exclusive {
            nix::fcntl::FlockArg::LockExclusive
        } else {
            nix::fcntl::FlockArg::LockShared
        };
        nix::fcntl::Flock::lock(f, arg).map_err(|(_, e)| Error::File {
            path,
            what: "lock",
            source: e.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_modes_and_macs() {
        assert_eq!(
            "bridge".parse::<NetMode>().unwrap(),
            NetMode::Bridge("bridge".into())
        );
        assert_eq!("host".parse::<NetMode>().unwrap(), NetMode::Host);
        assert_eq!("none".parse::<NetMode>().unwrap(), NetMode::None);
        assert_eq!(
            "container:abc".parse::<NetMode>().unwrap(),
            NetMode::Container("abc".into())
        );
        assert!("container:".parse::<NetMode>().is_err());
        assert_eq!(
            mac_string(mac_for("172.17.0.8".parse().unwrap())),
            "02:42:ac:11:00:08"
        );
        assert_eq!(
            parse_mac("02:42:ac:11:00:0a").unwrap(),
            [2, 0x42, 0xac, 0x11, 0, 0xa]
        );
        assert!(parse_mac("01:00:00:00:00:00").is_err());
        assert!(parse_mac("02:42:ac:11:00").is_err());
        assert!(parse_mac("zz:42:ac:11:00:00").is_err());
        assert_eq!(veth_name("abc").len(), 15);
        assert!(safe_name("x", "../etc").is_err());
        // a record naming a driver this crate does not have is torn down as an error, not
        // as a bridge endpoint
        assert!(matches!(
            Controller::driver_by_name("macvlan"),
            Err(Error::UnknownDriver { driver }) if driver == "macvlan"
        ));
        assert!(Controller::driver_by_name("bridge").is_ok());
    }
}
