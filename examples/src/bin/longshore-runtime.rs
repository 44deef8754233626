//! `longshore-runtime`: runc's command line over `longshore-container`.
//!
//! Same commands, flags, state JSON and exit codes as runc, so containerd's
//! `io.containerd.runc.v2` shim (with `BinaryName` pointed here, or `ctr run
//! --runc-binary`) or any tool that drives runc can drive it. What follows runc:
//!
//! * errors: a logrus-style line (`time=".." level=error msg=".."`, or a JSON object with
//!   `--log-format json`) to the `--log` file or stderr, plus the bare message on stderr
//!   when a log file takes the line; exit code 1, 255 for a failed `exec`;
//! * `state` prints runc's document (no `annotations` when empty, `owner` empty);
//! * foreground `run` and `exec` forward the signals they receive to the container's
//!   process and return its exit code (128+signal when killed); when the process has a
//!   terminal and no `--console-socket` is given they proxy a pty to their own terminal;
//! * `update` (flags or `--resources` JSON, as the shim passes), `features`, `ps` through
//!   ps(1), `events --stats` in runc's stats shape;
//! * `delete` removes the directory a killed `create` left without `state.json`;
//! * `kill` takes numbers, names and real-time signals (`37`, `RTMIN+3`).
//!
//! Not supported (clear errors): `--systemd-cgroup`, `--preserve-fds`, checkpoint and
//! restore.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use longshore_container::{Container, Error, Status, Stdio};
use nix::sys::signal::Signal;
use oci_spec::runtime::Spec;

#[derive(Parser, Debug)]
#[command(
    name = "longshore-runtime",
    version,
    about = "An OCI runtime with runc's command line"
)]
struct Cli {
    /// Root directory for container state.
    #[arg(long, global = true, default_value = "/run/longshore/runtime")]
    root: PathBuf,
    /// Write errors and debug output to this file instead of stderr.
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long = "log-format", global = true, default_value = "text")]
    log_format: String,
    /// Enable debug output.
    #[arg(long, global = true)]
    debug: bool,
    /// Use systemd for cgroups (not supported).
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Ignored (for runc compatibility).
    #[arg(long, global = true, hide = true)]
    criu: Option<String>,
    /// Ignored (for runc compatibility).
    #[arg(long, global = true, hide = true)]
    rootless: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Debug)]
struct CreateArgs {
    /// Container id.
    id: String,
    /// Path to the bundle directory.
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Unix socket that receives the pty master when process.terminal is set.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// File to write the init process's pid to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Do not use pivot_root (for a rootfs on ramfs).
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Accepted for runc compatibility (no session keyring is created).
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Pass this many extra descriptors (from 3 up) to the container: not supported.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
}

