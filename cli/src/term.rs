//! Terminals and attached streams: raw mode restored on every exit path, window sizes,
//! detach keys (ctrl-p ctrl-q), and signals forwarded to the container (`--sig-proxy`).

use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use longshore_engine::{Attached, Error, Frame, attach_to};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::termios::{self, SetArg, Termios};

/// True when stdout is a terminal.
pub fn stdout_is_tty() -> bool {
    io::stdout().is_terminal()
}

/// Puts stdin's terminal in raw mode until dropped.
pub(crate) struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    pub(crate) fn enter(on: bool) -> RawMode {
        if !on || !io::stdin().is_terminal() {
            return RawMode { saved: None };
        }
        let stdin = io::stdin();
        let Ok(saved) = termios::tcgetattr(stdin.as_fd()) else {
            return RawMode { saved: None };
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
    }
}

/// Columns of the terminal on stdout.
pub fn width() -> Option<u16> {
    winsize().map(|(_, c)| c)
}

fn winsize() -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize through the pointer, valid for the call.
    let r = unsafe { libc::ioctl(io::stdout().as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}

/// Parses `--detach-keys` (`ctrl-p,ctrl-q`, `a`, `ctrl-@`...).
fn detach_keys(spec: Option<&str>) -> Vec<u8> {
    let spec = spec.unwrap_or("ctrl-p,ctrl-q");
    spec.split(',')
        .filter_map(|k| match k.strip_prefix("ctrl-") {
            Some(c) if c.len() == 1 => {
                let b = c.as_bytes()[0].to_ascii_lowercase();
                match b {
                    b'a'..=b'z' => Some(b - b'a' + 1),
                    b'@' => Some(0),
                    b'[' => Some(27),
                    b'\\' => Some(28),
                    b']' => Some(29),
                    b'^' => Some(30),
                    b'_' => Some(31),
                    _ => None,
                }
            }
            _ if k.len() == 1 => Some(k.as_bytes()[0]),
            _ => None,
        })
        .collect()
}

const FORWARDED: &[Signal] = &[
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Attaches this process's stdio to container `id` until it exits (returns its exit code)
/// or the user detaches (returns 0).
pub fn attach_loop(
    made: Option<Attached>,
    id: &str,
    stdin: bool,
    tty: bool,
    sig_proxy: bool,
    keys: Option<&str>,
    root: &Path,
) -> Result<u8, Error> {
    // signals are taken by one thread (blocked everywhere else) before any thread starts
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(*s);
    }
    let _ = set.thread_block();
    let mut conn = match made {
        Some(c) => c,
        None => attach_to(id, stdin, true, true)?,
    };
    let _raw = RawMode::enter(tty && stdin);
    if tty && let Some((r, c)) = winsize() {
        let _ = conn.resize(r, c);
    }
    {
        let mut sigconn = conn.try_clone()?;
        let runtime_root = root.join("runtime");
        let id = id.to_string();
        std::thread::spawn(move || {
            loop {
                let Ok(sig) = set.wait() else { return };
                if sig == Signal::SIGWINCH {
                    if tty && let Some((r, c)) = winsize() {
                        let _ = sigconn.resize(r, c);
                    }
                    continue;
                }
                if sig_proxy && !tty {
                    if let Ok(c) = longshore_container::Container::load(&runtime_root, &id) {
                        let _ = c.signal(sig as i32, false);
                    }
                } else if !sig_proxy || tty {
                    // a terminal sends ^C itself; without the proxy the client just leaves
                    if !tty {
                        std::process::exit(128 + sig as i32);
                    }
                }
            }
        });
    }
    if stdin {
        let mut w: Attached = conn.try_clone()?;
        let keys = detach_keys(keys);
        let tty_mode = tty;
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut matched = 0usize;
            let mut input = io::stdin().lock();
            loop {
                let n = match input.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = w.close_stdin();
                        return;
                    }
                    Ok(n) => n,
                };
                let mut out = Vec::with_capacity(n);
                for &b in &buf[..n] {
                    if tty_mode && !keys.is_empty() && b == keys[matched] {
                        matched += 1;
                        if matched == keys.len() {
                            let _ = w.write_stdin(&out);
                            w.detach();
                            return;
                        }
                        continue;
                    }
                    if matched > 0 {
                        out.extend_from_slice(&keys[..matched]);
                        matched = 0;
                    }
                    out.push(b);
                }
                if !out.is_empty() && w.write_stdin(&out).is_err() {
                    return;
                }
            }
        });
    }
    let stdout = io::stdout();
    let stderr = io::stderr();
    loop {
        match conn.next_frame() {
            Ok(Some(Frame::Stdout(d))) => {
                let mut o = stdout.lock();
                let _ = o.write_all(&d);
                let _ = o.flush();
            }
            Ok(Some(Frame::Stderr(d))) => {
                let mut e = stderr.lock();
                let _ = e.write_all(&d);
            }
            Ok(Some(Frame::Exit(code))) => return Ok(code.clamp(0, 255) as u8),
            Ok(None) | Err(_) => {
                // detached, or the monitor went away: the recorded status if there is one
                let state = root.join("containers").join(id).join("state.json");
                let code = std::fs::read(&state)
                    .ok()
                    .and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).ok())
                    .filter(|v| v["Status"] == "exited")
                    .and_then(|v| v["ExitCode"].as_i64())
                    .unwrap_or(0);
                return Ok(code.clamp(0, 255) as u8);
            }
        }
    }
}

