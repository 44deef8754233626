//! The pull job: download into libgraph's content store, unpack layers as they arrive.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use longshore_graph::meta::LayerRow;
use longshore_graph::{Digest, Lease, Store, chain_id};
use longshore_registry::{
    Platform, Progress, ProgressEvent, ProgressSender, PullOptions, PulledImage, Reference,
};
use tokio::sync::mpsc::unbounded_channel;
use tokio::task::JoinHandle;

use crate::content::GraphContent;
use crate::engine::Engine;
use crate::error::{Error, Result, graph};
use crate::stage::{Stager, Streams};

/// Options of one pull.
#[derive(Debug, Clone, Default)]
pub struct PullJobOptions {
    /// Platform to pick from an index (default: the host's).
    pub platform: Option<Platform>,
    /// Where progress goes: libregistry's download events, plus `Extracting` (start and
    /// end of each layer's unpacking) and `AlreadyExists` for layers already unpacked.
    pub progress: Option<ProgressSender>,
    /// Overlay stores unpack each compressed layer while it downloads; with this set,
    /// only after its blob is committed (to compare the two).
    pub unpack_after_download: bool,
    /// Credentials for the registry of the reference (`X-Registry-Auth`): used for this
    /// pull only, never kept by the engine.
    pub credentials: Option<longshore_registry::Credentials>,
}

/// What happened to one layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerOutcome {
    /// The layer blob (compressed) digest.
    pub blob: Digest,
    /// Its diff ID.
    pub diff_id: Digest,
    /// The graph driver's ID of the layer.
    pub cache_id: String,
    /// The layer (same chain) was already unpacked; nothing was extracted.
    pub already_existed: bool,
    /// The layer was unpacked from its bytes as they downloaded.
    pub unpacked_while_downloading: bool,
}

/// The result of [`Engine::pull`].
#[derive(Debug, Clone)]
pub struct PullReport {
    /// The reference pulled, normalised (`docker.io/library/busybox:latest`).
    pub reference: String,
    /// Image ID (the config digest).
    pub image_id: Digest,
    /// Digest of the image manifest.
    pub manifest_digest: String,
    /// Layers, base first.
    pub layers: Vec<LayerOutcome>,
    /// The image already existed (and the tag already pointed at it): nothing changed.
    pub already_exists: bool,
}

impl fmt::Display for PullReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.already_exists {
            write!(
                f,
                "{}: image already exists ({}), up to date",
                self.reference, self.image_id
            )
        } else {
            write!(
                f,
                "{}: pulled image {} (manifest {}, {} layers)",
                self.reference,
                self.image_id,
                self.manifest_digest,
                self.layers.len()
            )
        }
    }
}

