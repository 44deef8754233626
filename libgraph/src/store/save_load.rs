//! `save` and `load`: Docker archives and OCI layouts, planned, checked and loaded.

use super::*;

/// Opens a regular file of an unpacked archive, refusing symlinks and anything outside it.
///
/// The entry is first opened `O_PATH` (which opens nothing: no FIFO blocks, no device
/// driver runs) and its type checked; only a regular file is then opened for reading, with
/// `O_NONBLOCK`, and checked to be the same inode.
pub(super) fn open_in_archive(base: &Path, path: &Path) -> Result<fs::File> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let rel = path.strip_prefix(base).unwrap_or(path);
    let shown = rel.display().to_string();
    let dir = rustix::fs::open(
        base,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx("open archive directory", base)?;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let open = |flags: OFlags| {
        rustix::fs::openat2(
            &dir,
            rel,
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            resolve,
        )
        .map_err(|e| match e {
            rustix::io::Errno::LOOP | rustix::io::Errno::XDEV => Error::InvalidLayer(format!(
                "archive entry {shown:?} is a symlink or leads outside the archive"
            )),
            rustix::io::Errno::NOENT => {
                Error::InvalidLayer(format!("archive has no entry {shown:?}"))
            }
            e => Error::io("open archive entry", path, e.into()),
        })
    };
    let handle = open(OFlags::PATH)?;
    let st = rustix::fs::fstat(&handle).ctx("stat archive entry", path)?;
    let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
    if kind == rustix::fs::FileType::Symlink {
        // O_PATH | O_NOFOLLOW opens a final symlink itself
        return Err(Error::InvalidLayer(format!(
            "archive entry {shown:?} is a symlink or leads outside the archive"
        )));
    }
    if kind != rustix::fs::FileType::RegularFile {
        return Err(Error::InvalidLayer(format!(
            "archive entry {shown:?} is not a regular file (it is a {})",
            match kind {
                rustix::fs::FileType::Fifo => "FIFO",
                rustix::fs::FileType::CharacterDevice => "character device",
                rustix::fs::FileType::BlockDevice => "block device",
                rustix::fs::FileType::Directory => "directory",
                rustix::fs::FileType::Socket => "socket",
                _ => "special file",
            }
        )));
    }
    let f = fs::File::from(open(OFlags::RDONLY | OFlags::NONBLOCK)?);
    let now = rustix::fs::fstat(&f).ctx("stat archive entry", path)?;
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
        return Err(Error::InvalidLayer(format!(
            "archive entry {shown:?} was replaced while it was being read"
        )));
    }
    Ok(f)
}

/// The most bytes a manifest, an image index or a `manifest.json` in an archive may have
/// (libregistry's limit for manifests).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;
/// The most bytes an image config in an archive may have (libregistry's limit).
pub const MAX_CONFIG_SIZE: u64 = 16 << 20;

/// Reads a JSON file of an unpacked archive, refusing one over `limit` bytes before
/// reading it (`what` names it in the error).
pub(super) fn read_in_archive(base: &Path, path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    let f = open_in_archive(base, path)?;
    let size = f.metadata().ctx("stat archive entry", path)?.len();
    if size > limit {
        return Err(Error::InvalidLayer(format!(
            "{what} {:?} is {size} bytes, over the {} MiB limit",
            path.strip_prefix(base).unwrap_or(path),
            limit >> 20
        )));
    }
    let mut data = Vec::with_capacity(size as usize);
    f.take(limit)
        .read_to_end(&mut data)
        .ctx("read archive entry", path)?;
    Ok(data)
}

/// One image of an archive, validated and ready to load: nothing in the store has changed.
pub(super) struct LoadPlan {
    pub(super) config: Vec<u8>,
    pub(super) diff_ids: Vec<Digest>,
    /// The layer files in the archive, base first, with the blob digest an OCI manifest
    /// gives each.
    pub(super) layers: Vec<(PathBuf, Option<Digest>)>,
    pub(super) tags: Vec<Reference>,
}

/// How many manifests (nested indexes included) an OCI layout may name.
pub(super) const MAX_OCI_MANIFESTS: usize = 1000;

