//! The executor: runs a [`Plan`] against a libgraph [`Store`], step by step, with a
//! content-addressed cache, committing each step as an image (Docker's legacy builder's
//! model: every step's result is an image, `---> <id>`), with Docker's history entries.
//!
//! RUN steps go through a [`StepRunner`] that the caller implements (the engine runs them
//! in a real container whose root is the step's container layer).
//!
//! Reproducible by default: image and history times are `SOURCE_DATE_EPOCH` (or 0), file
//! times in new layers are clamped to it, layer entries are written in path order without
//! user names, so the same inputs give the same image ID on any machine.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use longshore_graph::{ApplyOptions, Digest, Store, WhiteoutMode, apply_layer};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::context::{Context, context_rel, element_match, has_glob, resolve_in_root};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{self, Attrs, Src};
use crate::instructions::{CommandForm, CopySpec, Health, Instruction, Kind};
use crate::parser::chomp_heredoc_content;
use crate::plan::{Plan, Source, Stage};
use crate::shell::Lex;

mod copy;
mod run;
mod step;

/// What a [`StepRunner`] is asked to run: one RUN step's process.
pub struct RunStep<'a> {
    /// The intermediate container's ID (also its libgraph container layer).
    pub container_id: &'a str,
    /// The container's root filesystem, mounted.
    pub rootfs: &'a Path,
    /// The command line (shell form already wrapped in the SHELL, `/bin/sh -c` by default).
    pub args: Vec<String>,
    /// `KEY=value` environment: the image's ENV plus the build args in scope.
    pub env: Vec<String>,
    /// Working directory inside the container (exists).
    pub workdir: String,
    /// `USER` (`""` for root; `name`, `uid`, `name:group`, `uid:gid`).
    pub user: String,
    /// `RUN --network` (`default`, `none`, `host`), `None` for the default.
    pub network: Option<String>,
    /// `RUN --mount`s to make inside the container (their targets exist); the runner must
    /// unmount them before it returns.
    pub mounts: Vec<RunMount>,
    /// Where the process's stdout and stderr go.
    pub output: &'a mut (dyn Write + Send),
}

/// What a `RUN --mount` mount is, for the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMountKind {
    /// A bind mount of `source` (also cache mounts: a host directory kept between builds).
    Bind,
    /// An empty tmpfs.
    Tmpfs,
}

/// One `RUN --mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMount {
    /// Bind or tmpfs.
    pub kind: RunMountKind,
    /// The host path to bind (`None` for tmpfs).
    pub source: Option<PathBuf>,
    /// Absolute path in the container.
    pub target: String,
    /// Mount it read-only.
    pub readonly: bool,
}

