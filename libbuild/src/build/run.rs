//! RUN: the command line, `--mount`s (bind, cache, tmpfs, secret) and the step in a
//! container.

use super::*;

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

impl Shared<'_> {
    /// A RUN step: built from the instruction, looked up in the cache, run by the runner.
    pub(super) fn run_step(
        &self,
        st: &mut State,
        stage: &Stage,
        idx: Option<usize>,
        ins: &Instruction,
        done: &BTreeMap<usize, Digest>,
    ) -> Result<()> {
        let Kind::Run {
            cmd,
            heredocs,
            mounts,
            network,
            security,
        } = &ins.kind
        else {
            return Err(self.step_err(ins, "not a RUN instruction".into()));
        };
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
                    return Err(self.step_err(
                        ins,
                        format!(
                            "secret {} is required but was not given (--secret id={},src=...)",
                            m.id.as_deref().unwrap_or(""),
                            m.id.as_deref().unwrap_or("")
                        ),
                    ));
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
                    let t = resolve_in_root(rootfs, &m.target, true).ctx("resolve", &m.target)?;
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
        let (g, root) = ContainerGuard::mounted(self.store, "longshore-build-src-", &image)?;
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
}