#[derive(clap::Args, Debug)]
struct UpdateArgs {
    /// Container id.
    id: String,
    /// OCI `linux.resources` JSON file ("-" for stdin), as containerd's shim passes.
    #[arg(short, long)]
    resources: Option<PathBuf>,
    /// Memory limit in bytes (k, m, g suffixes allowed).
    #[arg(short, long)]
    memory: Option<String>,
    /// Memory soft limit in bytes.
    #[arg(long = "memory-reservation")]
    memory_reservation: Option<String>,
    /// Memory plus swap limit in bytes ("-1" for unlimited).
    #[arg(long = "memory-swap")]
    memory_swap: Option<String>,
    /// CPU shares (relative weight).
    #[arg(long = "cpu-shares")]
    cpu_shares: Option<u64>,
    /// CPU CFS quota in microseconds.
    #[arg(long = "cpu-quota")]
    cpu_quota: Option<i64>,
    /// CPU CFS period in microseconds.
    #[arg(long = "cpu-period")]
    cpu_period: Option<u64>,
    /// CPUs to use (cpuset).
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    /// Memory nodes to use (cpuset).
    #[arg(long = "cpuset-mems")]
    cpuset_mems: Option<String>,
    /// Maximum number of pids (-1 for unlimited).
    #[arg(long = "pids-limit")]
    pids_limit: Option<i64>,
    /// Block IO weight (10-1000).
    #[arg(long = "blkio-weight")]
    blkio_weight: Option<u16>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a container (its process waits for `start`).
    Create(CreateArgs),
    /// Start a created container's process.
    Start {
        /// Container id.
        id: String,
    },
    /// Create and start a container, wait for it, delete it.
    Run {
        #[command(flatten)]
        args: CreateArgs,
        /// Detach: return once the process runs.
        #[arg(short, long)]
        detach: bool,
        /// Keep the container's state after it exits.
        #[arg(long)]
        keep: bool,
    },
    /// Print the container's state as JSON.
    State {
        /// Container id.
        id: String,
    },
    /// Send a signal (default SIGTERM) to the container's init process.
    Kill {
        /// Container id.
        id: String,
        /// Signal name or number.
        signal: Option<String>,
        /// Signal every process in the container.
        #[arg(short, long)]
        all: bool,
    },
    /// Delete a container's resources.
    Delete {
        /// Container id.
        id: String,
        /// Kill the container first if it is running.
        #[arg(short, long)]
        force: bool,
    },
    /// Run a new process in a running container.
    Exec {
        /// Container id.
        id: String,
        /// The process as OCI process JSON.
        #[arg(short, long)]
        process: Option<PathBuf>,
        /// Unix socket that receives the pty master.
        #[arg(long = "console-socket")]
        console_socket: Option<PathBuf>,
        /// Allocate a pseudo-TTY.
        #[arg(short, long)]
        tty: bool,
        /// Working directory.
        #[arg(long)]
        cwd: Option<PathBuf>,
        /// Environment variables (KEY=value).
        #[arg(short, long)]
        env: Vec<String>,
        /// User as uid[:gid].
        #[arg(short, long)]
        user: Option<String>,
        /// Additional gids.
        #[arg(short = 'g', long = "additional-gids")]
        additional_gids: Vec<u32>,
        /// Detach from the process.
        #[arg(short, long)]
        detach: bool,
        /// File to write the process's pid to.
        #[arg(long = "pid-file")]
        pid_file: Option<PathBuf>,
        /// Set no_new_privileges.
        #[arg(long = "no-new-privs")]
        no_new_privs: bool,
        /// The command and its arguments.
        #[arg(trailing_var_arg = true)]
        command: Vec<String>,
    },
    /// Freeze every process in the container.
    Pause {
        /// Container id.
        id: String,
    },
    /// Thaw a paused container.
    Resume {
        /// Container id.
        id: String,
    },
    /// List the processes in a container.
    Ps {
        /// Container id.
        id: String,
        /// table or json.
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Options for ps(1) (default -ef), as runc.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// List containers.
    List {
        /// table or json.
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Only ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Write a starting config.json in the bundle directory.
    Spec {
        /// Where to write config.json.
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
    /// Change a running container's cgroup limits.
    Update(UpdateArgs),
    /// Print what this runtime supports (the OCI runtime-spec features document).
    Features,
    /// Print the container's resource usage as JSON events.
    Events {
        /// Container id.
        id: String,
        /// Print stats once and exit.
        #[arg(long)]
        stats: bool,
        /// Interval between stats events.
        #[arg(long, default_value = "5s")]
        interval: String,
    },
}

fn main() -> ExitCode {
    // start clean: Rust ignores SIGPIPE, callers often ignore SIGINT, SIGQUIT or SIGHUP
    longshore_container::process::reset_signals();
    let cli = Cli::parse();
    let log = cli.log.clone();
    let json = cli.log_format == "json";
    // runc's prefixes and codes: `exec` fails with 255, `create`/`run` say which failed
    let (op, prefix, code) = match &cli.cmd {
        Cmd::Exec { .. } => ("exec", "exec failed: ", 255),
        Cmd::Create(_) => ("create", "longshore-runtime create failed: ", 1),
        Cmd::Run { .. } => ("run", "longshore-runtime run failed: ", 1),
        Cmd::Start { .. } => ("start", "", 1),
        Cmd::Kill { .. } => ("kill", "", 1),
        Cmd::Pause { .. } => ("pause", "", 1),
        Cmd::Resume { .. } => ("resume", "", 1),
        Cmd::Delete { .. } => ("delete", "", 1),
        Cmd::Update(_) => ("update", "", 1),
        _ => ("", "", 1),
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            report(
                log.as_deref(),
                json,
                &format!("{prefix}{}", runc_message(op, &e)),
            );
            ExitCode::from(code)
        }
    }
}

/// runc's words for the lifecycle errors: callers match on them (containerd's shim
/// turns "container not running" from `kill` and "does not exist" into "not found").
/// Other errors keep the library's message.
fn runc_message(op: &str, e: &Error) -> String {
    match e {
        Error::NotFound(_) => "container does not exist".into(),
        Error::InvalidSpec(m) if op == "kill" && m.starts_with("unknown signal") => m.clone(),
        Error::Exists(_) => "container with given ID already exists".into(),
        Error::WrongState { id, status, .. } => match (op, status.as_str()) {
            ("start", "running") => "cannot start an already running container".into(),
            ("start", "stopped") => "cannot start a container that has stopped".into(),
            ("start", "paused") => "cannot start a container in the paused state".into(),
            ("kill" | "pause" | "update", _) => "container not running".into(),
            ("resume", _) => "container not paused".into(),
            ("exec", "stopped") => "cannot exec in a stopped container".into(),
            ("exec", "paused") => {
                "cannot exec in a paused container (use --ignore-paused to override)".into()
            }
            ("delete", _) => format!("cannot delete container {id} that is not stopped: {status}"),
            _ => e.to_string(),
        },
        _ => e.to_string(),
    }
}

/// Writes an error as runc does: a logrus-style line (`time=".." level=error msg=".."`,
/// or a JSON object with `--log-format json`) to the `--log` file or, without one, to
/// stderr; with a log file the bare message also goes to stderr (runc's `fatal`).
/// containerd's shim reads the last `"level":"error"` line of its `log.json`.
fn report(log: Option<&std::path::Path>, json: bool, msg: &str) {
    report_at(log, json, "error", msg)
}

/// Prints what the container was asked for and did not get, as runc's warnings: a
/// `level=warning` line on stderr (or in the --log file).
fn warn(log: Option<&std::path::Path>, json: bool, warnings: &[String]) {
    for w in warnings {
        report_at(log, json, "warning", w);
    }
}

fn report_at(log: Option<&std::path::Path>, json: bool, level: &str, msg: &str) {
    let time = longshore_container::state::now_rfc3339();
    let line = if json {
        serde_json::json!({"level": level, "msg": msg, "time": time}).to_string()
    } else {
        // logrus quotes the value as Go's %q would: a JSON string is close enough
        format!(
            "time={} level={level} msg={}",
            serde_json::Value::from(time),
            serde_json::Value::from(msg)
        )
    };
    let written = log.is_some_and(|path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| writeln!(f, "{line}"))
            .is_ok()
    });
    if written {
        eprintln!("{msg}");
    } else {
        eprintln!("{line}");
    }
}

