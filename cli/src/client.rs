//! A small blocking HTTP/1.1 client for the Docker Engine API: one connection per request
//! over a unix socket, TCP, or TCP with TLS (rustls), `Content-Length` and chunked bodies
//! both ways, and connection upgrades (attach, exec) that hand back the raw stream with
//! Docker's 8-byte framing.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// The API version this client asks for.
pub const API_VERSION: &str = "1.45";

/// Where the daemon is.
#[derive(Debug, Clone)]
pub enum Host {
    /// `unix:///path`.
    Unix(PathBuf),
    /// `tcp://host:port` (`host:port`).
    Tcp(String),
}

impl Host {
    /// Parses `-H`/`DOCKER_HOST` (`unix:///p`, `tcp://h:p`, `h:p`); `tls` picks the
    /// default TCP port (2376 with TLS, 2375 without).
    pub fn parse(s: &str, tls: bool) -> Result<Host, String> {
        if let Some(p) = s.strip_prefix("unix://") {
            if p.is_empty() {
                return Err(format!("invalid -H {s:?}: no socket path"));
            }
            return Ok(Host::Unix(PathBuf::from(p)));
        }
        let rest = match s.split_once("://") {
            Some(("tcp" | "http" | "https", r)) => r,
            Some((scheme, _)) => {
                return Err(format!(
                    "invalid -H {s:?}: unsupported protocol {scheme:?} (unix:// or tcp://)"
                ));
            }
            None => s,
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() {
            return Err(format!("invalid -H {s:?}: no address"));
        }
        let has_port = match rest.rsplit_once(':') {
            Some((h, p)) => {
                !p.is_empty()
                    && p.chars().all(|c| c.is_ascii_digit())
                    && (!h.contains(':') || h.ends_with(']'))
            }
            None => false,
        };
        Ok(Host::Tcp(if has_port {
            rest.to_string()
        } else {
            format!("{rest}:{}", if tls { 2376 } else { 2375 })
        }))
    }
}

/// TLS settings: `--tls` (encrypt, trust any server), `--tlsverify` (check the server
/// against `ca`), a client certificate when `cert` and `key` are given.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Check the server's certificate against `ca`.
    pub verify: bool,
    /// CA bundle (PEM).
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM).
    pub cert: Option<PathBuf>,
    /// Client key (PEM).
    pub key: Option<PathBuf>,
}

/// A client of one daemon.
#[derive(Clone)]
pub struct Client {
    host: Host,
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// A client error in the CLI's words.
#[derive(Debug)]
pub struct ClientError {
    /// HTTP status, 0 when the request did not get an answer.
    pub status: u16,
    /// The daemon's message, or what went wrong on the way.
    pub message: String,
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn io_err(host: &Host, e: io::Error) -> ClientError {
    let where_ = match host {
        Host::Unix(p) => format!("unix://{}", p.display()),
        Host::Tcp(a) => format!("tcp://{a}"),
    };
    ClientError {
        status: 0,
        message: format!(
            "Cannot connect to the longshore daemon at {where_}. Is the daemon running? ({e})"
        ),
    }
}

/// Accepts any server certificate (`--tls` without `--tlsverify`, as docker's client).
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_config(o: &TlsOptions) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = if o.verify {
        let ca =
            o.ca.as_ref()
                .ok_or("--tlsverify needs a CA certificate (--tlscacert)")?;
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca)
            .map_err(|e| format!("could not read CA certificate {}: {e}", ca.display()))?;
        for c in certs {
            let c =
                c.map_err(|e| format!("could not read CA certificate {}: {e}", ca.display()))?;
            roots
                .add(c)
                .map_err(|e| format!("CA certificate {}: {e}", ca.display()))?;
        }
        if roots.is_empty() {
            return Err(format!("no certificate in {}", ca.display()));
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
    };
    match (&o.cert, &o.key) {
        (Some(c), Some(k)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(c)
                .and_then(|it| it.collect::<Result<_, _>>())
                .map_err(|e| format!("could not read client certificate {}: {e}", c.display()))?;
            let key = PrivateKeyDer::from_pem_file(k)
                .map_err(|e| format!("could not read client key {}: {e}", k.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate {}: {e}", c.display()))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err("--tlscert and --tlskey go together".into()),
    }
}

/// One connection: unix, TCP, or TLS over TCP (shared by a reader and a writer).
pub enum Stream {
    /// A unix socket.
    Unix(UnixStream),
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS; the socket is non-blocking, so a reader waiting for data never holds the lock.
    Tls(
        Arc<Mutex<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>>,
        RawFd,
    ),
}

fn wait_fd(fd: RawFd, events: libc::c_short) {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: poll reads and writes one pollfd through the pointer, valid for the call.
    unsafe {
        libc::poll(&mut p, 1, 1000);
    }
}

impl Stream {
    /// A second handle on the same connection (a writer beside a reader).
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Tls(s, fd) => Stream::Tls(s.clone(), *fd),
        })
    }