/// Runs RUN steps. The engine implements it with a real container; tests may chroot.
pub trait StepRunner: Send + Sync {
    /// Runs the step's process to its end and returns its exit code (0 is success). An
    /// `Err` is a failure to run it at all.
    fn run(&self, step: RunStep<'_>) -> std::result::Result<i32, String>;

    /// Downloads an `ADD <url>` source. The default fetches plain `http://` URLs with
    /// libbuild's small client; the engine can override it for `https://`.
    fn fetch(&self, url: &str) -> std::result::Result<crate::fetch::Fetched, String> {
        crate::fetch::http_get(url)
    }

    /// The paths the runner mounts over a step's root filesystem (`/proc`, `/dev`,
    /// `/etc/resolv.conf`...): the stubs it makes in the step's layer to mount them on
    /// are left out of the layer, with the directories made only to hold them, as
    /// BuildKit removes its mount stubs. The default: none.
    fn mount_points(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Options of a build (`docker build` flags).
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The Dockerfile's text.
    pub dockerfile: String,
    /// Its name, for errors (`Dockerfile`).
    pub dockerfile_name: String,
    /// `--build-arg`.
    pub build_args: BTreeMap<String, String>,
    /// `--target`.
    pub target: Option<String>,
    /// `-t` (several).
    pub tags: Vec<String>,
    /// `--label`.
    pub labels: BTreeMap<String, String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--cache-from`: when given, cached steps are only taken from these images' chains.
    pub cache_from: Vec<String>,
    /// `-q`: print only the image ID.
    pub quiet: bool,
    /// Terminal mode: the same lines, with emphasis and colours (for a tty); plain when
    /// false.
    pub terminal: bool,
    /// `--rm` (default true): remove intermediate containers after a successful step.
    pub rm: bool,
    /// `--force-rm`: remove them after a failed step too. A failed step's container is also
    /// removed when `rm` is set, so a failed build leaves no container.
    pub force_rm: bool,
    /// The time written into the image (seconds since the epoch) and the clamp for file
    /// times; `None` reads `SOURCE_DATE_EPOCH`, else 0.
    pub source_date_epoch: Option<u64>,
    /// Where cache entries live; `None` is `<store root>/build-cache`.
    pub cache_dir: Option<PathBuf>,
    /// `--secret id=...,src=...`: files `RUN --mount=type=secret,id=...` shows read-only
    /// (at `/run/secrets/<id>` by default) without putting them in the image or the cache key.
    pub secrets: BTreeMap<String, PathBuf>,
    /// `--pull`: for the caller, which pulls the images the build uses
    /// ([`crate::Plan::external_images`]) before it starts; libbuild itself never pulls.
    pub pull: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            dockerfile: String::new(),
            dockerfile_name: "Dockerfile".into(),
            build_args: BTreeMap::new(),
            target: None,
            tags: Vec::new(),
            labels: BTreeMap::new(),
            no_cache: false,
            cache_from: Vec::new(),
            quiet: false,
            terminal: false,
            rm: true,
            force_rm: false,
            source_date_epoch: None,
            cache_dir: None,
            secrets: BTreeMap::new(),
            pull: false,
        }
    }
}

/// What a build made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The image ID.
    pub id: Digest,
    /// Steps taken from the cache.
    pub cached_steps: usize,
    /// Steps executed.
    pub run_steps: usize,
    /// Build args given but never declared by an ARG.
    pub unused_build_args: Vec<String>,
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// RFC 3339 UTC for seconds since the epoch.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // civil from days (Howard Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn short(id: &Digest) -> String {
    id.hex().chars().take(12).collect()
}

fn random_hex(n: usize) -> Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; n];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .ctx("read", "/dev/urandom")?;
    Ok(hex::encode(buf))
}

/// The build state of one stage.
#[derive(Clone)]
struct State {
    image: Option<Digest>,
    top: Option<String>,
    config: Value,
    /// ARGs declared in this stage, with values.
    args: Vec<(String, Option<String>)>,
    /// A CMD was set in this stage.
    cmd_set: bool,
}

impl State {
    fn cfg(&self) -> &Value {
        &self.config["config"]
    }

    fn env(&self) -> Vec<(String, String)> {
        self.cfg()["Env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.as_str())
                    .filter_map(|e| {
                        e.split_once('=')
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Variables for expansion: ARGs in scope, overridden by ENV.
    fn expand_env(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .args
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        v.extend(self.env());
        v
    }

    fn set_env(&mut self, k: &str, v: &str) {
        let mut env: Vec<Value> = self.cfg()["Env"].as_array().cloned().unwrap_or_default();
        let prefix = format!("{k}=");
        let entry = json!(format!("{k}={v}"));
        match env
            .iter()
            .position(|e| e.as_str().is_some_and(|s| s.starts_with(&prefix)))
        {
            Some(i) => env[i] = entry,
            None => env.push(entry),
        }
        self.config["config"]["Env"] = Value::Array(env);
    }

    fn workdir(&self) -> String {
        match self.cfg()["WorkingDir"].as_str() {
            Some(w) if !w.is_empty() => w.to_string(),
            _ => "/".into(),
        }
    }

    fn shell(&self) -> Vec<String> {
        self.cfg()["Shell"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .filter(|v: &Vec<String>| !v.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    /// The build args in scope with a value, sorted: part of the cache key and of RUN's
    /// environment.
    fn args_in_scope(&self) -> Vec<(String, String)> {
        let env: HashSet<String> = self.env().into_iter().map(|(k, _)| k).collect();
        let mut v: Vec<(String, String)> = self
            .args
            .iter()
            .filter(|(k, _)| !env.contains(k))
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        v.sort();
        v.dedup_by(|a, b| a.0 == b.0);
        v
    }
}

struct Shared<'a> {
    store: &'a Store,
    context: &'a Context,
    runner: &'a dyn StepRunner,
    opts: &'a BuildOptions,
    plan: &'a Plan,
    lex: Lex,
    epoch: u64,
    cache_dir: PathBuf,
    cache_from: Option<HashSet<Digest>>,
    out: Mutex<&'a mut (dyn Write + Send)>,
    /// Images this build created (removed if it fails).
    created: Mutex<Vec<Digest>>,
    /// Declared ARG names (for the unused build args warning).
    declared: Mutex<BTreeSet<String>>,
    counts: Mutex<(usize, usize)>,
    /// Keeps layers registered but not yet in an image from a concurrent `gc`.
    lease: longshore_graph::Lease,
    /// Digests of context files, kept between builds.
    memo: fsutil::Memo,
}

/// Builds `opts.dockerfile` with `context` into `store`, running RUN steps with `runner` and
/// writing progress to `out`. Returns the image (tagged with `opts.tags`).
///
/// On any error, the images this build created are removed again, no tag is set and no
/// intermediate container is left.
pub fn build(
    store: &Store,
    context: &Context,
    opts: &BuildOptions,
    runner: &dyn StepRunner,
    out: &mut (dyn Write + Send),
) -> Result<Built> {
    for t in &opts.tags {
        longshore_graph::Reference::parse_with_default_tag(t)
            .map_err(longshore_graph::Error::from)?;
    }
    let plan = Plan::from_dockerfile(
        &opts.dockerfile_name,
        &opts.dockerfile,
        &opts.build_args,
        opts.target.as_deref(),
    )?;
    let epoch = match opts.source_date_epoch {
        Some(e) => e,
        None => match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) if !v.is_empty() => v.trim().parse().map_err(|_| {
                Error::Invalid(format!(
                    "SOURCE_DATE_EPOCH={v:?} is not a number of seconds"
                ))
            })?,
            _ => 0,
        },
    };
    let cache_from = if opts.cache_from.is_empty() {
        None
    } else {
        let mut set = HashSet::new();
        for name in &opts.cache_from {
            let mut cur = Some(store.resolve(name)?);
            while let Some(id) = cur {
                cur = store.image(&id.to_string())?.parent;
                set.insert(id);
            }
        }
        Some(set)
    };
    let cache_dir = opts
        .cache_dir
        .clone()
        .unwrap_or_else(|| store.root().join("build-cache"));
    fs::create_dir_all(&cache_dir).ctx("create", &cache_dir)?;
    let memo = fsutil::Memo::load(&cache_dir.join("file-digests"));
    let shared = Shared {
        store,
        context,
        runner,
        opts,
        plan: &plan,
        lex: Lex::new(plan.escape),
        epoch,
        cache_dir,
        cache_from,
        out: Mutex::new(out),
        created: Mutex::new(Vec::new()),
        declared: Mutex::new(plan.global_args.iter().map(|(k, _)| k.clone()).collect()),
        counts: Mutex::new((0, 0)),
        lease: store.lease(),
        memo,
    };
    let r = shared.build_all();
    // a memo that cannot be written only costs the next build some reading
    let _ = shared.memo.save(&shared.cache_dir.join("file-digests"));
    match r {
        Ok(id) => {
            let (cached, run) = *shared.counts.lock().unwrap_or_else(|p| p.into_inner());
            let declared = shared
                .declared
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let unused: Vec<String> = opts
                .build_args
                .keys()
                .filter(|k| !declared.contains(*k))
                .cloned()
                .collect();
            if !unused.is_empty() {
                shared.say(&format!(
                    "[Warning] One or more build-args [{}] were not consumed\n",
                    unused.join(" ")
                ));
            }
            shared.say(&format!("Successfully built {}\n", short(&id)));
            for t in &opts.tags {
                shared.say(&format!("Successfully tagged {}\n", familiar(t)));
            }
            if opts.quiet {
                let mut out = shared.out.lock().unwrap_or_else(|p| p.into_inner());
                let _ = writeln!(out, "{id}");
            }
            Ok(Built {
                id,
                cached_steps: cached,
                run_steps: run,
                unused_build_args: unused,
            })
        }
        Err(e) => {
            let created =
                std::mem::take(&mut *shared.created.lock().unwrap_or_else(|p| p.into_inner()));
            for id in created.iter().rev() {
                let _ = store.remove_image(
                    &id.to_string(),
                    &longshore_graph::RemoveOptions::new().prune(false),
                );
            }
            Err(e)
        }
    }
}

fn familiar(t: &str) -> String {
    longshore_graph::Reference::parse_with_default_tag(t)
        .map(|r| r.familiar())
        .unwrap_or_else(|_| t.to_string())
}

/// Terminal mode: steps bold, results cyan, the end green.
fn style(s: &str) -> String {
    s.split_inclusive('\n')
        .map(|l| {
            let (body, nl) = match l.strip_suffix('\n') {
                Some(b) => (b, "\n"),
                None => (l, ""),
            };
            let code = if body.starts_with("Step ") {
                "1"
            } else if body.starts_with(" ---> ") {
                "36"
            } else if body.starts_with("Successfully") {
                "1;32"
            } else if body.starts_with("[Warning]") {
                "33"
            } else {
                return l.to_string();
            };
            format!("\x1b[{code}m{body}\x1b[0m{nl}")
        })
        .collect()
}

/// Writes a RUN step's output into the progress stream (nothing with `-q`).
struct Stream<'a, 'b> {
    shared: &'a Shared<'b>,
}

impl Write for Stream<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.shared.opts.quiet {
            let mut o = self.shared.out.lock().unwrap_or_else(|p| p.into_inner());
            if self.shared.opts.terminal {
                // the step's own output dimmed, apart from the build's lines
                o.write_all(b"\x1b[2m")?;
                o.write_all(buf)?;
                o.write_all(b"\x1b[0m")?;
            } else {
                o.write_all(buf)?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.shared
            .out
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .flush()
    }
}

/// Removes an intermediate container whatever happens.
struct ContainerGuard<'a> {
    store: &'a Store,
    id: String,
    mounted: bool,
    keep: bool,
}

impl<'a> ContainerGuard<'a> {
    /// Creates a container (ID `<prefix><random>`) on `image` and mounts it; the guard
    /// unmounts and removes it when dropped.
    fn mounted(store: &'a Store, prefix: &str, image: &Digest) -> Result<(Self, PathBuf)> {
        let id = format!("{prefix}{}", random_hex(6)?);
        store.create_container(&id, &image.to_string())?;
        let mut g = ContainerGuard {
            store,
            id: id.clone(),
            mounted: false,
            keep: false,
        };
        let root = store.mount_container(&id)?;
        g.mounted = true;
        Ok((g, root))
    }
}

/// Unmounts a step's container, retrying for up to a second: something outside the build
/// (a `find` or `du` walking /tmp) can hold the mount busy for a moment, and a container
/// left mounted could not be removed.
fn unmount_patiently(store: &Store, id: &str) -> Result<()> {
    let mut tries = 0;
    loop {
        match store.unmount_container(id) {
            Ok(()) => return Ok(()),
            Err(e) if tries >= 50 => return Err(e.into()),
            Err(_) => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

impl Drop for ContainerGuard<'_> {
    fn drop(&mut self) {
        if self.mounted {
            let _ = unmount_patiently(self.store, &self.id);
        }
        if !self.keep {
            let _ = self.store.remove_container(&self.id);
        }
    }
}

impl Shared<'_> {
    fn say(&self, s: &str) {
        if self.opts.quiet {
            return;
        }
        let text = if self.opts.terminal {
            style(s)
        } else {
            s.to_string()
        };
        let mut o = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let _ = o.write_all(text.as_bytes());
    }

    fn build_all(&self) -> Result<Digest> {
        let total: usize = self
            .plan
            .order
            .iter()
            .map(|&s| 1 + self.plan.stages[s].instructions.len())
            .sum();
        // step numbers: stages in order
        let mut first_step = BTreeMap::new();
        let mut n = 1;
        for &s in &self.plan.order {
            first_step.insert(s, n);
            n += 1 + self.plan.stages[s].instructions.len();
        }
        let results: Mutex<BTreeMap<usize, Digest>> = Mutex::new(BTreeMap::new());
        for wave in self.plan.waves() {
            let errs: Mutex<Vec<Error>> = Mutex::new(Vec::new());
            std::thread::scope(|scope| {
                for &s in &wave {
                    let results = &results;
                    let errs = &errs;
                    let first = first_step[&s];
                    let run = move || {
                        let done = results.lock().unwrap_or_else(|p| p.into_inner()).clone();
                        match self.build_stage(&self.plan.stages[s], first, total, &done) {
                            Ok(id) => {
                                results
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .insert(s, id);
                            }
                            Err(e) => errs.lock().unwrap_or_else(|p| p.into_inner()).push(e),
                        }
                    };
                    if wave.len() == 1 {
                        run();
                    } else {
                        scope.spawn(run);
                    }
                }
            });
            if let Some(e) = errs.into_inner().unwrap_or_default().into_iter().next() {
                return Err(e);
            }
        }
        let mut results = results.into_inner().unwrap_or_default();
        let mut id = results
            .remove(&self.plan.target)
            .ok_or_else(|| Error::Plan("the target stage produced no image".into()))?;
        if !self.opts.labels.is_empty() {
            let mut st = self.load_state(Some(&id), Vec::new())?;
            for (k, v) in &self.opts.labels {
                st.config["config"]["Labels"][k] = json!(v);
            }
            let text: Vec<String> = self
                .opts
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            id = self.commit(
                &mut st,
                &format!("/bin/sh -c #(nop)  LABEL {}", text.join(" ")),
                None,
            )?;
        }
        for t in &self.opts.tags {
            self.store.tag(&id.to_string(), t)?;
        }
        Ok(id)
    }

    fn expand(&self, st: &State, ins: &Instruction, word: &str) -> Result<String> {
        self.lex
            .process_word(word, &st.expand_env())
            .map_err(|source| Error::Expand {
                file: self.plan.file.clone(),
                line: ins.line,
                source,
            })
    }

    fn step_err(&self, ins: &Instruction, message: String) -> Error {
        Error::Parse {
            file: self.plan.file.clone(),
            line: ins.line,
            message,
        }
    }

    fn scratch_config(&self) -> Value {
        json!({
            "architecture": arch(),
            "os": "linux",
            "config": {"Env": [format!("PATH={DEFAULT_PATH}")]},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [],
        })
    }

    fn load_state(
        &self,
        image: Option<&Digest>,
        args: Vec<(String, Option<String>)>,
    ) -> Result<State> {
        let Some(id) = image else {
            return Ok(State {
                image: None,
                top: None,
                config: self.scratch_config(),
                args,
                cmd_set: false,
            });
        };
        let config: Value = serde_json::from_slice(&self.store.config(&id.to_string())?)
            .map_err(|e| Error::Invalid(format!("config of image {id}: {e}")))?;
        let img = self.store.image(&id.to_string())?;
        let top = match &img.chain_id {
            Some(c) => Some(
                self.store
                    .layer_by_chain(c)?
                    .ok_or_else(|| Error::Invalid(format!("image {id}: its top layer is missing")))?
                    .cache_id,
            ),
            None => None,
        };
        let mut st = State {
            image: Some(id.clone()),
            top,
            config,
            args,
            cmd_set: false,
        };
        if !st.config["config"].is_object() {
            st.config["config"] = json!({});
        }
        if !st.env().iter().any(|(k, _)| k == "PATH") {
            st.set_env("PATH", DEFAULT_PATH);
        }
        Ok(st)
    }

    fn build_stage(
        &self,
        stage: &Stage,
        first: usize,
        total: usize,
        done: &BTreeMap<usize, Digest>,
    ) -> Result<Digest> {
        self.say(&format!(
            "Step {first}/{total} : {}\n",
            stage.from.original.trim()
        ));
        let base = match &stage.base_source {
            Source::Scratch => None,
            Source::Stage(i) => Some(done.get(i).cloned().ok_or_else(|| {
                Error::Plan(format!(
                    "stage {} was not built",
                    self.plan.stages[*i].display_name()
                ))
            })?),
            Source::Image(r) => Some(self.store.resolve(r).map_err(|e| {
                self.step_err(
                    &stage.from,
                    format!("base image {r:?}: {e} (pull it first)"),
                )
            })?),
        };
        let mut st = self.load_state(base.as_ref(), Vec::new())?;
        match &st.image {
            Some(id) => self.say(&format!(" ---> {}\n", short(id))),
            None => self.say(" ---> scratch\n"),
        }
        // the base image's ONBUILD triggers run first
        let triggers: Vec<String> = st.cfg()["OnBuild"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if !triggers.is_empty() {
            self.say(&format!(
                "# Executing {} build trigger{}\n",
                triggers.len(),
                if triggers.len() == 1 { "" } else { "s" }
            ));
            st.config["config"]["OnBuild"] = Value::Null;
            for t in &triggers {
                let ast = crate::parser::parse("ONBUILD trigger", t)?;
                let ins = crate::instructions::parse_all("ONBUILD trigger", &ast)?;
                for i in ins {
                    self.step(&mut st, stage, None, &i, done)?;
                }
            }
        }
        for (idx, ins) in stage.instructions.iter().enumerate() {
            let n = first + 1 + idx;
            self.say(&format!("Step {n}/{total} : {}\n", ins.original.trim()));
            self.step(&mut st, stage, Some(idx), ins, done)?;
        }
        match st.image {
            Some(id) => Ok(id),
            // FROM scratch alone: an image with no layers
            None => self.commit(&mut st, "", None),
        }
    }

    fn cache_key(&self, st: &State, desc: &str, content: Option<&str>) -> String {
        let mut h = Sha256::new();
        h.update(b"longshore-build cache v1\n");
        // the epoch is written into every image and clamps file times
        h.update(format!("epoch {}\n", self.epoch).as_bytes());
        h.update(
            format!(
                "parent {}\n",
                st.image
                    .as_ref()
                    .map_or("scratch".into(), |d| d.to_string())
            )
            .as_bytes(),
        );
        h.update(format!("step {desc}\n").as_bytes());
        for (k, v) in st.args_in_scope() {
            h.update(format!("arg {k}={v}\n").as_bytes());
        }
        if let Some(c) = content {
            h.update(format!("content {c}\n").as_bytes());
        }
        hex::encode(h.finalize())
    }

    fn cache_lookup(&self, key: &str) -> Option<Digest> {
        if self.opts.no_cache {
            return None;
        }
        let text = fs::read_to_string(self.cache_dir.join(key)).ok()?;
        let id = Digest::parse(text.trim()).ok()?;
        // the image may have been removed since
        self.store.image(&id.to_string()).ok()?;
        if let Some(allowed) = &self.cache_from
            && !allowed.contains(&id)
        {
            return None;
        }
        Some(id)
    }

    fn cache_store(&self, key: &str, id: &Digest) -> Result<()> {
        let tmp = self.cache_dir.join(format!(".{key}.{}", random_hex(4)?));
        fs::write(&tmp, id.to_string()).ctx("write", &tmp)?;
        fs::rename(&tmp, self.cache_dir.join(key)).ctx("rename", &tmp)
    }

    /// Commits the state as a new image (with a layer when `layer` is given).
    fn commit(
        &self,
        st: &mut State,
        created_by: &str,
        layer: Option<longshore_graph::meta::LayerRow>,
    ) -> Result<Digest> {
        let created = rfc3339(self.epoch);
        st.config["created"] = json!(created);
        if !created_by.is_empty() {
            let mut h = json!({"created": created, "created_by": created_by});
            if layer.is_none() {
                h["empty_layer"] = json!(true);
            }
            let mut hist = st.config["history"].as_array().cloned().unwrap_or_default();
            hist.push(h);
            st.config["history"] = Value::Array(hist);
        }
        if let Some(l) = &layer {
            let mut ids = st.config["rootfs"]["diff_ids"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            ids.push(json!(l.diff_id.as_ref().map(|d| d.to_string())));
            st.config["rootfs"] = json!({"type": "layers", "diff_ids": ids});
            st.top = Some(l.cache_id.clone());
        }
        let bytes = serde_json::to_vec(&st.config)
            .map_err(|e| Error::Invalid(format!("image config: {e}")))?;
        let existed = {
            let d = Digest::sha256_of(&bytes);
            self.store.image(&d.to_string()).is_ok()
        };
        let id = self
            .store
            .create_image(&bytes, st.top.as_deref(), st.image.as_ref())?;
        if !existed {
            self.created
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(id.clone());
        }
        st.image = Some(id.clone());
        Ok(id)
    }

    /// Takes a cached result for `key`, or runs `exec` and caches what it made.
    fn cached_or(
        &self,
        st: &mut State,
        key: &str,
        exec: impl FnOnce(&mut State) -> Result<Digest>,
    ) -> Result<()> {
        if let Some(id) = self.cache_lookup(key) {
            let args = std::mem::take(&mut st.args);
            let cmd_set = st.cmd_set;
            *st = self.load_state(Some(&id), args)?;
            st.cmd_set = cmd_set;
            self.say(&format!(" ---> Using cache\n ---> {}\n", short(&id)));
            self.counts.lock().unwrap_or_else(|p| p.into_inner()).0 += 1;
            return Ok(());
        }
        let id = exec(st)?;
        self.cache_store(key, &id)?;
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).1 += 1;
        self.say(&format!(" ---> {}\n", short(&id)));
        Ok(())
    }

    /// A metadata-only step: change the config, commit without a layer.
    fn meta_step(
        &self,
        st: &mut State,
        desc: String,
        change: impl FnOnce(&mut State),
    ) -> Result<()> {
        let key = self.cache_key(st, &desc, None);
        self.cached_or(st, &key, |st| {
            change(st);
            self.commit(st, &format!("/bin/sh -c #(nop)  {desc}"), None)
        })
    }

    fn ensure_image(&self, st: &mut State) -> Result<Digest> {
        match &st.image {
            Some(i) => Ok(i.clone()),
            None => self.commit(st, "", None),
        }
    }

    /// Runs `work` in a fresh container on the state's image, then commits the container's
    /// changes as a layer.
    fn container_step(
        &self,
        st: &mut State,
        created_by: &str,
        keep_empty: bool,
        work: impl FnOnce(&str, &Path) -> Result<()>,
    ) -> Result<Digest> {
        let image = self.ensure_image(st)?;
        let (mut guard, rootfs) = ContainerGuard::mounted(self.store, "longshore-build-", &image)?;
        let cid = guard.id.clone();
        let r = work(&cid, &rootfs);
        if let Err(e) = r {
            guard.keep = !(self.opts.rm || self.opts.force_rm);
            return Err(e);
        }
        let changes = self
            .store
            .container_changes_except(&cid, &self.runner.mount_points())?;
        if changes.is_empty() && !keep_empty {
            unmount_patiently(self.store, &cid)?;
            guard.mounted = false;
            guard.keep = !self.opts.rm;
            drop(guard);
            return self.commit(st, created_by, None);
        }
        let mut tar = Vec::new();
        fsutil::changes_tar(&rootfs, &changes, self.epoch, &mut tar)?;
        unmount_patiently(self.store, &cid)?;
        guard.mounted = false;
        let layer = self
            .store
            .register_layer(st.top.as_deref(), Cursor::new(tar))?;
        if let Some(c) = &layer.chain_id {
            self.lease.add_chain(c);
        }
        guard.keep = !self.opts.rm;
        drop(guard);
        self.commit(st, created_by, Some(layer))
    }

    /// `COPY --link`: the copy is made into an empty directory, not onto the parent, and its
    /// layer is put on the parent as it is. A layer made for the same sources and
    /// destination is reused on any base (`link-<key>` in the cache names its blob).
    fn link_step(
        &self,
        st: &mut State,
        created_by: &str,
        link_key: &str,
        work: impl FnOnce(&str, &Path) -> Result<()>,
    ) -> Result<Digest> {
        let entry = self.cache_dir.join(format!("link-{link_key}"));
        let blob = fs::read_to_string(&entry)
            .ok()
            .and_then(|t| Digest::parse(t.trim()).ok())
            .filter(|b| !self.opts.no_cache && self.store.content().exists(b));
        if let Some(b) = &blob {
            self.lease.add_blob(b);
        }
        let layer = match blob {
            Some(b) => self.store.register_layer_blob(st.top.as_deref(), &b)?,
            None => {
                let tmp = tempfile::Builder::new()
                    .prefix("longshore-build-link-")
                    .tempdir()
                    .ctx("create", std::env::temp_dir())?;
                work("", tmp.path())?;
                let changes = fsutil::all_as_added(tmp.path())?;
                let mut tar = Vec::new();
                fsutil::changes_tar(tmp.path(), &changes, self.epoch, &mut tar)?;
                let layer = self
                    .store
                    .register_layer(st.top.as_deref(), Cursor::new(tar))?;
                if let Some(b) = &layer.blob_digest {
                    let t = self
                        .cache_dir
                        .join(format!(".link-{link_key}.{}", random_hex(4)?));
                    fs::write(&t, b.to_string()).ctx("write", &t)?;
                    fs::rename(&t, &entry).ctx("rename", &t)?;
                }
                layer
            }
        };
        if let Some(c) = &layer.chain_id {
            self.lease.add_chain(c);
        }
        self.commit(st, created_by, Some(layer))
    }

    fn total(&self) -> usize {
        self.plan
            .order
            .iter()
            .map(|&s| 1 + self.plan.stages[s].instructions.len())
            .sum()
    }

    fn step_no(&self, stage: &Stage, idx: Option<usize>) -> usize {
        let mut n = 1;
        for &s in &self.plan.order {
            if s == stage.index {
                return n + 1 + idx.unwrap_or(0);
            }
            n += 1 + self.plan.stages[s].instructions.len();
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_ports() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(step::normalize_port("80").unwrap(), "80/tcp");
        assert_eq!(step::normalize_port("53/UDP").unwrap(), "53/udp");
        assert!(step::normalize_port("0").is_err() && step::normalize_port("80/xyz").is_err());
    }
}
