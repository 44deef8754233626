//! Container layers: create, mount, diff, export, commit and remove.

use super::*;

impl Store {
    /// Creates a container's read-write layer on top of an image.
    pub fn create_container(&self, container_id: &str, image: &str) -> Result<()> {
        driver::check_id(container_id)?;
        if self.db().container(container_id)?.is_some() {
            return Err(Error::LayerExists(container_id.to_string()));
        }
        let id = self.resolve(image)?;
        let row = self
            .db()
            .image(&id)?
            .ok_or_else(|| Error::ImageNotFound(image.to_string()))?;
        let cache = format!("{}-rw", random_id()?);
        self.db().tx(|tx| {
            tx.execute(
                "INSERT INTO containers(id, image_id, cache_id, incomplete, top_cache)
                 VALUES (?1, ?2, ?3, 1, ?4)",
                rusqlite::params![container_id, id.to_string(), cache, row.top_cache],
            )?;
            if let Some(t) = &row.top_cache {
                tx.execute(
                    "UPDATE layers SET refcount = refcount + 1 WHERE cache_id = ?1",
                    [t],
                )?;
            }
            Ok(())
        })?;
        if let Err(e) = self.driver.create(&cache, row.top_cache.as_deref()) {
            let _ = self.drop_container_row(container_id);
            return Err(e);
        }
        self.set_container_incomplete(container_id, false)
    }

    /// Marks a container row incomplete (invisible, finished or removed at the next open)
    /// or complete.
    pub(super) fn set_container_incomplete(
        &self,
        container_id: &str,
        incomplete: bool,
    ) -> Result<()> {
        self.db().tx(|tx| {
            tx.execute(
                "UPDATE containers SET incomplete = ?2 WHERE id = ?1",
                rusqlite::params![container_id, incomplete as i64],
            )
            .map(|_| ())
        })
    }

    pub(super) fn container_cache(&self, container_id: &str) -> Result<(Option<Digest>, String)> {
        match self.db().container(container_id)? {
            Some((img, cache, false)) => Ok((img, cache)),
            _ => Err(Error::LayerNotFound(container_id.to_string())),
        }
    }

    /// Mounts a container's filesystem and returns its path (reference counted).
    pub fn mount_container(&self, container_id: &str) -> Result<PathBuf> {
        self.mount_container_with(container_id, driver::MountOptions::default())
    }

    /// [`Store::mount_container`] with options for the mount (taken when this mounts it,
    /// not when it is mounted already).
    pub fn mount_container_with(
        &self,
        container_id: &str,
        opts: driver::MountOptions,
    ) -> Result<PathBuf> {
        let (_, cache) = self.container_cache(container_id)?;
        self.driver.get_with(&cache, opts)
    }

    /// Mounts a container's filesystem at `target` (an existing directory) for a caller
    /// that keeps it there (a container's root while it runs): not reference counted, the
    /// caller unmounts it.
    pub fn mount_container_at(
        &self,
        container_id: &str,
        target: &Path,
        opts: driver::MountOptions,
    ) -> Result<()> {
        let (_, cache) = self.container_cache(container_id)?;
        self.driver.mount_at(&cache, target, opts)
    }

    /// Releases one [`Store::mount_container`].
    pub fn unmount_container(&self, container_id: &str) -> Result<()> {
        let (_, cache) = self.container_cache(container_id)?;
        self.driver.put(&cache)
    }

    /// Removes a container's read-write layer.
    pub fn remove_container(&self, container_id: &str) -> Result<()> {
        self.remove_container_deferred(container_id).map(Purge::run)
    }

    /// Removes a container's read-write layer like [`Store::remove_container`], but moves
    /// its files aside (under the store's `trash/`) instead of deleting them: the layer is
    /// gone when this returns, and the returned [`Purge`] deletes the files when it is run
    /// or dropped. A caller on a latency-sensitive path (`run --rm`) answers first and
    /// purges after. What a crash leaves in the trash goes at the next open.
    pub fn remove_container_deferred(&self, container_id: &str) -> Result<Purge> {
        let (_, cache) = self.container_cache(container_id)?;
        // marked first: a removal cut short is finished at the next open
        self.set_container_incomplete(container_id, true)?;
        let to = self.trash_path(&cache);
        if self.driver.exists(&cache)
            && let Err(e) = self.driver.remove_to(&cache, &to)
        {
            // refused (mounted) or failed: the container stays as it was
            self.set_container_incomplete(container_id, false)?;
            return Err(e);
        }
        self.drop_container_row(container_id)?;
        Ok(Purge { paths: vec![to] })
    }

    /// The layer a container holds a reference on: recorded in its row (older rows: the
    /// image's top layer).
    pub(super) fn container_top(&self, container_id: &str) -> Result<Option<String>> {
        let db = self.db();
        if let Some(t) = db.container_top(container_id)? {
            return Ok(Some(t));
        }
        Ok(match db.container(container_id)? {
            Some((Some(img), _, _)) => db.image(&img)?.and_then(|r| r.top_cache),
            _ => None,
        })
    }

