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

/// A parsed `--mount=type=...,target=...` of RUN.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct MountSpec {
    kind: String,
    target: String,
    source: Option<String>,
    from: Option<String>,
    readonly: Option<bool>,
    id: Option<String>,
    required: bool,
}

fn parse_mount(spec: &str) -> std::result::Result<MountSpec, String> {
    let mut m = MountSpec {
        kind: "bind".into(),
        ..MountSpec::default()
    };
    for field in spec.split(',') {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim().to_string())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let val = || {
            v.clone()
                .ok_or_else(|| format!("--mount: {k} needs a value"))
        };
        match k.as_str() {
            "type" => m.kind = val()?.to_ascii_lowercase(),
            "target" | "dst" | "destination" => m.target = val()?,
            "source" | "src" => m.source = Some(val()?),
            "from" => m.from = Some(val()?),
            "id" => m.id = Some(val()?),
            "ro" | "readonly" => m.readonly = Some(v.as_deref().is_none_or(|v| v == "true")),
            "rw" | "readwrite" => m.readonly = Some(v.as_deref().is_some_and(|v| v == "false")),
            "required" => m.required = v.as_deref().is_none_or(|v| v == "true"),
            "sharing" | "mode" | "uid" | "gid" | "size" => {}
            other => return Err(format!("--mount: unknown option {other:?}")),
        }
    }
    if !matches!(m.kind.as_str(), "bind" | "cache" | "tmpfs" | "secret") {
        return Err(format!(
            "--mount type={} is not supported by longshore-build (bind, cache, tmpfs and secret are)",
            m.kind
        ));
    }
    if m.kind == "secret" {
        let id =
            m.id.clone()
                .or_else(|| m.target.rsplit('/').next().map(str::to_string))
                .filter(|i| !i.is_empty())
                .ok_or("--mount type=secret needs an id or a target")?;
        if m.target.is_empty() {
            m.target = format!("/run/secrets/{id}");
        }
        m.id = Some(id);
    }
    if m.target.is_empty() {
        return Err("--mount needs a target".into());
    }
    Ok(m)
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
        longshore_graph::Reference::parse_with_default_tag(t)?;
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
                let _ = store.remove_image(&id.to_string(), false, true);
                let _ = fs::remove_file(shared.cache_dir.join("by-image").join(id.hex()));
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

/// What keeps a `RUN --mount` source alive during the step.
enum MountHolder<'a> {
    Container { _guard: ContainerGuard<'a> },
    Dir { _dir: tempfile::TempDir },
}

/// Removes the (empty) directories a step created as mount points, deepest first.
struct RemoveDirs(Vec<PathBuf>);

impl Drop for RemoveDirs {
    fn drop(&mut self) {
        for d in self.0.iter().rev() {
            match fs::symlink_metadata(d) {
                Ok(m) if m.is_dir() => {
                    let _ = fs::remove_dir(d);
                }
                Ok(m) if m.len() == 0 => {
                    let _ = fs::remove_file(d);
                }
                _ => {}
            }
        }
    }
}

/// Removes an intermediate container whatever happens.
struct ContainerGuard<'a> {
    store: &'a Store,
    id: String,
    mounted: bool,
    keep: bool,
}