/// A signal for `kill`: one nix names, or a real-time one (SIGRTMIN..=SIGRTMAX, e.g.
/// systemd's stop signal SIGRTMIN+3 = 37), which the library's `kill` cannot name.
#[derive(Debug, Clone, Copy)]
enum KillSignal {
    Std(Signal),
    Rt(i32),
}

/// Parses a signal as runc does: a number, or a name with or without `SIG` in any case;
/// also `RTMIN+n` / `RTMAX-n`.
fn parse_signal(s: &str) -> Result<KillSignal, Error> {
    let unknown = || Error::InvalidSpec(format!("unknown signal {s:?}"));
    let (rtmin, rtmax) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    let number = |n: i32| {
        if let Ok(sig) = Signal::try_from(n) {
            Ok(KillSignal::Std(sig))
        } else if (rtmin..=rtmax).contains(&n) {
            Ok(KillSignal::Rt(n))
        } else {
            Err(unknown())
        }
    };
    if let Ok(n) = s.parse::<i32>() {
        return number(n);
    }
    let up = s.to_ascii_uppercase();
    let bare = up.strip_prefix("SIG").unwrap_or(&up);
    let offset = |rest: &str, sign: char| -> Result<i32, Error> {
        if rest.is_empty() {
            return Ok(0);
        }
        rest.strip_prefix(sign)
            .and_then(|k| k.parse::<i32>().ok())
            .ok_or_else(unknown)
    };
    if let Some(rest) = bare.strip_prefix("RTMIN") {
        return number(rtmin + offset(rest, '+')?);
    }
    if let Some(rest) = bare.strip_prefix("RTMAX") {
        return number(rtmax - offset(rest, '-')?);
    }
    format!("SIG{bare}")
        .parse::<Signal>()
        .map(KillSignal::Std)
        .map_err(|_| unknown())
}

/// The container's processes cannot open `/proc/<pid>/exe` of the runtime while it is
/// non-dumpable, unless they hold CAP_SYS_PTRACE. When the process may have it, re-run
/// this program from a sealed memfd copy first (CVE-2019-5736), so that what they could
/// open is not the binary on the host. Costs a copy of the binary (~1 ms).
fn seal_if_ptrace(p: &oci_spec::runtime::Process) -> Result<(), Error> {
    let ptrace = p
        .capabilities()
        .as_ref()
        .and_then(|c| c.bounding().as_ref())
        .is_some_and(|b| b.contains(&oci_spec::runtime::Capability::SysPtrace));
    if ptrace {
        longshore_container::process::reexec_sealed().map_err(|e| Error::Io {
            what: "re-execute from a sealed copy of the runtime".into(),
            source: e,
        })?;
    }
    Ok(())
}

fn builder(
    root: &std::path::Path,
    a: &CreateArgs,
) -> Result<longshore_container::ContainerBuilder, Error> {
    if a.preserve_fds > 0 {
        return Err(Error::Unsupported("--preserve-fds".into()));
    }
    // the bundle's process caps decide whether we must run from a sealed copy
    if let Ok(spec) = longshore_container::spec::load(&a.bundle)
        && let Some(p) = spec.process()
    {
        seal_if_ptrace(p)?;
    }
    let mut b = Container::builder(&a.id)
        .bundle(&a.bundle)
        .root(root)
        .no_pivot(a.no_pivot);
    if let Some(s) = &a.console_socket {
        b = b.console_socket(s);
    }
    if let Some(p) = &a.pid_file {
        b = b.pid_file(p);
    }
    Ok(b)
}

