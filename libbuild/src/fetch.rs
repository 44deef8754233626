//! `ADD <url>`: a small HTTP/1.1 client over `std::net` for plain `http://` URLs (redirects,
//! `Content-Length` or chunked bodies, `Last-Modified`). A [`crate::StepRunner`] may fetch
//! differently (the engine can use its TLS client for `https://`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A downloaded file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The body.
    pub data: Vec<u8>,
    /// `Last-Modified` as seconds since the epoch (Docker sets the file's mtime from it).
    pub last_modified: Option<u64>,
    /// The URL after redirects.
    pub final_url: String,
}

/// Most bytes a download may have (an ADD is not meant for huge files).
const MAX_BODY: usize = 1 << 30;

fn parse_http_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!("{url}: only http:// URLs can be fetched here (https needs the engine's client)")
    })?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let hostport = hostport.rsplit('@').next().unwrap_or(hostport);
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (
            h.to_string(),
            p.parse::<u16>()
                .map_err(|_| format!("{url}: bad port {p:?}"))?,
        ),
        _ => (hostport.to_string(), 80),
    };
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    Ok((
        host,
        port,
        path.split('#').next().unwrap_or(path).to_string(),
    ))
}

/// `Wed, 21 Oct 2015 07:28:00 GMT` → seconds since the epoch.
pub fn parse_http_date(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() != 6 {
        return None;
    }
    let day: i64 = parts[1].parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == parts[2])? as i64
        + 1;
    let year: i64 = parts[3].parse().ok()?;
    let hms: Vec<i64> = parts[4].split(':').filter_map(|x| x.parse().ok()).collect();
    if hms.len() != 3 {
        return None;
    }
    // days from civil (Howard Hinnant)
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2]).ok()
}

/// Downloads `url` (plain HTTP, up to 10 redirects).
pub fn http_get(url: &str) -> Result<Fetched, String> {
    let mut url = url.to_string();
    for _ in 0..10 {
        let (host, port, path) = parse_http_url(&url)?;
        let mut s = TcpStream::connect((host.as_str(), port)).map_err(|e| format!("{url}: {e}"))?;
        let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: longshore-build\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| format!("{url}: {e}"))?;
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).map_err(|e| format!("{url}: {e}"))?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("{url}: not an HTTP response: {:?}", line.trim()))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            r.read_line(&mut line).map_err(|e| format!("{url}: {e}"))?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let header = |k: &str| headers.iter().find(|(h, _)| h == k).map(|(_, v)| v.clone());
        if (300..400).contains(&status) {
            let loc =
                header("location").ok_or_else(|| format!("{url}: redirect without Location"))?;
            url = if loc.starts_with("http://") || loc.starts_with("https://") {
                loc
            } else {
                format!(
                    "http://{host}:{port}{}{loc}",
                    if loc.starts_with('/') { "" } else { "/" }
                )
            };
            continue;
        }
        if status != 200 {
            return Err(format!("{url}: the server answered {status}"));
        }
        let mut data = Vec::new();
        if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
            loop {
                line.clear();
                r.read_line(&mut line).map_err(|e| format!("{url}: {e}"))?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| format!("{url}: bad chunk size {:?}", line.trim()))?;
                if size == 0 {
                    break;
                }
                if data.len() + size > MAX_BODY {
                    return Err(format!("{url}: larger than {MAX_BODY} bytes"));
                }
                let start = data.len();
                data.resize(start + size, 0);
                r.read_exact(&mut data[start..])
                    .map_err(|e| format!("{url}: {e}"))?;
                line.clear();
                r.read_line(&mut line).map_err(|e| format!("{url}: {e}"))?;
            }
        } else if let Some(len) = header("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| format!("{url}: bad Content-Length {len:?}"))?;
            if len > MAX_BODY {
                return Err(format!("{url}: larger than {MAX_BODY} bytes"));
            }
            data.resize(len, 0);
            r.read_exact(&mut data)
                .map_err(|e| format!("{url}: body cut short: {e}"))?;
        } else {
            r.take(MAX_BODY as u64 + 1)
                .read_to_end(&mut data)
                .map_err(|e| format!("{url}: {e}"))?;
            if data.len() > MAX_BODY {
                return Err(format!("{url}: larger than {MAX_BODY} bytes"));
            }
        }
        return Ok(Fetched {
            data,
            last_modified: header("last-modified").and_then(|d| parse_http_date(&d)),
            final_url: url,
        });
    }
    Err(format!("{url}: too many redirects"))
}

/// The file name Docker gives a download into a directory: the URL path's last element.
pub fn url_file_name(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next()?;
    let rest = path.split_once("://").map_or(path, |(_, r)| r);
    let (_, p) = rest.split_once('/')?;
    let name = p.rsplit('/').next()?;
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_dates() {
        assert_eq!(
            parse_http_url("http://example.com:8080/a/b?x#f").unwrap(),
            ("example.com".into(), 8080, "/a/b?x".into())
        );
        assert_eq!(
            parse_http_url("http://h").unwrap(),
            ("h".into(), 80, "/".into())
        );
        assert!(parse_http_url("https://h/x").is_err());
        assert_eq!(
            parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(1_445_412_480)
        );
        assert_eq!(
            url_file_name("http://h/dir/file.tar.gz?x=1").as_deref(),
            Some("file.tar.gz")
        );
        assert_eq!(url_file_name("http://h/"), None);
    }
}