impl Engine {
    /// Pulls `reference` and unpacks it into the image store (`docker pull`).
    ///
    /// Layers are registered in order, each as soon as its blob is verified in the content
    /// store and its parent is registered, while later blobs still download. Each layer's
    /// diff ID is checked against the config's `rootfs.diff_ids`; the image (ID = config
    /// digest) is created and tagged only when every layer is in. A layer already present
    /// (same chain ID) is not unpacked again.
    ///
    /// Dropping the future stops the downloads (no partial blob stays visible); a layer
    /// being unpacked at that moment finishes on its worker thread (or, if the process is
    /// killed, is marked incomplete and removed by libgraph at the next open). Layers
    /// registered by a pull that fails hold no reference; `Store::gc` removes them.
    pub async fn pull(&self, reference: &str, opts: &PullJobOptions) -> Result<PullReport> {
        self.store()?;
        let parsed = Reference::parse_with_default_tag(reference).map_err(|source| {
            Error::InvalidReference {
                reference: reference.to_string(),
                source: Box::new(source.into()),
            }
        })?;
        let name = parsed.to_string();
        let (tx, mut rx) = unbounded_channel::<Progress>();
        let streams = Arc::new(Streams::default());
        // what this pull downloads, finds and unpacks is kept by a gc until the image is in
        let lease = Arc::new(self.opened().lease());
        let stream = self.opened().supports_staging() && !opts.unpack_after_download;
        let content = GraphContent::for_pull(
            self.opened(),
            Arc::clone(&lease),
            stream.then(|| (Arc::clone(&streams), name.as_str())),
        );
        let ropts = PullOptions::new()
            .platform(opts.platform.clone())
            .progress(Some(tx));
        let user = opts.progress.clone();
        let mut sched = Speculation {
            lease: Some(Arc::clone(&lease)),
            ..Default::default()
        };
        let mut running: Option<JoinHandle<Result<LayerOutcome>>> = None;
        // overlay: layers unpack at the same time, each as soon as its blob is in;
        // vfs: one after the other, each on its parent
        let mut stager = self
            .opened()
            .supports_staging()
            .then(|| Stager::new(Arc::clone(self.opened()), &name, user.clone(), streams));
        let client = self.registry_client(parsed.domain(), opts.credentials.as_ref());
        let pull = client.pull(&parsed, &content, &ropts);
        tokio::pin!(pull);

        let pulled: std::result::Result<PulledImage, longshore_registry::Error> = loop {
            if let Some(st) = stager.as_mut() {
                for blob in sched.candidates(self.opened()) {
                    if !st.has_room() {
                        break;
                    }
                    st.start(&blob);
                }
            } else if running.is_none()
                && let Some((blob, diff_id, parent)) = sched.next(self.opened())
            {
                running = Some(self.spawn_apply(&name, blob, diff_id, parent, user.clone()));
            }
            tokio::select! {
                biased;
                Some(ev) = rx.recv() => sched.on_event(ev, user.as_ref()),
                r = async { stager.as_mut().expect("guarded").next().await },
                    if stager.as_ref().is_some_and(Stager::busy) => r?,
                done = async { running.as_mut().expect("guarded").await }, if running.is_some() => {
                    running = None;
                    match join(done, "unpacking a layer") {
                        Ok(l) => sched.applied.push(l),
                        Err(e) => {
                            // Fall back to the ordered phase, which reports the error
                            // again if it is real.
                            tracing::debug!("speculative unpack failed: {e}");
                            sched.disabled = true;
                        }
                    }
                }
                res = &mut pull => break res,
            }
        };
        while let Ok(ev) = rx.try_recv() {
            sched.on_event(ev, user.as_ref());
        }
        // Let the layer in flight finish before anything else touches the store.
        if let Some(h) = running.take() {
            match join(h.await, "unpacking a layer") {
                Ok(l) => sched.applied.push(l),
                Err(_) => sched.disabled = true,
            }
        }
        let pulled = pulled.map_err(|source| match source {
            longshore_registry::Error::NotFound { .. } => Error::NotFound {
                reference: name.clone(),
                source: Box::new(source),
            },
            source => Error::Registry {
                reference: name.clone(),
                source: Box::new(source),
            },
        })?;
        self.finish(&name, &parsed, pulled, sched, stager, opts)
            .await
    }