/// Proxies this terminal to an exec'd process's pty until it exits.
pub fn proxy_terminal(
    master: &std::fs::File,
    process: &mut longshore_container::ExecProcess,
    stdin: bool,
) -> Result<i32, Error> {
    let _raw = RawMode::enter(stdin);
    if let Some((r, c)) = winsize() {
        let ws = libc::winsize {
            ws_row: r,
            ws_col: c,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer; master is an open pty.
        unsafe {
            libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
    if stdin {
        let mut w = master.try_clone().map_err(|e| Error::Io {
            what: "dup the terminal".into(),
            source: e,
        })?;
        std::thread::spawn(move || {
            let _ = io::copy(&mut io::stdin().lock(), &mut w);
        });
    }
    let mut r = master;
    let mut buf = [0u8; 8192];
    let stdout = io::stdout();
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let mut o = stdout.lock();
                let _ = o.write_all(&buf[..n]);
                let _ = o.flush();
            }
        }
    }
    process.wait().map_err(|e| Error::Io {
        what: "wait for the exec'd process".into(),
        source: io::Error::other(e.to_string()),
    })
}

/// Blocks the signals `relay` forwards in this thread, before it starts other threads
/// (they inherit the mask, so only relay's signal thread takes them).
pub fn block_forwarded() {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(*s);
    }
    let _ = set.thread_block();
}

/// Attaches this process's stdio to an upgraded API connection (attach, exec start): the
/// container's output (raw with a terminal, else Docker's 8-byte frames) to stdout and
/// stderr, stdin (with the detach keys on a terminal) to the connection, window sizes to
/// `resize` and, with `sig_proxy` and no terminal, signals to `signal`. Returns true when
/// the user detached.
pub fn relay(
    mut up: crate::client::Upgraded,
    stdin: bool,
    tty: bool,
    sig_proxy: bool,
    keys: Option<&str>,
    resize: impl Fn(u16, u16) + Send + 'static,
    signal: impl Fn(i32) + Send + 'static,
) -> io::Result<bool> {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(*s);
    }
    let _ = set.thread_block();
    let _raw = RawMode::enter(tty && stdin);
    if tty && let Some((r, c)) = winsize() {
        resize(r, c);
    }
    std::thread::spawn(move || {
        loop {
            let Ok(sig) = set.wait() else { return };
            if sig == Signal::SIGWINCH {
                if tty && let Some((r, c)) = winsize() {
                    resize(r, c);
                }
                continue;
            }
            if sig_proxy && !tty {
                signal(sig as i32);
            } else if !tty {
                std::process::exit(128 + sig as i32);
            }
        }
    });
    let detached = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if stdin {
        let mut w = up.writer()?;
        let keys = detach_keys(keys);
        let flag = detached.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut matched = 0usize;
            let mut input = io::stdin().lock();
            loop {
                let n = match input.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        w.close_write();
                        return;
                    }
                    Ok(n) => n,
                };
                let mut out = Vec::with_capacity(n);
                for &b in &buf[..n] {
                    if tty && !keys.is_empty() && b == keys[matched] {
                        matched += 1;
                        if matched == keys.len() {
                            let _ = w.write_all(&out);
                            flag.store(true, std::sync::atomic::Ordering::SeqCst);
                            w.shutdown();
                            return;
                        }
                        continue;
                    }
                    if matched > 0 {
                        out.extend_from_slice(&keys[..matched]);
                        matched = 0;
                    }
                    out.push(b);
                }
                if !out.is_empty() && (w.write_all(&out).is_err() || w.flush().is_err()) {
                    return;
                }
            }
        });
    }
    let stdout = io::stdout();
    let stderr = io::stderr();
    if tty {
        let mut buf = [0u8; 32 * 1024];
        loop {
            match up.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut o = stdout.lock();
                    let _ = o.write_all(&buf[..n]);
                    let _ = o.flush();
                }
            }
        }
    } else {
        while let Ok(Some((stream, d))) = up.next_frame() {
            if stream == 2 {
                let _ = stderr.lock().write_all(&d);
            } else {
                let mut o = stdout.lock();
                let _ = o.write_all(&d);
                let _ = o.flush();
            }
        }
    }
    Ok(detached.load(std::sync::atomic::Ordering::SeqCst))
}