/// A tag to set on a loaded image: a valid reference without a digest.
pub(super) fn load_tag(t: &str, source: &str) -> Result<Reference> {
    let r = Reference::parse_with_default_tag(t)?;
    if r.digest().is_some() {
        return Err(Error::InvalidReference {
            reference: t.to_string(),
            reason: format!("{source} names a digest, which cannot be a tag"),
        });
    }
    Ok(r)
}

/// Validates one image of an archive: its config, the layer count (before any layer file
/// is opened) and the layer files' types.
pub(super) fn plan_image(
    base: &Path,
    config: Vec<u8>,
    layers: Vec<(PathBuf, Option<Digest>)>,
    tags: Vec<Reference>,
) -> Result<LoadPlan> {
    oci_spec::image::ImageConfiguration::from_reader(&config[..])
        .map_err(|e| Error::InvalidLayer(format!("image config is not a valid OCI config: {e}")))?;
    let v: Value = serde_json::from_slice(&config).map_err(json_err("image config"))?;
    let diff_ids: Vec<Digest> = v["rootfs"]["diff_ids"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|d| Digest::parse(d.as_str().unwrap_or("")))
        .collect::<Result<_, _>>()?;
    if diff_ids.len() > MAX_LAYERS || layers.len() > MAX_LAYERS {
        return Err(Error::TooManyLayers {
            count: diff_ids.len().max(layers.len()),
            max: MAX_LAYERS,
        });
    }
    if diff_ids.len() != layers.len() {
        return Err(Error::InvalidLayer(format!(
            "image config lists {} layers but the archive has {}",
            diff_ids.len(),
            layers.len()
        )));
    }
    for (p, _) in &layers {
        // the type check (and close): each is opened again, one at a time, when loaded
        open_in_archive(base, p)?;
    }
    Ok(LoadPlan {
        config,
        diff_ids,
        layers,
        tags,
    })
}

/// The images of a docker archive (`manifest.json`), validated.
pub(super) fn plan_docker_archive(base: &Path) -> Result<Vec<LoadPlan>> {
    let bytes = read_in_archive(
        base,
        &base.join("manifest.json"),
        MAX_MANIFEST_SIZE,
        "manifest",
    )?;
    let m: Value = serde_json::from_slice(&bytes).map_err(json_err("manifest.json"))?;
    let Some(entries) = m.as_array() else {
        return Err(Error::InvalidLayer(format!(
            "manifest.json is not a list of images but a JSON {}",
            json_kind(&m)
        )));
    };
    if entries.is_empty() {
        return Err(Error::InvalidLayer("manifest.json lists no image".into()));
    }
    let strings = |v: &Value, what: &str, i: usize| -> Result<Vec<String>> {
        match v {
            Value::Null => Ok(Vec::new()),
            Value::Array(a) => a
                .iter()
                .map(|x| {
                    x.as_str().map(str::to_string).ok_or_else(|| {
                        Error::InvalidLayer(format!(
                            "manifest.json image {}: {what} holds a JSON {}, not a string",
                            i + 1,
                            json_kind(x)
                        ))
                    })
                })
                .collect(),
            other => Err(Error::InvalidLayer(format!(
                "manifest.json image {}: {what} is a JSON {}, not a list",
                i + 1,
                json_kind(other)
            ))),
        }
    };
    let mut plans = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        if !entry.is_object() {
            return Err(Error::InvalidLayer(format!(
                "manifest.json image {} is a JSON {}, not an object",
                i + 1,
                json_kind(entry)
            )));
        }
        let cfg = entry["Config"].as_str().ok_or_else(|| {
            Error::InvalidLayer(format!("manifest.json image {} has no Config", i + 1))
        })?;
        let config = read_in_archive(
            base,
            &archive_path(base, cfg)?,
            MAX_CONFIG_SIZE,
            "image config",
        )?;
        let layers = strings(&entry["Layers"], "Layers", i)?;
        // counted before anything else is done with them
        if layers.len() > MAX_LAYERS {
            return Err(Error::TooManyLayers {
                count: layers.len(),
                max: MAX_LAYERS,
            });
        }
        let layers = layers
            .iter()
            .map(|p| Ok((archive_path(base, p)?, None)))
            .collect::<Result<_>>()?;
        let tags = strings(&entry["RepoTags"], "RepoTags", i)?
            .iter()
            .map(|t| load_tag(t, "RepoTags"))
            .collect::<Result<_>>()?;
        plans.push(plan_image(base, config, layers, tags)?);
    }
    Ok(plans)
}

