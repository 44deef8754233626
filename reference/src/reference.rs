//! Image references: `[registry[:port]/]path[:tag][@digest]`, normalised like Docker does.
//!
//! The grammar is the one of `distribution/reference`:
//!
//! ```text
//! reference      := name [ ":" tag ] [ "@" digest ]
//! name           := [domain "/"] path-component ["/" path-component]*
//! domain         := domain-component ["." domain-component]* [":" port]   (or "[ipv6]")
//! path-component := [a-z0-9]+ (separator [a-z0-9]+)*      separator := "." | "_" | "__" | "-"+
//! tag            := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
//! ```
//!
//! The first component is a registry when it contains `.` or `:`, is `localhost`, or has an
//! uppercase letter; otherwise the registry is `docker.io`, and single-component names on Docker
//! Hub get `library/` in front (the seed's `username/repository:tag` form keeps its user).

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;
use crate::error::{Error, Result};

/// Docker Hub's canonical registry name.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The tag used when a reference has neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
const LEGACY_DOMAIN: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const NAME_MAX: usize = 255;

/// A parsed, normalised image reference.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises a reference as `docker pull` would (no default tag added).
    pub fn parse(s: &str) -> Result<Reference> {
        let bad = |reason: String| Error::InvalidReference {
            reference: s.to_string(),
            reason,
        };
        if s.is_empty() {
            return Err(bad("empty reference".into()));
        }
        if looks_like_image_id(s) {
            return Err(bad(
                "a 64-character hexadecimal string is an image ID, not a repository name".into(),
            ));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(Digest::parse(d).map_err(|e| bad(e.to_string()))?)),
            None => (s, None),
        };
        // A tag is after the last ':' that comes after the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let i = last_slash + i;
                (&rest[..i], Some(&rest[i + 1..]))
            }
            None => (rest, None),
        };
        if let Some(tag) = tag {
            validate_tag(tag).map_err(bad)?;
        }
        if name.is_empty() {
            return Err(bad("empty repository name".into()));
        }
        if name.len() > NAME_MAX {
            return Err(bad(format!(
                "repository name is {} characters long, the limit is {NAME_MAX}",
                name.len()
            )));
        }
        let (domain, path) = split_domain(name);
        if let Some(d) = &domain {
            validate_domain(d).map_err(bad)?;
        }
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad("repository name must be lowercase".into()));
        }
        validate_path(path).map_err(bad)?;
        let mut domain = domain.unwrap_or(DEFAULT_DOMAIN).to_string();
        if domain == LEGACY_DOMAIN {
            domain = DEFAULT_DOMAIN.to_string();
        }
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("{OFFICIAL_PREFIX}{path}")
        } else {
            path.to_string()
        };
        // the limit holds for the full name too (as Docker's ParseNormalizedNamed checks
        // it), so that what we print always parses again (found by fuzzing)
        let full = domain.len() + 1 + path.len();
        if full > NAME_MAX {
            return Err(bad(format!(
                "repository name {domain}/{path} is {full} characters long, the limit is {NAME_MAX}"
            )));
        }
        Ok(Reference {
            domain,
            path,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// Parses and adds the `latest` tag when there is neither tag nor digest.
    pub fn parse_with_default_tag(s: &str) -> Result<Reference> {
        Ok(Reference::parse(s)?.with_default_tag())
    }

    /// Adds the `latest` tag when there is neither tag nor digest.
    pub fn with_default_tag(mut self) -> Reference {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some(DEFAULT_TAG.to_string());
        }
        self
    }

    /// Returns a copy with the given tag (validated) and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Reference> {
        validate_tag(tag).map_err(|reason| Error::InvalidReference {
            reference: format!("{}:{tag}", self.name()),
            reason,
        })?;
        Ok(Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        })
    }

    /// Returns a copy pinned to `digest`, keeping the tag (`name:tag@digest`).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The registry, e.g. `docker.io` or `127.0.0.1:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path, e.g. `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The full repository name, e.g. `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The short repository name Docker shows, e.g. `busybox` or `user/app` or `host:5000/app`.
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            self.path
                .strip_prefix(OFFICIAL_PREFIX)
                // `library/<64 hex>` stays whole: alone it would read as an image ID
                // (found by fuzzing: the short form must parse back)
                .filter(|p| !p.contains('/') && !looks_like_image_id(p))
                .unwrap_or(&self.path)
                .to_string()
        } else {
            self.name()
        }
    }

    /// The short form Docker shows, e.g. `busybox:latest`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        self.push_suffix(&mut s);
        s
    }

    fn push_suffix(&self, s: &mut String) {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        self.push_suffix(&mut s);
        f.write_str(&s)
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Reference> {
        Reference::parse(s)
    }
}

