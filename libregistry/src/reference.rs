//! A small image-reference parser: enough to split `registry/repository:tag@digest`.
//!
//! libgraph owns the full grammar; this one follows Docker's normalisation rules
//! (`busybox` is `docker.io/library/busybox:latest`).

use std::fmt;
use std::str::FromStr;

use oci_spec::image::Digest;

use crate::error::{Error, Result};

/// Docker Hub's canonical registry name.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's v2 API.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Builds a reference from parts that were already split (and validates them).
    pub fn new(
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        digest: Option<&str>,
    ) -> Result<Self> {
        let text = format!("{registry}/{repository}");
        let bad = |reason| Error::InvalidReference {
            reference: text.clone(),
            reason,
        };
        if !valid_registry(registry) {
            return Err(bad("invalid registry host"));
        }
        if !valid_repository(repository) {
            return Err(bad(
                "repository must be lowercase path components of [a-z0-9._-]",
            ));
        }
        if let Some(t) = tag
            && !valid_tag(t)
        {
            return Err(bad("tag must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"));
        }
        let digest = match digest {
            Some(d) => Some(Digest::from_str(d).map_err(|_| bad("invalid digest"))?),
            None => None,
        };
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB
        } else {
            registry
        };
        Ok(Reference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: if tag.is_none() && digest.is_none() {
                Some("latest".into())
            } else {
                tag.map(str::to_string)
            },
            digest,
        })
    }

    /// Parses `[registry/]repository[:tag][@digest]` with Docker's defaults.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |reason| Error::InvalidReference {
            reference: s.to_string(),
            reason,
        };
        if s.is_empty() || s.len() > 4096 {
            return Err(bad("empty or too long"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d)),
            None => (s, None),
        };
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first, remainder.to_string())
            }
            _ => (DOCKER_HUB, name.to_string()),
        };
        let repository = if (registry == DOCKER_HUB || registry == "index.docker.io")
            && !repository.contains('/')
        {
            format!("library/{repository}")
        } else {
            repository
        };
        Reference::new(registry, &repository, tag, digest).map_err(|e| match e {
            Error::InvalidReference { reason, .. } => bad(reason),
            other => other,
        })
    }

    /// The registry name as written (`docker.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host serving the v2 API (Docker Hub maps to `registry-1.docker.io`).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// Repository path (`library/busybox`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// Tag, if any (`latest` when neither tag nor digest was given).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// Digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to ask the manifests endpoint for: the digest if present, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Self> {
        Reference::new(&self.registry, &self.repository, Some(tag), None)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Reference::parse(s)
    }
}

fn valid_registry(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

fn valid_repository(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.split('/').all(|c| {
            !c.is_empty()
                && c.chars().all(|ch| {
                    ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-')
                })
                && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
        })
}

fn valid_tag(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_defaults() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.repository(), "library/busybox");
        assert_eq!(r.tag(), Some("latest"));
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
    }

    #[test]
    fn registry_port_tag_digest() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("127.0.0.1:5000/team/app:v1.2@{d}")).unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "team/app");
        assert_eq!(r.tag(), Some("v1.2"));
        assert_eq!(r.manifest_ref(), d);
        let r = Reference::parse("localhost/app").unwrap();
        assert_eq!(r.registry(), "localhost");
        let r = Reference::parse("user/app:1").unwrap();
        assert_eq!((r.registry(), r.repository()), ("docker.io", "user/app"));
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "",
            "UPPER/case",
            "a//b",
            "app:",
            "app:-x",
            "app@sha256:zz",
            "ex.com/../x",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