/// The images of an OCI layout (`index.json`, nested indexes for this platform), validated.
pub(super) fn plan_oci_layout(base: &Path) -> Result<Vec<LoadPlan>> {
    let blob = |d: &Digest| base.join("blobs").join(d.algorithm().name()).join(d.hex());
    let read_verified = |d: &Digest, limit: u64, what: &str| -> Result<Vec<u8>> {
        let data = read_in_archive(base, &blob(d), limit, what)?;
        let mut h = d.algorithm().hasher();
        h.update(&data);
        let got = h.finish();
        if &got != d {
            return Err(Error::BlobCorrupt {
                digest: d.clone(),
                reason: format!("archive content hashes to {got}"),
            });
        }
        Ok(data)
    };
    let index_bytes = read_in_archive(
        base,
        &base.join("index.json"),
        MAX_MANIFEST_SIZE,
        "image index",
    )?;
    let image::Parsed::Index {
        manifests: mut todo,
    } = image::parse(&index_bytes)?
    else {
        return Err(Error::InvalidLayer(
            "index.json is not an image index".into(),
        ));
    };
    let mut plans = Vec::new();
    let mut seen = HashSet::new();
    let mut next = 0;
    while next < todo.len() {
        let desc = todo[next].clone();
        next += 1;
        if !seen.insert(desc.digest.clone()) {
            continue; // an index naming itself (or a manifest twice)
        }
        if seen.len() > MAX_OCI_MANIFESTS {
            return Err(Error::InvalidLayer(format!(
                "index.json names more than {MAX_OCI_MANIFESTS} manifests"
            )));
        }
        let data = read_verified(&desc.digest, MAX_MANIFEST_SIZE, "manifest")?;
        match image::parse(&data)? {
            image::Parsed::Index { manifests } => {
                // a nested index: take the entry for this platform, keeping the name
                if let Some(d) = image::pick_platform(&manifests, "linux", arch()) {
                    let mut d = d.clone();
                    if d.annotations.is_empty() {
                        d.annotations = desc.annotations.clone();
                    }
                    todo.push(d);
                }
            }
            image::Parsed::Manifest { config, layers } => {
                let config = read_verified(&config.digest, MAX_CONFIG_SIZE, "image config")?;
                if layers.len() > MAX_LAYERS {
                    return Err(Error::TooManyLayers {
                        count: layers.len(),
                        max: MAX_LAYERS,
                    });
                }
                let layers = layers
                    .iter()
                    .map(|l| (blob(&l.digest), Some(l.digest.clone())))
                    .collect();
                let ann = |k: &str| {
                    desc.annotations
                        .iter()
                        .find(|(key, _)| key == k)
                        .map(|(_, v)| v.as_str())
                };
                // a full name (a bare `ref.name` such as "latest" names no repository)
                let name = ann("io.containerd.image.name")
                    .or(ann("org.opencontainers.image.ref.name")
                        .filter(|n| Reference::parse(n).is_ok() && n.contains([':', '/'])));
                let mut tags = Vec::new();
                if let Some(n) = name {
                    let r = Reference::parse_with_default_tag(n)?;
                    // named by digest only: loaded untagged
                    if r.digest().is_none() {
                        tags.push(load_tag(n, "the image name annotation")?);
                    }
                }
                plans.push(plan_image(base, config, layers, tags)?);
            }
        }
    }
    Ok(plans)
}

/// "object", "string"...: what a JSON value is, for messages.
pub(super) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

