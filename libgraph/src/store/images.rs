//! Images and tags: create, tag, resolve, list, inspect, history, import and remove.

use super::*;

/// An image whose config is stored and checked, ready for [`insert_image`].
pub(super) struct NewImage {
    pub(super) id: Digest,
    pub(super) top: Option<String>,
    pub(super) size: u64,
    pub(super) created: Option<String>,
}

/// Records an image (unless it exists) and its reference on its top layer.
pub(super) fn insert_image(
    tx: &rusqlite::Transaction<'_>,
    img: &NewImage,
    parent_image: Option<&Digest>,
) -> rusqlite::Result<()> {
    let n = tx.execute(
        "INSERT OR IGNORE INTO images(id, top_cache, parent_image, size, created)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        rusqlite::params![
            img.id.to_string(),
            img.top,
            parent_image.map(|p| p.to_string()),
            img.size as i64,
            img.created
        ],
    )?;
    if n == 1
        && let Some(t) = &img.top
    {
        tx.execute(
            "UPDATE layers SET refcount = refcount + 1 WHERE cache_id = ?1",
            [t],
        )?;
    }
    Ok(())
}

/// Points tag `r` at image `id`.
pub(super) fn insert_tag(
    tx: &rusqlite::Transaction<'_>,
    r: &Reference,
    id: &Digest,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO tags(reference, repo, image_id) VALUES (?1, ?2, ?3)
         ON CONFLICT(reference) DO UPDATE SET image_id = excluded.image_id",
        rusqlite::params![r.to_string(), r.name(), id.to_string()],
    )
    .map(|_| ())
}

impl Store {
    /// Stores a config and records an image whose top layer is `top` (taking a reference).
    /// Returns the image ID. An existing image is returned as is.
    pub fn create_image(
        &self,
        config: &[u8],
        top: Option<&str>,
        parent_image: Option<&Digest>,
    ) -> Result<Digest> {
        let img = self.prepare_image(config, top)?;
        self.db().tx(|tx| insert_image(tx, &img, parent_image))?;
        Ok(img.id)
    }

