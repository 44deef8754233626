//! A real `docker-registry` (Debian's distribution 2.8) on 127.0.0.1 with a free port and
//! its own storage, killed when dropped (and when the test process dies).

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running registry.
pub struct RegistryServer {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Holds `config.yml`, `registry.log` and the `data/` storage.
    pub dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

impl RegistryServer {
    /// Starts a registry storing under `dir`; `extra` is appended to its config after the
    /// `http:` section's `addr` and `secret` (indent `tls:` by two spaces to put it under
    /// `http:`; `auth:` at column 0). Image deletion is enabled.
    pub fn start(dir: tempfile::TempDir, extra: &str) -> RegistryServer {
        for _ in 0..10 {
            let port = free_port();
            let config = format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: longshore-test-secret\n{extra}",
                dir.path().join("data").display()
            );
            let cfg = dir.path().join("config.yml");
            std::fs::write(&cfg, config).expect("write the registry config");
            let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry log");
            let mut cmd = Command::new("/usr/bin/docker-registry");
            // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of
            // the parent; a killed test run takes its registry with it.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let mut child = cmd
                .arg("serve")
                .arg(&cfg)
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .spawn()
                .expect("docker-registry must be installed (apt-get install -y docker-registry)");
            for _ in 0..200 {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return RegistryServer {
                        child,
                        addr: format!("127.0.0.1:{port}"),
                        dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "docker-registry did not start: {}",
            std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
        );
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