impl Store {
    /// Writes the uncompressed tar of a layer (from its blob) into `out`.
    pub(super) fn layer_tar(&self, l: &LayerRow, out: &mut dyn Write) -> Result<u64> {
        let blob = l
            .blob_digest
            .as_ref()
            .ok_or_else(|| Error::LayerNotFound(l.cache_id.clone()))?;
        let f = self.content.open_blob(blob)?;
        let mut r = io::BufReader::new(f);
        let magic = io::BufRead::fill_buf(&mut r).ctx("read blob", self.content.blob_path(blob))?;
        let mut dec: Box<dyn Read> = match crate::apply::Compression::detect(magic) {
            crate::apply::Compression::None => Box::new(r),
            crate::apply::Compression::Gzip => crate::gzip::decoder(r),
            crate::apply::Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::with_buffer(r)
                    .map_err(|e| Error::InvalidLayer(format!("zstd: {e}")))?,
            ),
        };
        io::copy(&mut dec, out).ctx("decompress layer", self.content.blob_path(blob))
    }

    /// `docker save`: images (names or IDs) as one archive.
    pub fn save(&self, names: &[&str], format: ArchiveFormat, out: impl Write) -> Result<()> {
        let mut b = tar::Builder::new(out);
        let werr = |e: io::Error| Error::io("write archive", "<save stream>", e);
        let add = |b: &mut tar::Builder<_>, name: &str, data: &[u8]| -> Result<()> {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, data).map_err(werr)
        };
        add(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let mut written: std::collections::HashSet<Digest> = Default::default();
        let mut index = Vec::new();
        let mut docker_manifest = Vec::new();
        let mut repositories: HashMap<String, HashMap<String, String>> = HashMap::new();
        for name in names {
            let id = self.resolve(name)?;
            let row = self
                .db()
                .image(&id)?
                .ok_or_else(|| Error::ImageNotFound(name.to_string()))?;
            let chain = self.chain_of(row.top_cache.as_deref())?;
            let mut layer_descs = Vec::new();
            let mut layer_paths = Vec::new();
            for l in &chain {
                let diff = l
                    .diff_id
                    .clone()
                    .ok_or_else(|| Error::LayerNotFound(l.cache_id.clone()))?;
                let path = format!("blobs/sha256/{}", diff.hex());
                if written.insert(diff.clone()) {
                    let mut h = tar::Header::new_gnu();
                    h.set_mode(0o644);
                    h.set_size(l.tar_size);
                    h.set_mtime(0);
                    h.set_uid(0);
                    h.set_gid(0);
                    h.set_entry_type(tar::EntryType::Regular);
                    // stream the decompressed layer straight into the archive entry
                    let (reader, mut writer) = pipe()?;
                    let r = std::thread::scope(|s| {
                        let t = s.spawn(move || {
                            let r = self.layer_tar(l, &mut writer);
                            drop(writer);
                            r
                        });
                        let a = b.append_data(&mut h, &path, reader).map_err(werr);
                        let n = t.join().unwrap_or_else(|_| {
                            Err(Error::InvalidLayer("save thread panicked".into()))
                        });
                        a.and(n)
                    })?;
                    if r != l.tar_size {
                        return Err(Error::BlobCorrupt {
                            digest: l.blob_digest.clone().unwrap_or(diff),
                            reason: format!("layer tar is {r} bytes, expected {}", l.tar_size),
                        });
                    }
                }
                layer_descs.push(json!({"mediaType": MT_OCI_LAYER, "digest": diff.to_string(), "size": l.tar_size}));
                layer_paths.push(path);
            }
            let config = self.content.read(&id)?;
            let config_path = format!("blobs/sha256/{}", id.hex());
            if written.insert(id.clone()) {
                add(&mut b, &config_path, &config)?;
            }
            let manifest = serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": MT_OCI_MANIFEST,
                "config": {"mediaType": MT_OCI_CONFIG, "digest": id.to_string(), "size": config.len()},
                "layers": layer_descs,
            }))
            .map_err(json_err("manifest"))?;
            let mdig = Digest::sha256_of(&manifest);
            if written.insert(mdig.clone()) {
                add(&mut b, &format!("blobs/sha256/{}", mdig.hex()), &manifest)?;
            }
            // the tags saved: the name given if it is a tag, else all tags of the image
            let given = Reference::parse_with_default_tag(name)
                .ok()
                .filter(|r| self.db().tag(&r.to_string()).ok().flatten().as_ref() == Some(&id));
            let refs: Vec<Reference> = match given {
                Some(r) => vec![r],
                None => self
                    .db()
                    .tags_of(&id)?
                    .into_iter()
                    .filter_map(|(r, _)| Reference::parse(&r).ok())
                    .collect(),
            };
            let mut desc = json!({"mediaType": MT_OCI_MANIFEST, "digest": mdig.to_string(), "size": manifest.len()});
            if refs.is_empty() {
                index.push(desc.clone());
            }
            for r in &refs {
                desc["annotations"] = json!({
                    "io.containerd.image.name": r.to_string(),
                    "org.opencontainers.image.ref.name": r.tag().unwrap_or("latest"),
                });
                index.push(desc.clone());
                if let (Some(top), Some(tag)) =
                    (chain.last().and_then(|l| l.diff_id.clone()), r.tag())
                {
                    repositories
                        .entry(r.familiar_name())
                        .or_default()
                        .insert(tag.to_string(), top.hex().to_string());
                }
            }
            docker_manifest.push(json!({
                "Config": config_path,
                "RepoTags": refs.iter().map(|r| r.familiar()).collect::<Vec<_>>(),
                "Layers": layer_paths,
            }));
        }
        let index = serde_json::to_vec(
            &json!({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": index}),
        )
        .map_err(json_err("index.json"))?;
        add(&mut b, "index.json", &index)?;
        if format == ArchiveFormat::Docker {
            let m = serde_json::to_vec(&docker_manifest).map_err(json_err("manifest.json"))?;
            add(&mut b, "manifest.json", &m)?;
            let r = serde_json::to_vec(&repositories).map_err(json_err("repositories"))?;
            add(&mut b, "repositories", &r)?;
        }
        b.into_inner().map_err(werr)?;
        Ok(())
    }

    /// `docker load`: a docker-archive or OCI-layout tar. Returns the loaded image IDs with
    /// the tags set.
    ///
    /// Everything is validated before the store changes: the manifests, every config, the
    /// layer counts (over [`MAX_LAYERS`] is refused before any layer file is opened), the
    /// tags and the layer files' types. Layers are then registered (each checked against its
    /// diff ID), and the images and all their tags are recorded in one transaction. On any
    /// error, the layers this load registered are removed again and no tag moves.
    pub fn load(&self, reader: impl Read + Send) -> Result<Vec<(Digest, Vec<String>)>> {
        self.load_with_progress(reader, &|_| {})
    }

    /// [`Store::load`], reporting each new layer's progress to `progress` (from the
    /// loading thread) as `docker load` shows it: layers the store has are not reported.
    pub fn load_with_progress(
        &self,
        reader: impl Read + Send,
        progress: &(dyn Fn(LoadProgress<'_>) + Sync),
    ) -> Result<Vec<(Digest, Vec<String>)>> {
        let dir = ScratchDir(
            tempfile::Builder::new()
                .prefix("load-")
                .tempdir_in(self.root.join("tmp"))
                .ctx("create directory", self.root.join("tmp"))?,
        );
        let opts = ApplyOptions {
            whiteouts: WhiteoutMode::Delete,
            same_owner: false,
            verified_blob: None,
        };
        apply_layer(reader, dir.0.path(), &opts)?;
        let base = dir.0.path();
        let plans = if base.join("manifest.json").is_file() {
            plan_docker_archive(base)?
        } else if base.join("index.json").is_file() {
            plan_oci_layout(base)?
        } else {
            return Err(Error::InvalidLayer(
                "archive has neither manifest.json nor index.json".into(),
            ));
        };
        self.load_plans(base, &plans, progress)
    }

    /// Registers the layers of validated images, then records the images and their tags in
    /// one transaction; undoes what it registered on error.
    pub(super) fn load_plans(
        &self,
        base: &Path,
        plans: &[LoadPlan],
        progress: &(dyn Fn(LoadProgress<'_>) + Sync),
    ) -> Result<Vec<(Digest, Vec<String>)>> {
        // keeps the layers registered here from a concurrent gc until the images hold them
        let lease = self.lease();
        let mut created = Vec::new();
        let mut configs = Vec::new();
        let loaded = (|| {
            let mut images = Vec::new();
            for p in plans {
                let top = self.load_layers(base, p, &lease, &mut created, progress)?;
                let img = self.prepare_image(&p.config, top.as_deref())?;
                configs.push(img.id.clone());
                images.push(img);
            }
            self.db().tx(|tx| {
                for (img, p) in images.iter().zip(plans) {
                    insert_image(tx, img, None)?;
                    for r in &p.tags {
                        insert_tag(tx, r, &img.id)?;
                    }
                }
                Ok(())
            })?;
            Ok(images
                .into_iter()
                .zip(plans)
                .map(|(img, p)| (img.id, p.tags.iter().map(Reference::familiar).collect()))
                .collect())
        })();
        drop(lease);
        if loaded.is_err() {
            self.discard_loaded(&created, &configs);
        }
        loaded
    }

    /// Registers the layers of one planned image (those not in the store yet), each checked
    /// against the diff ID the config gives it (and the blob digest the OCI manifest gives
    /// it); returns the top layer. New layers are added to `created`.
    pub(super) fn load_layers(
        &self,
        base: &Path,
        plan: &LoadPlan,
        lease: &Lease,
        created: &mut Vec<String>,
        progress: &(dyn Fn(LoadProgress<'_>) + Sync),
    ) -> Result<Option<String>> {
        let mut top: Option<LayerRow> = None;
        for (i, ((path, blob_digest), want)) in plan.layers.iter().zip(&plan.diff_ids).enumerate() {
            let chain = chain_id(&plan.diff_ids[..=i]).unwrap_or(want.clone());
            lease.add_chain(&chain);
            if let Some(existing) = self.db().layer_by_chain(&chain)? {
                top = Some(existing);
                continue;
            }
            // opened one at a time, only now
            let file = open_in_archive(base, path)?;
            let total = file.metadata().map(|m| m.len()).unwrap_or(0);
            let report = |current| {
                progress(LoadProgress {
                    diff_id: want,
                    current,
                    total,
                })
            };
            report(0);
            let counted = Counted {
                inner: file,
                read: 0,
                reported: 0,
                report: &report,
            };
            let l = self.register_layer(top.as_ref().map(|t| t.cache_id.as_str()), counted)?;
            // the tar's end may leave padding unread: the layer is all in now
            report(total);
            if let Some(c) = &l.chain_id {
                lease.add_chain(c);
            }
            created.push(l.cache_id.clone());
            if l.diff_id.as_ref() != Some(want) {
                return Err(Error::InvalidLayer(format!(
                    "layer {} has diff ID {:?}, config says {want}",
                    i + 1,
                    l.diff_id
                )));
            }
            if let Some(bd) = blob_digest
                && l.blob_digest.as_ref() != Some(bd)
            {
                return Err(Error::InvalidLayer(format!(
                    "layer {} blob hashes to {:?}, manifest says {bd}",
                    i + 1,
                    l.blob_digest
                )));
            }
            top = Some(l);
        }
        Ok(top.map(|t| t.cache_id))
    }

    /// Removes what a failed load added: the layers it registered (newest first, while
    /// nothing uses them) and the configs no image names.
    pub(super) fn discard_loaded(&self, created: &[String], configs: &[Digest]) {
        let leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        for c in created.iter().rev() {
            let row = match self.db().layer(c) {
                Ok(Some(row)) => row,
                _ => continue,
            };
            // what cannot be removed now is unreferenced: check reports it, gc removes it
            let _ = self.release_layer(&row, &leases);
        }
        drop(leases);
        for id in configs {
            let unused = matches!(self.db().image(id), Ok(None))
                && matches!(self.db().containers_of(id), Ok(c) if c.is_empty());
            if unused {
                let _ = self.content.delete(id);
            }
        }
    }
}

/// A layer file being loaded: counts what is read and reports it every 512 KiB (as
/// docker's progress reader does).
struct Counted<'a, R> {
    inner: R,
    read: u64,
    reported: u64,
    report: &'a (dyn Fn(u64) + Sync),
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read - self.reported >= 512 << 10 {
            self.reported = self.read;
            (self.report)(self.read);
        }
        Ok(n)
    }
}