fn run(cli: Cli) -> Result<u8, Error> {
    if cli.log_format != "text" && cli.log_format != "json" {
        return Err(Error::InvalidSpec(format!(
            "invalid log-format: {} (want text or json)",
            cli.log_format
        )));
    }
    if cli.systemd_cgroup {
        return Err(Error::Unsupported(
            "--systemd-cgroup: the systemd cgroup driver is not implemented; use cgroupfs paths"
                .into(),
        ));
    }
    let root = cli.root.as_path();
    let (log, json) = (cli.log.clone(), cli.log_format == "json");
    let warn = |w: &[String]| warn(log.as_deref(), json, w);
    match cli.cmd {
        Cmd::Create(a) => {
            warn(builder(root, &a)?.create()?.warnings());
        }
        Cmd::Start { id } => {
            // (poststart hooks that failed are warnings, as the spec says)
            let mut c = Container::load(root, &id)?;
            c.start()?;
            warn(c.warnings());
        }
        Cmd::Run { args, detach, keep } => {
            let mut b = builder(root, &args)?;
            if detach {
                let mut c = b.create()?;
                warn(c.warnings());
                let seen = c.warnings().len();
                c.start()?;
                warn(&c.warnings()[seen..]);
            } else {
                catch_signals();
                // like runc: a terminal without --console-socket is ours to proxy
                let console = if args.console_socket.is_none() && spec_wants_terminal(&args.bundle)
                {
                    let l = ConsoleListener::new()?;
                    b = b.console_socket(&l.path);
                    Some(l)
                } else {
                    None
                };
                let mut c = b.create_attached()?;
                warn(c.warnings());
                let seen = c.warnings().len();
                // blocked only now: the init, cloned already, must not inherit the mask
                // (signals until now were caught and noted); and before the proxy's
                // threads start, so that they inherit it
                let blocked = block_signals()?;
                let proxy = console
                    .map(|l| l.accept())
                    .transpose()?
                    .map(TtyProxy::start);
                let res = c
                    .start()
                    .and_then(|()| wait_forwarding(c.pid(), &blocked, proxy.as_ref()));
                blocked.restore();
                if !keep {
                    c.delete(true)?;
                }
                warn(&c.warnings()[seen..]);
                if let Some(p) = proxy {
                    p.finish();
                }
                return Ok(res? as u8);
            }
        }
        Cmd::State { id } => {
            let c = Container::load(root, &id)?;
            let mut st = c.oci_state();
            // runc's `state`: owner is left empty, annotations omitted when there are
            // none, and no newline after the document
            st["owner"] = "".into();
            if st["annotations"].as_object().is_some_and(|a| a.is_empty())
                && let Some(o) = st.as_object_mut()
            {
                o.remove("annotations");
            }
            print!("{}", serde_json::to_string_pretty(&st).expect("json"));
            let _ = std::io::stdout().flush();
        }
        Cmd::Update(u) => warn(&update(root, u)?),
        Cmd::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&features()).expect("json")
            );
        }
        Cmd::Kill { id, signal, all } => {
            // (runc looks the container up first, then the signal)
            let c = Container::load(root, &id)?;
            let sig = parse_signal(signal.as_deref().unwrap_or("SIGTERM"))?;
            match sig {
                KillSignal::Std(sig) => c.signal(sig as i32, all)?,
                // through the library's pidfd, as for the others: no pid-reuse race
                KillSignal::Rt(n) => c.signal(n, all)?,
            }
        }
        Cmd::Delete { id, force } => match Container::load(root, &id) {
            Ok(mut c) => {
                c.delete(force)?;
                warn(c.warnings());
            }
            Err(Error::NotFound(n)) => {
                // as runc: a create killed before it saved any state leaves a directory
                // without state.json that nothing else would remove
                if longshore_container::state::validate_id(&id).is_ok() {
                    let dir = root.join(&id);
                    if dir.is_dir() && !dir.join("state.json").exists() {
                        std::fs::remove_dir_all(&dir).map_err(|e| Error::Io {
                            what: format!("remove {}", dir.display()),
                            source: e,
                        })?;
                    }
                }
                if !force {
                    return Err(Error::NotFound(n));
                }
            }
            Err(e) => return Err(e),
        },
        Cmd::Exec {
            id,
            process,
            console_socket,
            tty,
            cwd,
            env,
            user,
            additional_gids,
            detach,
            pid_file,
            no_new_privs,
            command,
        } => {
            let c = Container::load(root, &id)?;
            let mut p = match &process {
                Some(path) => {
                    let text = std::fs::read(path).map_err(|e| Error::Io {
                        what: format!("read {}", path.display()),
                        source: e,
                    })?;
                    serde_json::from_slice(&text).map_err(|e| {
                        Error::InvalidSpec(format!("--process {}: {e}", path.display()))
                    })?
                }
                None => {
                    if command.is_empty() {
                        return Err(Error::InvalidSpec(
                            "exec needs a command or --process".into(),
                        ));
                    }
                    let mut p = c.state().process.clone().unwrap_or_default();
                    p.set_args(Some(command.clone()));
                    p.set_terminal(Some(tty));
                    p
                }
            };
            if process.is_none() {
                if let Some(cwd) = cwd {
                    p.set_cwd(cwd);
                }
                let mut e = p.env().clone().unwrap_or_default();
                e.extend(env);
                p.set_env(Some(e));
                if let Some(u) = user {
                    let (uid, gid) = u.split_once(':').unwrap_or((&u, "0"));
                    let bad = || Error::InvalidSpec(format!("--user {u:?}: want uid[:gid]"));
                    p.user_mut().set_uid(uid.parse().map_err(|_| bad())?);
                    p.user_mut().set_gid(gid.parse().map_err(|_| bad())?);
                }
                if !additional_gids.is_empty() {
                    p.user_mut().set_additional_gids(Some(additional_gids));
                }
                if no_new_privs {
                    p.set_no_new_privileges(Some(true));
                }
            }
            let console = if console_socket.is_none() && p.terminal().unwrap_or(false) {
                if detach {
                    return Err(Error::InvalidSpec(
                        "cannot allocate a tty for a detached exec without --console-socket".into(),
                    ));
                }
                Some(ConsoleListener::new()?)
            } else {
                None
            };
            let sock = console_socket
                .clone()
                .or_else(|| console.as_ref().map(|l| l.path.clone()));
            if !detach {
                catch_signals();
            }
            seal_if_ptrace(&p)?;
            // (foreground: waited for below with signal forwarding, by pid)
            let pid = c.exec(&p, Stdio::Inherit, sock.as_deref())?.pid();
            // (before any proxy thread starts, so that the threads inherit the mask)
            let blocked = if detach { None } else { Some(block_signals()?) };
            let proxy = console
                .map(|l| l.accept())
                .transpose()?
                .map(TtyProxy::start);
            if let Some(pf) = pid_file {
                longshore_container::write_pid_file(&pf, pid)?;
            }
            if let Some(blocked) = blocked {
                let code = wait_forwarding(pid, &blocked, proxy.as_ref());
                blocked.restore();
                if let Some(p) = proxy {
                    p.finish();
                }
                return Ok(code? as u8);
            }
        }
        Cmd::Pause { id } => Container::load(root, &id)?.pause()?,
        Cmd::Resume { id } => Container::load(root, &id)?.resume()?,
        Cmd::Ps {
            id,
            format,
            ps_args,
        } => {
            let c = Container::load(root, &id)?;
            let pids = c.pids()?;
            if format == "json" {
                println!("{}", serde_json::to_string(&pids).expect("json"));
            } else if format == "table" {
                print!("{}", ps_table(&pids, &ps_args)?);
            } else {
                return Err(Error::InvalidSpec(format!(
                    "invalid format option {format:?}: want table or json"
                )));
            }
        }
        Cmd::List { format, quiet } => {
            let mut rows = Vec::new();
            for id in Container::list(root)? {
                if let Ok(c) = Container::load(root, &id) {
                    let mut st = c.oci_state();
                    // runc omits empty annotations
                    if st["annotations"].as_object().is_some_and(|a| a.is_empty())
                        && let Some(o) = st.as_object_mut()
                    {
                        o.remove("annotations");
                    }
                    rows.push(st);
                }
            }
            if quiet {
                for r in &rows {
                    println!("{}", r["id"].as_str().unwrap_or_default());
                }
            } else if format == "json" {
                println!("{}", serde_json::to_string(&rows).expect("json"));
            } else {
                println!(
                    "{:<20} {:<8} {:<10} {:<40} {:<31} OWNER",
                    "ID", "PID", "STATUS", "BUNDLE", "CREATED"
                );
                for r in &rows {
                    println!(
                        "{:<20} {:<8} {:<10} {:<40} {:<31} {}",
                        r["id"].as_str().unwrap_or_default(),
                        r["pid"],
                        r["status"].as_str().unwrap_or_default(),
                        r["bundle"].as_str().unwrap_or_default(),
                        r["created"].as_str().unwrap_or_default(),
                        r["owner"].as_str().unwrap_or_default()
                    );
                }
            }
        }
        Cmd::Spec { bundle } => {
            let path = bundle.join("config.json");
            if path.exists() {
                return Err(Error::InvalidSpec(format!(
                    "File {} exists. Remove it first",
                    path.display()
                )));
            }
            let spec: Spec = longshore_container::spec::default_spec();
            let json = serde_json::to_string_pretty(&spec).expect("json");
            std::fs::write(&path, json).map_err(|e| Error::Io {
                what: format!("write {}", path.display()),
                source: e,
            })?;
        }
        Cmd::Events {
            id,
            stats,
            interval,
        } => {
            let c = Container::load(root, &id)?;
            let every = parse_interval(&interval)?;
            loop {
                if c.status() == Status::Stopped {
                    break;
                }
                let s = c.stats()?;
                println!(
                    "{}",
                    serde_json::json!({"type": "stats", "id": id, "data": runc_stats(&s)})
                );
                if stats {
                    break;
                }
                std::thread::sleep(every);
            }
        }
    }
    Ok(0)
}

