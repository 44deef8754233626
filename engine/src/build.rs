//! The `build` job: libbuild's builder with RUN steps in real containers.
//!
//! libbuild mounts each step's container layer and hands the runner its root filesystem;
//! [`ContainerRunner`] runs the step there through libcontainer, in process, with
//! Docker's defaults (its 14 capabilities, its seccomp profile, masked and read-only
//! paths), the step's user resolved through the image's `/etc/passwd`, `RUN --mount`s as
//! mounts of the container's own namespace, and its output streamed to the build's output.
//! A RUN step's network is a namespace of its own with loopback only (`--network none`)
//! unless the step asks for the host's (`RUN --network=host`).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use longshore_build::build::{RunMountKind, RunStep, StepRunner};
use serde_json::json;

use crate::containers::{resolve_user, write_atomic};
use crate::engine::Engine;
use crate::error::{Error, Result};

/// Options of [`Engine::build`]: libbuild's.
pub use longshore_build::BuildOptions;
/// What a build made.
pub use longshore_build::Built;
/// The build context (a directory or a tar).
pub use longshore_build::Context as BuildContext;
/// `build --platform`: only this builder's own platform (no emulation).
pub use longshore_build::plan::check_platform;

/// Runs RUN steps in containers of the engine's runtime root.
pub struct ContainerRunner {
    runtime_root: PathBuf,
    bundles: PathBuf,
    /// `build --network`: the RUN steps' network when they do not ask (`host`, or
    /// `none`/`default`: a namespace of their own with loopback only).
    network: Option<String>,
}

impl StepRunner for ContainerRunner {
    fn run(&self, step: RunStep<'_>) -> std::result::Result<i32, String> {
        self.run_step(step).map_err(|e| e.to_string())
    }

    fn mount_points(&self) -> Vec<String> {
        crate::containers::commit::mount_points()
    }

    /// `ADD <url>` over HTTP or HTTPS (rustls, the platform's roots: `SSL_CERT_FILE` /
    /// `SSL_CERT_DIR` when set), following up to 10 redirects across schemes.
    fn fetch(&self, url: &str) -> std::result::Result<longshore_build::fetch::Fetched, String> {
        let url = url.to_string();
        // a runtime of its own, on a thread of its own: the caller may be on one of the
        // daemon's blocking threads, where a runtime cannot be entered again
        std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("{url}: start the HTTP client: {e}"))?;
                rt.block_on(fetch_url(&url))
            })
            .join()
            .unwrap_or_else(|_| Err(format!("{url}: the download panicked")))
        })
    }
}

/// The most an `ADD <url>` downloads.
const MAX_DOWNLOAD: u64 = 1 << 30;

async fn fetch_url(url: &str) -> std::result::Result<longshore_build::fetch::Fetched, String> {
    let err = |e: &dyn std::fmt::Display| format!("{url}: {e}");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone())
        .map_err(|e| err(&format!("TLS roots: {e}")))?;
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(&e))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::limited(10))
        .user_agent("longshore-build")
        .connect_timeout(std::time::Duration::from_secs(30))
        .read_timeout(std::time::Duration::from_secs(60))
        .build()
        .map_err(|e| err(&e))?;
    let mut resp = client.get(url).send().await.map_err(|e| {
        // reqwest's Display hides the cause (a certificate error, a refused connection)
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        err(&msg)
    })?;
    let status = resp.status();
    if status != reqwest::StatusCode::OK {
        return Err(err(&format!("the server answered {}", status.as_u16())));
    }
    let last_modified = resp
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(longshore_build::fetch::parse_http_date);
    let final_url = resp.url().to_string();
    let mut data = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| err(&e))? {
        if data.len() as u64 + chunk.len() as u64 > MAX_DOWNLOAD {
            return Err(err(&format!("larger than {MAX_DOWNLOAD} bytes")));
        }
        data.extend_from_slice(&chunk);
    }
    Ok(longshore_build::fetch::Fetched {
        data,
        last_modified,
        final_url,
    })
}

