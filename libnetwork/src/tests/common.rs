//! Shared fixtures: a "host" namespace per test, containers as plain namespaces.

use std::path::PathBuf;
use std::process::Command;

use crate::netlink::Netlink;
use crate::netns::NamedNetns;
use crate::{Controller, DaemonOptions, nft};
use longshore_test_support::unique_name;

/// A test host: its own namespace, state directory and fake resolv.conf.
pub struct TestHost {
    pub ns: NamedNetns,
    pub state: tempfile::TempDir,
    pub opts: DaemonOptions,
}

impl TestHost {
    pub fn new(adjust: impl FnOnce(&mut DaemonOptions)) -> Self {
        let ns = NamedNetns::create(&unique_name("lsh")).unwrap();
        let state = tempfile::Builder::new()
            .prefix("longshore-net-")
            .tempdir()
            .unwrap();
        let resolv = state.path().join("host-resolv.conf");
        std::fs::write(
            &resolv,
            "nameserver 127.0.0.53\nnameserver 192.0.2.53\nsearch test.invalid\n",
        )
        .unwrap();
        let mut opts = DaemonOptions {
            bridge: unique_name("lsb"),
            host_resolv_conf: resolv,
            ..DaemonOptions::default()
        };
        adjust(&mut opts);
        Self { ns, state, opts }
    }

    pub fn controller(&self) -> Controller {
        Controller::new(
            self.state.path().join("state"),
            self.ns.netns().clone(),
            self.opts.clone(),
        )
        .unwrap()
    }

    /// Names of the links in the host namespace.
    pub fn links(&self) -> Vec<String> {
        self.ns
            .netns()
            .run(|| Netlink::open()?.links())
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .collect()
    }

    /// Veths (host sides) left in the host namespace.
    pub fn veths(&self) -> Vec<String> {
        self.links()
            .into_iter()
            .filter(|l| l.starts_with("lsv"))
            .collect()
    }

    /// Comment tags of our nftables rules.
    pub fn rule_tags(&self) -> Vec<String> {
        nft::tags(self.ns.netns()).unwrap()
    }
}

/// A "container": a named namespace plus `/etc/netns/<name>` for the files `ip netns exec`
/// bind-mounts over `/etc`.
pub struct TestContainer {
    pub ns: NamedNetns,
    pub etc: PathBuf,
}

impl TestContainer {
    pub fn new() -> Self {
        let ns = NamedNetns::create(&unique_name("lsc")).unwrap();
        let etc = PathBuf::from("/etc/netns").join(ns.name());
        Self { ns, etc }
    }

    /// Runs busybox `args` inside the namespace; true on success.
    pub fn busybox(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", self.ns.name(), "busybox"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// One echo request answered within a second; up to three tries, since the first
    /// packet may wait on neighbour resolution on a busy machine.
    pub fn ping(&self, target: &str) -> bool {
        (0..3).any(|_| self.busybox(&["ping", "-c1", "-W1", target]).0)
    }
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.etc);
    }
}