/// Our cgroup statistics in the shape of runc's `events --stats` data (runc's
/// `types.Stats`): the fields we measure, under runc's names.
fn runc_stats(s: &longshore_container::cgroups::Stats) -> serde_json::Value {
    // what cgroup v1 reports for "no limit" with 4 KiB pages, as runc prints it
    const UNLIMITED: u64 = 9_223_372_036_854_771_712;
    serde_json::json!({
        "cpu": {
            "usage": {
                "total": s.cpu_usage_ns,
                "kernel": s.cpu_system_ns,
                "user": s.cpu_user_ns
            },
            "throttling": {}
        },
        "memory": {
            "usage": {
                "limit": s.memory_limit.unwrap_or(UNLIMITED),
                "usage": s.memory_usage,
                "max": s.memory_max_usage.unwrap_or(0),
                "failcnt": 0
            },
            "oom_kills": s.oom_kills
        },
        "pids": {
            "current": s.pids_current,
            "limit": s.pids_limit.unwrap_or(0)
        }
    })
}

/// runc's `ps` table: runs `ps` (default `-ef`) and keeps the header and the lines whose
/// PID column names a process of the container.
fn ps_table(pids: &[i32], args: &[String]) -> Result<String, Error> {
    let args: Vec<&str> = if args.is_empty() {
        vec!["-ef"]
    } else {
        args.iter().map(String::as_str).collect()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(|e| Error::Io {
            what: "run ps(1) (install procps)".into(),
            source: e,
        })?;
    if !out.status.success() {
        return Err(Error::InvalidSpec(format!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| Error::InvalidSpec("couldn't find PID field in ps output".into()))?;
    let mut table = format!("{header}\n");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            table.push_str(line);
            table.push('\n');
        }
    }
    Ok(table)
}

/// `update`: the `--resources` document (or an empty one) with the flags laid over it,
/// applied to the container's cgroups. Device rules are left alone, as runc does (the
/// shim passes the spec's whole resources, whose device list lacks the defaults).
/// Returns what the update asked for and did not get.
fn update(root: &std::path::Path, u: UpdateArgs) -> Result<Vec<String>, Error> {
    use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};
    let c = Container::load(root, &u.id)?;
    let status = c.status();
    if status == Status::Stopped {
        return Err(Error::WrongState {
            id: u.id.clone(),
            status: status.to_string(),
            wanted: "cannot update a stopped container",
        });
    }
    let mut res: LinuxResources = match &u.resources {
        None => LinuxResources::default(),
        Some(p) => {
            let text = if p.as_os_str() == "-" {
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut v).map(|_| v)
            } else {
                std::fs::read(p)
            }
            .map_err(|e| Error::Io {
                what: format!("read resources {}", p.display()),
                source: e,
            })?;
            serde_json::from_slice(&text)
                .map_err(|e| Error::InvalidSpec(format!("--resources {}: {e}", p.display())))?
        }
    };
    res.set_devices(None);
    let mut mem = (*res.memory()).unwrap_or_default();
    let mut mem_set = res.memory().is_some();
    for (flag, val, set) in [
        (
            "--memory",
            &u.memory,
            LinuxMemory::set_limit as fn(&mut LinuxMemory, Option<i64>) -> &mut LinuxMemory,
        ),
        (
            "--memory-reservation",
            &u.memory_reservation,
            LinuxMemory::set_reservation,
        ),
        ("--memory-swap", &u.memory_swap, LinuxMemory::set_swap),
    ] {
        if let Some(v) = val {
            set(&mut mem, Some(parse_bytes(flag, v)?));
            mem_set = true;
        }
    }
    if mem_set {
        res.set_memory(Some(mem));
    }
    let mut cpu = res.cpu().clone().unwrap_or_default();
    let cpu_set = res.cpu().is_some()
        || u.cpu_shares.is_some()
        || u.cpu_quota.is_some()
        || u.cpu_period.is_some()
        || u.cpuset_cpus.is_some()
        || u.cpuset_mems.is_some();
    let cpu: &mut LinuxCpu = &mut cpu;
    if u.cpu_shares.is_some() {
        cpu.set_shares(u.cpu_shares);
    }
    if u.cpu_quota.is_some() {
        cpu.set_quota(u.cpu_quota);
    }
    if u.cpu_period.is_some() {
        cpu.set_period(u.cpu_period);
    }
    if u.cpuset_cpus.is_some() {
        cpu.set_cpus(u.cpuset_cpus.clone());
    }
    if u.cpuset_mems.is_some() {
        cpu.set_mems(u.cpuset_mems.clone());
    }
    if cpu_set {
        res.set_cpu(Some(cpu.clone()));
    }
    if let Some(limit) = u.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(limit);
        res.set_pids(Some(p));
    }
    if let Some(w) = u.blkio_weight {
        let mut b = res.block_io().clone().unwrap_or_default();
        b.set_weight(Some(w));
        res.set_block_io(Some(b));
    }
    let st = c.state();
    let layout = st
        .cgroup_layout
        .ok_or_else(|| Error::Unsupported(format!("container {:?} has no cgroup", u.id)))?;
    let cg = longshore_container::cgroups::manager_from_state(layout, &st.cgroup_paths)?;
    cg.apply(&res)?;
    Ok(cg.warnings())
}