impl Drop for ContainerGuard<'_> {
    fn drop(&mut self) {
        if self.mounted {
            let _ = self.store.unmount_container(&self.id);
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
        let cid = format!("longshore-build-{}", random_hex(6)?);
        self.store.create_container(&cid, &image.to_string())?;
        let mut guard = ContainerGuard {
            store: self.store,
            id: cid.clone(),
            mounted: false,
            keep: false,
        };
        let rootfs = self.store.mount_container(&cid)?;
        guard.mounted = true;
        let r = work(&cid, &rootfs);
        if let Err(e) = r {
            guard.keep = !(self.opts.rm || self.opts.force_rm);
            return Err(e);
        }
        let changes = self.store.container_changes(&cid)?;
        if changes.is_empty() && !keep_empty {
            self.store.unmount_container(&cid)?;
            guard.mounted = false;
            guard.keep = !self.opts.rm;
            drop(guard);
            return self.commit(st, created_by, None);
        }
        let mut tar = Vec::new();
        fsutil::changes_tar(&rootfs, &changes, self.epoch, &mut tar)?;
        self.store.unmount_container(&cid)?;
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

    fn step(
        &self,
        st: &mut State,
        stage: &Stage,
        idx: Option<usize>,
        ins: &Instruction,
        done: &BTreeMap<usize, Digest>,
    ) -> Result<()> {
        match &ins.kind {
            Kind::From { .. } => Err(self.step_err(ins, "FROM inside a stage".into())),
            Kind::Env(pairs) => {
                // every pair expands against the environment before the instruction
                // (`ENV abc=bye def=$abc` gives def the old abc), as in Docker
                let mut vals = Vec::new();
                for (k, v) in pairs {
                    let k = self.expand(st, ins, k)?;
                    let v = self.expand(st, ins, v)?;
                    if k.is_empty() {
                        return Err(self.step_err(ins, "ENV names can not be blank".into()));
                    }
                    vals.push((k, v));
                }
                let text: Vec<String> = vals.iter().map(|(k, v)| format!("{k}={v}")).collect();
                self.meta_step(st, format!("ENV {}", text.join(" ")), |st| {
                    for (k, v) in &vals {
                        st.set_env(k, v);
                    }
                })
            }
            Kind::Label(pairs) => {
                let mut vals = Vec::new();
                for (k, v) in pairs {
                    vals.push((self.expand(st, ins, k)?, self.expand(st, ins, v)?));
                }
                let text: Vec<String> = vals.iter().map(|(k, v)| format!("{k}={v}")).collect();
                self.meta_step(st, format!("LABEL {}", text.join(" ")), |st| {
                    if !st.config["config"]["Labels"].is_object() {
                        st.config["config"]["Labels"] = json!({});
                    }
                    for (k, v) in &vals {
                        st.config["config"]["Labels"][k] = json!(v);
                    }
                })
            }
            Kind::Maintainer(m) => {
                let m = m.clone();
                self.meta_step(st, format!("MAINTAINER {m}"), |st| {
                    st.config["author"] = json!(m);
                })
            }
            Kind::Cmd(c) | Kind::Entrypoint(c) => {
                let is_cmd = matches!(ins.kind, Kind::Cmd(_));
                let argv = match c {
                    CommandForm::Exec(a) => a.clone(),
                    CommandForm::Shell(s) => {
                        let mut v = st.shell();
                        v.push(s.clone());
                        v
                    }
                };
                let shown = serde_json::to_string(&argv).unwrap_or_default();
                let word = if is_cmd { "CMD" } else { "ENTRYPOINT" };
                if is_cmd {
                    st.cmd_set = true;
                }
                // ENTRYPOINT resets a CMD inherited from the base, not one this stage set
                let reset_cmd = !is_cmd && !st.cmd_set;
                self.meta_step(st, format!("{word} {shown}"), |st| {
                    if is_cmd {
                        st.config["config"]["Cmd"] = json!(argv);
                    } else {
                        st.config["config"]["Entrypoint"] = json!(argv);
                        if reset_cmd {
                            st.config["config"]["Cmd"] = Value::Null;
                        }
                    }
                })
            }
            Kind::Expose(ports) => {
                let mut list = Vec::new();
                for p in ports {
                    let p = self.expand(st, ins, p)?;
                    for one in p.split_whitespace() {
                        list.push(normalize_port(one).map_err(|m| self.step_err(ins, m))?);
                    }
                }
                list.sort();
                list.dedup();
                self.meta_step(st, format!("EXPOSE {}", list.join(" ")), |st| {
                    if !st.config["config"]["ExposedPorts"].is_object() {
                        st.config["config"]["ExposedPorts"] = json!({});
                    }
                    for p in &list {
                        st.config["config"]["ExposedPorts"][p] = json!({});
                    }
                })
            }
            Kind::Volume(vols) => {
                let mut list = Vec::new();
                for v in vols {
                    let v = self.expand(st, ins, v)?;
                    if v.trim().is_empty() {
                        return Err(self
                            .step_err(ins, "VOLUME specified can not be an empty string".into()));
                    }
                    list.push(v);
                }
                self.meta_step(st, format!("VOLUME [{}]", list.join(" ")), |st| {
                    if !st.config["config"]["Volumes"].is_object() {
                        st.config["config"]["Volumes"] = json!({});
                    }
                    for v in &list {
                        st.config["config"]["Volumes"][v] = json!({});
                    }
                })
            }
            Kind::User(u) => {
                let u = self.expand(st, ins, u)?;
                self.meta_step(st, format!("USER {u}"), |st| {
                    st.config["config"]["User"] = json!(u);
                })
            }
            Kind::Workdir(w) => {
                let w = self.expand(st, ins, w)?;
                let path = if w.starts_with('/') {
                    crate::ignore::clean(&w)
                } else {
                    crate::ignore::clean(&format!("{}/{w}", st.workdir()))
                };
                // the directory is made now (as BuildKit does), in a layer only when it was
                // missing
                let desc = format!("WORKDIR {path}");
                let key = self.cache_key(st, &desc, None);
                self.cached_or(st, &key, |st| {
                    st.config["config"]["WorkingDir"] = json!(path);
                    self.container_step(
                        st,
                        &format!("/bin/sh -c #(nop) {desc}"),
                        false,
                        |_, rootfs| {
                            fsutil::mkdir_in_root(rootfs, &path, Attrs::default()).map(|_| ())
                        },
                    )
                })
            }
            Kind::Stopsignal(s) => {
                let s = self.expand(st, ins, s)?;
                self.meta_step(st, format!("STOPSIGNAL {s}"), |st| {
                    st.config["config"]["StopSignal"] = json!(s);
                })
            }
            Kind::Shell(v) => {
                let v = v.clone();
                let shown = serde_json::to_string(&v).unwrap_or_default();
                self.meta_step(st, format!("SHELL {shown}"), |st| {
                    st.config["config"]["Shell"] = json!(v);
                })
            }
            Kind::Onbuild(t) => {
                let t = t.clone();
                self.meta_step(st, format!("ONBUILD {t}"), |st| {
                    let mut v = st.config["config"]["OnBuild"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    v.push(json!(t));
                    st.config["config"]["OnBuild"] = Value::Array(v);
                })
            }
            Kind::Healthcheck(h) => {
                let (value, shown) = match h {
                    Health::None => (json!({"Test": ["NONE"]}), "NONE".to_string()),
                    Health::Cmd {
                        cmd,
                        interval,
                        timeout,
                        start_period,
                        start_interval,
                        retries,
                    } => {
                        let test: Vec<String> = match cmd {
                            CommandForm::Exec(a) => std::iter::once("CMD".to_string())
                                .chain(a.iter().cloned())
                                .collect(),
                            CommandForm::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
                        };
                        let mut v = json!({"Test": test});
                        let dur = |s: &Option<String>| -> Result<Option<u64>> {
                            s.as_ref()
                                .map(|d| {
                                    crate::instructions::parse_duration(d)
                                        .map(|d| d.as_nanos() as u64)
                                        .map_err(|m| self.step_err(ins, m))
                                })
                                .transpose()
                        };
                        for (k, d) in [
                            ("Interval", interval),
                            ("Timeout", timeout),
                            ("StartPeriod", start_period),
                            ("StartInterval", start_interval),
                        ] {
                            if let Some(ns) = dur(d)? {
                                v[k] = json!(ns);
                            }
                        }
                        if let Some(r) = retries {
                            v["Retries"] = json!(r);
                        }
                        let shown = serde_json::to_string(&v["Test"]).unwrap_or_default();
                        (v, shown)
                    }
                };
                self.meta_step(st, format!("HEALTHCHECK {shown}"), |st| {
                    st.config["config"]["Healthcheck"] = value;
                })
            }
            Kind::Arg(args) => {
                let mut vals = Vec::new();
                for (k, default) in args {
                    self.declared
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(k.clone());
                    let v = match (self.opts.build_args.get(k), default) {
                        (Some(b), _) => Some(b.clone()),
                        (None, Some(d)) => Some(self.expand(st, ins, d)?),
                        // an ARG without default takes the global value, or the
                        // automatic platform value
                        (None, None) => self
                            .plan
                            .global_args
                            .iter()
                            .rfind(|(g, _)| g == k)
                            .and_then(|(_, v)| v.clone())
                            .or_else(|| {
                                crate::plan::platform_args()
                                    .into_iter()
                                    .find(|(p, _)| p == k)
                                    .map(|(_, v)| v)
                            }),
                    };
                    vals.push((k.clone(), v));
                }
                // ARG changes nothing in the image; it only brings values into scope
                st.args.extend(vals);
                if let Some(id) = &st.image {
                    self.say(&format!(" ---> {}\n", short(id)));
                }
                Ok(())
            }
            Kind::Run {
                cmd,
                heredocs,
                mounts,
                network,
                security,
            } => {
                let specs: Vec<MountSpec> = mounts
                    .iter()
                    .map(|m| {
                        let m = self.expand(st, ins, m)?;
                        parse_mount(&m).map_err(|e| self.step_err(ins, e))
                    })
                    .collect::<Result<_>>()?;
                if security.as_deref().is_some_and(|s| s != "sandbox") {
                    return Err(self.step_err(ins, "RUN --security=insecure is not allowed".into()));
                }
                let argv = match cmd {
                    CommandForm::Exec(a) => a.clone(),
                    CommandForm::Shell(s) => {
                        let script = if heredocs.len() == 1
                            && crate::parser::parse_heredoc(s.trim())
                                .ok()
                                .flatten()
                                .is_some()
                        {
                            // `RUN <<EOF`: the body is the script
                            let h = &heredocs[0];
                            if h.chomp {
                                chomp_heredoc_content(&h.content)
                            } else {
                                h.content.clone()
                            }
                        } else if heredocs.is_empty() {
                            s.clone()
                        } else {
                            let mut full = s.clone();
                            for h in heredocs {
                                full.push('\n');
                                full.push_str(&h.content);
                                full.push_str(&h.name);
                            }
                            full
                        };
                        let mut v = st.shell();
                        v.push(script);
                        v
                    }
                };
                let args = st.args_in_scope();
                let mut desc = String::new();
                if !args.is_empty() {
                    desc.push_str(&format!("|{}", args.len()));
                    for (k, v) in &args {
                        desc.push_str(&format!(" {k}={v}"));
                    }
                    desc.push(' ');
                }
                desc.push_str(&argv.join(" "));
                // the mounts' sources (bind mounts: their content is part of the key; cache
                // mounts and tmpfs are not, by design)
                let mut holders = Vec::new();
                let mut run_mounts = Vec::new();
                let mut mount_key = Sha256::new();
                for m in &specs {
                    if m.kind == "secret"
                        && !m
                            .id
                            .as_ref()
                            .is_some_and(|i| self.opts.secrets.contains_key(i))
                    {
                        if m.required {
                            return Err(self.step_err(ins, format!("secret {} is required but was not given (--secret id={},src=...)", m.id.as_deref().unwrap_or(""), m.id.as_deref().unwrap_or(""))));
                        }
                        continue;
                    }
                    let target = if m.target.starts_with('/') {
                        crate::ignore::clean(&m.target)
                    } else {
                        crate::ignore::clean(&format!("{}/{}", st.workdir(), m.target))
                    };
                    mount_key.update(format!("{m:?}\n").as_bytes());
                    let (source, readonly) = match m.kind.as_str() {
                        "tmpfs" => (None, false),
                        // a secret's content is never in the key nor in the image
                        "secret" => (
                            m.id.as_ref()
                                .and_then(|i| self.opts.secrets.get(i))
                                .cloned(),
                            true,
                        ),
                        "cache" => {
                            let id = m.id.clone().unwrap_or_else(|| target.clone());
                            let dir = self
                                .cache_dir
                                .join("mounts")
                                .join(hex::encode(Sha256::digest(id.as_bytes())));
                            fs::create_dir_all(&dir).ctx("create cache mount", &dir)?;
                            (Some(dir), m.readonly.unwrap_or(false))
                        }
                        _ => {
                            let (path, tmp) =
                                self.bind_source(ins, m, done, &mut holders, &mut mount_key)?;
                            if let Some(t) = tmp {
                                holders.push(MountHolder::Dir { _dir: t });
                            }
                            (Some(path), m.readonly.unwrap_or(true))
                        }
                    };
                    run_mounts.push(RunMount {
                        kind: if m.kind == "tmpfs" {
                            RunMountKind::Tmpfs
                        } else {
                            RunMountKind::Bind
                        },
                        source,
                        target,
                        readonly,
                    });
                }
                let mount_digest = hex::encode(mount_key.finalize());
                let key = self.cache_key(
                    st,
                    &format!("RUN {desc} network={network:?} mounts={mount_digest}"),
                    None,
                );
                let step_no = self.step_no(stage, idx);
                let total = self.total();
                self.cached_or(st, &key, |st| {
                    let mut env: Vec<String> = st
                        .env()
                        .into_iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    env.extend(args.iter().map(|(k, v)| format!("{k}={v}")));
                    let workdir = st.workdir();
                    let user = st.cfg()["User"].as_str().unwrap_or("").to_string();
                    self.container_step(st, &desc, true, |cid, rootfs| {
                        fsutil::mkdir_in_root(rootfs, &workdir, Attrs::default())?;
                        // mount points made for the step are removed again before the diff
                        let mut made = Vec::new();
                        for m in &run_mounts {
                            let file = m.source.as_ref().is_some_and(|s| !s.is_dir());
                            if !file {
                                made.extend(fsutil::mkdir_in_root_tracked(rootfs, &m.target)?);
                                continue;
                            }
                            // a file is bound onto a file
                            let parent = m.target.rsplit_once('/').map_or("/", |(p, _)| p);
                            made.extend(fsutil::mkdir_in_root_tracked(rootfs, parent)?);
                            let t = resolve_in_root(rootfs, &m.target, true)
                                .ctx("resolve", &m.target)?;
                            if fs::symlink_metadata(&t).is_err() {
                                fs::File::create(&t).ctx("create mount point", &t)?;
                                made.push(t);
                            }
                        }
                        let _cleanup = RemoveDirs(made);
                        self.say(&format!(
                            " ---> Running in {}\n",
                            &cid["longshore-build-".len()..]
                        ));
                        // the step's output goes to the progress stream as it comes
                        let mut stream = Stream { shared: self };
                        let code = self.runner.run(RunStep {
                            container_id: cid,
                            rootfs,
                            args: argv.clone(),
                            env,
                            workdir: workdir.clone(),
                            user,
                            network: network.clone(),
                            mounts: run_mounts.clone(),
                            output: &mut stream,
                        });
                        if self.opts.rm {
                            self.say(&format!(
                                "Removing intermediate container {}\n",
                                &cid["longshore-build-".len()..]
                            ));
                        }
                        match code {
                            Ok(0) => Ok(()),
                            Ok(code) => Err(Error::StepFailed {
                                step: step_no,
                                total,
                                instruction: ins.original.trim().to_string(),
                                code,
                            }),
                            Err(message) => Err(Error::Runner {
                                step: step_no,
                                total,
                                instruction: ins.original.trim().to_string(),
                                message,
                            }),
                        }
                    })
                })
            }
            Kind::Copy(spec) | Kind::Add(spec) => {
                let is_add = matches!(ins.kind, Kind::Add(_));
                let from = idx.and_then(|i| stage.copy_from.get(&i)).cloned();
                self.copy_step(st, ins, spec, is_add, from, done)
            }
        }
    }

    /// The host directory a `--mount=type=bind` shows: a path in the context (a filtered
    /// copy when .dockerignore applies or the mount is writable, so neither ignored files
    /// nor the user's context are exposed), or in another stage's or an image's filesystem.
    fn bind_source<'s>(
        &'s self,
        ins: &Instruction,
        m: &MountSpec,
        done: &BTreeMap<usize, Digest>,
        holders: &mut Vec<MountHolder<'s>>,
        key: &mut Sha256,
    ) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
        let rel = context_rel(m.source.as_deref().unwrap_or("."))
            .map_err(|e| self.step_err(ins, format!("--mount: {e}")))?;
        let Some(from) = &m.from else {
            let found =
                self.find_sources(self.context.root(), &rel, Some(self.context.ignore()))?;
            let Some(src) = found.into_iter().next() else {
                return Err(self.step_err(ins, format!("--mount: source {rel:?} not found in build context or excluded by .dockerignore")));
            };
            fsutil::hash_source(key, &src, Some(self.context.ignore()), &self.memo)?;
            let writable = m.readonly == Some(false);
            if !writable && self.context.ignore().is_empty() {
                return Ok((src.path, None));
            }
            let tmp = tempfile::Builder::new()
                .prefix("longshore-build-mount-")
                .tempdir()
                .ctx("create", std::env::temp_dir())?;
            let dest = tmp.path().join("m");
            fsutil::copy_entry(
                tmp.path(),
                &src,
                &dest,
                Some(self.context.ignore()),
                Attrs::default(),
                false,
            )?;
            return Ok((dest, Some(tmp)));
        };
        let image = match self.plan.stages.iter().find(|s| {
            s.name.as_deref() == Some(from.to_ascii_lowercase().as_str()) || s.index.to_string() == *from
        }) {
            Some(s) => done.get(&s.index).cloned().ok_or_else(|| {
                self.step_err(ins, format!("--mount from={from}: the stage was not built before this one"))
            })?,
            None => self.store.resolve(from).map_err(|_| {
                self.step_err(ins, format!("--mount from={from}: there is no stage named {from:?} and no image {from:?} in the store"))
            })?,
        };
        key.update(format!("from {image}\n").as_bytes());
        let cid = format!("longshore-build-src-{}", random_hex(6)?);
        self.store.create_container(&cid, &image.to_string())?;
        let mut g = ContainerGuard {
            store: self.store,
            id: cid.clone(),
            mounted: false,
            keep: false,
        };
        let root = self.store.mount_container(&cid)?;
        g.mounted = true;
        holders.push(MountHolder::Container { _guard: g });
        let path = resolve_in_root(&root, &rel, true).ctx("resolve", &rel)?;
        if fs::symlink_metadata(&path).is_err() {
            return Err(self.step_err(
                ins,
                format!("--mount from={from}: {rel:?} does not exist there"),
            ));
        }
        Ok((path, None))
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

    fn copy_step(
        &self,
        st: &mut State,
        ins: &Instruction,
        spec: &CopySpec,
        is_add: bool,
        from: Option<Source>,
        done: &BTreeMap<usize, Digest>,
    ) -> Result<()> {
        let word = if is_add { "ADD" } else { "COPY" };
        // where the sources come from: the context, another stage or an image
        let (src_image, mut holder): (Option<Digest>, Option<ContainerGuard>) = match &from {
            None => (None, None),
            Some(Source::Stage(i)) => (done.get(i).cloned(), None),
            Some(Source::Image(r)) => (
                Some(self.store.resolve(r).map_err(|_| {
                    self.step_err(ins, format!("{word} --from={r}: there is no stage named {r:?} and no image {r:?} in the store"))
                })?),
                None,
            ),
            Some(Source::Scratch) => (None, None),
        };
        let (src_root, ignore): (PathBuf, Option<&crate::ignore::Ignore>) = match &src_image {
            Some(img) => {
                let cid = format!("longshore-build-src-{}", random_hex(6)?);
                self.store.create_container(&cid, &img.to_string())?;
                let mut g = ContainerGuard {
                    store: self.store,
                    id: cid.clone(),
                    mounted: false,
                    keep: false,
                };
                let root = self.store.mount_container(&cid)?;
                g.mounted = true;
                holder = Some(g);
                (root, None)
            }
            None => (
                self.context.root().to_path_buf(),
                Some(self.context.ignore()),
            ),
        };
        let env = st.expand_env();
        let expand = |w: &str| -> Result<String> {
            self.lex
                .process_word(w, &env)
                .map_err(|source| Error::Expand {
                    file: self.plan.file.clone(),
                    line: ins.line,
                    source,
                })
        };
        let dest_raw = expand(&spec.dest)?;
        let dest_is_dir_syntax =
            dest_raw.ends_with('/') || dest_raw == "." || dest_raw.ends_with("/.");
        let dest = crate::ignore::clean(&if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            format!("{}/{}", st.workdir().trim_end_matches('/'), dest_raw)
        });
        let dest = if dest_is_dir_syntax && dest != "/" {
            format!("{dest}/")
        } else {
            dest
        };
        // resolve sources
        let mut srcs: Vec<Src> = Vec::new();
        // heredocs and downloads: (name, content, mode, mtime)
        let mut heredoc_files: Vec<(String, Vec<u8>, u32, Option<u64>)> = Vec::new();
        for s in &spec.sources {
            if let Some(h) = spec.heredocs.iter().find(|h| {
                crate::parser::parse_heredoc(s)
                    .ok()
                    .flatten()
                    .is_some_and(|p| p.name == h.name)
            }) {
                let body = if h.chomp {
                    chomp_heredoc_content(&h.content)
                } else {
                    h.content.clone()
                };
                let body = if h.expand {
                    self.lex.process_word(&body, &env).unwrap_or(body)
                } else {
                    body
                };
                heredoc_files.push((h.name.clone(), body.into_bytes(), 0o644, None));
                continue;
            }
            let s = expand(s)?;
            if s.contains("://") || s.starts_with("git@") {
                if !is_add {
                    return Err(self.step_err(
                        ins,
                        format!("COPY {s}: source can't be a URL for COPY (use ADD)"),
                    ));
                }
                if !(s.starts_with("http://") || s.starts_with("https://")) {
                    return Err(self.step_err(
                        ins,
                        format!("ADD {s}: git sources are not supported by longshore-build yet"),
                    ));
                }
                let f = self
                    .runner
                    .fetch(&s)
                    .map_err(|m| self.step_err(ins, format!("ADD failed: {m}")))?;
                if let Some(want) = &spec.checksum {
                    let got = format!("sha256:{}", hex::encode(Sha256::digest(&f.data)));
                    if !want.eq_ignore_ascii_case(&got) {
                        return Err(self.step_err(ins, format!("ADD {s}: digest mismatch: the download is {got}, --checksum wants {want}")));
                    }
                }
                let name = crate::fetch::url_file_name(&s).unwrap_or_default();
                if name.is_empty() && (dest_is_dir_syntax || spec.sources.len() > 1) {
                    return Err(self.step_err(ins, format!("ADD {s}: cannot determine a file name from the URL; give a file path as destination")));
                }
                // Docker: downloads get mode 0600 and Last-Modified as their time
                heredoc_files.push((name, f.data, 0o600, f.last_modified));
                continue;
            }
            if spec.checksum.is_some() {
                return Err(self.step_err(
                    ins,
                    "checksum can't be specified for non-HTTP(S) sources".into(),
                ));
            }
            let rel =
                context_rel(&s).map_err(|e| self.step_err(ins, format!("{word} failed: {e}")))?;
            let found = self.find_sources(&src_root, &rel, ignore)?;
            if found.is_empty() {
                let what = if has_glob(&rel) {
                    "no source files were specified".to_string()
                } else {
                    format!(
                        "file not found in build context or excluded by .dockerignore: stat {s}: file does not exist"
                    )
                };
                return Err(self.step_err(ins, format!("{word} failed: {what}")));
            }
            srcs.extend(found);
        }
        // --exclude: patterns relative to each source (a file source by its name); they
        // join the .dockerignore rules for this copy
        let filter: Option<crate::ignore::Ignore> = if spec.exclude.is_empty() {
            None
        } else {
            let pats: Vec<String> = spec
                .exclude
                .iter()
                .map(|p| expand(p))
                .collect::<Result<_>>()?;
            let mut ig = ignore.cloned().unwrap_or_default();
            let top = crate::ignore::Ignore::parse(&pats.join("\n"))?;
            srcs.retain(|s| s.path.is_dir() || !top.excludes(&s.base));
            for s in &srcs {
                if s.path.is_dir() {
                    for p in &pats {
                        ig.push(&if s.rel.is_empty() {
                            p.clone()
                        } else {
                            format!("{}/{p}", s.rel)
                        })?;
                    }
                }
            }
            if srcs.is_empty() && heredoc_files.is_empty() {
                return Err(self.step_err(
                    ins,
                    format!("{word} failed: every source is excluded by --exclude"),
                ));
            }
            Some(ig)
        };
        let ignore = filter.as_ref().or(ignore);
        // --parents: each source keeps its path (relative to the context or stage root)
        if spec.parents {
            for s in &mut srcs {
                s.base = s.rel.clone();
            }
        }
        let multi = spec.parents
            || srcs.len() + heredoc_files.len() > 1
            || spec.sources.iter().any(|s| has_glob(s));
        if srcs.len() + heredoc_files.len() > 1 && !dest_is_dir_syntax {
            return Err(self.step_err(ins, format!("When using {word} with more than one source file, the destination must be a directory and end with a /")));
        }
        // the cache key: the instruction, and every source's content, mode and name
        let mut h = Sha256::new();
        for s in &srcs {
            fsutil::hash_source(&mut h, s, ignore, &self.memo)?;
        }
        for (n, b, mode, _) in &heredoc_files {
            h.update(format!("extra {n} {mode:o} {}\n", b.len()).as_bytes());
            h.update(b);
        }
        let content = hex::encode(h.finalize());
        let kind = if srcs.len() == 1 && heredoc_files.is_empty() {
            if srcs[0].path.is_dir() { "dir" } else { "file" }
        } else {
            "multi"
        };
        let mut flags = String::new();
        if let Some(c) = &spec.chown {
            flags.push_str(&format!("--chown={} ", expand(c)?));
        }
        if let Some(c) = &spec.chmod {
            flags.push_str(&format!("--chmod={c} "));
        }
        if spec.link {
            flags.push_str("--link ");
        }
        if spec.parents {
            flags.push_str("--parents ");
        }
        for x in &spec.exclude {
            flags.push_str(&format!("--exclude={} ", expand(x)?));
        }
        let desc = format!("{word} {flags}{kind}:{content} in {dest}");
        let key = self.cache_key(st, &format!("{desc} from={src_image:?}"), Some(&content));
        let chown = spec.chown.as_deref().map(expand).transpose()?;
        let chmod = spec
            .chmod
            .as_deref()
            .and_then(|m| u32::from_str_radix(m, 8).ok());
        let unpack = is_add && spec.unpack != Some(false);
        let link_key = {
            let mut h = Sha256::new();
            h.update(
                format!(
                    "link v1 epoch {} {desc} from={src_image:?}\n{content}",
                    self.epoch
                )
                .as_bytes(),
            );
            hex::encode(h.finalize())
        };
        let r = self.cached_or(st, &key, |st| {
            let created_by = format!("/bin/sh -c #(nop) {desc} ");
            let work = |_cid: &str, rootfs: &Path| -> Result<()> {
                let (uid, gid) = match &chown {
                    Some(c) => fsutil::resolve_owner(rootfs, c)?,
                    None => (0, 0),
                };
                let attrs = Attrs { uid, gid, chmod };
                let into_dir = dest_is_dir_syntax
                    || multi
                    || resolve_in_root(rootfs, &dest, true).is_ok_and(|p| p.is_dir());
                if into_dir {
                    let d = fsutil::mkdir_in_root(rootfs, &dest, attrs)?;
                    for s in &srcs {
                        if s.path.is_dir() {
                            let d = if spec.parents && !s.base.is_empty() {
                                fsutil::mkdir_in_root(
                                    rootfs,
                                    &format!("{}/{}", dest.trim_end_matches('/'), s.base),
                                    attrs,
                                )?
                            } else {
                                d.clone()
                            };
                            fsutil::copy_entry(rootfs, s, &d, ignore, attrs, true)?;
                        } else if unpack && fsutil::is_archive(&s.path) {
                            self.extract(&s.path, &d)?;
                        } else {
                            let inside = format!("{}/{}", dest.trim_end_matches('/'), s.base);
                            if let Some((parent, _)) = inside.rsplit_once('/') {
                                fsutil::mkdir_in_root(
                                    rootfs,
                                    parent,
                                    Attrs {
                                        chmod: None,
                                        ..attrs
                                    },
                                )?;
                            }
                            let t =
                                resolve_in_root(rootfs, &inside, false).ctx("resolve", &inside)?;
                            fsutil::copy_entry(rootfs, s, &t, ignore, attrs, false)?;
                        }
                    }
                    for (n, body, mode, mtime) in &heredoc_files {
                        let inside = format!("{}/{n}", dest.trim_end_matches('/'));
                        let t = resolve_in_root(rootfs, &inside, false).ctx("resolve", &inside)?;
                        write_file(&t, body, attrs, *mode, *mtime)?;
                    }
                } else {
                    let parent = match dest.rsplit_once('/') {
                        Some((p, _)) if !p.is_empty() => p.to_string(),
                        _ => "/".to_string(),
                    };
                    fsutil::mkdir_in_root(
                        rootfs,
                        &parent,
                        Attrs {
                            chmod: None,
                            ..attrs
                        },
                    )?;
                    let t = resolve_in_root(rootfs, &dest, false).ctx("resolve", &dest)?;
                    if let Some(s) = srcs.first() {
                        if s.path.is_dir() {
                            let d = fsutil::mkdir_in_root(rootfs, &dest, attrs)?;
                            fsutil::copy_entry(rootfs, s, &d, ignore, attrs, true)?;
                        } else if unpack && fsutil::is_archive(&s.path) {
                            let d = fsutil::mkdir_in_root(rootfs, &dest, attrs)?;
                            self.extract(&s.path, &d)?;
                        } else {
                            fsutil::copy_entry(rootfs, s, &t, ignore, attrs, false)?;
                        }
                    } else if let Some((_, body, mode, mtime)) = heredoc_files.first() {
                        write_file(&t, body, attrs, *mode, *mtime)?;
                    }
                }
                Ok(())
            };
            if spec.link {
                self.link_step(st, &created_by, &link_key, work)
            } else {
                self.container_step(st, &created_by, true, work)
            }
        });
        drop(holder.take());
        r
    }

    /// `ADD` of a local archive: extracted with libgraph's layer apply, which resolves every
    /// entry inside `dir`, so a hostile archive writes nothing outside it.
    fn extract(&self, archive: &Path, dir: &Path) -> Result<()> {
        let f = fs::File::open(archive).ctx("open", archive)?;
        let opts = ApplyOptions {
            whiteouts: WhiteoutMode::Delete,
            ..ApplyOptions::default()
        };
        apply_layer(f, dir, &opts).map_err(|e| {
            Error::Context(format!("ADD {}: cannot extract: {e}", archive.display()))
        })?;
        Ok(())
    }

    /// The sources a (possibly wildcard) path names under `root`, resolved inside it and
    /// filtered by `.dockerignore`.
    fn find_sources(
        &self,
        root: &Path,
        rel: &str,
        ignore: Option<&crate::ignore::Ignore>,
    ) -> Result<Vec<Src>> {
        let excluded = |r: &str| ignore.is_some_and(|i| !r.is_empty() && i.excludes(r));
        if !has_glob(rel) {
            if excluded(rel) && !ignore.is_some_and(|i| i.may_include_below(rel)) {
                return Ok(Vec::new());
            }
            let p = resolve_in_root(root, rel, true).ctx("resolve", rel)?;
            if fs::symlink_metadata(&p).is_err() {
                return Ok(Vec::new());
            }
            let base = rel.rsplit('/').next().unwrap_or(rel).to_string();
            return Ok(vec![Src {
                path: p,
                rel: rel.to_string(),
                base,
            }]);
        }
        // expand element by element
        let mut cur: Vec<String> = vec![String::new()];
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            let mut next = Vec::new();
            for c in &cur {
                if has_glob(part) {
                    let dir = resolve_in_root(root, c, true).ctx("resolve", c)?;
                    let Ok(rd) = fs::read_dir(&dir) else { continue };
                    let mut names: Vec<String> = rd
                        .filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect();
                    names.sort();
                    for n in names {
                        if element_match(part, &n) {
                            next.push(if c.is_empty() { n } else { format!("{c}/{n}") });
                        }
                    }
                } else {
                    next.push(if c.is_empty() {
                        part.to_string()
                    } else {
                        format!("{c}/{part}")
                    });
                }
            }
            cur = next;
        }
        let mut out = Vec::new();
        for r in cur {
            if excluded(&r) {
                continue;
            }
            let p = resolve_in_root(root, &r, true).ctx("resolve", &r)?;
            if fs::symlink_metadata(&p).is_ok() {
                let base = r.rsplit('/').next().unwrap_or(&r).to_string();
                out.push(Src {
                    path: p,
                    rel: r,
                    base,
                });
            }
        }
        Ok(out)
    }
}

