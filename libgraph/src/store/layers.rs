//! Layers: registering (from a blob, a stream or a download), staging and attaching, and
//! releasing them when the last image or container lets go.

use super::*;

impl Store {
    /// The metadata of a layer.
    pub fn layer(&self, cache_id: &str) -> Result<Option<LayerRow>> {
        self.db().layer(cache_id)
    }

    /// The complete layer with this chain ID.
    pub fn layer_by_chain(&self, chain: &Digest) -> Result<Option<LayerRow>> {
        self.db().layer_by_chain(chain)
    }

    /// Registers a layer (plain, gzip or zstd tar) on top of `parent` (a cache ID), keeping
    /// the stream as a blob. If the same chain exists already, that layer is returned.
    ///
    /// The new layer holds no reference: an image or container must take one, or
    /// [`Store::gc`] will remove it.
    pub fn register_layer(
        &self,
        parent: Option<&str>,
        reader: impl Read + Send,
    ) -> Result<LayerRow> {
        self.build_layer(parent, |cache_id| {
            let mut w = self
                .content
                .writer(&format!("layer-{cache_id}"), Algorithm::Sha256)?;
            w.truncate()?;
            let report = {
                let mut tee = Tee {
                    inner: reader,
                    out: &mut w,
                };
                self.driver.apply_diff(cache_id, &mut tee)?
            };
            let blob = w.commit(Some(report.compressed_size), Some(&report.digest))?;
            Ok((report, blob))
        })
    }

    /// Registers a layer from a blob already in the content store (after a pull), checking
    /// that the blob still hashes to its digest. No second copy of the blob is written.
    pub fn register_layer_blob(&self, parent: Option<&str>, blob: &Digest) -> Result<LayerRow> {
        let mut file = self.content.open_blob(blob)?;
        self.build_layer(parent, |cache_id| {
            let report = self.driver.apply_diff(cache_id, &mut file)?;
            blob_matches(&report, blob)?;
            Ok((report, blob.clone()))
        })
    }

    /// The steps every new layer shares: check the parent and the layer limit, record the
    /// layer as incomplete, create its directory, fill it with `fill` (which returns the
    /// apply report and the blob digest), then finish it, or discard it on any error.
    pub(super) fn build_layer(
        &self,
        parent: Option<&str>,
        fill: impl FnOnce(&str) -> Result<(crate::apply::ApplyReport, Digest)>,
    ) -> Result<LayerRow> {
        let (parent_row, depth) = self.parent_and_depth(parent)?;
        let (cache_id, (report, blob)) = self.new_layer(parent, depth, fill)?;
        self.finish_layer(&cache_id, parent_row.as_ref(), &report, &blob, None)
    }

    /// Records a new layer as incomplete, creates its directory on `parent` and fills it
    /// with `fill`; on any error the layer is discarded. Returns its cache ID.
    pub(super) fn new_layer<T>(
        &self,
        parent: Option<&str>,
        depth: usize,
        fill: impl FnOnce(&str) -> Result<T>,
    ) -> Result<(String, T)> {
        let cache_id = random_id()?;
        self.db()
            .tx(|tx| meta::insert_incomplete_layer(tx, &cache_id, parent, depth))?;
        match self
            .driver
            .create(&cache_id, parent)
            .and_then(|()| fill(&cache_id))
        {
            Ok(v) => Ok((cache_id, v)),
            Err(e) => {
                self.discard_layer(&cache_id);
                Err(e)
            }
        }
    }

    /// The complete layer `parent` (if any) and the depth of a layer on top of it, refused
    /// over the layer limit.
    pub(super) fn parent_and_depth(
        &self,
        parent: Option<&str>,
    ) -> Result<(Option<LayerRow>, usize)> {
        let parent_row = match parent {
            Some(p) => Some(
                self.db()
                    .layer(p)?
                    .filter(|l| !l.incomplete)
                    .ok_or_else(|| Error::LayerNotFound(p.to_string()))?,
            ),
            None => None,
        };
        let depth = parent_row.as_ref().map_or(0, |p| p.depth) + 1;
        if depth > MAX_LAYERS {
            return Err(Error::TooManyLayers {
                count: depth,
                max: MAX_LAYERS,
            });
        }
        Ok((parent_row, depth))
    }