    /// Checks a config against the layer chain ending at `top` and stores it: what
    /// [`insert_image`] records.
    pub(super) fn prepare_image(&self, config: &[u8], top: Option<&str>) -> Result<NewImage> {
        let v: Value = serde_json::from_slice(config).map_err(json_err("image config"))?;
        let chain = self.chain_of(top)?;
        let want: Vec<Digest> = v["rootfs"]["diff_ids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().and_then(|s| Digest::parse(s).ok()))
                    .collect()
            })
            .unwrap_or_default();
        let have: Vec<Digest> = chain.iter().filter_map(|l| l.diff_id.clone()).collect();
        if want != have {
            return Err(Error::InvalidLayer(format!(
                "image config lists {} diff IDs that do not match the {} layers given",
                want.len(),
                have.len()
            )));
        }
        if chain.len() > MAX_LAYERS {
            return Err(Error::TooManyLayers {
                count: chain.len(),
                max: MAX_LAYERS,
            });
        }
        let id = self.content.write_blob(config, None)?;
        Ok(NewImage {
            id,
            top: top.map(str::to_string),
            size: chain.iter().map(|l| l.size).sum(),
            created: v["created"].as_str().map(str::to_string),
        })
    }

    /// Points `reference` (e.g. `busybox:latest`) at image `target` (a name or ID).
    pub fn tag(&self, target: &str, reference: &str) -> Result<()> {
        let id = self.resolve(target)?;
        let r = Reference::parse_with_default_tag(reference)?;
        if r.digest().is_some() {
            return Err(Error::InvalidReference {
                reference: reference.to_string(),
                reason: "a tag cannot contain a digest".into(),
            });
        }
        self.db().tx(|tx| insert_tag(tx, &r, &id))
    }

    /// Records that `target` is the image of the manifest `repo@digest` (`docker images
    /// --digests`, `RepoDigests`), after a pull or a push; one repository's digest moves
    /// to the image it was last seen for. Informational: it keeps no image alive.
    pub fn add_repo_digest(&self, target: &str, reference: &str) -> Result<()> {
        let id = self.resolve(target)?;
        let r = Reference::parse(reference)?;
        let Some(d) = r.digest() else {
            return Err(Error::InvalidReference {
                reference: reference.to_string(),
                reason: "a repository digest needs @sha256:...".into(),
            });
        };
        let reference = format!("{}@{d}", r.name());
        self.db().tx(|tx| {
            tx.execute(
                "INSERT INTO repo_digests(reference, image_id) VALUES (?1, ?2)
                 ON CONFLICT(reference) DO UPDATE SET image_id = excluded.image_id",
                rusqlite::params![reference, id.to_string()],
            )
            .map(|_| ())
        })
    }

    /// Finds an image by tag, full ID (`sha256:...` or 64 hex) or unique ID prefix.
    pub fn resolve(&self, name: &str) -> Result<Digest> {
        let not_found = || Error::ImageNotFound(name.to_string());
        if let Ok(d) = Digest::parse(name) {
            return match self.db().image(&d)? {
                Some(_) => Ok(d),
                None => Err(not_found()),
            };
        }
        let hex_part = name.strip_prefix("sha256:").unwrap_or(name);
        if !hex_part.is_empty()
            && hex_part
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            let found = self.db().images_with_prefix(hex_part)?;
            if found.len() == 1 {
                return Ok(found[0].clone());
            }
            if found.len() > 1 {
                return Err(Error::Conflict(format!(
                    "image ID prefix {hex_part:?} is ambiguous ({} images)",
                    found.len()
                )));
            }
        }
        match Reference::parse_with_default_tag(name) {
            Ok(r) => self.db().tag(&r.to_string())?.ok_or_else(not_found),
            Err(_) => Err(not_found()),
        }
    }

    pub(super) fn image_info(&self, row: ImageRow) -> Result<Image> {
        let tags = self
            .db()
            .tags_of(&row.id)?
            .into_iter()
            .filter_map(|(r, _)| Reference::parse(&r).ok().map(|r| r.familiar()))
            .collect();
        let chain = self.chain_of(row.top_cache.as_deref())?;
        let repo_digests = self
            .db()
            .repo_digests_of(&row.id)?
            .into_iter()
            .filter_map(|r| Reference::parse(&r).ok().map(|r| r.familiar()))
            .collect();
        Ok(Image {
            id: row.id,
            tags,
            repo_digests,
            parent: row.parent_image,
            size: row.size,
            created: row.created,
            diff_ids: chain.iter().filter_map(|l| l.diff_id.clone()).collect(),
            chain_id: chain.last().and_then(|l| l.chain_id.clone()),
        })
    }

    /// One image.
    pub fn image(&self, name: &str) -> Result<Image> {
        let id = self.resolve(name)?;
        let row = self
            .db()
            .image(&id)?
            .ok_or_else(|| Error::ImageNotFound(name.to_string()))?;
        self.image_info(row)
    }

    /// Every image.
    pub fn images(&self) -> Result<Vec<Image>> {
        let rows = self.db().images()?;
        rows.into_iter().map(|r| self.image_info(r)).collect()
    }

    /// The image's config JSON, byte for byte.
    pub fn config(&self, name: &str) -> Result<Vec<u8>> {
        let id = self.resolve(name)?;
        self.content.read(&id)
    }

    /// An OCI manifest for an image, referencing the layer blobs as stored (compressed as
    /// they came), ready to push: returns the manifest bytes and the layers, base first.
    pub fn manifest(&self, name: &str) -> Result<(Vec<u8>, Vec<LayerRow>)> {
        let id = self.resolve(name)?;
        let row = self
            .db()
            .image(&id)?
            .ok_or_else(|| Error::ImageNotFound(name.to_string()))?;
        let chain = self.chain_of(row.top_cache.as_deref())?;
        let config_size = self.content.size(&id)?;
        let mut layers = Vec::new();
        for l in &chain {
            let blob = l
                .blob_digest
                .as_ref()
                .ok_or_else(|| Error::LayerNotFound(l.cache_id.clone()))?;
            layers.push(json!({
                "mediaType": l.media_type.as_deref().unwrap_or(MT_OCI_LAYER),
                "digest": blob.to_string(),
                "size": l.blob_size,
            }));
        }
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": {"mediaType": MT_OCI_CONFIG, "digest": id.to_string(), "size": config_size},
            "layers": layers,
        }))
        .map_err(json_err("manifest"))?;
        Ok((manifest, chain))
    }

    /// Imports a layer tar as a one-layer image (`docker import`), optionally tagged.
    pub fn import(
        &self,
        reader: impl Read + Send,
        reference: Option<&str>,
        comment: Option<&str>,
    ) -> Result<Digest> {
        if let Some(r) = reference {
            Reference::parse_with_default_tag(r)?;
        }
        let layer = self.register_layer(None, reader)?;
        let now = now_rfc3339();
        let diff = layer
            .diff_id
            .clone()
            .map(|d| d.to_string())
            .unwrap_or_default();
        let config = json!({
            "architecture": arch(),
            "os": "linux",
            "created": now,
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff]},
            "history": [{"created": now, "comment": comment.unwrap_or("Imported from -")}],
        });
        let bytes = serde_json::to_vec(&config).map_err(json_err("image config"))?;
        let id = self.create_image(&bytes, Some(&layer.cache_id), None)?;
        if let Some(r) = reference {
            self.tag(&id.to_string(), r)?;
        }
        Ok(id)
    }

    /// `docker history`: newest first.
    pub fn history(&self, name: &str) -> Result<Vec<HistoryEntry>> {
        let id = self.resolve(name)?;
        let config: Value = serde_json::from_slice(&self.content.read(&id)?)
            .map_err(json_err(format!("config of image {id}")))?;
        let row = self
            .db()
            .image(&id)?
            .ok_or_else(|| Error::ImageNotFound(name.to_string()))?;
        let chain = self.chain_of(row.top_cache.as_deref())?;
        let mut layers = chain.iter();
        let mut out = Vec::new();
        for h in config["history"].as_array().cloned().unwrap_or_default() {
            let empty = h["empty_layer"].as_bool().unwrap_or(false);
            let size = if empty {
                0
            } else {
                layers.next().map_or(0, |l| l.size)
            };
            out.push(HistoryEntry {
                id: None,
                created: h["created"].as_str().map(str::to_string),
                created_by: h["created_by"].as_str().unwrap_or("").to_string(),
                size,
                comment: h["comment"].as_str().unwrap_or("").to_string(),
            });
        }
        out.reverse();
        if let Some(first) = out.first_mut() {
            first.id = Some(id);
        }
        Ok(out)
    }

    /// Removes a tag or an image with Docker's conflict rules (`docker rmi`).
    ///
    /// By tag: the tag goes; the image is deleted only when that was its last tag. By ID: an
    /// image tagged in several repositories needs [`RemoveOptions::force`]. An image with
    /// child images is never deleted; one used by a container needs `force`, and is then
    /// deleted while the container keeps its image ID, config and layers until it is
    /// removed (Docker's rules; refusing an image a *running* container uses is the
    /// engine's check, as libgraph does not know which containers run). With
    /// [`RemoveOptions::prune`], untagged parents left without children are deleted too.
    pub fn remove_image(&self, name: &str, opts: &RemoveOptions) -> Result<Vec<Removed>> {
        let RemoveOptions { force, prune } = *opts;
        let id = self.resolve(name)?;
        let mut out = Vec::new();
        let by_tag = Digest::parse(name).is_err()
            && !self
                .db()
                .images_with_prefix(name.trim_start_matches("sha256:"))?
                .contains(&id);
        let tags = self.db().tags_of(&id)?;
        let containers = self.db().containers_of(&id)?;
        if by_tag {
            let r = Reference::parse_with_default_tag(name)?;
            if tags.len() == 1 && !containers.is_empty() && !force {
                return Err(Error::Conflict(format!(
                    "unable to remove repository reference {:?} (must force) - container {} is using its referenced image {}",
                    name,
                    containers[0],
                    id.short()
                )));
            }
            self.untag(&r.to_string())?;
            out.push(Removed::Untagged(r.familiar()));
            // other tags keep the image; so do children, and containers unless forced
            // (quietly, like Docker)
            if tags.len() > 1
                || (!containers.is_empty() && !force)
                || !self.db().child_images(&id)?.is_empty()
            {
                return Ok(out);
            }
        } else {
            let repos: std::collections::HashSet<&str> =
                tags.iter().map(|(_, repo)| repo.as_str()).collect();
            if repos.len() > 1 && !force {
                return Err(Error::Conflict(format!(
                    "unable to delete {} (must be forced) - image is referenced in multiple repositories",
                    id.short()
                )));
            }
        }
        if !self.db().child_images(&id)?.is_empty() {
            return Err(Error::Conflict(format!(
                "unable to delete {} (cannot be forced) - image has dependent child images",
                id.short()
            )));
        }
        if let Some(c) = containers.first()
            && !force
        {
            return Err(Error::Conflict(format!(
                "unable to delete {} (must be forced) - image is being used by stopped container {}",
                id.short(),
                c
            )));
        }
        let remaining = self.db().tags_of(&id)?;
        for (r, _) in &remaining {
            self.untag(r)?;
            if let Ok(r) = Reference::parse(r) {
                out.push(Removed::Untagged(r.familiar()));
            }
        }
        // Forced while a (stopped) container uses it: deleted, like Docker does; the
        // container keeps the image ID, its config blob and its layers until it is
        // removed. A running container is a hard conflict the engine checks first.
        let mut next = Some(id);
        while let Some(id) = next.take() {
            let parent = self.delete_image_row(&id)?;
            out.push(Removed::Deleted(id));
            if !prune {
                break;
            }
            if let Some(p) = parent {
                let db = self.db();
                let dangling = db.image(&p)?.is_some()
                    && db.tags_of(&p)?.is_empty()
                    && db.child_images(&p)?.is_empty()
                    && db.containers_of(&p)?.is_empty();
                drop(db);
                if dangling {
                    next = Some(p);
                }
            }
        }
        Ok(out)
    }

    pub(super) fn untag(&self, reference: &str) -> Result<()> {
        self.db().tx(|tx| {
            tx.execute("DELETE FROM tags WHERE reference = ?1", [reference])
                .map(|_| ())
        })
    }

    /// Deletes an image row, its config blob and the layers only it held; returns its parent.
    pub(super) fn delete_image_row(&self, id: &Digest) -> Result<Option<Digest>> {
        let row = self
            .db()
            .image(id)?
            .ok_or_else(|| Error::ImageNotFound(id.to_string()))?;
        self.db().tx(|tx| {
            tx.execute("DELETE FROM tags WHERE image_id = ?1", [id.to_string()])?;
            tx.execute(
                "DELETE FROM repo_digests WHERE image_id = ?1",
                [id.to_string()],
            )?;
            tx.execute("DELETE FROM images WHERE id = ?1", [id.to_string()])?;
            if let Some(t) = &row.top_cache {
                tx.execute(
                    "UPDATE layers SET refcount = refcount - 1 WHERE cache_id = ?1",
                    [t],
                )?;
            }
            Ok(())
        })?;
        // a container made from the image still needs its config (commit, inspect)
        if self.db().containers_of(id)?.is_empty() {
            self.content.delete(id)?;
        }
        self.release_chain(row.top_cache.clone())?;
        Ok(row.parent_image)
    }

    /// Deletes untagged images nothing depends on (`docker image prune`).
    pub fn prune_dangling(&self) -> Result<Vec<Digest>> {
        let mut removed = Vec::new();
        loop {
            let mut found = None;
            let images = self.db().images()?;
            for img in images {
                let db = self.db();
                if db.tags_of(&img.id)?.is_empty()
                    && db.child_images(&img.id)?.is_empty()
                    && db.containers_of(&img.id)?.is_empty()
                {
                    found = Some(img.id);
                    break;
                }
            }
            let Some(id) = found else { break };
            self.delete_image_row(&id)?;
            removed.push(id);
        }
        Ok(removed)
    }
}