    /// Ends the sending side (the container's stdin sees EOF).
    pub fn close_write(&self) {
        match self {
            Stream::Unix(s) => {
                let _ = s.shutdown(std::net::Shutdown::Write);
            }
            Stream::Tcp(s) => {
                let _ = s.shutdown(std::net::Shutdown::Write);
            }
            Stream::Tls(s, _) => {
                let mut guard = s.lock().unwrap_or_else(|p| p.into_inner());
                let g = &mut *guard;
                g.conn.send_close_notify();
                let _ = g.conn.complete_io(&mut g.sock);
                let _ = g.sock.shutdown(std::net::Shutdown::Write);
            }
        }
    }

    /// Ends both directions (unblocks a reader).
    pub fn shutdown(&self) {
        let _ = match self {
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Both),
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
            Stream::Tls(s, _) => s
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .sock
                .shutdown(std::net::Shutdown::Both),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
            Stream::Tls(s, fd) => loop {
                let r = s.lock().unwrap_or_else(|p| p.into_inner()).read(buf);
                match r {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_fd(*fd, libc::POLLIN),
                    // a peer that closes without close_notify: the end of the stream
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    r => return r,
                }
            },
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
            Stream::Tls(s, fd) => loop {
                let r = s.lock().unwrap_or_else(|p| p.into_inner()).write(buf);
                match r {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_fd(*fd, libc::POLLOUT),
                    r => return r,
                }
            },
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
            Stream::Tls(s, fd) => loop {
                let r = s.lock().unwrap_or_else(|p| p.into_inner()).flush();
                match r {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_fd(*fd, libc::POLLOUT),
                    r => return r,
                }
            },
        }
    }
}

/// A request body.
pub enum ReqBody<'a> {
    /// None.
    Empty,
    /// JSON.
    Json(&'a Value),
    /// A stream sent chunked (tars).
    Stream(&'a mut dyn Read, &'a str),
}

/// A response: status, headers, and the body as a reader.
pub struct Response {
    /// HTTP status.
    pub status: u16,
    body: Body,
}

enum Body {
    Length(BufReader<Stream>, u64),
    Chunked(BufReader<Stream>, u64, bool),
    Eof(BufReader<Stream>),
}

impl Response {
    /// The whole body as JSON.
    pub fn json(mut self) -> Result<Value, ClientError> {
        let mut data = Vec::new();
        self.read_to_end(&mut data).map_err(|e| ClientError {
            status: self.status,
            message: format!("read the daemon's answer: {e}"),
        })?;
        if data.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&data).map_err(|e| ClientError {
            status: self.status,
            message: format!("the daemon's answer is not JSON: {e}"),
        })
    }

    /// The connection itself, after a `101 Switching Protocols` (bytes already read
    /// through the buffer come first).
    pub fn into_upgraded(self) -> Upgraded {
        let r = match self.body {
            Body::Length(r, _) | Body::Chunked(r, _, _) | Body::Eof(r) => r,
        };
        Upgraded { reader: r }
    }
}

impl Read for Response {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.body {
            Body::Length(r, left) => {
                if *left == 0 {
                    return Ok(0);
                }
                let n = (buf.len() as u64).min(*left) as usize;
                let n = r.read(&mut buf[..n])?;
                *left -= n as u64;
                Ok(n)
            }
            Body::Eof(r) => r.read(buf),
            Body::Chunked(r, left, done) => {
                if *done {
                    return Ok(0);
                }
                if *left == 0 {
                    let mut line = String::new();
                    r.read_line(&mut line)?;
                    if line.trim().is_empty() {
                        // the CRLF after the previous chunk
                        line.clear();
                        r.read_line(&mut line)?;
                    }
                    let size = line.trim().split(';').next().unwrap_or("");
                    if size.is_empty() {
                        *done = true;
                        return Ok(0);
                    }
                    let n = u64::from_str_radix(size, 16).map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("bad chunk size {size:?}"),
                        )
                    })?;
                    if n == 0 {
                        *done = true;
                        return Ok(0);
                    }
                    *left = n;
                }
                let n = (buf.len() as u64).min(*left) as usize;
                let n = r.read(&mut buf[..n])?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                *left -= n as u64;
                Ok(n)
            }
        }
    }
}