/// Parses a byte count with an optional k/m/g suffix (runc's `--memory 100m`).
fn parse_bytes(flag: &str, v: &str) -> Result<i64, Error> {
    let bad = || Error::InvalidSpec(format!("{flag} {v:?}: want bytes, e.g. 104857600 or 100m"));
    let t = v.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: i64 = num.parse().map_err(|_| bad())?;
    if n == -1 {
        return Ok(-1);
    }
    n.checked_mul(mult).filter(|&b| b >= 0).ok_or_else(bad)
}

/// Whether the bundle's process asks for a terminal (false when the spec is unreadable:
/// create reports that).
fn spec_wants_terminal(bundle: &std::path::Path) -> bool {
    longshore_container::spec::load(bundle)
        .ok()
        .and_then(|s| s.process().as_ref().and_then(|p| p.terminal()))
        .unwrap_or(false)
}

/// A private console socket for a foreground `run`/`exec` whose process has a terminal.
struct ConsoleListener {
    dir: PathBuf,
    path: PathBuf,
    listener: std::os::unix::net::UnixListener,
}

impl ConsoleListener {
    fn new() -> Result<ConsoleListener, Error> {
        use std::os::unix::fs::DirBuilderExt;
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("longshore-console-{}-{n}", std::process::id()));
        let io = |what: String| move |e| Error::Io { what, source: e };
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(io(format!("create {}", dir.display())))?;
        let path = dir.join("console.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path)
            .map_err(io(format!("listen on {}", path.display())))?;
        Ok(ConsoleListener {
            dir,
            path,
            listener,
        })
    }