/// 64 hex characters: what `docker` takes for an image ID, never a repository name.
fn looks_like_image_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn split_domain(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

fn validate_tag(tag: &str) -> std::result::Result<(), String> {
    let ok_first = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    if bytes.is_empty() {
        return Err("empty tag after ':'".into());
    }
    if bytes.len() > 128 {
        return Err(format!(
            "tag is {} characters long, the limit is 128",
            bytes.len()
        ));
    }
    if !ok_first(bytes[0]) || !bytes.iter().all(|&b| ok_first(b) || b == b'.' || b == b'-') {
        return Err(format!(
            "invalid tag {tag:?}: tags are [A-Za-z0-9_][A-Za-z0-9_.-]*"
        ));
    }
    Ok(())
}

fn validate_domain(domain: &str) -> std::result::Result<(), String> {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("invalid registry {domain:?}: unclosed '['"))?;
        if v6.is_empty()
            || !v6
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(format!("invalid registry {domain:?}: bad IPv6 address"));
        }
        match after {
            "" => return Ok(()),
            _ => match after.strip_prefix(':') {
                Some(p) => (None, Some(p)),
                None => return Err(format!("invalid registry {domain:?}")),
            },
        }
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(domain), None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 5)
    {
        return Err(format!(
            "invalid registry {domain:?}: port must be a number"
        ));
    }
    if let Some(host) = host {
        for comp in host.split('.') {
            let b = comp.as_bytes();
            let valid = !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-');
            if !valid {
                return Err(format!(
                    "invalid registry {domain:?}: bad host name component {comp:?}"
                ));
            }
        }
    }
    Ok(())
}

fn validate_path(path: &str) -> std::result::Result<(), String> {
    for comp in path.split('/') {
        if !valid_path_component(comp) {
            return Err(format!(
                "invalid repository path component {comp:?}: components are lowercase \
                 letters and digits, separated by '.', '_', '__' or dashes"
            ));
        }
    }
    Ok(())
}