    /// Removes a container's row and its reference on its top layer; what only it still
    /// held (the config and layers of an image deleted while it was in use) goes too.
    pub(super) fn drop_container_row(&self, container_id: &str) -> Result<()> {
        let top = self.container_top(container_id)?;
        let Some((img, _, _)) = self.db().container(container_id)? else {
            return Ok(());
        };
        self.db().tx(|tx| {
            tx.execute("DELETE FROM containers WHERE id = ?1", [container_id])?;
            if let Some(t) = &top {
                tx.execute(
                    "UPDATE layers SET refcount = refcount - 1 WHERE cache_id = ?1",
                    [t],
                )?;
            }
            Ok(())
        })?;
        if let Some(i) = &img {
            let orphaned = {
                let db = self.db();
                db.image(i)?.is_none() && db.containers_of(i)?.is_empty()
            };
            if orphaned {
                self.content.delete(i)?;
                self.release_chain(top)?;
            }
        }
        Ok(())
    }

    /// `docker diff`: the container's changes against its image.
    pub fn container_changes(&self, container_id: &str) -> Result<Vec<Change>> {
        let (_, cache) = self.container_cache(container_id)?;
        self.driver.changes(&cache)
    }

    /// The container's changes without `exclude` (see [`CommitOptions::exclude`]).
    pub fn container_changes_except(
        &self,
        container_id: &str,
        exclude: &[String],
    ) -> Result<Vec<Change>> {
        Ok(crate::changes::except(
            self.container_changes(container_id)?,
            exclude,
        ))
    }

    /// `docker export`: the container's whole filesystem as a tar.
    pub fn export_container(&self, container_id: &str, out: impl Write) -> Result<()> {
        let root = self.mount_container(container_id)?;
        let r = (|| {
            let mut w = TarWriter::new(out);
            w.append_tree(&root)?;
            w.finish().map(|_| ())
        })();
        self.unmount_container(container_id)?;
        r
    }

    /// `docker commit`: the container's changes become a new layer and image.
    pub fn commit(&self, container_id: &str, opts: &CommitOptions) -> Result<Digest> {
        if let Some(r) = &opts.reference {
            Reference::parse_with_default_tag(r)?;
        }
        let (img, cache) = self.container_cache(container_id)?;
        let (base_config, top, parent_image): (Value, Option<String>, Option<Digest>) = match &img {
            Some(i) => {
                // the image row may be gone (forced rmi); its config blob and top layer
                // stay while the container exists
                let cfg = serde_json::from_slice(&self.content.read(i)?)
                    .map_err(json_err(format!("config of image {i}")))?;
                (cfg, self.container_top(container_id)?, Some(i.clone()))
            }
            None => (
                json!({"architecture": arch(), "os": "linux", "config": {}}),
                None,
                None,
            ),
        };
        let (reader, mut writer) = pipe()?;
        let layer = std::thread::scope(|s| {
            let diff = s.spawn(move || {
                let r = self
                    .driver
                    .changes(&cache)
                    .map(|c| crate::changes::except(c, &opts.exclude))
                    .and_then(|c| self.driver.diff_of(&cache, &c, &mut writer));
                drop(writer);
                r
            });
            let layer = self.register_layer(top.as_deref(), reader);
            let diffed = diff
                .join()
                .unwrap_or_else(|_| Err(Error::InvalidLayer("diff thread panicked".into())));
            match (layer, diffed) {
                (Ok(l), Ok(())) => Ok(l),
                (Err(e), _) | (Ok(_), Err(e)) => Err(e),
            }
        })?;
        let now = now_rfc3339();
        let mut cfg = base_config;
        if let Some(c) = &opts.config {
            cfg["config"] = c.clone();
        }
        cfg["created"] = json!(now);
        if let Some(a) = &opts.author {
            cfg["author"] = json!(a);
        }
        let mut diff_ids: Vec<Value> = cfg["rootfs"]["diff_ids"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        diff_ids.push(json!(layer.diff_id.as_ref().map(|d| d.to_string())));
        cfg["rootfs"] = json!({"type": "layers", "diff_ids": diff_ids});
        let mut history: Vec<Value> = cfg["history"].as_array().cloned().unwrap_or_default();
        let mut h = json!({"created": now});
        if let Some(a) = &opts.author {
            h["author"] = json!(a);
        }
        if let Some(c) = &opts.created_by {
            h["created_by"] = json!(c);
        }
        if let Some(m) = &opts.message {
            h["comment"] = json!(m);
        }
        history.push(h);
        cfg["history"] = Value::Array(history);
        let bytes = serde_json::to_vec(&cfg).map_err(json_err("image config"))?;
        let result = self.create_image(&bytes, Some(&layer.cache_id), parent_image.as_ref());
        let id = match result {
            Ok(id) => id,
            Err(e) => {
                self.release_chain(Some(layer.cache_id))?;
                return Err(e);
            }
        };
        if let Some(r) = &opts.reference {
            self.tag(&id.to_string(), r)?;
        }
        Ok(id)
    }
}