    /// Takes the pty master the container's init sent (it did during create).
    fn accept(self) -> Result<std::fs::File, Error> {
        let (conn, _) = self.listener.accept().map_err(|e| Error::Io {
            what: "accept the console connection".into(),
            source: e,
        })?;
        let fd = longshore_container::receive_console(std::os::fd::AsFd::as_fd(&conn))?;
        Ok(std::fs::File::from(fd))
    }
}

impl Drop for ConsoleListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Copies our stdin to the container's terminal and the terminal to our stdout (runc's
/// tty proxy), with our terminal, if any, in raw mode meanwhile.
struct TtyProxy {
    master: std::sync::Arc<std::fs::File>,
    saved: Option<nix::sys::termios::Termios>,
    output: std::thread::JoinHandle<()>,
}

impl TtyProxy {
    fn start(master: std::fs::File) -> TtyProxy {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let master = std::sync::Arc::new(master);
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            cfmakeraw(&mut raw);
            let _ = tcsetattr(&stdin, SetArg::TCSANOW, &raw);
        }
        let proxy_in = master.clone();
        // (left blocked in read when we exit: the process ends it)
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut &*proxy_in);
        });
        let proxy_out = master.clone();
        let output = std::thread::spawn(move || {
            // ends with EIO once every holder of the terminal's other end is gone
            let mut out = std::io::stdout().lock();
            let _ = std::io::copy(&mut &*proxy_out, &mut out);
            let _ = out.flush();
        });
        let p = TtyProxy {
            master,
            saved,
            output,
        };
        p.resize();
        p
    }

    /// Gives the container's terminal our terminal's size.
    fn resize(&self) {
        use std::os::fd::AsRawFd;
        if let Some(ws) = winsize(std::io::stdin().as_raw_fd()) {
            set_winsize(self.master.as_raw_fd(), &ws);
        }
    }

    /// Waits for the last output and restores our terminal.
    fn finish(self) {
        let _ = self.output.join();
        if let Some(t) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                t,
            );
        }
    }
}

fn winsize(fd: std::os::fd::RawFd) -> Option<libc::winsize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the valid, exclusively borrowed `ws`;
    // a bad or non-terminal fd only makes it fail.
    let r = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0).then_some(ws)
}

fn set_winsize(fd: std::os::fd::RawFd, ws: &libc::winsize) {
    // SAFETY: TIOCSWINSZ reads one `winsize` from the valid reference `ws`.
    let _ = unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, ws as *const libc::winsize) };
}

/// Signals noted by [`note_signal`] between [`catch_signals`] and [`block_signals`]:
/// they came while the container was being set up and are forwarded once it runs.
static NOTED: [std::sync::atomic::AtomicBool; 65] =
    [const { std::sync::atomic::AtomicBool::new(false) }; 65];