/// An upgraded connection (attach, exec): read with [`Upgraded::next_frame`] or raw.
pub struct Upgraded {
    reader: BufReader<Stream>,
}

impl Upgraded {
    /// A handle to write stdin with.
    pub fn writer(&self) -> io::Result<Stream> {
        self.reader.get_ref().try_clone()
    }

    /// One frame of Docker's multiplexed stream: (stream, data); `None` at the end.
    pub fn next_frame(&mut self) -> io::Result<Option<(u8, Vec<u8>)>> {
        let mut h = [0u8; 8];
        match self.reader.read_exact(&mut h) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let n = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
        let mut d = vec![0u8; n];
        self.reader.read_exact(&mut d)?;
        Ok(Some((h[0], d)))
    }
}

impl Read for Upgraded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

/// `%XX`-encodes a query value or path segment.
pub fn enc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                o.push(b as char)
            }
            _ => o.push_str(&format!("%{b:02X}")),
        }
    }
    o
}

impl Client {
    /// A client of `host`, with TLS when `tls` is given.
    pub fn new(host: Host, tls: Option<&TlsOptions>) -> Result<Client, String> {
        let tls = match tls {
            Some(o) => Some(Arc::new(tls_config(o)?)),
            None => None,
        };
        if tls.is_some() && matches!(host, Host::Unix(_)) {
            return Err("TLS is for tcp:// hosts, not unix sockets".into());
        }
        Ok(Client { host, tls })
    }

    fn connect(&self) -> Result<Stream, ClientError> {
        match &self.host {
            Host::Unix(p) => UnixStream::connect(p)
                .map(Stream::Unix)
                .map_err(|e| io_err(&self.host, e)),
            Host::Tcp(a) => {
                let s = TcpStream::connect(a).map_err(|e| io_err(&self.host, e))?;
                let _ = s.set_nodelay(true);
                let Some(cfg) = &self.tls else {
                    return Ok(Stream::Tcp(s));
                };
                let host = a.rsplit_once(':').map(|(h, _)| h).unwrap_or(a);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name =
                    rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| {
                        ClientError {
                            status: 0,
                            message: format!("invalid TLS server name {host:?}: {e}"),
                        }
                    })?;
                let conn =
                    rustls::ClientConnection::new(cfg.clone(), name).map_err(|e| ClientError {
                        status: 0,
                        message: format!("TLS: {e}"),
                    })?;
                let fd = s.as_raw_fd();
                let mut tls = rustls::StreamOwned::new(conn, s);
                // the handshake, blocking, so its errors show here
                while tls.conn.is_handshaking() {
                    tls.conn
                        .complete_io(&mut tls.sock)
                        .map_err(|e| ClientError {
                            status: 0,
                            message: format!("TLS handshake with tcp://{a}: {e}"),
                        })?;
                }
                tls.sock
                    .set_nonblocking(true)
                    .map_err(|e| io_err(&self.host, e))?;
                Ok(Stream::Tls(Arc::new(Mutex::new(tls)), fd))
            }
        }
    }

    /// Sends a request; answers of 400 and above are errors carrying the daemon's message.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: ReqBody<'_>,
        headers: &[(&str, String)],
    ) -> Result<Response, ClientError> {
        let r = self.send(method, path, body, headers, false)?;
        if r.status >= 400 {
            let status = r.status;
            let v = r.json().unwrap_or(Value::Null);
            let message = v["message"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| format!("the daemon answered {status}"));
            return Err(ClientError { status, message });
        }
        Ok(r)
    }

    /// A request that asks to upgrade the connection (attach, exec start).
    pub fn upgrade(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response, ClientError> {
        let body = match body {
            Some(v) => ReqBody::Json(v),
            None => ReqBody::Empty,
        };
        let r = self.send(method, path, body, &[], true)?;
        if r.status >= 400 {
            let status = r.status;
            let v = r.json().unwrap_or(Value::Null);
            return Err(ClientError {
                status,
                message: v["message"]
                    .as_str()
                    .unwrap_or("upgrade refused")
                    .to_string(),
            });
        }
        Ok(r)
    }

    /// GET, JSON back.
    pub fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.request("GET", path, ReqBody::Empty, &[])?.json()
    }

    /// POST without a body; JSON back (`Null` when empty).
    pub fn post(&self, path: &str) -> Result<Value, ClientError> {
        self.request("POST", path, ReqBody::Empty, &[])?.json()
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        body: ReqBody<'_>,
        headers: &[(&str, String)],
        upgrade: bool,
    ) -> Result<Response, ClientError> {
        let mut s = self.connect()?;
        let werr = |e: io::Error| ClientError {
            status: 0,
            message: format!("send the request to the daemon: {e}"),
        };
        let mut head = format!(
            "{method} /v{API_VERSION}{path} HTTP/1.1\r\nHost: api.moby.localhost\r\nUser-Agent: longshore/{}\r\n",
            env!("CARGO_PKG_VERSION")
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if upgrade {
            head.push_str("Connection: Upgrade\r\nUpgrade: tcp\r\n");
        } else {
            head.push_str("Connection: close\r\n");
        }
        match body {
            ReqBody::Empty => {
                head.push_str("Content-Length: 0\r\n\r\n");
                s.write_all(head.as_bytes()).map_err(werr)?;
            }
            ReqBody::Json(v) => {
                let data = serde_json::to_vec(v).unwrap_or_default();
                head.push_str(&format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    data.len()
                ));
                let mut all = head.into_bytes();
                all.extend_from_slice(&data);
                s.write_all(&all).map_err(werr)?;
            }
            ReqBody::Stream(r, ctype) => {
                head.push_str(&format!(
                    "Content-Type: {ctype}\r\nTransfer-Encoding: chunked\r\n\r\n"
                ));
                s.write_all(head.as_bytes()).map_err(werr)?;
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let n = r.read(&mut buf).map_err(|e| ClientError {
                        status: 0,
                        message: format!("read the input: {e}"),
                    })?;
                    if n == 0 {
                        break;
                    }
                    let mut chunk = format!("{n:x}\r\n").into_bytes();
                    chunk.extend_from_slice(&buf[..n]);
                    chunk.extend_from_slice(b"\r\n");
                    if let Err(e) = s.write_all(&chunk) {
                        // the daemon may have answered (an error) and closed: read it below
                        if e.kind() == io::ErrorKind::BrokenPipe
                            || e.kind() == io::ErrorKind::ConnectionReset
                        {
                            break;
                        }
                        return Err(werr(e));
                    }
                }
                let _ = s.write_all(b"0\r\n\r\n");
            }
        }
        s.flush().map_err(werr)?;
        read_response(s).map_err(|e| ClientError {
            status: 0,
            message: if self.tls.is_some() {
                format!("TLS with the daemon: {e}")
            } else {
                format!("read the daemon's answer: {e}")
            },
        })
    }
}