    fn spawn_apply(
        &self,
        name: &str,
        blob: Digest,
        diff_id: Digest,
        parent: Option<LayerRow>,
        progress: Option<ProgressSender>,
    ) -> JoinHandle<Result<LayerOutcome>> {
        let store = Arc::clone(self.opened());
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            apply_one(
                &store,
                &name,
                &blob,
                &diff_id,
                parent.as_ref(),
                progress.as_ref(),
            )
        })
    }

    /// The ordered phase: with the authoritative manifest, keep what the speculative
    /// phase registered when it matches, unpack the rest, create and tag the image.
    async fn finish(
        &self,
        name: &str,
        parsed: &Reference,
        pulled: PulledImage,
        sched: Speculation,
        stager: Option<Stager>,
        opts: &PullJobOptions,
    ) -> Result<PullReport> {
        let progress = opts.progress.clone();
        let platform = opts.platform.as_ref();
        let speculative = sched.applied;
        let lease = sched.lease.expect("the pull job sets the lease");
        let config_digest = pulled.config_digest.clone();
        let config = self
            .opened()
            .content()
            .read(&config_digest)
            .map_err(graph(format!("read config of {name}")))?;
        let diff_ids = parse_diff_ids(&config).map_err(|reason| Error::InvalidConfig {
            reference: name.to_string(),
            digest: config_digest.to_string(),
            reason,
        })?;
        // a single-platform image (no index to choose from) must be the one asked for
        if let Some(want) = platform {
            let v: serde_json::Value = serde_json::from_slice(&config).unwrap_or_default();
            let os = v["os"].as_str().unwrap_or_default();
            let arch = v["architecture"].as_str().unwrap_or_default();
            let variant = v["variant"].as_str();
            let variant_ok = want.variant.is_none() || want.variant.as_deref() == variant;
            if want.os != os || want.architecture != arch || !variant_ok {
                let mut actual = format!("{os}/{arch}");
                if let Some(v) = variant {
                    actual.push('/');
                    actual.push_str(v);
                }
                return Err(Error::InvalidArgument(format!(
                    "image with reference {name} was found but does not match the specified platform: wanted {want}, actual: {actual}"
                )));
            }
        }
        let blobs = pulled.layer_digests.clone();
        if blobs.len() != diff_ids.len() {
            return Err(Error::InvalidConfig {
                reference: name.to_string(),
                digest: config_digest.to_string(),
                reason: format!(
                    "the manifest has {} layers but the config lists {} diff IDs",
                    blobs.len(),
                    diff_ids.len()
                ),
            });
        }
        lease.add_blob(&config_digest);
        let chains = chains_of(&diff_ids);
        for c in &chains {
            lease.add_chain(c);
        }
        let staged_layers = match stager {
            Some(st) => Some(
                self.attach_staged(name, st, &blobs, &diff_ids, &chains, progress.as_ref())
                    .await?,
            ),
            None => None,
        };
        let store = Arc::clone(self.opened());
        let name_owned = name.to_string();
        let parsed_tag = parsed
            .tag()
            .filter(|_| parsed.digest().is_none())
            .map(|_| parsed.to_string());
        let manifest_digest = pulled.manifest.digest().to_string();
        let repo_digest = format!("{}@{manifest_digest}", parsed.name());
        let worker = tokio::task::spawn_blocking(move || -> Result<PullReport> {
            let done = staged_layers.is_some();
            let mut layers: Vec<LayerOutcome> = staged_layers.unwrap_or_default();
            for (i, (blob, diff_id)) in blobs.iter().zip(&diff_ids).enumerate() {
                if done {
                    break;
                }
                let reuse = speculative
                    .get(i)
                    .filter(|s| &s.blob == blob && &s.diff_id == diff_id && layers.len() == i);
                if let Some(s) = reuse {
                    layers.push(s.clone());
                    continue;
                }
                let parent = match layers.last() {
                    Some(l) => Some(
                        store
                            .layer(&l.cache_id)
                            .map_err(graph(format!("read layer {}", l.cache_id)))?
                            .ok_or_else(|| Error::Graph {
                                op: format!("read layer {}", l.cache_id),
                                source: longshore_graph::Error::LayerNotFound(l.cache_id.clone()),
                            })?,
                    ),
                    None => None,
                };
                layers.push(apply_one(
                    &store,
                    &name_owned,
                    blob,
                    diff_id,
                    parent.as_ref(),
                    progress.as_ref(),
                )?);
            }
            let existed = store.resolve(&config_digest.to_string()).is_ok();
            let top = layers.last().map(|l| l.cache_id.as_str());
            let id = store
                .create_image(&config, top, None)
                .map_err(graph(format!(
                    "create image {config_digest} for {name_owned}"
                )))?;
            let mut tag_moved = false;
            if let Some(tag) = &parsed_tag {
                tag_moved = store.resolve(tag).ok().as_ref() != Some(&id);
                store
                    .tag(&id.to_string(), tag)
                    .map_err(graph(format!("tag {id} as {tag}")))?;
            }
            // docker images --digests, RepoDigests
            store
                .add_repo_digest(&id.to_string(), &repo_digest)
                .map_err(graph(format!("record {repo_digest}")))?;
            Ok(PullReport {
                reference: name_owned,
                image_id: id,
                manifest_digest,
                layers,
                already_exists: existed && !tag_moved,
            })
        });
        join(worker.await, "recording the image")
    }
}