extern "C" fn note_signal(sig: libc::c_int) {
    // async-signal-safe: one atomic store
    if let Some(flag) = usize::try_from(sig).ok().and_then(|i| NOTED.get(i)) {
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The signals a foreground `run`/`exec` passes on: all but the uncatchable ones, our
/// own synchronous faults, SIGCHLD (its child's exit), SIGWINCH (a resize) and SIGURG.
fn forwarded(sig: libc::c_int) -> bool {
    ![
        libc::SIGKILL,
        libc::SIGSTOP,
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGFPE,
        libc::SIGILL,
        libc::SIGTRAP,
        libc::SIGSYS,
        libc::SIGCHLD,
        libc::SIGWINCH,
        libc::SIGURG,
    ]
    .contains(&sig)
}

/// Notes forwardable signals instead of dying of them, from before the container's
/// process exists. Unlike a blocked mask, caught signals do not leak into it: the child
/// inherits the handler only until its `execve`, which resets it.
fn catch_signals() {
    for sig in 1..=libc::SIGRTMAX() {
        if !forwarded(sig) {
            continue;
        }
        // SAFETY: a zeroed sigaction is valid (empty mask, no flags); the handler only
        // stores to an atomic, which is async-signal-safe; failures (e.g. for the
        // signals glibc reserves) leave that signal's disposition as it was.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = note_signal as *const () as libc::sighandler_t;
            act.sa_flags = libc::SA_RESTART;
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
}

/// Signals blocked for [`wait_forwarding`], and the mask to restore afterwards.
struct Blocked {
    set: nix::sys::signal::SigSet,
    old: nix::sys::signal::SigSet,
}

impl Blocked {
    fn restore(&self) {
        let _ = nix::sys::signal::pthread_sigmask(
            nix::sys::signal::SigmaskHow::SIG_SETMASK,
            Some(&self.old),
            None,
        );
    }
}

/// Blocks every forwardable signal plus SIGCHLD and SIGWINCH, so that [`wait_forwarding`]
/// receives them with `sigwait`. Called once the container's process exists (a blocked
/// mask would be inherited by it), after [`catch_signals`] covered the time before.
fn block_signals() -> Result<Blocked, Error> {
    use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
    let mut set = SigSet::all();
    for s in [
        Signal::SIGKILL,
        Signal::SIGSTOP,
        Signal::SIGSEGV,
        Signal::SIGBUS,
        Signal::SIGFPE,
        Signal::SIGILL,
        Signal::SIGTRAP,
        Signal::SIGSYS,
    ] {
        set.remove(s);
    }
    let mut old = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old)).map_err(|e| Error::Sys {
        what: "block signals".into(),
        source: e,
    })?;
    Ok(Blocked { set, old })
}

/// Sends `sig` (any number, real-time ones included) to `pid`.
fn send(pid: i32, sig: libc::c_int) {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let _ = unsafe { libc::kill(pid, sig) };
}

/// Waits for our child `pid` (the container's init for `run`, the new process for
/// `exec`) and returns its exit code (128+signal when killed), forwarding to it every
/// signal the runtime receives meanwhile, and those noted before, as runc's foreground
/// `run` and `exec` do.
fn wait_forwarding(pid: i32, blocked: &Blocked, tty: Option<&TtyProxy>) -> Result<i32, Error> {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    let child = nix::unistd::Pid::from_raw(pid);
    for (sig, flag) in NOTED.iter().enumerate() {
        if flag.swap(false, std::sync::atomic::Ordering::SeqCst) {
            send(pid, sig as libc::c_int);
        }
    }
    loop {
        // check before every wait: a SIGCHLD that came before the block is lost
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                return Err(Error::Sys {
                    what: format!("wait for pid {pid}"),
                    source: e,
                });
            }
        }
        let mut sig: libc::c_int = 0;
        // SAFETY: `blocked.set` is an initialised sigset_t and `sig` a valid out-pointer;
        // sigwait(3) (unlike nix's wrapper) also returns real-time signal numbers.
        let r = unsafe { libc::sigwait(blocked.set.as_ref(), &mut sig) };
        if r != 0 {
            return Err(Error::Sys {
                what: "sigwait".into(),
                source: nix::errno::Errno::from_raw(r),
            });
        }
        if sig == libc::SIGWINCH {
            if let Some(t) = tty {
                t.resize();
            }
        } else if forwarded(sig) {
            send(pid, sig);
        }
    }
}

/// The OCI runtime-spec "features" document (`runc features`): what this runtime and
/// this host support.
fn features() -> serde_json::Value {
    let last = longshore_container::caps::last_cap();
    let caps: Vec<&str> = (0..=last)
        .map(longshore_container::caps::cap_name)
        .collect();
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.3.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer",
                  "poststart", "poststop"],
        "mountOptions": ["async", "atime", "bind", "defaults", "dev", "diratime", "dirsync",
            "exec", "mand", "noatime", "nodev", "nodiratime", "noexec", "nomand",
            "norelatime", "nostrictatime", "nosuid", "private", "rbind", "relatime",
            "remount", "ro", "rprivate", "rshared", "rslave", "runbindable", "rw", "shared",
            "slave", "strictatime", "suid", "sync", "unbindable"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL",
                    "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG",
                    "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE",
                    "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_X32",
                    "SCMP_ARCH_X86", "SCMP_ARCH_X86_64"]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false}
        },
        "annotations": {
            "org.opencontainers.runc.checkpoint.enabled": "false",
            "org.longshore.runtime.version": env!("CARGO_PKG_VERSION")
        }
    })
}

fn parse_interval(s: &str) -> Result<std::time::Duration, Error> {
    let bad = || Error::InvalidSpec(format!("--interval {s:?}: want e.g. 5s or 500ms"));
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: u64 = num.parse().map_err(|_| bad())?;
    Ok(match unit {
        "ms" => std::time::Duration::from_millis(n),
        "s" => std::time::Duration::from_secs(n),
        "m" => std::time::Duration::from_secs(n * 60),
        _ => return Err(bad()),
    })
}
