//! `check` (with repair) and `gc`.

use super::*;

impl Store {
    /// Verifies every blob's digest, every layer's presence and reference counts
    /// (`repair` fixes counts and drops rows of missing layers' images' tags are kept), and
    /// lists the layers nothing uses ([`CheckReport::unreferenced_layers`]), which
    /// [`Store::gc`] removes.
    pub fn check(&self, repair: bool) -> Result<CheckReport> {
        let mut rep = CheckReport::default();
        for d in self.content.list()? {
            rep.blobs_checked += 1;
            if let Err(e) = self.content.verify(&d) {
                rep.problems.push(format!("{e}"));
                if repair {
                    self.content.delete(&d)?;
                }
            }
        }
        let layers = self.db().layers()?;
        let images = self.db().images()?;
        let containers = self.db().containers()?;
        for l in &layers {
            if l.incomplete {
                // a row is marked incomplete before its directory exists and before its
                // removal starts: its directory may be half there, or gone
                rep.incomplete_layers.push(l.cache_id.clone());
                continue;
            }
            rep.layers_checked += 1;
            if !self.driver.exists(&l.cache_id) {
                rep.problems.push(format!(
                    "layer {} is missing from the {} driver",
                    l.cache_id,
                    self.driver.name()
                ));
            }
            if let Some(b) = &l.blob_digest
                && !self.content.exists(b)
            {
                rep.problems
                    .push(format!("blob {b} of layer {} is missing", l.cache_id));
            }
            let mut want = images
                .iter()
                .filter(|i| i.top_cache.as_deref() == Some(&l.cache_id))
                .count() as u64;
            for (cid, _, _) in &containers {
                if self.container_top(cid)?.as_deref() == Some(&l.cache_id) {
                    want += 1;
                }
            }
            let leased = l.chain_id.as_ref().is_some_and(|ch| {
                let leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
                leases.live.values().any(|x| x.chains.contains(ch))
            });
            if want == 0 && !l.incomplete && !leased && self.db().children(&l.cache_id)? == 0 {
                rep.unreferenced_layers.push(l.cache_id.clone());
            }
            if want != l.refcount {
                rep.problems.push(format!(
                    "layer {} has reference count {}, expected {want}{}",
                    l.cache_id,
                    l.refcount,
                    if repair { " (repaired)" } else { "" }
                ));
                if repair {
                    self.db().tx(|tx| {
                        tx.execute(
                            "UPDATE layers SET refcount = ?2 WHERE cache_id = ?1",
                            rusqlite::params![l.cache_id, want as i64],
                        )
                        .map(|_| ())
                    })?;
                }
            }
        }
        for i in &images {
            if !self.content.exists(&i.id) {
                rep.problems
                    .push(format!("config blob of image {} is missing", i.id));
            }
        }
        for (cid, cache, _) in &containers {
            if !self.driver.exists(cache) {
                rep.problems
                    .push(format!("read-write layer of container {cid} is missing"));
            }
            if let Some((Some(img), _, _)) = self.db().container(cid)?
                && !self.content.exists(&img)
            {
                rep.problems.push(format!(
                    "config blob of image {img} of container {cid} is missing"
                ));
            }
        }
        Ok(rep)
    }

    /// Removes layers nothing references and blobs no image, container or layer names.
    /// What a live [`Lease`] protects stays (its blobs and layer chains, and blobs committed
    /// since it was taken), and so do blobs committed after the oldest ingest still on disk
    /// started: a pull in progress may need them.
    pub fn gc(&self) -> Result<GcReport> {
        let mut rep = GcReport::default();
        // held throughout: a lease adding a blob waits for this gc to finish
        let leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        let roots: Vec<LayerRow> = {
            let db = self.db();
            let mut v = Vec::new();
            for l in db.layers()? {
                if !l.incomplete && l.refcount == 0 && db.children(&l.cache_id)? == 0 {
                    v.push(l);
                }
            }
            v
        };
        for l in roots {
            rep.layers_removed
                .extend(self.release_chain_with(Some(l.cache_id), &leases)?);
        }
        let mut keep: std::collections::HashSet<Digest> = Default::default();
        let layers = self.db().layers()?;
        for l in layers {
            keep.extend(l.blob_digest);
        }
        let images = self.db().images()?;
        for i in images {
            keep.insert(i.id);
        }
        let containers = self.db().containers()?;
        for (cid, _, _) in containers {
            if let Some((Some(img), _, _)) = self.db().container(&cid)? {
                keep.insert(img);
            }
        }
        for l in leases.live.values() {
            keep.extend(l.blobs.iter().cloned());
        }
        let oldest_ingest = fs::read_dir(self.content.root().join("ingest"))
            .ctx("read directory", self.content.root().join("ingest"))?
            .filter_map(|e| e.ok()?.metadata().ok()?.modified().ok())
            .chain(leases.live.values().map(|l| l.since))
            .min();
        for d in self.content.list()? {
            if keep.contains(&d) {
                continue;
            }
            let p = self.content.blob_path(&d);
            if let (Some(oldest), Ok(m)) =
                (oldest_ingest, fs::metadata(&p).and_then(|m| m.modified()))
                && m >= oldest
            {
                continue;
            }
            self.content.delete(&d)?;
            rep.blobs_removed.push(d);
        }
        Ok(rep)
    }
}