impl Engine {
    /// The ordered phase with a stager: base first, keep a layer whose chain exists,
    /// otherwise take the blob's staged layer (unpacking it now if the speculative phase
    /// did not, with the next ones started as room allows), check its diff ID against the
    /// config and attach it on its parent.
    async fn attach_staged(
        &self,
        name: &str,
        mut stager: Stager,
        blobs: &[Digest],
        diff_ids: &[Digest],
        chains: &[Digest],
        progress: Option<&ProgressSender>,
    ) -> Result<Vec<LayerOutcome>> {
        let mut existing = Vec::with_capacity(chains.len());
        for c in chains {
            existing.push(
                self.opened()
                    .layer_by_chain(c)
                    .map_err(graph(format!("look up layer {c}")))?,
            );
        }
        let mut layers: Vec<LayerOutcome> = Vec::with_capacity(blobs.len());
        for (i, (blob, diff_id)) in blobs.iter().zip(diff_ids).enumerate() {
            if let Some(row) = &existing[i] {
                send(progress, blob, ProgressEvent::AlreadyExists);
                layers.push(LayerOutcome {
                    blob: blob.clone(),
                    diff_id: diff_id.clone(),
                    cache_id: row.cache_id.clone(),
                    already_existed: true,
                    unpacked_while_downloading: false,
                });
                continue;
            }
            let ahead: Vec<Digest> = (i + 1..blobs.len())
                .filter(|&j| existing[j].is_none())
                .map(|j| blobs[j].clone())
                .collect();
            let staged = stager.take(blob, &ahead).await?;
            if staged.diff_id() != diff_id {
                return Err(Error::DiffIdMismatch {
                    reference: name.to_string(),
                    blob: blob.to_string(),
                    expected: diff_id.to_string(),
                    actual: staged.diff_id().to_string(),
                });
            }
            let store = Arc::clone(self.opened());
            let parent = layers.last().map(|l| l.cache_id.clone());
            let streamed = staged.streamed();
            let layer = staged.take();
            let row =
                tokio::task::spawn_blocking(move || store.attach_layer(layer, parent.as_deref()))
                    .await
                    .map_err(|e| Error::Worker {
                        what: "attaching a layer".into(),
                        reason: e.to_string(),
                    })?
                    .map_err(graph(format!("attach layer {blob} of {name}")))?;
            layers.push(LayerOutcome {
                blob: blob.clone(),
                diff_id: diff_id.clone(),
                cache_id: row.cache_id,
                already_existed: false,
                unpacked_while_downloading: streamed,
            });
        }
        // unpacks started for layers that turned out to exist end (and are discarded)
        // before the image is recorded
        stager.drain().await?;
        Ok(layers)
    }
}

fn join<T>(r: std::result::Result<Result<T>, tokio::task::JoinError>, what: &str) -> Result<T> {
    r.map_err(|e| Error::Worker {
        what: what.to_string(),
        reason: e.to_string(),
    })?
}

/// The chain IDs of a list of diff IDs, base first.
fn chains_of(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut chains: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let c = match chains.last() {
            Some(pc) => chain_id(&[pc.clone(), d.clone()]).expect("two digests"),
            None => d.clone(),
        };
        chains.push(c);
    }
    chains
}

fn parse_diff_ids(config: &[u8]) -> std::result::Result<Vec<Digest>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(config).map_err(|e| format!("not JSON: {e}"))?;
    let ids = v["rootfs"]["diff_ids"]
        .as_array()
        .ok_or("no rootfs.diff_ids")?;
    ids.iter()
        .map(|d| {
            d.as_str()
                .ok_or_else(|| "a diff ID is not a string".to_string())
                .and_then(|s| Digest::parse(s).map_err(|e| e.to_string()))
        })
        .collect()
}

pub(crate) fn send(progress: Option<&ProgressSender>, blob: &Digest, event: ProgressEvent) {
    if let Some(tx) = progress {
        let _ = tx.send(Progress {
            id: blob.short().to_string(),
            digest: blob.clone(),
            event,
        });
    }
}