fn valid_path_component(comp: &str) -> bool {
    let b = comp.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // a separator run: ".", "_", "__" or "-"+
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &comp[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse_with_default_tag(s).unwrap().to_string()
    }

    #[test]
    fn normalises_docker_hub_names() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("user/app:v1"), "docker.io/user/app:v1");
        assert_eq!(
            norm("docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            norm("index.docker.io/library/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(norm("a/b/c/d"), "docker.io/a/b/c/d:latest");
    }

    #[test]
    fn recognises_registries() {
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(norm("localhost:5000/app:1"), "localhost:5000/app:1");
        assert_eq!(norm("127.0.0.1:5000/a/b:t"), "127.0.0.1:5000/a/b:t");
        assert_eq!(norm("quay.io/coreos/etcd"), "quay.io/coreos/etcd:latest");
        assert_eq!(norm("[::1]:5000/app"), "[::1]:5000/app:latest");
        assert_eq!(norm("Registry/app"), "Registry/app:latest");
        let r = Reference::parse("my-reg.example.com:443/team/app:v2").unwrap();
        assert_eq!(r.domain(), "my-reg.example.com:443");
        assert_eq!(r.path(), "team/app");
        assert_eq!(r.tag(), Some("v2"));
    }

    #[test]
    fn digests_and_tags() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = Reference::parse_with_default_tag(&format!("busybox@{d}")).unwrap();
        assert_eq!(r.tag(), None, "a digest reference gets no default tag");
        assert_eq!(r.digest().unwrap().to_string(), d);
        let r = Reference::parse(&format!("localhost:5000/busybox:1@{d}")).unwrap();
        assert_eq!(r.tag(), Some("1"));
        assert_eq!(r.domain(), "localhost:5000");
        assert_eq!(r.to_string(), format!("localhost:5000/busybox:1@{d}"));
    }

    #[test]
    fn familiar_forms() {
        let f = |s: &str| Reference::parse_with_default_tag(s).unwrap().familiar();
        assert_eq!(f("docker.io/library/busybox"), "busybox:latest");
        assert_eq!(f("user/app:1"), "user/app:1");
        assert_eq!(f("docker.io/library/a/b"), "library/a/b:latest");
        assert_eq!(f("localhost:5000/app"), "localhost:5000/app:latest");
        // fuzzing found this one: the short form of library/<64 hex> is not an image ID
        let id_like = "5".repeat(64);
        let r = Reference::parse(&format!("library/{id_like}")).unwrap();
        assert_eq!(r.familiar(), format!("library/{id_like}"));
        assert_eq!(Reference::parse(&r.familiar()).unwrap(), r);
    }

    #[test]
    fn separators() {
        for ok in ["a.b", "a_b", "a__b", "a-b", "a---b", "a0", "0a", "a.b_c-d"] {
            assert!(Reference::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "a..b", "a___b", "a._b", "-a", "a-", "_a", "a.", ".a", "a_-b",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_names_get_clear_errors() {
        let cases = [
            ("", "empty"),
            ("BusyBox", "lowercase"),
            ("busybox:", "empty tag"),
            ("busybox:-x", "invalid tag"),
            ("busybox:a/b", "port must be a number"),
            ("busybox:tag:x", "invalid repository path"),
            ("busybox@sha256:abc", "64 hex"),
            ("busybox@md5:abc", "unsupported algorithm"),
            ("/busybox", "invalid repository path"),
            ("busybox/", "invalid repository path"),
            ("a//b", "invalid repository path"),
            ("localhost:port/app", "port must be a number"),
            ("-bad.com/app", "bad host name"),
            ("bad_host.com/app", "bad host name"),
            (
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "image ID",
            ),
            ("busybox:ü", "invalid tag"),
        ];
        for (input, want) in cases {
            let err = Reference::parse(input).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(want), "{input:?}: {msg}");
            assert!(msg.contains("reference"), "{input:?}: {msg}");
        }
        let long_tag = format!("busybox:{}", "a".repeat(129));
        assert!(
            Reference::parse(&long_tag)
                .unwrap_err()
                .to_string()
                .contains("limit is 128")
        );
        let long_name = "a".repeat(256);
        assert!(
            Reference::parse(&long_name)
                .unwrap_err()
                .to_string()
                .contains("limit is 255")
        );
    }

    #[test]
    fn with_tag_replaces() {
        let r = Reference::parse("busybox:1").unwrap();
        assert_eq!(r.with_tag("2").unwrap().familiar(), "busybox:2");
        assert!(r.with_tag("bad tag").is_err());
    }

    #[test]
    fn normalised_name_over_the_limit_is_refused() {
        // 244 characters alone, 262 as docker.io/library/...: refused, never accepted in
        // a form that would not parse again
        let name = "v5-l".repeat(61);
        let e = Reference::parse(&name).unwrap_err().to_string();
        assert!(e.contains("limit is 255"), "{e}");
        let ok = "a".repeat(255 - "docker.io/library/".len());
        let r = Reference::parse(&ok).unwrap();
        assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
    }
}
