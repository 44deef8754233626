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

/// A plain-HTTP proxy in front of a registry that counts the blob downloads (`GET
/// .../blobs/...`) in flight at once: each is held `hold` before it is forwarded, so
/// downloads a client makes at once overlap. One request per connection (`Connection:
/// close` both ways); a response is read whole from the registry and the download counted
/// done before the client gets it, so a client that waits for one download before it
/// starts the next is never seen with two.
pub struct BlobCounter {
    /// `127.0.0.1:PORT`: the registry through the proxy.
    pub addr: String,
    max: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    total: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl BlobCounter {
    /// A proxy to the registry at `upstream` (`HOST:PORT`).
    pub fn start(upstream: &str, hold: Duration) -> BlobCounter {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address").to_string();
        let max = Arc::new(AtomicUsize::new(0));
        let total = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let now = Arc::new(AtomicUsize::new(0));
        let (m, t, s, up) = (
            max.clone(),
            total.clone(),
            stop.clone(),
            upstream.to_string(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (m, t, now, up) = (m.clone(), t.clone(), now.clone(), up.clone());
                std::thread::spawn(move || {
                    let _ = proxy_one(conn, &up, hold, &now, &m, &t);
                });
            }
        });
        BlobCounter {
            addr,
            max,
            total,
            stop,
        }
    }

    /// The most blob downloads seen in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.max.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The blob downloads seen.
    pub fn downloads(&self) -> usize {
        self.total.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for BlobCounter {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // wakes the accepting thread, which sees the stop
        let _ = std::net::TcpStream::connect(&self.addr);
    }
}

/// Forwards one request of `client` to `upstream` (see [`BlobCounter`]).
fn proxy_one(
    mut client: std::net::TcpStream,
    upstream: &str,
    hold: Duration,
    now: &std::sync::atomic::AtomicUsize,
    max: &std::sync::atomic::AtomicUsize,
    total: &std::sync::atomic::AtomicUsize,
) -> std::io::Result<()> {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = client.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut body = buf[head_end..].to_vec();
    let mut lines = head.split("\r\n").filter(|l| !l.is_empty());
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut rewritten = format!("{request_line}\r\n");
    let mut length = 0usize;
    for l in lines {
        let lower = l.to_ascii_lowercase();
        if lower.starts_with("connection:") {
            continue;
        }
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        rewritten.push_str(l);
        rewritten.push_str("\r\n");
    }
    rewritten.push_str("Connection: close\r\n\r\n");
    while body.len() < length {
        let n = client.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let blob = request_line.starts_with("GET ") && request_line.contains("/blobs/");
    if blob {
        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
        max.fetch_max(n, Ordering::SeqCst);
        total.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(hold);
    }
    let answer = (|| {
        let mut up = std::net::TcpStream::connect(upstream)?;
        up.write_all(rewritten.as_bytes())?;
        up.write_all(&body)?;
        let mut answer = Vec::new();
        up.read_to_end(&mut answer)?;
        Ok::<_, std::io::Error>(answer)
    })();
    if blob {
        now.fetch_sub(1, Ordering::SeqCst);
    }
    client.write_all(&answer?)?;
    client.shutdown(std::net::Shutdown::Both)
}