/// Registers one layer on `parent` from its stored blob (or finds it already there) and
/// checks its diff ID. Blocking.
fn apply_one(
    store: &Store,
    name: &str,
    blob: &Digest,
    diff_id: &Digest,
    parent: Option<&LayerRow>,
    progress: Option<&ProgressSender>,
) -> Result<LayerOutcome> {
    let chain = match parent.and_then(|p| p.chain_id.clone()) {
        Some(pc) => chain_id(&[pc, diff_id.clone()]).expect("two digests"),
        None => diff_id.clone(),
    };
    if let Some(row) = store
        .layer_by_chain(&chain)
        .map_err(graph(format!("look up layer {chain}")))?
    {
        send(progress, blob, ProgressEvent::AlreadyExists);
        return Ok(LayerOutcome {
            blob: blob.clone(),
            diff_id: diff_id.clone(),
            cache_id: row.cache_id,
            already_existed: true,
            unpacked_while_downloading: false,
        });
    }
    let total = store.content().size(blob).unwrap_or(0);
    send(
        progress,
        blob,
        ProgressEvent::Extracting { current: 0, total },
    );
    let row = store
        .register_layer_blob(parent.map(|p| p.cache_id.as_str()), blob)
        .map_err(graph(format!("unpack layer {blob} of {name}")))?;
    if row.diff_id.as_ref() != Some(diff_id) {
        return Err(Error::DiffIdMismatch {
            reference: name.to_string(),
            blob: blob.to_string(),
            expected: diff_id.to_string(),
            actual: row
                .diff_id
                .as_ref()
                .map_or_else(|| "(none)".to_string(), |d| d.to_string()),
        });
    }
    send(
        progress,
        blob,
        ProgressEvent::Extracting {
            current: total,
            total,
        },
    );
    Ok(LayerOutcome {
        blob: blob.clone(),
        diff_id: diff_id.clone(),
        cache_id: row.cache_id,
        already_existed: false,
        unpacked_while_downloading: false,
    })
}

/// The speculative phase. libregistry announces every blob (`Waiting`) in manifest order,
/// config first, before any transfer; from that and the `Done`/`AlreadyExists` events the
/// engine starts unpacking early. Nothing here is trusted: the ordered phase keeps a
/// speculative layer only if it matches the manifest libregistry returns, and libgraph
/// checks the diff IDs again when the image is created.
#[derive(Default)]
struct Speculation {
    order: Vec<Digest>,
    announcing: bool,
    ready: HashSet<Digest>,
    diff_ids: Option<Vec<Digest>>,
    applied: Vec<LayerOutcome>,
    disabled: bool,
    /// The layers' chain IDs, from the diff IDs.
    chains: Vec<Digest>,
    /// Per layer (staging mode): whether its chain is already in the store.
    present: Vec<Option<bool>>,
    /// The pull's lease: layer chains are added as soon as the config names them.
    lease: Option<Arc<Lease>>,
}

impl Speculation {
    fn on_event(&mut self, ev: Progress, user: Option<&ProgressSender>) {
        let d = ev.digest.clone();
        match ev.event {
            ProgressEvent::Waiting => {
                if self.ready.is_empty() && (self.announcing || self.order.is_empty()) {
                    self.announcing = true;
                    self.order.push(d);
                }
            }
            ProgressEvent::Done | ProgressEvent::AlreadyExists => {
                self.announcing = false;
                self.ready.insert(d);
            }
            _ => self.announcing = false,
        }
        if let Some(tx) = user {
            let _ = tx.send(ev);
        }
    }

    /// Reads the diff IDs from the config once it is in; false until then (or when the
    /// speculation is off).
    fn load_diff_ids(&mut self, store: &Store) -> bool {
        if self.disabled || self.order.is_empty() {
            return false;
        }
        if self.diff_ids.is_some() {
            return true;
        }
        let config = &self.order[0];
        if !self.ready.contains(config) {
            return false;
        }
        match store
            .content()
            .read(config)
            .map_err(|e| e.to_string())
            .and_then(|c| parse_diff_ids(&c))
        {
            Ok(ids) if ids.len() + 1 == self.order.len() => {
                self.chains = chains_of(&ids);
                if let Some(l) = &self.lease {
                    for c in &self.chains {
                        l.add_chain(c);
                    }
                }
                self.present = vec![None; ids.len()];
                self.diff_ids = Some(ids);
                true
            }
            _ => {
                // Duplicate layers or an unexpected order: the ordered phase does it all.
                self.disabled = true;
                false
            }
        }
    }