fn write_file(
    path: &Path,
    data: &[u8],
    attrs: Attrs,
    default_mode: u32,
    mtime: Option<u64>,
) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = fs::symlink_metadata(path)
        && !m.is_dir()
    {
        fs::remove_file(path).ctx("replace", path)?;
    }
    fs::write(path, data).ctx("write", path)?;
    fs::set_permissions(
        path,
        fs::Permissions::from_mode(attrs.chmod.unwrap_or(default_mode)),
    )
    .ctx("chmod", path)?;
    if let Some(t) = mtime {
        fs::File::options()
            .write(true)
            .open(path)
            .and_then(|f| f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t)))
            .ctx("set the time of", path)?;
    }
    std::os::unix::fs::lchown(path, Some(attrs.uid), Some(attrs.gid)).ctx("chown", path)
}

/// `80` → `80/tcp`; checks the port and protocol.
fn normalize_port(p: &str) -> std::result::Result<String, String> {
    let (port, proto) = match p.split_once('/') {
        Some((a, b)) => (a, b.to_ascii_lowercase()),
        None => (p, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let ok = |s: &str| s.parse::<u16>().is_ok_and(|n| n > 0);
    let valid = match port.split_once('-') {
        Some((a, b)) => ok(a) && ok(b),
        None => ok(port),
    };
    if !valid {
        return Err(format!("invalid containerPort: {port}"));
    }
    Ok(format!("{port}/{proto}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_ports() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(normalize_port("80").unwrap(), "80/tcp");
        assert_eq!(normalize_port("53/UDP").unwrap(), "53/udp");
        assert!(normalize_port("0").is_err() && normalize_port("80/xyz").is_err());
    }
}