fn read_response(s: Stream) -> io::Result<Response> {
    let mut r = BufReader::with_capacity(64 * 1024, s);
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the daemon closed the connection without answering",
        ));
    }
    if line.starts_with(['\u{15}', '\u{16}']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the daemon speaks TLS: use --tls or --tlsverify (and DOCKER_CERT_PATH or --tlscacert, --tlscert, --tlskey)",
        ));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {line:?}"),
            )
        })?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            break;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let h = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let body = if status == 101 {
        Body::Eof(r)
    } else if h("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        Body::Chunked(r, 0, false)
    } else if let Some(n) = h("content-length").and_then(|v| v.parse().ok()) {
        Body::Length(r, n)
    } else if status == 204 || status == 304 {
        Body::Length(r, 0)
    } else {
        Body::Eof(r)
    };
    Ok(Response { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_parse_as_docker_reads_them() {
        assert!(
            matches!(Host::parse("unix:///run/x.sock", false), Ok(Host::Unix(p)) if p == std::path::Path::new("/run/x.sock"))
        );
        assert!(
            matches!(Host::parse("tcp://127.0.0.1:2375", false), Ok(Host::Tcp(a)) if a == "127.0.0.1:2375")
        );
        assert!(
            matches!(Host::parse("tcp://localhost", true), Ok(Host::Tcp(a)) if a == "localhost:2376")
        );
        assert!(
            matches!(Host::parse("10.0.0.1:99", false), Ok(Host::Tcp(a)) if a == "10.0.0.1:99")
        );
        assert!(Host::parse("ssh://x", false).is_err());
        assert!(Host::parse("unix://", false).is_err());
        assert_eq!(enc("a b/c:d"), "a%20b%2Fc%3Ad");
    }
}
