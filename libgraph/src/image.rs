//! Image manifests and indexes, OCI and Docker schema 2, parsed with `oci-spec` and
//! normalised to OCI media types.

use oci_spec::image::{ImageIndex, ImageManifest};

use crate::digest::Digest;
use crate::error::{Error, Result};

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config media type.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI uncompressed layer media type.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip layer media type.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd layer media type.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker schema 2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list media type.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config media type.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer media type.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker uncompressed layer media type.
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker schema 1 (refused).
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The OCI media type for a Docker one (others unchanged).
pub fn to_oci_media_type(mt: &str) -> &str {
    match mt {
        DOCKER_MANIFEST => OCI_MANIFEST,
        DOCKER_LIST => OCI_INDEX,
        DOCKER_CONFIG => OCI_CONFIG,
        DOCKER_LAYER_GZIP => OCI_LAYER_GZIP,
        DOCKER_LAYER => OCI_LAYER,
        other => other,
    }
}

/// The Docker media type for an OCI one, where Docker has one.
pub fn to_docker_media_type(mt: &str) -> Option<&'static str> {
    match mt {
        OCI_MANIFEST => Some(DOCKER_MANIFEST),
        OCI_INDEX => Some(DOCKER_LIST),
        OCI_CONFIG => Some(DOCKER_CONFIG),
        OCI_LAYER_GZIP => Some(DOCKER_LAYER_GZIP),
        OCI_LAYER => Some(DOCKER_LAYER),
        _ => None,
    }
}

/// A content descriptor with a validated digest and an OCI media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Media type, converted to OCI.
    pub media_type: String,
    /// Content digest.
    pub digest: Digest,
    /// Content size.
    pub size: u64,
    /// `(os, architecture, variant)` for index entries that name a platform.
    pub platform: Option<(String, String, Option<String>)>,
    /// Annotations (for instance `org.opencontainers.image.ref.name`).
    pub annotations: Vec<(String, String)>,
}

/// A parsed manifest or index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// An image manifest: config and layers (base first).
    Manifest {
        /// Config descriptor.
        config: Descriptor,
        /// Layer descriptors, base first.
        layers: Vec<Descriptor>,
    },
    /// An index (manifest list).
    Index {
        /// The manifests it lists.
        manifests: Vec<Descriptor>,
    },
}

fn descriptor(d: &oci_spec::image::Descriptor) -> Result<Descriptor> {
    let media_type = to_oci_media_type(d.media_type().as_ref()).to_string();
    let digest = Digest::parse(d.digest().as_ref())?;
    let platform = d.platform().as_ref().map(|p| {
        (
            p.os().to_string(),
            p.architecture().to_string(),
            p.variant().clone(),
        )
    });
    let mut annotations: Vec<(String, String)> = d
        .annotations()
        .as_ref()
        .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    annotations.sort();
    Ok(Descriptor {
        media_type,
        digest,
        size: d.size(),
        platform,
        annotations,
    })
}

/// Parses a manifest or index (OCI or Docker schema 2; schema 1 is refused).
pub fn parse(bytes: &[u8]) -> Result<Parsed> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|source| Error::Json {
        what: "manifest".into(),
        source,
    })?;
    let invalid = |e: oci_spec::OciSpecError| Error::InvalidLayer(format!("invalid manifest: {e}"));
    if v["schemaVersion"].as_i64() == Some(1) || v["mediaType"] == DOCKER_SCHEMA1 {
        return Err(Error::InvalidLayer(
            "Docker image manifest schema 1 is not supported; re-push the image with a current client"
                .into(),
        ));
    }
    if v["manifests"].is_array() {
        let idx = ImageIndex::from_reader(bytes).map_err(invalid)?;
        let manifests = idx
            .manifests()
            .iter()
            .map(descriptor)
            .collect::<Result<_>>()?;
        Ok(Parsed::Index { manifests })
    } else {
        let m = ImageManifest::from_reader(bytes).map_err(invalid)?;
        Ok(Parsed::Manifest {
            config: descriptor(m.config())?,
            layers: m.layers().iter().map(descriptor).collect::<Result<_>>()?,
        })
    }
}

/// The index entry for `os`/`arch` (entries without a platform match anything).
pub fn pick_platform<'a>(
    manifests: &'a [Descriptor],
    os: &str,
    arch: &str,
) -> Option<&'a Descriptor> {
    manifests.iter().find(|d| match &d.platform {
        None => true,
        Some((o, a, _)) => o == os && a == arch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const L1: &str = "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4";

    #[test]
    fn docker_schema2_is_converted() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}",
            "config":{{"mediaType":"{DOCKER_CONFIG}","digest":"{CFG}","size":7023}},
            "layers":[{{"mediaType":"{DOCKER_LAYER_GZIP}","digest":"{L1}","size":32654}}]}}"#
        );
        let Parsed::Manifest { config, layers } = parse(m.as_bytes()).unwrap() else {
            panic!("not a manifest")
        };
        assert_eq!(config.media_type, OCI_CONFIG);
        assert_eq!(config.size, 7023);
        assert_eq!(layers[0].media_type, OCI_LAYER_GZIP);
        assert_eq!(layers[0].digest.to_string(), L1);
    }

    #[test]
    fn index_and_platforms() {
        let i = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[
            {{"mediaType":"{DOCKER_MANIFEST}","digest":"{CFG}","size":1,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},
            {{"mediaType":"{DOCKER_MANIFEST}","digest":"{L1}","size":2,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#
        );
        let Parsed::Index { manifests } = parse(i.as_bytes()).unwrap() else {
            panic!("not an index")
        };
        assert_eq!(manifests.len(), 2);
        assert_eq!(manifests[0].media_type, OCI_MANIFEST);
        assert_eq!(
            manifests[0].platform,
            Some(("linux".into(), "arm64".into(), Some("v8".into())))
        );
        let amd = pick_platform(&manifests, "linux", "amd64").unwrap();
        assert_eq!(amd.digest.to_string(), L1);
        assert!(pick_platform(&manifests, "linux", "s390x").is_none());
    }

    #[test]
    fn bad_manifests() {
        assert!(
            parse(br#"{"schemaVersion":1,"name":"x"}"#)
                .unwrap_err()
                .to_string()
                .contains("schema 1")
        );
        assert!(parse(b"not json").is_err());
        let bad_digest = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","digest":"sha256:zz","size":1}},"layers":[]}}"#
        );
        assert!(parse(bad_digest.as_bytes()).is_err());
        assert_eq!(to_docker_media_type(OCI_LAYER_ZSTD), None);
        assert_eq!(to_docker_media_type(OCI_MANIFEST), Some(DOCKER_MANIFEST));
    }
}