    /// Whether the driver lets layers be unpacked before their parents are
    /// ([`Store::stage_layer_blob`]): overlay does, vfs does not.
    pub fn supports_staging(&self) -> bool {
        self.driver.independent_layers()
    }

    /// Unpacks a layer blob from the content store into a new layer with no parent yet, so
    /// that the layers of one image can be unpacked at the same time, each on its own
    /// thread; [`Store::attach_layer`] then puts them in order. The blob is checked against
    /// its digest on the way. The layer stays incomplete (invisible, removed at the next
    /// open after a crash) until it is attached; the caller attaches or
    /// [discards](Store::discard_staged) every staged layer.
    pub fn stage_layer_blob(&self, blob: &Digest) -> Result<StagedLayer> {
        let file = self.content.open_blob(blob)?;
        self.stage_layer_stream(blob, file)
    }

    /// Like [`Store::stage_layer_blob`], reading the blob from a stream while it arrives
    /// (a download being written to the content store at the same time). The stream must
    /// hash to `blob`, or the layer is discarded; the blob itself is not stored by this
    /// call and must be in the content store before the layer is attached.
    pub fn stage_layer_stream(
        &self,
        blob: &Digest,
        reader: impl Read + Send,
    ) -> Result<StagedLayer> {
        self.stage(blob, reader, false)
    }

    /// Like [`Store::stage_layer_stream`] for a download whose bytes the caller hashes
    /// itself (libregistry verifies every blob): the compressed stream is not hashed a
    /// second time. The caller must [discard](Store::discard_staged) the layer if its own
    /// digest check fails, and attach it only once the blob is committed.
    pub fn stage_layer_download(
        &self,
        blob: &Digest,
        reader: impl Read + Send,
    ) -> Result<StagedLayer> {
        self.stage(blob, reader, true)
    }

    pub(super) fn stage(
        &self,
        blob: &Digest,
        mut reader: impl Read + Send,
        caller_verifies: bool,
    ) -> Result<StagedLayer> {
        if !self.supports_staging() {
            return Err(Error::Unsupported(format!(
                "the {} driver cannot unpack a layer before its parent; use register_layer_blob",
                self.driver.name()
            )));
        }
        let (cache_id, report) = self.new_layer(None, 1, |cache_id| {
            let report = if caller_verifies {
                self.driver
                    .apply_diff_verified(cache_id, &mut reader, blob)?
            } else {
                self.driver.apply_diff(cache_id, &mut reader)?
            };
            blob_matches(&report, blob)?;
            Ok(report)
        })?;
        Ok(StagedLayer {
            cache_id,
            report,
            blob: blob.clone(),
        })
    }

    /// Puts a staged layer on top of `parent` (a complete layer, or `None` for a base
    /// layer) and completes it. If a layer with the same chain ID exists already, the
    /// staged one is discarded and the existing one returned. On error the staged layer
    /// is discarded.
    pub fn attach_layer(&self, staged: StagedLayer, parent: Option<&str>) -> Result<LayerRow> {
        let id = staged.cache_id.clone();
        let attached = self
            .parent_and_depth(parent)
            .and_then(|(parent_row, depth)| {
                self.driver.set_parent(&id, parent)?;
                self.finish_layer(
                    &id,
                    parent_row.as_ref(),
                    &staged.report,
                    &staged.blob,
                    Some((parent, depth)),
                )
            });
        if attached.is_err() {
            self.discard_layer(&id);
        }
        attached
    }

    /// Removes a staged layer that will not be attached.
    pub fn discard_staged(&self, staged: StagedLayer) {
        self.discard_layer(&staged.cache_id);
    }