impl ContainerRunner {
    fn run_step(&self, step: RunStep<'_>) -> Result<i32> {
        use longshore_container::{Container, Stdio};
        let (uid, gid, extra, home) = resolve_user(step.rootfs, &step.user)?;
        let mut env = step.env.clone();
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            env.push(format!(
                "HOME={}",
                if home.is_empty() { "/" } else { &home }
            ));
        }
        let caps = crate::containers::default_capabilities();
        let mut mounts = vec![
            json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
            json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
            json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
            json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]}),
            json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
        ];
        for m in &step.mounts {
            match (m.kind, &m.source) {
                (RunMountKind::Tmpfs, _) => mounts.push(json!({"destination": m.target, "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]})),
                (RunMountKind::Bind, Some(src)) => {
                    let mut o = vec!["rbind", "rprivate"];
                    if m.readonly {
                        o.push("ro");
                    }
                    mounts.push(json!({"destination": m.target, "type": "bind", "source": src, "options": o}));
                }
                (RunMountKind::Bind, None) => {
                    return Err(Error::InvalidArgument(format!("RUN --mount at {} has no source", m.target)));
                }
            }
        }
        let host_net = step.network.as_deref().or(self.network.as_deref()) == Some("host");
        let mut namespaces = vec![
            json!({"type": "pid"}),
            json!({"type": "ipc"}),
            json!({"type": "uts"}),
            json!({"type": "mount"}),
        ];
        if !host_net {
            namespaces.push(json!({"type": "network"}));
        }
        if host_net {
            mounts.push(json!({"destination": "/etc/resolv.conf", "type": "bind", "source": "/etc/resolv.conf", "options": ["rbind", "ro"]}));
        }
        let set: Vec<_> = longshore_container::caps::docker_default_capabilities()
            .into_iter()
            .collect();
        let spec = json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {"uid": uid, "gid": gid, "additionalGids": extra},
                "args": step.args,
                "env": env,
                "cwd": step.workdir,
                "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
                "noNewPrivileges": false,
            },
            "root": {"path": step.rootfs, "readonly": false},
            "hostname": if host_net { serde_json::Value::Null } else { step.container_id[..12.min(step.container_id.len())].into() },
            "mounts": mounts,
            "linux": {
                "namespaces": namespaces,
                "maskedPaths": crate::containers::MASKED_PATHS,
                "readonlyPaths": crate::containers::READONLY_PATHS,
                "cgroupsPath": format!("longshore/build-{}", step.container_id),
                "seccomp": longshore_container::seccomp::docker_default_profile(&set),
            },
        });
        let bundle = self.bundles.join(step.container_id);
        std::fs::create_dir_all(&bundle)
            .map_err(Error::io(format!("create {}", bundle.display())))?;
        let res = (|| {
            write_atomic(
                &bundle.join("config.json"),
                &serde_json::to_vec(&spec).expect("spec serializes"),
            )?;
            let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| Error::io("pipe")(e.into()))?;
            let mut out_r = std::fs::File::from(out_r);
            let null = std::fs::File::open("/dev/null").map_err(Error::io("open /dev/null"))?;
            let id = format!("build-{}", step.container_id);
            let created = Container::builder(&id)
                .bundle(&bundle)
                .root(&self.runtime_root)
                .stdio(Stdio::Fds {
                    stdin: null.into(),
                    stderr: out_w
                        .try_clone()
                        .map_err(Error::io("dup the output pipe"))?,
                    stdout: out_w,
                })
                .create_attached();
            let mut c = created.map_err(Error::runtime(format!("create the container of {id}")))?;
            let started = c.start().map_err(Error::runtime(format!("start {id}")));
            if let Err(e) = started {
                let _ = c.delete(true);
                return Err(e);
            }
            let mut buf = [0u8; 16 * 1024];
            loop {
                match out_r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let _ = step.output.write_all(&buf[..n]);
                    }
                }
            }
            let code = c.wait().map_err(Error::runtime(format!("wait for {id}")));
            let _ = c.delete(true);
            code
        })();
        let _ = std::fs::remove_dir_all(&bundle);
        match res {
            // a step whose command cannot run fails like any other, with Docker's code
            Err(Error::Exec { code, reason }) => {
                let _ = writeln!(step.output, "{reason}");
                Ok(code)
            }
            r => r,
        }
    }
}

/// What an engine build takes beside libbuild's options: the credentials its pulls may
/// use, by registry (Docker's `X-Registry-Config`, keyed as `config.json`'s `auths`:
/// `host:port`, `https://index.docker.io/v1/`, ...), and `--network`.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct BuildAuths {
    /// Registry → credentials.
    pub auths: BTreeMap<String, longshore_registry::Credentials>,
    /// `--network` of the RUN steps: `default` and `none` (a namespace of their own with
    /// loopback only, the builder's default here) or `host`.
    pub network: Option<String>,
}

impl BuildAuths {
    /// Checks `--network` (`default`, `none`, `host`), in Docker's words otherwise.
    pub fn with_network(mut self, network: Option<&str>) -> Result<Self> {
        match network.filter(|n| !n.is_empty()) {
            None => {}
            Some(n @ ("default" | "none" | "host")) => self.network = Some(n.to_string()),
            Some(n) => {
                return Err(Error::InvalidArgument(format!(
                    "network mode {n:?} not supported by the builder (default, none, host)"
                )));
            }
        }
        Ok(self)
    }