    /// Staging mode: the blobs, base first, that are in the content store and whose
    /// layer (same chain) is not in the image store yet.
    fn candidates(&mut self, store: &Store) -> Vec<Digest> {
        if !self.load_diff_ids(store) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (i, c) in self.chains.iter().enumerate() {
            let blob = &self.order[i + 1];
            if self.ready.contains(blob) {
                let present = *self.present[i]
                    .get_or_insert_with(|| matches!(store.layer_by_chain(c), Ok(Some(_))));
                if !present {
                    out.push(blob.clone());
                }
            }
        }
        out
    }

    /// The next layer to unpack, if its blob and its parent are ready.
    fn next(&mut self, store: &Store) -> Option<(Digest, Digest, Option<LayerRow>)> {
        if !self.load_diff_ids(store) {
            return None;
        }
        let i = self.applied.len();
        let ids = self.diff_ids.as_ref()?;
        let blob = self.order.get(i + 1)?;
        if !self.ready.contains(blob) {
            return None;
        }
        let parent = match self.applied.last() {
            Some(l) => match store.layer(&l.cache_id) {
                Ok(Some(row)) => Some(row),
                _ => {
                    self.disabled = true;
                    return None;
                }
            },
            None => None,
        };
        Some((blob.clone(), ids[i].clone(), parent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: u8, event: ProgressEvent) -> Progress {
        let hex = format!("{n:02x}").repeat(32);
        Progress {
            id: hex[..12].to_string(),
            digest: format!("sha256:{hex}").parse().unwrap(),
            event,
        }
    }

    fn d(n: u8) -> Digest {
        Digest::parse(&format!("sha256:{}", format!("{n:02x}").repeat(32))).unwrap()
    }

    #[test]
    fn the_announced_order_ends_at_the_first_other_event_and_events_are_forwarded() {
        let (tx, mut rx) = unbounded_channel();
        let mut s = Speculation::default();
        for n in [1, 2, 3] {
            s.on_event(ev(n, ProgressEvent::Waiting), Some(&tx));
        }
        s.on_event(
            ev(
                1,
                ProgressEvent::Downloading {
                    current: 1,
                    total: 2,
                },
            ),
            Some(&tx),
        );
        // A later Waiting (e.g. a second image) does not extend the order.
        s.on_event(ev(4, ProgressEvent::Waiting), Some(&tx));
        s.on_event(ev(1, ProgressEvent::Done), Some(&tx));
        s.on_event(ev(3, ProgressEvent::AlreadyExists), Some(&tx));
        assert_eq!(s.order, vec![d(1), d(2), d(3)]);
        assert!(s.ready.contains(&d(1)) && s.ready.contains(&d(3)) && !s.ready.contains(&d(2)));
        let mut forwarded = 0;
        while rx.try_recv().is_ok() {
            forwarded += 1;
        }
        assert_eq!(forwarded, 7);
    }

    #[test]
    fn diff_ids_are_parsed_strictly() {
        let ok = format!(
            r#"{{"rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
            d(9)
        );
        assert_eq!(parse_diff_ids(ok.as_bytes()).unwrap(), vec![d(9)]);
        assert!(
            parse_diff_ids(b"{}")
                .unwrap_err()
                .contains("rootfs.diff_ids")
        );
        assert!(parse_diff_ids(br#"{"rootfs":{"diff_ids":[1]}}"#).is_err());
        assert!(parse_diff_ids(br#"{"rootfs":{"diff_ids":["sha256:zz"]}}"#).is_err());
        assert!(
            parse_diff_ids(b"not json")
                .unwrap_err()
                .contains("not JSON")
        );
    }
}