    /// Completes layer `cache_id` (chain ID, diff ID, sizes, blob) in one transaction,
    /// first giving it `reparent` (parent, depth) when it was staged. If its chain exists
    /// already, it is discarded and the existing layer returned.
    pub(super) fn finish_layer(
        &self,
        cache_id: &str,
        parent_row: Option<&LayerRow>,
        report: &crate::apply::ApplyReport,
        blob: &Digest,
        reparent: Option<(Option<&str>, usize)>,
    ) -> Result<LayerRow> {
        let chain = match parent_row.and_then(|p| p.chain_id.clone()) {
            Some(pc) => chain_id(&[pc, report.diff_id.clone()]).unwrap_or(report.diff_id.clone()),
            None => report.diff_id.clone(),
        };
        let existing = self.db().layer_by_chain(&chain)?;
        if let Some(existing) = existing {
            self.discard_layer(cache_id);
            return Ok(existing);
        }
        let media = layer_media_type(report.compression);
        let completed = self.db().tx(|tx| {
            if let Some((parent, depth)) = reparent {
                meta::set_layer_parent(tx, cache_id, parent, depth)?;
            }
            meta::complete_layer(
                tx,
                cache_id,
                &meta::Completed {
                    chain_id: &chain,
                    diff_id: &report.diff_id,
                    size: report.content_size,
                    tar_size: report.tar_size,
                    blob: Some((blob, report.compressed_size, media)),
                },
            )
        });
        let conflict = matches!(&completed, Err(Error::Database {
            source: rusqlite::Error::SqliteFailure(e, _),
            ..
        }) if e.code == rusqlite::ErrorCode::ConstraintViolation);
        if conflict {
            // bound first: a `self.db()` temporary in the `if let` would keep the database
            // locked through the block, and discard_layer locks it again (a deadlock)
            let existing = self.db().layer_by_chain(&chain)?;
            if let Some(existing) = existing {
                // another process completed the same chain since the check above
                self.discard_layer(cache_id);
                return Ok(existing);
            }
        }
        completed?;
        self.db()
            .layer(cache_id)?
            .ok_or_else(|| Error::LayerNotFound(cache_id.to_string()))
    }

    /// Best-effort removal of a layer that never completed (open() retries what fails here).
    pub(super) fn discard_layer(&self, cache_id: &str) {
        if self.driver.exists(cache_id) && self.driver.remove(cache_id).is_err() {
            return;
        }
        let _ = self.content.abort(&format!("layer-{cache_id}"));
        let _ = self.db().tx(|tx| {
            tx.execute("DELETE FROM layers WHERE cache_id = ?1", [cache_id])
                .map(|_| ())
        });
    }

    /// Layers of a chain, base first.
    pub(super) fn chain_of(&self, top: Option<&str>) -> Result<Vec<LayerRow>> {
        let db = self.db();
        let mut out = Vec::new();
        let mut cur = top.map(str::to_string);
        while let Some(c) = cur {
            let l = db
                .layer(&c)?
                .ok_or_else(|| Error::LayerNotFound(c.clone()))?;
            cur = l.parent_cache.clone();
            out.push(l);
        }
        out.reverse();
        Ok(out)
    }

    /// Drops layers from `top` down while nothing (no image, container, child or lease)
    /// references them.
    pub(super) fn release_chain(&self, top: Option<String>) -> Result<Vec<String>> {
        let leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        self.release_chain_with(top, &leases)
    }

    pub(super) fn release_chain_with(
        &self,
        top: Option<String>,
        leases: &Leases,
    ) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        let mut cur = top;
        while let Some(c) = cur {
            let Some(row) = self.db().layer(&c)? else {
                break;
            };
            if !self.release_layer(&row, leases)? {
                break;
            }
            removed.push(c);
            cur = row.parent_cache;
        }
        Ok(removed)
    }

    /// Removes one layer (its directory, row and blob unless another layer or a lease uses
    /// it) if nothing references it: no image, container, child or lease. Returns whether it
    /// was removed.
    pub(super) fn release_layer(&self, row: &LayerRow, leases: &Leases) -> Result<bool> {
        let c = &row.cache_id;
        let children = self.db().children(c)?;
        let leased = row
            .chain_id
            .as_ref()
            .is_some_and(|ch| leases.live.values().any(|l| l.chains.contains(ch)));
        if row.refcount > 0 || children > 0 || leased {
            return Ok(false);
        }
        // mark first: a crash from here on is cleaned at the next open
        self.db().tx(|tx| {
            tx.execute("UPDATE layers SET incomplete = 1 WHERE cache_id = ?1", [c])
                .map(|_| ())
        })?;
        if self.driver.exists(c) {
            self.driver.remove(c)?;
        }
        self.db().tx(|tx| {
            tx.execute("DELETE FROM layers WHERE cache_id = ?1", [c])
                .map(|_| ())
        })?;
        if let Some(b) = &row.blob_digest {
            let still_used = self
                .db()
                .layers()?
                .iter()
                .any(|l| l.blob_digest.as_ref() == Some(b))
                || leases.live.values().any(|l| l.blobs.contains(b));
            if !still_used {
                self.content.delete(b)?;
            }
        }
        Ok(true)
    }
}