    /// The credentials for the registry of `image` (`None`: anonymous).
    pub fn for_image(&self, image: &str) -> Option<longshore_registry::Credentials> {
        let domain = longshore_registry::Reference::parse(image)
            .ok()?
            .domain()
            .to_string();
        let hub = |d: &str| matches!(d, "docker.io" | "index.docker.io" | "registry-1.docker.io");
        self.auths.iter().find_map(|(k, c)| {
            let host = k
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or_default();
            (host == domain || (hub(host) && hub(&domain))).then(|| c.clone())
        })
    }
}

impl Engine {
    /// Pulls the images a build uses (its stages' bases and `COPY --from` images) that are
    /// missing, or all of them with `--pull`, as Docker's builder does before it starts. A
    /// Dockerfile that does not parse pulls nothing (the build reports it).
    ///
    /// `auths` (a request's `X-Registry-Config`: registry → credentials) serve the pull of
    /// an image of that registry, for this build only.
    fn pull_for_build(
        &self,
        opts: &BuildOptions,
        auths: &BuildAuths,
        out: &mut (dyn Write + Send),
    ) -> Result<()> {
        let Ok(plan) = longshore_build::Plan::from_dockerfile(
            &opts.dockerfile_name,
            &opts.dockerfile,
            &opts.build_args,
            opts.target.as_deref(),
        ) else {
            return Ok(());
        };
        let store = self.store()?;
        for image in plan.external_images() {
            let present = store.image(&image).is_ok();
            if present && !opts.pull {
                continue;
            }
            if !opts.quiet {
                let _ = writeln!(out, "Pulling {image}");
            }
            // a runtime of its own on a thread of its own (see ContainerRunner::fetch)
            let report = std::thread::scope(|s| {
                s.spawn(|| {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(Error::io("start a runtime for the pull"))?;
                    let o = crate::pull::PullJobOptions {
                        credentials: auths.for_image(&image),
                        ..Default::default()
                    };
                    rt.block_on(self.pull(&image, &o))
                })
                .join()
                .unwrap_or_else(|_| Err(Error::Build(format!("pulling {image} panicked"))))
            })?;
            if !opts.quiet {
                let _ = writeln!(out, "{report}");
            }
        }
        Ok(())
    }
}

/// A failed build: the engine's error and the exit code Docker reports for it (a RUN
/// step's own non-zero code, else 1), as `docker build` exits with it.
#[derive(Debug)]
pub struct BuildFailure {
    /// What failed.
    pub error: Box<Error>,
    /// The code `docker build` exits with.
    pub code: i32,
}

impl Engine {
    /// `docker build`: builds `context` as `opts` say into the image store, RUN steps in
    /// containers, writing Docker's step lines to `out`.
    pub fn build(
        &self,
        context: &BuildContext,
        opts: &BuildOptions,
        out: &mut (dyn Write + Send),
    ) -> Result<Built> {
        self.build_with_code(context, opts, out)
            .map_err(|f| *f.error)
    }

    /// [`Engine::build`], with the exit code of a failed build (the API's `errorDetail`).
    pub fn build_with_code(
        &self,
        context: &BuildContext,
        opts: &BuildOptions,
        out: &mut (dyn Write + Send),
    ) -> std::result::Result<Built, BuildFailure> {
        self.build_with_auths(context, opts, &BuildAuths::default(), out)
    }

    /// [`Engine::build_with_code`] whose base images are pulled with `auths` (Docker's
    /// `X-Registry-Config`: the client's credentials per registry, for this build only;
    /// the engine keeps none of them).
    pub fn build_with_auths(
        &self,
        context: &BuildContext,
        opts: &BuildOptions,
        auths: &BuildAuths,
        out: &mut (dyn Write + Send),
    ) -> std::result::Result<Built, BuildFailure> {
        let runner = ContainerRunner {
            runtime_root: self.runtime_root(),
            bundles: self.root.join("build-bundles"),
            network: auths.network.clone(),
        };
        let store = self.store().map_err(|error| BuildFailure {
            error: Box::new(error),
            code: 1,
        })?;
        self.pull_for_build(opts, auths, out)
            .map_err(|error| BuildFailure {
                error: Box::new(error),
                code: 1,
            })?;
        let built = longshore_build::build(store, context, opts, &runner, out).map_err(|e| {
            let code = match &e {
                longshore_build::Error::StepFailed { code, .. } if *code != 0 => *code,
                _ => 1,
            };
            BuildFailure {
                error: Box::new(Error::Build(e.to_string())),
                code,
            }
        })?;
        self.event("image", "build", &built.id.to_string(), vec![]);
        Ok(built)
    }
}
