//! `longshore`: docker-style commands over `longshore-engine`, in process (no daemon), or,
//! with `-H`/`LONGSHORE_HOST`/`DOCKER_HOST`, against a daemon's Engine API
//! ([`client`], [`remote`]) with the same output.
//!
//! Exit codes as docker's: 125 when longshore fails, 126 when the container's command
//! cannot be invoked, 127 when it is not found, otherwise the container's own.

mod client;
mod format;
mod progress;
mod remote;
mod term;

use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use longshore_engine::{
    AttachStreams, CreateRequest, Engine, EngineOptions, Error, ListOptions, LogsOptions,
    RemoveImageOptions, RemoveOptions, StartOptions, StopOptions, WaitCondition,
};
use serde_json::{Value, json};

use crate::format::{Template, render_all, table};

#[derive(Parser, Debug)]
#[command(
    name = "longshore",
    about = "A self-sufficient runtime for containers",
    disable_version_flag = true
)]
struct Cli {
    /// Location of the engine's data (images, containers, volumes)
    #[arg(
        long,
        global = true,
        env = "LONGSHORE_ROOT",
        default_value = "/var/lib/longshore"
    )]
    root: PathBuf,
    /// Daemon socket to connect to (unix:///path, tcp://host:port); also LONGSHORE_HOST,
    /// DOCKER_HOST. Without one, the engine runs in this process
    #[arg(short = 'H', long = "host")]
    host: Vec<String>,
    /// Use TLS; implied by --tlsverify
    #[arg(long)]
    tls: bool,
    /// Use TLS and verify the remote (also DOCKER_TLS_VERIFY)
    #[arg(long)]
    tlsverify: bool,
    /// Trust certs signed only by this CA (default DOCKER_CERT_PATH/ca.pem)
    #[arg(long)]
    tlscacert: Option<PathBuf>,
    /// Path to TLS certificate file (default DOCKER_CERT_PATH/cert.pem)
    #[arg(long)]
    tlscert: Option<PathBuf>,
    /// Path to TLS key file (default DOCKER_CERT_PATH/key.pem)
    #[arg(long)]
    tlskey: Option<PathBuf>,
    /// Enable debug mode
    #[arg(short = 'D', long)]
    debug: bool,
    /// Set the logging level ("debug", "info", "warn", "error", "fatal")
    #[arg(short = 'l', long = "log-level", default_value = "info")]
    log_level: String,
    /// Location of client config files
    #[arg(long)]
    config: Option<PathBuf>,
    /// Storage driver (overlay, vfs)
    #[arg(long = "storage-driver", global = true, env = "LONGSHORE_DRIVER")]
    storage_driver: Option<String>,
    /// Bridge device of the default network (the daemon's -b)
    #[arg(long, global = true, env = "LONGSHORE_BRIDGE")]
    bridge: Option<String>,
    /// Address and prefix of the default bridge (the daemon's --bip)
    #[arg(long, global = true, env = "LONGSHORE_BIP")]
    bip: Option<String>,
    /// Registries to reach over plain HTTP or with unverified TLS
    #[arg(long = "insecure-registry", global = true)]
    insecure_registry: Vec<String>,
    /// Print version information and quit
    #[arg(short = 'v', long = "version")]
    version: bool,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Args, Debug, Default, Clone)]
struct RunOpts {
    /// Attach to STDIN, STDOUT or STDERR
    #[arg(short = 'a', long = "attach")]
    attach: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host")]
    add_host: Vec<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    cpu_shares: Option<i64>,
    /// Number of CPUs
    #[arg(long)]
    cpus: Option<f64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus", alias = "cpuset")]
    cpuset_cpus: Option<String>,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    cap_drop: Vec<String>,
    /// Write the container ID to the file
    #[arg(long)]
    cidfile: Option<PathBuf>,
    /// Run container in background and print container ID
    #[arg(short = 'd', long)]
    detach: bool,
    /// Add a host device to the container
    #[arg(long)]
    device: Vec<String>,
    /// Set custom DNS servers
    #[arg(long)]
    dns: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search")]
    dns_search: Vec<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    env_file: Vec<PathBuf>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    entrypoint: Option<String>,
    /// Expose a port or a range of ports
    #[arg(long)]
    expose: Vec<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    hostname: Option<String>,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    tty: bool,
    /// IPC mode to use
    #[arg(long)]
    ipc: Option<String>,
    /// PID namespace to use
    #[arg(long)]
    pid: Option<String>,
    /// UTS namespace to use
    #[arg(long)]
    uts: Option<String>,
    /// Add link to another container
    #[arg(long)]
    link: Vec<String>,
    /// Set meta data on a container
    #[arg(short = 'l', long = "label")]
    label: Vec<String>,
    /// Read in a line delimited file of labels
    #[arg(long = "label-file")]
    label_file: Vec<PathBuf>,
    /// Memory limit
    #[arg(short = 'm', long)]
    memory: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long = "memory-swap")]
    memory_swap: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit")]
    pids_limit: Option<i64>,
    /// Ulimit options
    #[arg(long)]
    ulimit: Vec<String>,
    /// Container MAC address (e.g., 92:d0:c6:0a:29:33)
    #[arg(long = "mac-address")]
    mac_address: Option<String>,
    /// Assign a name to the container
    #[arg(long)]
    name: Option<String>,
    /// Connect a container to a network
    #[arg(long = "network", alias = "net")]
    network: Option<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    /// Publish a container's port(s) to the host
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    privileged: bool,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    read_only: bool,
    /// Mount a tmpfs directory
    #[arg(long)]
    tmpfs: Vec<String>,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    restart: Option<String>,
    /// Automatically remove the container when it exits
    #[arg(long)]
    rm: bool,
    /// Security Options
    #[arg(long = "security-opt")]
    security_opt: Vec<String>,
    /// Proxy received signals to the process
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set)]
    sig_proxy: bool,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout")]
    stop_timeout: Option<i64>,
    /// Command to run to check health
    #[arg(long = "health-cmd")]
    health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h) (default 0s)
    #[arg(long = "health-interval", value_parser = go_duration_arg)]
    health_interval: Option<i64>,
    /// Maximum time to allow one check to run (ms|s|m|h) (default 0s)
    #[arg(long = "health-timeout", value_parser = go_duration_arg)]
    health_timeout: Option<i64>,
    /// Start period for the container to initialize before starting health-retries countdown (ms|s|m|h) (default 0s)
    #[arg(long = "health-start-period", value_parser = go_duration_arg)]
    health_start_period: Option<i64>,
    /// Time between running the check during the start period (ms|s|m|h) (default 0s)
    #[arg(long = "health-start-interval", value_parser = go_duration_arg)]
    health_start_interval: Option<i64>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long = "health-retries")]
    health_retries: Option<i64>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    no_healthcheck: bool,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Bind mount a volume
    #[arg(short = 'v', long = "volume")]
    volume: Vec<String>,
    /// Mount volumes from the specified container(s)
    #[arg(long = "volumes-from")]
    volumes_from: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    init: bool,
    /// Logging driver for the container
    #[arg(long = "log-driver")]
    log_driver: Option<String>,
    /// Log driver options
    #[arg(long = "log-opt")]
    log_opt: Vec<String>,
    /// Add custom lxc options (not supported)
    #[arg(long = "lxc-conf")]
    lxc_conf: Vec<String>,
    /// Pull image before running ("always", "missing", "never")
    #[arg(long, default_value = "missing")]
    pull: String,
    /// Suppress the pull output
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    detach_keys: Option<String>,
    /// Size of /dev/shm (default 64m)
    #[arg(long = "shm-size")]
    shm_size: Option<String>,
    /// Sysctl options (namespaced ones: kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.*, net.*)
    #[arg(long)]
    sysctl: Vec<String>,
    /// Add network-scoped alias for the container (user-defined networks)
    #[arg(long = "network-alias", alias = "net-alias")]
    network_alias: Vec<String>,
    /// Add additional groups to join
    #[arg(long = "group-add")]
    group_add: Vec<String>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long = "cpu-period")]
    cpu_period: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(long = "cpu-quota", allow_negative_numbers = true)]
    cpu_quota: Option<i64>,
    /// Memory soft limit
    #[arg(long = "memory-reservation")]
    memory_reservation: Option<String>,
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable
    #[arg(long = "blkio-weight")]
    blkio_weight: Option<u16>,
    /// Disable OOM Killer
    #[arg(long = "oom-kill-disable")]
    oom_kill_disable: bool,
    /// Optional parent cgroup for the container
    #[arg(long = "cgroup-parent")]
    cgroup_parent: Option<String>,
    /// Attach a filesystem mount to the container (type=bind|volume|tmpfs,source=,target=,readonly,...)
    #[arg(long)]
    mount: Vec<String>,
    /// IPv4 address (on a user-defined network)
    #[arg(long)]
    ip: Option<String>,
    /// Set platform if server is multi-platform capable (os/arch[/variant])
    #[arg(long)]
    platform: Option<String>,
    /// User namespace to use (not supported: no user namespace remapping)
    #[arg(long)]
    userns: Option<String>,
    /// Runtime to use for this container (not supported: longshore's own runtime)
    #[arg(long)]
    runtime: Option<String>,
    /// Storage driver options for the container (not supported)
    #[arg(long = "storage-opt")]
    storage_opt: Vec<String>,
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Image
    image: String,
    /// Command and arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

#[derive(Subcommand, Debug)]
#[command(defer = true)]
enum Cmd {
    /// Create and run a new container from an image
    #[command(disable_help_flag = true)]
    Run(RunOpts),
    /// Create a new container
    #[command(disable_help_flag = true)]
    Create(RunOpts),
    /// Start one or more stopped containers
    Start {
        /// Attach STDOUT/STDERR and forward signals
        #[arg(short = 'a', long)]
        attach: bool,
        /// Attach container's STDIN
        #[arg(short = 'i', long)]
        interactive: bool,
        /// Override the key sequence for detaching a container
        #[arg(long = "detach-keys")]
        detach_keys: Option<String>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop one or more running containers
    Stop {
        /// Seconds to wait before killing the container
        #[arg(short = 't', long = "time", alias = "timeout")]
        time: Option<i64>,
        /// Signal to send to the container
        #[arg(short = 's', long)]
        signal: Option<String>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Restart one or more containers
    Restart {
        /// Seconds to wait before killing the container
        #[arg(short = 't', long = "time", alias = "timeout")]
        time: Option<i64>,
        /// Signal to send to the container (default: its stop signal)
        #[arg(short = 's', long)]
        signal: Option<String>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Kill one or more running containers
    Kill {
        /// Signal to send to the container
        #[arg(short = 's', long, default_value = "KILL")]
        signal: String,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove one or more containers
    Rm {
        /// Force the removal of a running container (uses SIGKILL)
        #[arg(short = 'f', long)]
        force: bool,
        /// Remove anonymous volumes associated with the container
        #[arg(short = 'v', long)]
        volumes: bool,
        /// Remove the specified link
        #[arg(short = 'l', long)]
        link: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// List containers
    Ps(PsOpts),
    /// Fetch the logs of a container
    Logs {
        /// Follow log output
        #[arg(short = 'f', long)]
        follow: bool,
        /// Show timestamps
        #[arg(short = 't', long)]
        timestamps: bool,
        /// Show logs since timestamp or relative (e.g. 42m)
        #[arg(long)]
        since: Option<String>,
        /// Show logs before a timestamp or relative
        #[arg(long)]
        until: Option<String>,
        /// Number of lines to show from the end of the logs
        #[arg(short = 'n', long, default_value = "all")]
        tail: String,
        /// Show extra details provided to logs (the --log-opt labels=/env= attributes)
        #[arg(long)]
        details: bool,
        container: String,
    },
    /// Return low-level information on containers or images
    Inspect {
        /// Format output using a Go template
        #[arg(short = 'f', long)]
        format: Option<String>,
        /// Only inspect objects of the given type (container, image)
        #[arg(long = "type")]
        kind: Option<String>,
        /// Display total file sizes if the type is container
        #[arg(short = 's', long)]
        size: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Execute a command in a running container
    Exec {
        /// Detached mode: run command in the background
        #[arg(short = 'd', long)]
        detach: bool,
        /// Keep STDIN open even if not attached
        #[arg(short = 'i', long)]
        interactive: bool,
        /// Allocate a pseudo-TTY
        #[arg(short = 't', long)]
        tty: bool,
        /// Username or UID
        #[arg(short = 'u', long)]
        user: Option<String>,
        /// Working directory inside the container
        #[arg(short = 'w', long)]
        workdir: Option<String>,
        /// Set environment variables
        #[arg(short = 'e', long = "env")]
        env: Vec<String>,
        /// Read in a file of environment variables
        #[arg(long = "env-file")]
        env_file: Vec<PathBuf>,
        /// Give extended privileges to the command
        #[arg(long)]
        privileged: bool,
        /// Override the key sequence for detaching (through a daemon only: in process the
        /// exec'd command lives on this command's terminal)
        #[arg(long = "detach-keys")]
        detach_keys: Option<String>,
        container: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        cmd: Vec<String>,
    },
    /// Block until one or more containers stop, then print their exit codes
    Wait {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Pause all processes within one or more containers
    Pause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Unpause all processes within one or more containers
    Unpause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Rename a container
    Rename { container: String, new_name: String },
    /// List port mappings or a specific mapping for the container
    Port {
        container: String,
        private_port: Option<String>,
    },
    /// Display the running processes of a container
    Top {
        container: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Inspect changes to files or directories on a container's filesystem
    Diff { container: String },
    /// Create a new image from a container's changes
    Commit {
        /// Author
        #[arg(short = 'a', long)]
        author: Option<String>,
        /// Commit message
        #[arg(short = 'm', long)]
        message: Option<String>,
        /// Apply Dockerfile instruction to the created image
        #[arg(short = 'c', long)]
        change: Vec<String>,
        /// Pause container during commit
        #[arg(
            short = 'p',
            long,
            default_value_t = true,
            action = clap::ArgAction::Set,
            num_args = 0..=1,
            require_equals = true,
            default_missing_value = "true"
        )]
        pause: bool,
        container: String,
        repository: Option<String>,
    },
    /// Export a container's filesystem as a tar archive
    Export {
        /// Write to a file, instead of STDOUT
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        container: String,
    },
    /// List images
    Images(ImagesOpts),
    /// Import the contents from a tarball to create a filesystem image
    Import {
        /// Apply Dockerfile instruction to the created image
        #[arg(short = 'c', long)]
        change: Vec<String>,
        /// Set commit message for imported image
        #[arg(short = 'm', long)]
        message: Option<String>,
        /// file or - for STDIN
        file: String,
        reference: Option<String>,
    },
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag {
        /// Replace a tag that exists (docker 1.4's flag; tagging always replaces, as in
        /// today's docker)
        #[arg(short = 'f', long)]
        force: bool,
        source: String,
        target: String,
    },
    /// Remove one or more images
    Rmi {
        /// Force removal of the image
        #[arg(short = 'f', long)]
        force: bool,
        /// Do not delete untagged parents
        #[arg(long = "no-prune")]
        no_prune: bool,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Show the history of an image
    History {
        /// Don't truncate output
        #[arg(long = "no-trunc")]
        no_trunc: bool,
        /// Only show image IDs
        #[arg(short = 'q', long)]
        quiet: bool,
        /// Format output using a custom template
        #[arg(long)]
        format: Option<String>,
        /// Print sizes and dates in human readable format (docker's -H, here only the
        /// long form: -H is the daemon's address)
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        human: bool,
        image: String,
    },
    /// Download an image from a registry
    Pull {
        /// Download all tagged images in the repository
        #[arg(short = 'a', long = "all-tags")]
        all_tags: bool,
        /// Set platform if server is multi-platform capable (os/arch[/variant])
        #[arg(long)]
        platform: Option<String>,
        /// Suppress verbose output
        #[arg(short = 'q', long)]
        quiet: bool,
        image: String,
    },
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save {
        /// Write to a file, instead of STDOUT
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Load an image from a tar archive or STDIN
    Load {
        /// Read from tar archive file, instead of STDIN
        #[arg(short = 'i', long)]
        input: Option<PathBuf>,
        /// Suppress the load output
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// Get real time events from the server
    Events {
        /// Show all events created since timestamp
        #[arg(long)]
        since: Option<String>,
        /// Stream events until this timestamp
        #[arg(long)]
        until: Option<String>,
        /// Filter output based on conditions provided
        #[arg(short = 'f', long)]
        filter: Vec<String>,
        /// Format the output using the given Go template
        #[arg(long)]
        format: Option<String>,
    },
    /// Show the longshore version information
    Version {
        /// Format the output using the given Go template
        #[arg(short = 'f', long)]
        format: Option<String>,
    },
    /// Display system-wide information
    Info {
        /// Format the output using the given Go template
        #[arg(short = 'f', long)]
        format: Option<String>,
    },
    /// Attach local standard input, output, and error streams to a running container
    Attach {
        /// Do not attach STDIN
        #[arg(long = "no-stdin")]
        no_stdin: bool,
        /// Proxy all received signals to the process
        #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set)]
        sig_proxy: bool,
        /// Override the key sequence for detaching a container
        #[arg(long = "detach-keys")]
        detach_keys: Option<String>,
        container: String,
    },
    /// Build an image from a Dockerfile
    Build(BuildOpts),
    /// Update configuration of one or more containers
    Update(UpdateOpts),
    /// Copy files/folders between a container and the local filesystem
    Cp {
        /// Archive mode (copy all uid/gid information)
        #[arg(short = 'a', long)]
        archive: bool,
        /// Always follow symbol link in SRC_PATH
        #[arg(short = 'L', long = "follow-link")]
        follow_link: bool,
        /// CONTAINER:SRC_PATH or SRC_PATH or - (a tar on stdin)
        src: String,
        /// DEST_PATH or - (a tar on stdout) or CONTAINER:DEST_PATH
        dest: String,
    },
    /// Display a live stream of container(s) resource usage statistics
    Stats {
        /// Disable streaming stats and only pull the first result
        #[arg(long = "no-stream")]
        no_stream: bool,
        /// Show all containers (default shows just running)
        #[arg(short = 'a', long)]
        all: bool,
        /// Format output using a custom template
        #[arg(long)]
        format: Option<String>,
        /// Do not truncate output
        #[arg(long = "no-trunc")]
        no_trunc: bool,
        containers: Vec<String>,
    },
    /// Log in to a registry (credentials go to config.json in --config, else ~/.docker)
    Login {
        /// Username
        #[arg(short = 'u', long)]
        username: Option<String>,
        /// Password
        #[arg(short = 'p', long)]
        password: Option<String>,
        /// Take the password from stdin
        #[arg(long = "password-stdin")]
        password_stdin: bool,
        /// Email (docker 1.4's flag: registries of today ignore it; saved nowhere)
        #[arg(short = 'e', long)]
        email: Option<String>,
        /// The registry (default: Docker Hub)
        server: Option<String>,
    },
    /// Log out from a registry
    Logout {
        /// The registry (default: Docker Hub)
        server: Option<String>,
    },
    /// Upload an image to a registry
    Push {
        /// Push all tags of the repository
        #[arg(short = 'a', long = "all-tags")]
        all_tags: bool,
        /// Suppress verbose output
        #[arg(short = 'q', long)]
        quiet: bool,
        /// The image, `NAME[:TAG]`
        image: String,
    },
    /// Search a registry for images (REGISTRY/TERM searches that registry)
    Search {
        /// Max number of search results
        #[arg(long)]
        limit: Option<usize>,
        /// Filter output based on conditions provided (stars=N, is-official=, is-automated=)
        #[arg(short = 'f', long)]
        filter: Vec<String>,
        /// Pretty-print search using a Go template
        #[arg(long)]
        format: Option<String>,
        /// Don't truncate output
        #[arg(long = "no-trunc")]
        no_trunc: bool,
        /// Only show automated builds (docker 1.4's flag: the is-automated=true filter)
        #[arg(long)]
        automated: bool,
        /// Only displays with at least N stars (docker 1.4's flag: the stars=N filter)
        #[arg(short = 's', long)]
        stars: Option<u64>,
        term: String,
    },
    /// Manage containers
    #[command(
        subcommand,
        after_help = "Also, as at the top level: attach, commit, cp, create, diff, exec, export, inspect,\nkill, logs, pause, port, rename, restart, rm, run, start, stats, stop, top, unpause,\nupdate, wait"
    )]
    Container(ContainerCmd),
    /// Manage images
    #[command(
        subcommand,
        after_help = "Also, as at the top level: build, history, import, inspect, load, pull, push, rm\n(rmi), save, tag"
    )]
    Image(ImageCmd),
    /// Print a shell completion script (bash, zsh, fish)
    Completion {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// Manage volumes
    #[command(subcommand)]
    Volume(VolumeCmd),
    /// Manage networks
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Manage longshore
    #[command(subcommand, after_help = "Also, as at the top level: events, info")]
    System(SystemCmd),
    /// Run the Engine API server (the docker CLI and SDKs drive it over a unix socket)
    Daemon {
        /// Socket(s) to listen on: unix:///path (default unix:///run/longshore.sock)
        #[arg(short = 'H', long = "host")]
        hosts: Vec<String>,
        /// Group of the unix sockets (default: docker, when it exists)
        #[arg(short = 'G', long = "group")]
        group: Option<String>,
        /// File holding the daemon's pid while it runs
        #[arg(short = 'p', long = "pidfile")]
        pidfile: Option<PathBuf>,
        /// Root of the engine's data (the same as --root)
        #[arg(short = 'g', long = "data-root")]
        data_root: Option<PathBuf>,
        /// Log every API request on stderr
        #[arg(short = 'D', long = "debug")]
        debug: bool,
        /// Serve tcp:// on an address other than loopback without TLS (root for anyone
        /// who reaches it)
        #[arg(long = "insecure-tcp")]
        insecure_tcp: bool,
        /// A label of the daemon (key=value), shown by info
        #[arg(long = "label")]
        label: Vec<String>,
        /// daemon.json with the same settings (hosts, group, pidfile, debug, labels, tls*,
        /// data-root, storage-driver, bridge, bip, dns, ...); SIGHUP reloads debug and
        /// labels from it
        #[arg(long = "config-file")]
        config_file: Option<PathBuf>,
        /// Use TLS on tcp:// sockets; implied by --tlsverify
        #[arg(long = "tls")]
        tls: bool,
        /// Use TLS and require clients' certificates signed by --tlscacert
        #[arg(long = "tlsverify")]
        tlsverify: bool,
        /// Trust certs signed only by this CA (default ~/.docker/ca.pem)
        #[arg(long = "tlscacert")]
        tlscacert: Option<PathBuf>,
        /// Path to TLS certificate file (default ~/.docker/cert.pem)
        #[arg(long = "tlscert")]
        tlscert: Option<PathBuf>,
        /// Path to TLS key file (default ~/.docker/key.pem)
        #[arg(long = "tlskey")]
        tlskey: Option<PathBuf>,
        #[command(flatten)]
        engine: DaemonEngineFlags,
    },
}

/// `longshore daemon`'s flags that set up the engine (the engine checks them; the ones
/// it does not have are refused there, saying so). `--storage-driver`, `--bridge`,
/// `--bip` and `--insecure-registry` are also global flags.
#[derive(Args, Debug, Default, Clone)]
struct DaemonEngineFlags {
    /// Storage driver to use (short form of --storage-driver)
    // ids of their own: the global --storage-driver and --bridge are propagated to this
    // subcommand (before its own arguments, which clap builds on demand)
    #[arg(short = 's', id = "daemon_storage_driver")]
    storage_driver: Option<String>,
    /// Storage driver options (unsupported: refused)
    #[arg(long = "storage-opt")]
    storage_opt: Vec<String>,
    /// Attach containers to a network bridge (short form of --bridge)
    #[arg(short = 'b', id = "daemon_bridge")]
    bridge: Option<String>,
    /// IPv4 subnet for fixed IPs of the default bridge
    #[arg(long = "fixed-cidr")]
    fixed_cidr: Option<String>,
    /// Set the containers network MTU
    #[arg(long)]
    mtu: Option<u32>,
    /// Enable inter-container communication
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    icc: Option<bool>,
    /// Default IP when binding container ports
    #[arg(long)]
    ip: Option<String>,
    /// Enable net.ipv4.ip_forward
    #[arg(long = "ip-forward", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    ip_forward: Option<bool>,
    /// Enable IP masquerading
    #[arg(long = "ip-masq", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    ip_masq: Option<bool>,
    /// Enable addition of firewall (nftables) rules
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    iptables: Option<bool>,
    /// DNS server to use
    #[arg(long)]
    dns: Vec<String>,
    /// DNS search domains to use
    #[arg(long = "dns-search")]
    dns_search: Vec<String>,
    /// Preferred registry mirror
    #[arg(long = "registry-mirror")]
    registry_mirror: Vec<String>,
    /// Set the logging level ("debug", "info", "warn", "error", "fatal")
    #[arg(short = 'l', long = "log-level")]
    log_level: Option<String>,
    /// Set the max concurrent downloads (default 3; 0: no limit)
    #[arg(long = "max-concurrent-downloads", allow_negative_numbers = true)]
    max_concurrent_downloads: Option<i64>,
    /// Set the max concurrent uploads (default 5; 0: no limit)
    #[arg(long = "max-concurrent-uploads", allow_negative_numbers = true)]
    max_concurrent_uploads: Option<i64>,
}

#[derive(Subcommand, Debug)]
#[command(defer = true)]
enum ContainerCmd {
    /// List containers
    #[command(alias = "list", alias = "ps")]
    Ls(PsOpts),
    /// Remove all stopped containers
    Prune {
        /// Do not prompt for confirmation
        #[arg(short = 'f', long)]
        force: bool,
        /// Provide filter values (e.g. until=24h, label=KEY[=VALUE], label!=KEY)
        #[arg(long)]
        filter: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
#[command(defer = true)]
enum VolumeCmd {
    /// Create a volume
    Create {
        /// Set metadata for a volume
        #[arg(short = 'l', long = "label")]
        label: Vec<String>,
        /// Specify volume driver name
        #[arg(short = 'd', long, default_value = "local")]
        driver: String,
        /// Set driver specific options (local: type=tmpfs|none, device=, o=)
        #[arg(short = 'o', long = "opt")]
        opt: Vec<String>,
        name: Option<String>,
    },
    /// List volumes
    #[command(alias = "list")]
    Ls {
        /// Only display volume names
        #[arg(short = 'q', long)]
        quiet: bool,
        /// Provide filter values (e.g. "dangling=true"; name, driver, label, dangling)
        #[arg(short = 'f', long)]
        filter: Vec<String>,
        /// Format output using a custom template
        #[arg(long)]
        format: Option<String>,
    },
    /// Display detailed information on one or more volumes
    Inspect {
        /// Format output using a Go template
        #[arg(short = 'f', long)]
        format: Option<String>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove one or more volumes
    #[command(alias = "remove")]
    Rm {
        /// Force the removal of one or more volumes
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove unused local volumes
    Prune {
        /// Remove all unused volumes, not just anonymous ones
        #[arg(short = 'a', long)]
        all: bool,
        /// Do not prompt for confirmation
        #[arg(short = 'f', long)]
        force: bool,
        /// Provide filter values (e.g. label=KEY[=VALUE], label!=KEY)
        #[arg(long)]
        filter: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
#[command(defer = true)]
enum NetworkCmd {
    /// Create a network
    Create {
        /// Driver to manage the Network
        #[arg(short = 'd', long, default_value = "bridge")]
        driver: String,
        /// Subnet in CIDR format that represents a network segment
        #[arg(long)]
        subnet: Option<String>,
        /// Allocate container ip from a sub-range
        #[arg(long = "ip-range")]
        ip_range: Option<String>,
        /// IPv4 Gateway for the master subnet
        #[arg(long)]
        gateway: Option<String>,
        /// Set metadata on a network
        #[arg(long)]
        label: Vec<String>,
        /// Restrict external access to the network
        #[arg(long)]
        internal: bool,
        /// Auxiliary IPv4 addresses used by Network driver (name=ip: never given to a
        /// container)
        #[arg(long = "aux-address")]
        aux_address: Vec<String>,
        /// Set driver specific options (com.docker.network.bridge.name,
        /// com.docker.network.bridge.enable_icc)
        #[arg(short = 'o', long = "opt")]
        opt: Vec<String>,
        name: String,
    },
    /// List networks
    #[command(alias = "list")]
    Ls(NetworkLsOpts),
    /// Display detailed information on one or more networks
    Inspect {
        /// Format output using a Go template
        #[arg(short = 'f', long)]
        format: Option<String>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Connect a container to a network
    Connect {
        /// Add network-scoped alias for the container
        #[arg(long)]
        alias: Vec<String>,
        /// IPv4 address (e.g., "172.30.100.104")
        #[arg(long)]
        ip: Option<String>,
        network: String,
        container: String,
    },
    /// Remove all unused networks
    Prune {
        /// Do not prompt for confirmation
        #[arg(short = 'f', long)]
        force: bool,
        /// Provide filter values (e.g. until=24h, label=KEY[=VALUE], label!=KEY)
        #[arg(long)]
        filter: Vec<String>,
    },
    /// Disconnect a container from a network
    Disconnect {
        /// Force the container to disconnect from a network
        #[arg(short = 'f', long)]
        force: bool,
        network: String,
        container: String,
    },
}

#[derive(Args, Debug)]
struct NetworkLsOpts {
    /// Only display network IDs
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Provide filter values (e.g. "driver=bridge"; name, id, driver, scope, type)
    #[arg(short = 'f', long)]
    filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    format: Option<String>,
    /// Do not truncate the output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
}

#[derive(Subcommand, Debug)]
#[command(defer = true)]
enum SystemCmd {
    /// Show docker disk usage
    Df {
        /// Show detailed information on space usage
        #[arg(short = 'v', long)]
        verbose: bool,
        /// Format output using a custom template
        #[arg(long)]
        format: Option<String>,
    },
    /// Remove unused data
    Prune {
        /// Remove all unused images not just dangling ones
        #[arg(short = 'a', long)]
        all: bool,
        /// Prune anonymous volumes
        #[arg(long)]
        volumes: bool,
        /// Do not prompt for confirmation
        #[arg(short = 'f', long)]
        force: bool,
        /// Provide filter values (e.g. until=24h, label=KEY[=VALUE], label!=KEY)
        #[arg(long)]
        filter: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
#[command(defer = true)]
enum ImageCmd {
    /// List images
    #[command(alias = "list")]
    Ls(ImagesOpts),
    /// Remove unused images
    Prune {
        /// Remove all unused images, not just dangling ones
        #[arg(short = 'a', long)]
        all: bool,
        /// Do not prompt for confirmation
        #[arg(short = 'f', long)]
        force: bool,
        /// Provide filter values (e.g. until=24h, label=KEY[=VALUE], label!=KEY)
        #[arg(long)]
        filter: Vec<String>,
    },
}

/// `build`'s flags (in process and through the daemon).
#[derive(Args, Debug)]
struct BuildOpts {
    /// Name and optionally a tag in the "name:tag" format (several)
    #[arg(short = 't', long = "tag")]
    tag: Vec<String>,
    /// Name of the Dockerfile (default: PATH/Dockerfile)
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// Set build-time variables
    #[arg(long = "build-arg")]
    build_arg: Vec<String>,
    /// Set the target build stage to build
    #[arg(long)]
    target: Option<String>,
    /// Do not use cache when building the image
    #[arg(long = "no-cache")]
    no_cache: bool,
    /// Images to consider as cache sources
    #[arg(long = "cache-from")]
    cache_from: Vec<String>,
    /// Suppress the build output and print image ID on success
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Remove intermediate containers after a successful build
    #[arg(long, default_value_t = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    rm: bool,
    /// Always remove intermediate containers
    #[arg(long = "force-rm")]
    force_rm: bool,
    /// Set metadata for an image
    #[arg(long)]
    label: Vec<String>,
    /// Always attempt to pull a newer version of the image
    #[arg(long)]
    pull: bool,
    /// Write the image ID to the file
    #[arg(long)]
    iidfile: Option<PathBuf>,
    /// Networking mode for the RUN instructions (default, none, host)
    #[arg(long)]
    network: Option<String>,
    /// Set platform if server is multi-platform capable (only the builder's own)
    #[arg(long)]
    platform: Option<String>,
    /// Secret to expose to the build (id=mysecret,src=/local/secret; in process only)
    #[arg(long)]
    secret: Vec<String>,
    /// Set type of progress output (auto, plain, tty)
    #[arg(long, default_value = "auto")]
    progress: String,
    /// Output destination (BuildKit's; not supported)
    #[arg(short = 'o', long)]
    output: Option<String>,
    /// SSH agent socket or keys to expose to the build (BuildKit's; not supported)
    #[arg(long)]
    ssh: Vec<String>,
    /// PATH (a directory) or - (a tar context on stdin)
    context: String,
}

/// `update`'s flags (in process and through the daemon).
#[derive(Args, Debug)]
struct UpdateOpts {
    /// Memory limit
    #[arg(short = 'm', long)]
    memory: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long = "memory-swap")]
    memory_swap: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    cpu_shares: Option<i64>,
    /// Number of CPUs
    #[arg(long)]
    cpus: Option<f64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit")]
    pids_limit: Option<i64>,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    restart: Option<String>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long = "cpu-period")]
    cpu_period: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(long = "cpu-quota", allow_negative_numbers = true)]
    cpu_quota: Option<i64>,
    /// Memory soft limit
    #[arg(long = "memory-reservation")]
    memory_reservation: Option<String>,
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable
    #[arg(long = "blkio-weight")]
    blkio_weight: Option<u16>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args, Debug)]
struct PsOpts {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    all: bool,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long)]
    filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    format: Option<String>,
    /// Show n last created containers (includes all states; -1, the default: all)
    #[arg(short = 'n', long = "last", allow_negative_numbers = true)]
    last: Option<i64>,
    /// Show the latest created container (includes all states)
    #[arg(short = 'l', long)]
    latest: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Only display container IDs
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Display total file sizes
    #[arg(short = 's', long)]
    size: bool,
    /// Show only containers created before this ID or name (includes all states; docker
    /// 1.4's flag, the `before=` filter today)
    #[arg(long)]
    before: Option<String>,
    /// Show only containers created since this ID or name (includes all states; docker
    /// 1.4's flag, the `since=` filter today)
    #[arg(long)]
    since: Option<String>,
}

#[derive(Args, Debug)]
struct ImagesOpts {
    /// Show all images (default hides intermediate images)
    #[arg(short = 'a', long)]
    all: bool,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long)]
    filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    format: Option<String>,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Show digests (the manifests an image was pulled or pushed as)
    #[arg(long)]
    digests: bool,
    /// Repository to list
    repository: Option<String>,
}

/// A failure with the exit code docker would give.
struct Failure {
    code: u8,
    msg: String,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure {
            code: e.exit_code() as u8,
            msg: format!("Error response from daemon: {e}"),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure {
            code: 125,
            msg: e.to_string(),
        }
    }
}

impl From<format::TemplateError> for Failure {
    fn from(e: format::TemplateError) -> Self {
        Failure {
            code: 125,
            msg: e.0,
        }
    }
}

fn fail(msg: impl Into<String>) -> Failure {
    Failure {
        code: 125,
        msg: msg.into(),
    }
}

type Res<T = ()> = Result<T, Failure>;

fn main() -> ExitCode {
    // a re-executed monitor never returns from here
    longshore_engine::monitor::run_if_monitor();
    // `longshore ps | head -1`: a closed pipe ends the command quietly, as docker's does
    // SAFETY: setting a signal's disposition to the default has no preconditions; no other
    // thread exists yet.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let mut cli = match Cli::try_parse_from(group_verbs(std::env::args_os().collect())) {
        Ok(c) => c,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => 125,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if cli.version {
        println!(
            "longshore version {}, build {}",
            env!("CARGO_PKG_VERSION"),
            option_env!("LONGSHORE_GIT").unwrap_or("dev")
        );
        return ExitCode::SUCCESS;
    }
    let Some(mut cmd) = cli.cmd.take() else {
        eprintln!(
            "Usage:  longshore [OPTIONS] COMMAND\n\nRun 'longshore --help' for more information"
        );
        return ExitCode::from(125);
    };
    // docker's ps: a --format that names .Size asks for the sizes as -s does
    if let Cmd::Ps(o) | Cmd::Container(ContainerCmd::Ls(o)) = &mut cmd
        && o.format.as_deref().is_some_and(|f| f.contains(".Size"))
    {
        o.size = true;
    }
    // docker 1.4's search --automated and -s N: today's filters
    if let Cmd::Search {
        filter,
        automated,
        stars,
        ..
    } = &mut cmd
    {
        if *automated {
            filter.push("is-automated=true".into());
        }
        if let Some(n) = stars {
            filter.push(format!("stars={n}"));
        }
    }
    // login -e: docker 1.4 sent the email to its v1 index; registries of today have no use
    // for it, and docker 1.11+ said so
    if let Cmd::Login { email: Some(_), .. } = &cmd {
        eprintln!("Flag --email has been deprecated: registries ignore it");
    }
    // run/create --label-file: the files' labels come before the -l ones, as docker has them
    if let Cmd::Run(o) | Cmd::Create(o) = &mut cmd {
        let mut from_files = Vec::new();
        for f in o.label_file.drain(..) {
            match read_env_file(&f) {
                Ok(labels) => from_files.extend(labels),
                Err(e) => return finish(Err(e)),
            }
        }
        from_files.append(&mut o.label);
        o.label = from_files;
    }
    // exec --env-file: the files' variables come before the -e ones, as docker has them
    if let Cmd::Exec { env, env_file, .. } = &mut cmd {
        let mut from_files = Vec::new();
        for f in env_file.drain(..) {
            match read_env_file(&f) {
                Ok(vars) => from_files.extend(vars),
                Err(e) => return finish(Err(e)),
            }
        }
        from_files.append(env);
        *env = from_files;
    }
    let config_dir = config_dir(cli.config.as_deref());
    // client mode: the commands go to a daemon (`daemon` and `completion` stay local)
    if !matches!(cmd, Cmd::Daemon { .. } | Cmd::Completion { .. }) {
        match remote_client(&cli) {
            Ok(None) => {}
            Ok(Some(client)) => {
                let res = remote::run(&client, &config_dir, cmd);
                return finish(res);
            }
            Err(msg) => {
                eprintln!("{msg}");
                return ExitCode::from(125);
            }
        }
    }
    let mut opts = EngineOptions {
        driver: cli.storage_driver.clone(),
        ..Default::default()
    };
    opts.client.insecure_registries = cli.insecure_registry.clone();
    if cli.bridge.is_some() || cli.bip.is_some() {
        let mut net = longshore_engine::default_network();
        if let Some(b) = &cli.bridge {
            net.bridge = b.clone();
        }
        if let Some(b) = &cli.bip {
            match b.parse() {
                Ok(n) => net.bip = Some(n),
                Err(e) => {
                    eprintln!("longshore: invalid --bip {b:?}: {e}");
                    return ExitCode::from(125);
                }
            }
        }
        opts.network = Some(net);
    }
    opts.client.credential_store = Some(longshore_registry::CredentialStore::new(
        config_dir.join("config.json"),
    ));
    finish(run(&cli.root, &opts, &config_dir, cmd))
}

/// docker's management-group verbs that are top-level commands here: (group, verb, the
/// command line it stands for).
const GROUP_VERBS: &[(&str, &str, &[&str])] = &[
    ("container", "attach", &["attach"]),
    ("container", "commit", &["commit"]),
    ("container", "cp", &["cp"]),
    ("container", "create", &["create"]),
    ("container", "diff", &["diff"]),
    ("container", "exec", &["exec"]),
    ("container", "export", &["export"]),
    ("container", "inspect", &["inspect", "--type", "container"]),
    ("container", "kill", &["kill"]),
    ("container", "logs", &["logs"]),
    ("container", "pause", &["pause"]),
    ("container", "port", &["port"]),
    ("container", "rename", &["rename"]),
    ("container", "restart", &["restart"]),
    ("container", "rm", &["rm"]),
    ("container", "run", &["run"]),
    ("container", "start", &["start"]),
    ("container", "stats", &["stats"]),
    ("container", "stop", &["stop"]),
    ("container", "top", &["top"]),
    ("container", "unpause", &["unpause"]),
    ("container", "update", &["update"]),
    ("container", "wait", &["wait"]),
    ("image", "build", &["build"]),
    ("image", "history", &["history"]),
    ("image", "import", &["import"]),
    ("image", "inspect", &["inspect", "--type", "image"]),
    ("image", "load", &["load"]),
    ("image", "pull", &["pull"]),
    ("image", "push", &["push"]),
    ("image", "rm", &["rmi"]),
    ("image", "remove", &["rmi"]),
    ("image", "save", &["save"]),
    ("image", "tag", &["tag"]),
    ("system", "events", &["events"]),
    ("system", "info", &["info"]),
];

/// [`GROUP_VERBS`] rewritten to their top-level commands before parsing (`container run`
/// is `run`, `image rm` is `rmi`), so that each command has one definition.
fn group_verbs(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    // the global options that take a value (`-H unix:///x container run ...`)
    const WITH_VALUE: &[&str] = &[
        "--root",
        "-H",
        "--host",
        "--tlscacert",
        "--tlscert",
        "--tlskey",
        "-l",
        "--log-level",
        "--config",
        "--storage-driver",
        "--bridge",
        "--bip",
        "--insecure-registry",
    ];
    let mut i = 1;
    while let Some(a) = args.get(i).and_then(|a| a.to_str()) {
        if a == "--" || !a.starts_with('-') {
            break;
        }
        i += if WITH_VALUE.contains(&a) { 2 } else { 1 };
    }
    let word = |k: usize| args.get(k).and_then(|a| a.to_str()).unwrap_or_default();
    let Some((_, _, to)) = GROUP_VERBS
        .iter()
        .find(|(g, v, _)| *g == word(i) && *v == word(i + 1))
    else {
        return args;
    };
    args.splice(i..i + 2, to.iter().map(Into::into));
    args
}

/// The command tree for the shell completions: the top level's, with [`GROUP_VERBS`] in
/// their groups.
fn completion_command() -> clap::Command {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    for (group, verb, to) in GROUP_VERBS {
        if let Some(top) = cmd.find_subcommand(to[0]).cloned() {
            cmd = cmd.mut_subcommand(group, |g| g.subcommand(top.name(verb)));
        }
    }
    cmd
}

fn finish(res: Res<u8>) -> ExitCode {
    match res {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            if !f.msg.is_empty() {
                eprintln!("{}", f.msg);
            }
            ExitCode::from(f.code)
        }
    }
}

/// The client configuration directory: `--config`, `DOCKER_CONFIG`, else `~/.docker`
/// (where `login` keeps credentials in `config.json`, as docker does).
fn config_dir(flag: Option<&std::path::Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("DOCKER_CONFIG").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
        .join(".docker")
}

/// The daemon to talk to, if any: `-H`, else `LONGSHORE_HOST`, else `DOCKER_HOST`.
fn remote_client(cli: &Cli) -> Result<Option<client::Client>, String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let host = match cli.host.as_slice() {
        [] => match env("LONGSHORE_HOST").or_else(|| env("DOCKER_HOST")) {
            Some(h) => h,
            None => return Ok(None),
        },
        [h] => h.clone(),
        _ => return Err("Specify only one -H".into()),
    };
    let verify = cli.tlsverify || env("DOCKER_TLS_VERIFY").is_some();
    let cert_path = env("DOCKER_CERT_PATH").map(PathBuf::from);
    let tls = if verify || cli.tls {
        let default = |name: &str| {
            cert_path
                .clone()
                .unwrap_or_else(|| config_dir(cli.config.as_deref()))
                .join(name)
        };
        let pick = |flag: &Option<PathBuf>, name: &str| {
            flag.clone()
                .or_else(|| Some(default(name)).filter(|p| p.exists()))
        };
        Some(client::TlsOptions {
            verify,
            ca: pick(&cli.tlscacert, "ca.pem"),
            cert: pick(&cli.tlscert, "cert.pem"),
            key: pick(&cli.tlskey, "key.pem"),
        })
    } else {
        None
    };
    let h = client::Host::parse(&host, tls.is_some())?;
    client::Client::new(h, tls.as_ref()).map(Some)
}

fn open(root: &PathBuf, opts: &EngineOptions) -> Res<Engine> {
    Engine::open(root, opts.clone()).map_err(Failure::from)
}

fn short(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

fn run(root: &PathBuf, opts: &EngineOptions, config_dir: &std::path::Path, cmd: Cmd) -> Res<u8> {
    let engine = || open(root, opts);
    match cmd {
        Cmd::Version { format } => {
            let server = json!({
                "Version": env!("CARGO_PKG_VERSION"), "ApiVersion": "1.45", "MinAPIVersion": "1.24",
                "Os": "linux", "Arch": go_arch(),
                "GitCommit": option_env!("LONGSHORE_GIT").unwrap_or("dev"),
            });
            print_version(&server, format)
        }
        Cmd::Run(o) => cmd_run(engine()?, o, true),
        Cmd::Create(o) => cmd_run(engine()?, o, false),
        Cmd::Start {
            attach,
            interactive,
            detach_keys,
            containers,
        } => {
            let e = engine()?;
            if attach || interactive {
                let c = e.container(&containers[0])?;
                let id = c.record.id.clone();
                let tty = c.record.config.tty;
                let made = start_attached(&e, &id, interactive)?;
                drop(e);
                return term::attach_loop(
                    made,
                    &id,
                    interactive,
                    tty,
                    true,
                    detach_keys.as_deref(),
                    root,
                )
                .map_err(Into::into);
            }
            let mut failed = false;
            for c in containers {
                match e.start_container(&c, &StartOptions::default()) {
                    Ok(_) => println!("{c}"),
                    Err(err) => {
                        eprintln!("Error response from daemon: {err}");
                        failed = true;
                    }
                }
            }
            if failed {
                return Err(fail("Error: failed to start containers"));
            }
            Ok(0)
        }
        Cmd::Stop {
            time,
            signal,
            containers,
        } => each(engine()?, containers, |e, c| {
            let mut o = StopOptions::default();
            o.timeout = time;
            o.signal = signal.clone();
            e.stop_container(c, &o)
        }),
        Cmd::Restart {
            time,
            signal,
            containers,
        } => each(engine()?, containers, |e, c| {
            let mut o = StopOptions::default();
            o.timeout = time;
            o.signal = signal.clone();
            e.restart_container(c, &o)
        }),
        Cmd::Kill { signal, containers } => each(engine()?, containers, |e, c| {
            e.kill_container(c, Some(&signal))
        }),
        Cmd::Pause { containers } => each(engine()?, containers, |e, c| e.pause_container(c)),
        Cmd::Unpause { containers } => each(engine()?, containers, |e, c| e.unpause_container(c)),
        Cmd::Rm {
            force,
            volumes,
            link,
            containers,
        } => each(engine()?, containers, |e, c| {
            let mut o = RemoveOptions::default();
            o.force = force;
            o.volumes = volumes;
            o.link = link;
            e.remove_container(c, &o)
        }),
        Cmd::Wait { containers } => {
            let e = engine()?;
            let mut failed = false;
            for c in containers {
                match e.wait_container(&c, WaitCondition::NotRunning) {
                    Ok(code) => println!("{code}"),
                    Err(err) => {
                        eprintln!("Error response from daemon: {err}");
                        failed = true;
                    }
                }
            }
            Ok(if failed { 1 } else { 0 })
        }
        Cmd::Ps(o) | Cmd::Container(ContainerCmd::Ls(o)) => cmd_ps(&engine()?, o),
        Cmd::Container(ContainerCmd::Prune { force, filter }) => {
            let f = prune_filters(&filter, CONTAINER_PRUNE_FILTERS)?;
            if !confirm(force, "This will remove all stopped containers.") {
                return Ok(0);
            }
            let rep = engine()?.prune_containers(&f)?;
            print_prune("Deleted Containers:", &rep);
            Ok(0)
        }
        Cmd::System(SystemCmd::Df { verbose, format }) => cmd_df(&engine()?, verbose, format),
        Cmd::System(SystemCmd::Prune {
            all,
            volumes,
            force,
            filter,
        }) => {
            let f = system_prune_filters(&filter, volumes)?;
            if !confirm(force, &system_prune_warning(all, volumes)) {
                return Ok(0);
            }
            // docker's order: containers, networks, volumes, images
            let e = engine()?;
            let c = e.prune_containers(&prune_filters(&filter, CONTAINER_PRUNE_FILTERS)?)?;
            let mut total = c.space_reclaimed;
            print_deleted("Deleted Containers:", &c.deleted);
            print_deleted(
                "Deleted Networks:",
                &e.prune_networks(&prune_filters(&filter, CONTAINER_PRUNE_FILTERS)?)?,
            );
            if volumes {
                let v =
                    e.prune_volumes_report(false, &prune_filters(&filter, VOLUME_PRUNE_FILTERS)?)?;
                total += v.space_reclaimed;
                print_deleted("Deleted Volumes:", &v.deleted);
            }
            let i = e.prune_images(all, &f)?;
            total += i.space_reclaimed;
            print_deleted("Deleted Images:", &i.deleted);
            println!("Total reclaimed space: {}", human_size(total));
            Ok(0)
        }
        Cmd::Logs {
            follow,
            timestamps,
            since,
            until,
            tail,
            details,
            container,
        } => {
            let e = engine()?;
            let details = details.then(|| e.log_attributes(&container)).transpose()?;
            let mut o = LogsOptions::default();
            o.follow = follow;
            o.since = since;
            o.until = until;
            o.tail = if tail == "all" {
                None
            } else {
                Some(
                    tail.parse()
                        .map_err(|_| fail(format!("invalid value for --tail: {tail:?}")))?,
                )
            };
            let out = io::stdout();
            let err = io::stderr();
            e.container_logs(&container, &o, &mut |l| {
                let mut text = if timestamps {
                    format!("{} ", l.time)
                } else {
                    String::new()
                };
                if let Some(d) = &details {
                    text.push_str(d);
                    text.push(' ');
                }
                text.push_str(&l.data);
                if l.stream == 2 {
                    err.lock().write_all(text.as_bytes()).is_ok()
                } else {
                    let mut o = out.lock();
                    o.write_all(text.as_bytes()).is_ok() && o.flush().is_ok()
                }
            })?;
            Ok(0)
        }
        Cmd::Inspect {
            format,
            kind,
            size,
            names,
        } => {
            let e = engine()?;
            let inspect_container = |n: &str| {
                if size {
                    e.inspect_container_with_size(n)
                } else {
                    e.inspect_container(n)
                }
            };
            let mut out = Vec::new();
            let mut failed = None;
            for n in &names {
                let r = match kind.as_deref() {
                    Some("container") => inspect_container(n),
                    Some("image") => e.inspect_image(n),
                    Some(k) => {
                        return Err(fail(format!("\"{k}\" is not a valid value for --type")));
                    }
                    None => inspect_container(n)
                        .or_else(|_| e.inspect_image(n))
                        .map_err(|_| Error::NoSuchContainer(n.clone())),
                };
                match r {
                    Ok(v) => out.push(v),
                    Err(err) => {
                        failed = Some(match &err {
                            Error::NoSuchContainer(n) | Error::NoSuchImage(n) => {
                                format!("Error: No such object: {n}")
                            }
                            _ => format!("Error response from daemon: {err}"),
                        });
                    }
                }
            }
            print_inspect(out, failed, format)
        }
        Cmd::Exec {
            detach,
            interactive,
            tty,
            user,
            workdir,
            env,
            env_file: _,
            privileged,
            detach_keys,
            container,
            cmd,
        } => {
            if detach_keys.is_some() {
                // the in-process exec holds the command's terminal: leaving would end it
                return Err(fail(
                    "exec --detach-keys: an exec in process cannot be detached from (its terminal ends with this command); run it through a daemon (-H) to detach",
                ));
            }
            let e = engine()?;
            // the exec'd process is a fork of this program until it execs: in a container
            // that may ptrace it, it must be a sealed copy (CVE-2019-5736)
            // (reexec_sealed returns at once when this already is the sealed copy)
            if longshore_engine::monitor::grants_ptrace(e.container(&container)?.dir())
                && let Err(err) = longshore_container::process::reexec_sealed()
            {
                return Err(fail(format!(
                    "refusing to exec into a container with CAP_SYS_PTRACE: cannot run from a sealed copy of longshore: {err}"
                )));
            }
            let mut req = longshore_engine::ExecRequest::default();
            req.cmd = cmd;
            req.env = env;
            req.user = user;
            req.workdir = workdir;
            req.tty = tty && !detach;
            req.privileged = privileged;
            let stdio = if detach {
                longshore_container::Stdio::Null
            } else if !interactive && !tty {
                // no stdin unless -i
                use std::os::fd::AsFd;
                longshore_container::Stdio::Fds {
                    stdin: std::fs::File::open("/dev/null")?.into(),
                    stdout: std::io::stdout().as_fd().try_clone_to_owned()?,
                    stderr: std::io::stderr().as_fd().try_clone_to_owned()?,
                }
            } else {
                longshore_container::Stdio::Inherit
            };
            let mut p = e.exec(&container, &req, stdio)?;
            drop(e);
            if detach {
                return Ok(0);
            }
            let code = match p.terminal.as_ref() {
                Some(t) => term::proxy_terminal(t, &mut p.process, interactive)?,
                None => p.wait()?,
            };
            Ok(code as u8)
        }
        Cmd::Rename {
            container,
            new_name,
        } => {
            engine()?.rename_container(&container, &new_name)?;
            Ok(0)
        }
        Cmd::Port {
            container,
            private_port,
        } => {
            let e = engine()?;
            let c = e.container(&container)?;
            let ports = c
                .state
                .network
                .as_ref()
                .filter(|_| c.live_status() == "running")
                .map(|n| n.ports.clone())
                .unwrap_or_default();
            let ports = ports
                .into_iter()
                .map(|p| {
                    (
                        format!("{}/{}", p.container_port, p.proto),
                        p.host_ip.to_string(),
                        p.host_port.to_string(),
                    )
                })
                .collect();
            print_ports(ports, private_port, &container)
        }
        Cmd::Top { container, ps_args } => {
            let t = engine()?.top_container(&container, &ps_args.join(" "))?;
            print_top(&t.titles, &t.processes);
            Ok(0)
        }
        Cmd::Diff { container } => {
            for ch in engine()?.container_changes(&container)? {
                println!("{ch}");
            }
            Ok(0)
        }
        Cmd::Commit {
            author,
            message,
            change,
            pause,
            container,
            repository,
        } => {
            let mut r = longshore_engine::CommitRequest::default();
            (r.reference, r.author, r.message) = (repository, author, message);
            r.changes = change;
            r.pause = pause;
            println!("{}", engine()?.commit_container(&container, &r)?);
            Ok(0)
        }
        Cmd::Export { output, container } => {
            let e = engine()?;
            let c = e.container(&container)?;
            if output.is_none() && term::stdout_is_tty() {
                return Err(fail(
                    "cowardly refusing to save to a terminal. Use the -o flag or redirect",
                ));
            }
            let w: Box<dyn Write> = match output {
                Some(p) => Box::new(std::fs::File::create(p)?),
                None => Box::new(io::stdout().lock()),
            };
            e.graph()?
                .export_container(&c.record.id, w)
                .map_err(|err| fail(format!("Error response from daemon: {err}")))?;
            Ok(0)
        }
        Cmd::Images(o) | Cmd::Image(ImageCmd::Ls(o)) => cmd_images(&engine()?, o),
        Cmd::Image(ImageCmd::Prune { all, force, filter }) => {
            let f = prune_filters(&filter, IMAGE_PRUNE_FILTERS)?;
            let msg = if all {
                "This will remove all images without at least one container associated to them."
            } else {
                "This will remove all dangling images."
            };
            if !confirm(force, msg) {
                return Ok(0);
            }
            let rep = engine()?.prune_images(all, &f)?;
            print_prune("Deleted Images:", &rep);
            Ok(0)
        }
        Cmd::Import {
            change,
            message,
            file,
            reference,
        } => {
            let e = engine()?;
            let r: Box<dyn Read + Send> = if file == "-" {
                Box::new(io::stdin())
            } else {
                Box::new(
                    std::fs::File::open(&file)
                        .map_err(|err| fail(format!("open {file}: {err}")))?,
                )
            };
            let id = e.import_image(r, reference.as_deref(), message.as_deref(), &change)?;
            println!("{id}");
            Ok(0)
        }
        Cmd::Tag { source, target, .. } => {
            engine()?.tag_image(&source, &target)?;
            Ok(0)
        }
        Cmd::Rmi {
            force,
            no_prune,
            images,
        } => {
            let e = engine()?;
            let mut failed = false;
            for i in images {
                let mut o = RemoveImageOptions::default();
                o.force = force;
                o.no_prune = no_prune;
                match e.remove_image(&i, &o) {
                    Ok(rs) => {
                        for r in rs {
                            match r {
                                longshore_graph::Removed::Untagged(t) => println!("Untagged: {t}"),
                                longshore_graph::Removed::Deleted(d) => println!("Deleted: {d}"),
                            }
                        }
                    }
                    Err(err) => {
                        eprintln!("Error response from daemon: {err}");
                        failed = true;
                    }
                }
            }
            Ok(if failed { 1 } else { 0 })
        }
        Cmd::History {
            no_trunc,
            quiet,
            format,
            human,
            image,
        } => {
            let h = engine()?.image_history(&image)?;
            let rows = h
                .into_iter()
                .map(|x| HistoryRow {
                    id: x.id.map(|d| d.to_string()),
                    created: x
                        .created
                        .as_deref()
                        .map(longshore_engine::containers::unix_time),
                    created_by: x.created_by,
                    size: x.size,
                    comment: x.comment,
                })
                .collect();
            print_history(rows, no_trunc, quiet, format, human)
        }
        Cmd::Pull {
            all_tags: true,
            platform,
            quiet,
            image,
        } => {
            let platform = parse_platform(platform.as_deref())?;
            let repo = all_tags_repository(&image)?;
            let e = engine()?;
            let rt = runtime()?;
            let tags = rt.block_on(e.remote_tags(&repo, None))?;
            let mut d = progress::Display::new();
            let mut newer = false;
            for t in tags {
                if !quiet {
                    let tag = t.rsplit_once(':').map(|(_, t)| t).unwrap_or_default();
                    d.show(&json!({"status": format!("Pulling from {}", all_tags_path(&repo)), "id": tag}))
                        .map_err(fail)?;
                }
                let report = with_progress(&rt, &mut d, quiet, false, |tx| {
                    let o = longshore_engine::PullJobOptions {
                        progress: Some(tx),
                        platform: platform.clone(),
                        ..Default::default()
                    };
                    let e = &e;
                    async move { e.pull(&t, &o).await }
                })?;
                newer |= !report.already_exists;
                if !quiet {
                    d.show(&json!({"status": format!("Digest: {}", report.manifest_digest)}))
                        .map_err(fail)?;
                }
            }
            if !quiet {
                d.show(&json!({"status": format!(
                    "Status: {} for {repo}",
                    if newer { "Downloaded newer image" } else { "Image is up to date" },
                )}))
                .map_err(fail)?;
            }
            println!("{repo}");
            Ok(0)
        }
        Cmd::Pull {
            all_tags: false,
            platform,
            quiet,
            image,
        } => {
            let platform = parse_platform(platform.as_deref())?;
            let e = engine()?;
            let rt = runtime()?;
            let reference = pull_preamble(&image, quiet)?;
            let mut d = progress::Display::new();
            if !quiet {
                d.show(&json!({"status": format!("Pulling from {}", reference.path()), "id": reference.tag().map(String::from).or_else(|| reference.digest().map(|x| x.to_string())).unwrap_or_else(|| "latest".into())}))
                    .map_err(fail)?;
            }
            let report = with_progress(&rt, &mut d, quiet, false, |tx| {
                let o = longshore_engine::PullJobOptions {
                    progress: Some(tx),
                    platform,
                    ..Default::default()
                };
                let e = &e;
                let image = image.clone();
                async move { e.pull(&image, &o).await }
            })?;
            if !quiet {
                d.show(&json!({"status": format!("Digest: {}", report.manifest_digest)}))
                    .map_err(fail)?;
                d.show(&json!({"status": format!(
                    "Status: {} for {}",
                    if report.already_exists { "Image is up to date" } else { "Downloaded newer image" },
                    report.reference
                )}))
                .map_err(fail)?;
            }
            println!("{}", report.reference);
            Ok(0)
        }
        Cmd::Save { output, images } => {
            let e = engine()?;
            if output.is_none() && term::stdout_is_tty() {
                return Err(fail(
                    "cowardly refusing to save to a terminal. Use the -o flag or redirect",
                ));
            }
            let names: Vec<&str> = images.iter().map(String::as_str).collect();
            let w: Box<dyn Write> = match output {
                Some(p) => Box::new(std::fs::File::create(p)?),
                None => Box::new(io::stdout().lock()),
            };
            e.graph()?
                .save(&names, longshore_graph::ArchiveFormat::Docker, w)
                .map_err(|err| fail(format!("Error response from daemon: {err}")))?;
            Ok(0)
        }
        Cmd::Load { input, quiet } => {
            let e = engine()?;
            let r: Box<dyn Read + Send> = match input {
                Some(p) => Box::new(std::fs::File::open(p)?),
                None => Box::new(io::stdin()),
            };
            // docker's habit: per-layer progress on a terminal only, else just the result
            let quiet = quiet || !io::stdout().is_terminal();
            let display = std::sync::Mutex::new(progress::Display::new());
            let report = |p: longshore_graph::LoadProgress<'_>| {
                if !quiet {
                    let mut d = display.lock().unwrap_or_else(|p| p.into_inner());
                    let _ = d.show(&longshore_engine::load_message(&p));
                }
            };
            let loaded = e.load_images(r, &report)?;
            print_loaded(&loaded);
            Ok(0)
        }
        Cmd::Events {
            since,
            until,
            filter,
            format,
        } => {
            let e = engine()?;
            let mut o = longshore_engine::EventsOptions::default();
            o.since = since.as_deref().map(event_time).transpose()?;
            o.until = until.as_deref().map(event_time).transpose()?;
            if o.since.is_none() && o.until.is_none() {
                o.since = Some(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_secs() as i64,
                );
            }
            for f in filter {
                let (k, v) = f.split_once('=').ok_or_else(|| {
                    fail(format!("bad format of filter (expected name=value): {f}"))
                })?;
                o.filters.push((k.into(), v.into()));
            }
            let t = format.as_deref().map(Template::parse).transpose()?;
            let out = io::stdout();
            e.events(&o, &mut |ev| {
                let line = event_line(&ev, t.as_ref());
                let mut o = out.lock();
                writeln!(o, "{line}").is_ok() && o.flush().is_ok()
            })?;
            Ok(0)
        }
        Cmd::Info { format } => {
            let e = engine()?;
            let cs = e.containers()?;
            let count = |s: &str| cs.iter().filter(|c| c.live_status() == s).count();
            let v = json!({
                "Containers": cs.len(),
                "ContainersRunning": count("running"),
                "ContainersPaused": count("paused"),
                "ContainersStopped": count("exited") + count("created"),
                "Images": e.graph()?.images().map(|i| i.len()).unwrap_or(0),
                "Driver": e.graph()?.driver().name(),
                "DockerRootDir": root,
                "OperatingSystem": std::fs::read_to_string("/etc/os-release").ok().and_then(|s| s.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string()))).unwrap_or_default(),
                "KernelVersion": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
                "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
                "ServerVersion": env!("CARGO_PKG_VERSION"),
                "Name": std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim(),
                "LoggingDriver": "json-file",
                "CgroupDriver": "cgroupfs",
            });
            print_info(&v, format)
        }
        Cmd::Attach {
            no_stdin,
            sig_proxy,
            detach_keys,
            container,
        } => {
            let e = engine()?;
            let c = e.container(&container)?;
            if c.live_status() != "running" {
                return Err(fail(
                    "You cannot attach to a stopped container, start it first",
                ));
            }
            let (id, tty, open_stdin) = (
                c.record.id.clone(),
                c.record.config.tty,
                c.record.config.open_stdin,
            );
            drop(e);
            term::attach_loop(
                None,
                &id,
                open_stdin && !no_stdin,
                tty,
                sig_proxy,
                detach_keys.as_deref(),
                root,
            )
            .map_err(Into::into)
        }
        Cmd::Build(b) => {
            let BuildOpts {
                tag,
                file,
                build_arg,
                target,
                no_cache,
                cache_from,
                quiet,
                rm,
                force_rm,
                label,
                pull,
                iidfile,
                network,
                platform,
                secret,
                progress,
                output,
                ssh,
                context,
            } = b;
            let terminal = build_checks(platform.as_deref(), &progress, output.as_deref(), &ssh)?;
            let secrets = build_secrets(&secret)?;
            let extras =
                longshore_engine::build::BuildAuths::default().with_network(network.as_deref())?;
            let e = engine()?;
            let ctx = if context == "-" {
                longshore_engine::build::BuildContext::tar(io::stdin())
            } else {
                longshore_engine::build::BuildContext::dir(&context)
            }
            .map_err(|err| fail(format!("ERROR: {err}")))?;
            let df_path = match &file {
                Some(f) if f.as_os_str() == "-" => None,
                Some(f) => Some(f.clone()),
                None if context == "-" => None,
                None => Some(PathBuf::from(&context).join("Dockerfile")),
            };
            let dockerfile = match &df_path {
                Some(p) => std::fs::read_to_string(p).or_else(|err| {
                    // a Dockerfile inside a tar context
                    if context == "-" {
                        std::fs::read_to_string(ctx.root().join(p))
                    } else {
                        Err(err)
                    }
                }),
                None if context == "-" => std::fs::read_to_string(ctx.root().join("Dockerfile")),
                None => {
                    let mut s = String::new();
                    io::stdin().read_to_string(&mut s).map(|_| s)
                }
            }
            .map_err(|err| fail(format!("ERROR: failed to read the Dockerfile: {err}")))?;
            let mut opts = longshore_engine::build::BuildOptions {
                dockerfile,
                dockerfile_name: df_path
                    .as_ref()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "Dockerfile".into()),
                ..Default::default()
            };

            for a in build_arg {
                match a.split_once('=') {
                    Some((k, v)) => opts.build_args.insert(k.into(), v.into()),
                    None => opts
                        .build_args
                        .insert(a.clone(), std::env::var(&a).unwrap_or_default()),
                };
            }
            for l in label {
                let (k, v) = l.split_once('=').unwrap_or((&l, ""));
                opts.labels.insert(k.into(), v.into());
            }
            opts.target = target;
            opts.tags = tag;
            opts.no_cache = no_cache;
            opts.cache_from = cache_from;
            opts.quiet = quiet;
            opts.terminal = terminal.unwrap_or_else(term::stdout_is_tty);
            opts.secrets = secrets;
            opts.rm = rm;
            opts.force_rm = force_rm;
            opts.pull = pull;
            if !quiet {
                // what docker's client says as it sends the context (the size of its tar)
                println!(
                    "Sending build context to Docker daemon  {}",
                    progress::size4(tar_size(ctx.root()))
                );
            }
            let mut out = io::stdout();
            // a failed RUN's own exit code, as docker build's (and the API's errorDetail)
            // in process the engine reads config.json's credentials itself
            let built = e
                .build_with_auths(&ctx, &opts, &extras, &mut out)
                .map_err(|f| Failure {
                    code: f.code.clamp(1, 255) as u8,
                    msg: format!("ERROR: {}", f.error),
                })?;
            // with -q, libbuild prints the image ID itself
            if let Some(p) = iidfile {
                write_iidfile(&p, &built.id.to_string())?;
            }
            Ok(0)
        }
        Cmd::Update(u) => {
            let UpdateOpts {
                memory,
                memory_swap,
                cpu_shares,
                cpus,
                cpuset_cpus,
                pids_limit,
                restart,
                cpu_period,
                cpu_quota,
                memory_reservation,
                blkio_weight,
                containers,
            } = u;
            let e = engine()?;
            let mut req = longshore_engine::UpdateRequest::default();
            req.cpu_period = cpu_period;
            req.cpu_quota = cpu_quota;
            req.memory_reservation = memory_reservation;
            req.blkio_weight = blkio_weight;
            req.memory = memory;
            req.memory_swap = memory_swap;
            req.cpu_shares = cpu_shares;
            req.cpus = cpus;
            req.cpuset_cpus = cpuset_cpus;
            req.pids_limit = pids_limit;
            req.restart = restart;
            each(e, containers, |e, c| {
                for w in e.update_container(c, &req)? {
                    eprintln!("WARNING: {w}");
                }
                Ok(())
            })
        }
        Cmd::Cp {
            archive: _,
            follow_link: _,
            src,
            dest,
        } => cmd_cp(&engine()?, &src, &dest),
        Cmd::Stats {
            no_stream,
            all,
            format,
            no_trunc,
            containers,
        } => cmd_stats(&engine()?, no_stream, all, format, no_trunc, containers),
        Cmd::Login {
            username,
            password,
            password_stdin,
            server,
            ..
        } => {
            let (server, creds) = login_credentials(username, password, password_stdin, server)?;
            let e = engine()?;
            let rt = runtime()?;
            rt.block_on(e.login(&server, creds.clone()))?;
            save_login(config_dir, &server, &creds)
        }
        Cmd::Logout { server } => logout(config_dir, server),
        Cmd::Push {
            all_tags,
            quiet,
            image,
        } => {
            let e = engine()?;
            let rt = runtime()?;
            let mut d = progress::Display::new();
            let reference = longshore_registry::Reference::parse(&image)
                .map_err(|err| fail(format!("invalid reference format: {image}: {err}")))?;
            let tags = if all_tags {
                e.repository_tags(&all_tags_repository(&image)?)?
            } else {
                vec![image.clone()]
            };
            if !quiet {
                d.show(&json!({"status": format!("The push refers to repository [{}/{}]", reference.domain(), reference.path())}))
                    .map_err(fail)?;
            }
            for tagged in tags {
                let rep = with_progress(&rt, &mut d, quiet, true, |tx| {
                    let mut o = longshore_engine::PushJobOptions::default();
                    o.progress = Some(tx);
                    let e = &e;
                    async move { e.push(&tagged, &o).await }
                })?;
                if quiet {
                    if !all_tags {
                        println!("{}", rep.reference);
                    }
                } else {
                    println!("{}: digest: {} size: {}", rep.tag, rep.digest, rep.size);
                }
            }
            if quiet && all_tags {
                println!("{}", all_tags_repository(&image)?);
            }
            Ok(0)
        }
        Cmd::Search {
            limit,
            filter,
            format,
            no_trunc,
            term,
            ..
        } => {
            let e = engine()?;
            let rt = runtime()?;
            let results = rt.block_on(e.search(&term, limit))?;
            let rows: Vec<Value> = results
                .into_iter()
                .map(|r| json!({"name": r.name, "description": r.description, "star_count": r.stars, "is_official": r.official, "is_automated": r.automated}))
                .collect();
            print_search(rows, &filter, format, no_trunc, limit)
        }
        Cmd::Daemon {
            hosts,
            group,
            pidfile,
            data_root,
            debug,
            insecure_tcp,
            label,
            config_file,
            tls,
            tlsverify,
            tlscacert,
            tlscert,
            tlskey,
            engine,
        } => {
            let mut d = longshore_engine::api::DaemonOptions::default();
            d.hosts = hosts;
            d.group = group;
            d.pidfile = pidfile;
            d.debug = debug;
            d.insecure_tcp = insecure_tcp;
            d.labels = label;
            d.config_file = config_file;
            d.tls = tls;
            d.tls_verify = tlsverify;
            d.tls_ca_cert = tlscacert;
            d.tls_cert = tlscert;
            d.tls_key = tlskey;
            let mut e = longshore_engine::api::EngineSettings::default();
            e.data_root = data_root;
            e.storage_driver = engine.storage_driver;
            e.storage_opts = engine.storage_opt;
            e.bridge = engine.bridge;
            e.fixed_cidr = engine.fixed_cidr;
            e.mtu = engine.mtu;
            e.icc = engine.icc;
            e.ip = engine.ip;
            e.ip_forward = engine.ip_forward;
            e.ip_masq = engine.ip_masq;
            e.iptables = engine.iptables;
            e.dns = engine.dns;
            e.dns_search = engine.dns_search;
            e.registry_mirrors = engine.registry_mirror;
            e.log_level = engine.log_level;
            e.max_concurrent_downloads = engine.max_concurrent_downloads;
            e.max_concurrent_uploads = engine.max_concurrent_uploads;
            d.engine = e;
            // as dockerd, the daemon reads no credential store: a request's X-Registry-Auth
            // is all it uses, for that request only
            let mut opts = opts.clone();
            opts.client.credential_store = None;
            // as dockerd at boot, run_daemon restarts the containers whose restart policy
            // says so
            longshore_engine::api::run_daemon(root, opts, &d)
                .map(|()| 0)
                .map_err(|e| fail(format!("longshore daemon: {e}")))
        }
        Cmd::Completion { shell } => {
            clap_complete::generate(
                shell,
                &mut completion_command(),
                "longshore",
                &mut io::stdout(),
            );
            Ok(0)
        }
        Cmd::Volume(v) => cmd_volume(&engine()?, v),
        Cmd::Network(n) => cmd_network(&engine()?, n),
    }
}

/// `load`'s result: docker's "Loaded image" lines.
fn print_loaded(loaded: &[(String, Vec<String>)]) {
    for (id, tags) in loaded {
        if tags.is_empty() {
            println!("Loaded image ID: {id}");
        }
        for t in tags {
            println!("Loaded image: {t}");
        }
    }
}

/// Starts a container with this process attached from its first byte: the connection
/// (None when it ran already: `attach_loop` connects then).
fn start_attached(
    e: &Engine,
    id: &str,
    stdin: bool,
) -> Result<Option<longshore_engine::Attached>, Error> {
    let streams = AttachStreams {
        stdin,
        stdout: true,
        stderr: true,
    };
    let (_, made) = e.start_attached(id, &[streams])?;
    made.into_iter().next().transpose()
}

/// Runs `f` on each container, printing its name as docker does, or the error.
fn each(
    e: Engine,
    names: Vec<String>,
    f: impl Fn(&Engine, &str) -> longshore_engine::Result<()>,
) -> Res<u8> {
    each_named(names, |n| f(&e, n))
}

fn read_env_file(p: &PathBuf) -> Res<Vec<String>> {
    let s = std::fs::read_to_string(p).map_err(|e| fail(format!("open {}: {e}", p.display())))?;
    Ok(s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect())
}

/// `run` and `create`. The engine (and with it the image store, which other `longshore`
/// processes wait for) is released before attaching to the container.
fn cmd_run(e: Engine, o: RunOpts, run: bool) -> Res<u8> {
    let mut req = CreateRequest::default();
    let mut env = Vec::new();
    for f in &o.env_file {
        env.extend(read_env_file(f)?);
    }
    env.extend(o.env.clone());
    let mut labels = std::collections::BTreeMap::new();
    for l in &o.label {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_string(), v.to_string());
    }
    req.image = o.image.clone();
    req.cmd = o.args.clone();
    req.entrypoint = o.entrypoint.clone();
    req.name = o.name.clone();
    req.env = env;
    req.hostname = o.hostname.clone();
    req.user = o.user.clone();
    req.workdir = o.workdir.clone();
    req.labels = labels;
    req.tty = o.tty;
    req.interactive = o.interactive;
    req.attach = o.attach.clone();
    req.expose = o.expose.clone();
    req.publish = o.publish.clone();
    req.publish_all = o.publish_all;
    req.network = o.network.clone();
    req.restart = o.restart.clone();
    req.auto_remove = o.rm;
    req.volumes = o.volume.clone();
    req.volumes_from = o.volumes_from.clone();
    req.tmpfs = o.tmpfs.clone();
    req.read_only = o.read_only;
    req.privileged = o.privileged;
    req.cap_add = o.cap_add.clone();
    req.cap_drop = o.cap_drop.clone();
    req.security_opt = o.security_opt.clone();
    req.dns = o.dns.clone();
    req.dns_search = o.dns_search.clone();
    req.add_host = o.add_host.clone();
    req.links = o.link.clone();
    req.mac_address = o.mac_address.clone();
    req.memory = o.memory.clone();
    req.memory_swap = o.memory_swap.clone();
    req.cpu_shares = o.cpu_shares;
    req.cpus = o.cpus;
    req.cpuset_cpus = o.cpuset_cpus.clone();
    req.pids_limit = o.pids_limit;
    req.ulimits = o.ulimit.clone();
    req.devices = o.device.clone();
    req.ipc = o.ipc.clone();
    req.pid = o.pid.clone();
    req.uts = o.uts.clone();
    req.init = o.init;
    req.stop_signal = o.stop_signal.clone();
    req.stop_timeout = o.stop_timeout;
    req.health = longshore_engine::health::HealthConfig {
        test: o
            .health_cmd
            .iter()
            .flat_map(|c| ["CMD-SHELL".to_string(), c.clone()])
            .collect(),
        interval: o.health_interval.unwrap_or(0),
        timeout: o.health_timeout.unwrap_or(0),
        start_period: o.health_start_period.unwrap_or(0),
        start_interval: o.health_start_interval.unwrap_or(0),
        retries: o.health_retries.unwrap_or(0),
    };
    req.no_healthcheck = o.no_healthcheck;
    req.log_driver = o.log_driver.clone();
    req.log_opts = o.log_opt.clone();
    req.lxc_conf = o.lxc_conf.clone();
    run_extras(&o, &mut req)?;
    let created = match e.create_container(&req) {
        Err(Error::NoSuchImage(img)) if o.pull != "never" => {
            eprintln!("Unable to find image '{img}' locally");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(e.pull(&img, &Default::default()))
                .map_err(|err| Failure {
                    code: 125,
                    msg: format!(
                        "longshore: Error response from daemon: {err}.\nSee 'longshore run --help'."
                    ),
                })?;
            e.create_container(&req)
        }
        r => r,
    };
    let c = created.map_err(|err| Failure {
        code: err.exit_code() as u8,
        msg: format!(
            "longshore: Error response from daemon: {err}.\nSee 'longshore {} --help'.",
            if run { "run" } else { "create" }
        ),
    })?;
    let id = c.record.id.clone();
    if let Some(p) = &o.cidfile {
        std::fs::write(p, &id)
            .map_err(|err| fail(format!("write cidfile {}: {err}", p.display())))?;
    }
    if !run {
        println!("{id}");
        return Ok(0);
    }
    if o.detach {
        let c = e
            .start_container(&id, &StartOptions::default())
            .map_err(run_error)?;
        for w in &c.state.warnings {
            eprintln!("WARNING: {w}");
        }
        println!("{id}");
        return Ok(0);
    }
    let made = start_attached(&e, &id, o.interactive).map_err(run_error)?;
    let root = e.root().to_path_buf();
    drop(e);
    let code = term::attach_loop(
        made,
        &id,
        o.interactive,
        o.tty,
        o.sig_proxy,
        o.detach_keys.as_deref(),
        &root,
    )?;
    if o.rm {
        // as docker: `run --rm` returns once the container is gone (its monitor removes it),
        // so that its name can be used again at once
        longshore_engine::containers::wait_removed(&root, &id, std::time::Duration::from_secs(30));
    }
    Ok(code)
}

/// What `run`/`create` cannot honour here: a clear "not supported" (125), never silence.
fn refuse_unsupported_run_flags(o: &RunOpts) -> Res<()> {
    if let Some(u) = o.userns.as_deref().filter(|u| !u.is_empty()) {
        return Err(fail(format!(
            "--userns={u} is not supported: longshore has no user namespace remapping"
        )));
    }
    if let Some(r) = o
        .runtime
        .as_deref()
        .filter(|r| !r.is_empty() && *r != "runc" && *r != "longshore")
    {
        return Err(fail(format!(
            "--runtime={r} is not supported: longshore runs containers with its own runtime"
        )));
    }
    if !o.storage_opt.is_empty() {
        return Err(fail(
            "--storage-opt is not supported: the storage drivers here take no per-container options",
        ));
    }
    Ok(())
}

/// The `run`/`create` flags beyond the seed's, into the engine's request.
fn run_extras(o: &RunOpts, req: &mut CreateRequest) -> Res<()> {
    refuse_unsupported_run_flags(o)?;
    req.shm_size = o.shm_size.clone();
    req.sysctls = o.sysctl.clone();
    req.network_aliases = o.network_alias.clone();
    req.group_add = o.group_add.clone();
    req.cpu_period = o.cpu_period;
    req.cpu_quota = o.cpu_quota;
    req.memory_reservation = o.memory_reservation.clone();
    req.blkio_weight = o.blkio_weight;
    req.oom_kill_disable = o.oom_kill_disable;
    req.cgroup_parent = o.cgroup_parent.clone();
    req.ip = o.ip.clone();
    req.platform = o.platform.clone();
    req.mounts = o
        .mount
        .iter()
        .map(|m| longshore_engine::MountSpec::parse(m))
        .collect::<longshore_engine::Result<_>>()?;
    Ok(())
}

fn run_error(err: Error) -> Failure {
    Failure {
        code: err.exit_code() as u8,
        msg: format!("longshore: Error response from daemon: {err}."),
    }
}

fn ago(t: &str) -> String {
    ago_secs(longshore_engine::containers::unix_time(t))
}

/// Docker's sizes: decimal units, three significant digits (`1.23MB`, `4.1kB`).
fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let s = format!("{v:.3}");
    let s = if s.contains('.') {
        let digits: String = s.chars().take(4).collect();
        digits
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        s
    };
    format!("{s}{}", units[i])
}

fn ps_row(s: &longshore_engine::Summary, no_trunc: bool) -> Value {
    let ports: Vec<String> = s
        .ports
        .iter()
        .map(|p| match (p.ip.as_deref(), p.public_port) {
            (Some(ip), Some(pp)) => format!("{ip}:{pp}->{}/{}", p.private_port, p.kind),
            _ => format!("{}/{}", p.private_port, p.kind),
        })
        .collect();
    let command = if no_trunc || s.command.chars().count() <= 20 {
        format!("\"{}\"", s.command)
    } else {
        format!("\"{}…\"", s.command.chars().take(19).collect::<String>())
    };
    json!({
        "ID": if no_trunc { s.id.clone() } else { short(&s.id) },
        "Image": s.image,
        "Command": command,
        "CreatedAt": s.created,
        "RunningFor": ago(&humantime::format_rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s.created as u64)).to_string()),
        "Ports": ports.join(", "),
        "State": s.state,
        "Status": s.status,
        "Names": s.names.iter().map(|n| n.trim_start_matches('/')).collect::<Vec<_>>().join(","),
        "Labels": s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
    })
}

/// `ps`'s flags as the engine's (and the API's) list options.
fn ps_options(o: &PsOpts) -> Res<ListOptions> {
    let mut lo = ListOptions::default();
    lo.all = o.all;
    lo.limit = if o.latest {
        Some(1)
    } else {
        o.last.and_then(|n| usize::try_from(n).ok())
    };
    lo.filters = parse_filters(&o.filter)?;
    // docker 1.4's --before/--since: the filters, over containers in every state
    if let Some(b) = &o.before {
        lo.filters.push(("before".into(), b.clone()));
        lo.all = true;
    }
    if let Some(s) = &o.since {
        lo.filters.push(("since".into(), s.clone()));
        lo.all = true;
    }
    lo.size = o.size && !o.quiet;
    Ok(lo)
}

/// `-f key=value` flags as pairs.
fn parse_filters(flags: &[String]) -> Res<Vec<(String, String)>> {
    flags
        .iter()
        .map(|f| {
            f.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| fail(format!("bad format of filter (expected name=value): {f}")))
        })
        .collect()
}

fn cmd_ps(e: &Engine, o: PsOpts) -> Res<u8> {
    let list = e.list_containers(&ps_options(&o)?)?;
    print_ps(&list, o)
}

/// `ps`'s output (with `-s`, the rows' `size_rw` and `size_root_fs`).
fn print_ps(list: &[longshore_engine::Summary], o: PsOpts) -> Res<u8> {
    if o.quiet {
        for s in list {
            println!(
                "{}",
                if o.no_trunc {
                    s.id.clone()
                } else {
                    short(&s.id)
                }
            );
        }
        return Ok(0);
    }
    let mut rows: Vec<Value> = list.iter().map(|s| ps_row(s, o.no_trunc)).collect();
    if o.size {
        for (row, s) in rows.iter_mut().zip(list) {
            let rw = s.size_rw.unwrap_or(0).max(0) as u64;
            let all = s.size_root_fs.unwrap_or(0).max(0) as u64;
            row["Size"] = format!("{} (virtual {})", human_size(rw), human_size(all)).into();
        }
    }
    let fmt = o.format.unwrap_or_else(|| {
        let mut f = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}".to_string();
        if o.size {
            f.push_str("\t{{.Size}}");
        }
        f
    });
    let t = Template::parse(&fmt)?;
    print!("{}", render_all(&t, &rows)?);
    Ok(0)
}

/// `images`' filters (the repository argument is a `reference` filter).
fn images_filters(o: &ImagesOpts) -> Res<Vec<(String, String)>> {
    let mut filters = parse_filters(&o.filter)?;
    if let Some(r) = &o.repository {
        filters.push(("reference".into(), r.clone()));
    }
    Ok(filters)
}

fn cmd_images(e: &Engine, o: ImagesOpts) -> Res<u8> {
    let list = e.list_images_all(&images_filters(&o)?, o.all)?;
    print_images(&list, o)
}

/// `images`' output.
fn print_images(list: &[longshore_engine::ImageSummary], o: ImagesOpts) -> Res<u8> {
    let mut rows = Vec::new();
    for i in list {
        let id = if o.no_trunc {
            i.id.clone()
        } else {
            short(&i.id)
        };
        let created = ago(&humantime::format_rfc3339(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(i.created.max(0) as u64),
        )
        .to_string());
        let mut tags: Vec<(String, String)> = i
            .repo_tags
            .iter()
            .map(|t| match t.rsplit_once(':') {
                Some((r, tag)) if !tag.contains('/') => (r.to_string(), tag.to_string()),
                _ => (t.clone(), "<none>".into()),
            })
            .collect();
        // repo@digest: each repository's digest; with --digests, a repository known only
        // by its digest gets a row of its own (TAG <none>), as docker shows it
        let digests: Vec<(String, String)> = i
            .repo_digests
            .iter()
            .filter_map(|d| d.split_once('@'))
            .map(|(r, d)| (r.to_string(), d.to_string()))
            .collect();
        if o.digests {
            for (r, _) in &digests {
                if !tags.iter().any(|(tr, _)| tr == r) {
                    tags.push((r.clone(), "<none>".into()));
                }
            }
        }
        if tags.is_empty() {
            tags.push(("<none>".into(), "<none>".into()));
        }
        for (repo, tag) in tags {
            let digest = digests
                .iter()
                .find(|(r, _)| *r == repo)
                .map_or("<none>", |(_, d)| d.as_str());
            if o.repository.as_ref().is_some_and(|r| {
                // a registry's port is no tag
                let (want_repo, want_tag) = match r.rsplit_once(':') {
                    Some((wr, wt)) if !wt.contains('/') => (wr, wt),
                    _ => (r.as_str(), ""),
                };
                want_repo != repo || (!want_tag.is_empty() && want_tag != tag)
            }) {
                continue;
            }
            rows.push(json!({"ID": id, "Repository": repo, "Tag": tag, "Digest": digest, "CreatedSince": created, "CreatedAt": i.created, "Size": human_size(i.size), "Containers": i.containers}));
        }
    }
    if o.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for r in &rows {
            let id = r["ID"].as_str().unwrap_or_default().to_string();
            if seen.insert(id.clone()) {
                println!("{id}");
            }
        }
        return Ok(0);
    }
    let fmt = o.format.unwrap_or_else(|| {
        if o.digests {
            "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
                .into()
        } else {
            "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}".into()
        }
    });
    let fmt = if fmt.starts_with("table {{.Repository}}\t{{.Tag}}\t{{.ID}}")
        || fmt.starts_with("table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}")
    {
        fmt.replacen("{{.ID}}", "{{.ImageID}}", 1)
    } else {
        fmt
    };
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|mut r| {
            r["ImageID"] = r["ID"].clone();
            r
        })
        .collect();
    let t = Template::parse(&fmt)?;
    print!("{}", render_all(&t, &rows)?);
    Ok(0)
}

fn cmd_stats(
    e: &Engine,
    no_stream: bool,
    all: bool,
    format: Option<String>,
    no_trunc: bool,
    names: Vec<String>,
) -> Res<u8> {
    let ids: Vec<String> = if names.is_empty() {
        let mut lo = ListOptions::default();
        lo.all = all;
        e.list_containers(&lo)?.into_iter().map(|s| s.id).collect()
    } else {
        names
    };
    let sample = |id: &str| match e.container_stats(id) {
        Ok(s) => Ok(Some(s)),
        Err(Error::WrongState(_)) => Ok(None),
        Err(err) => Err(err.into()),
    };
    print_stats(&sample, &ids, no_stream, format, no_trunc)
}

/// One container's `stats` sample (`None`: it is not running), from the engine or the
/// daemon.
type Sampler<'a> = dyn Fn(&str) -> Res<Option<longshore_engine::StatsSample>> + 'a;

/// `stats`' table: CPU use from two samples of each container, then (unless
/// `no_stream`) redrawn every second.
fn print_stats(
    sample: &Sampler<'_>,
    ids: &[String],
    no_stream: bool,
    format: Option<String>,
    no_trunc: bool,
) -> Res<u8> {
    let id_of = |id: &str| {
        if no_trunc { id.to_string() } else { short(id) }
    };
    let fmt = format.unwrap_or_else(|| {
        "table {{.Container}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.PIDs}}"
            .into()
    });
    let t = Template::parse(&fmt)?;
    let mut last: std::collections::HashMap<String, (u64, std::time::Instant)> = Default::default();
    let first = |last: &mut std::collections::HashMap<String, (u64, std::time::Instant)>|
     -> Res<Vec<Value>> {
        let mut rows = Vec::new();
        for id in ids {
            let Some(s) = sample(id)? else {
                rows.push(json!({"Container": id_of(id), "ID": id_of(id), "Name": "--", "CPUPerc": "0.00%", "MemUsage": "0B / 0B", "MemPerc": "0.00%", "PIDs": "0"}));
                continue;
            };
            let now = std::time::Instant::now();
            let cpu = match last.get(id) {
                Some((prev, t)) => {
                    let dt = now.duration_since(*t).as_nanos().max(1) as f64;
                    (s.cpu_usage_ns.saturating_sub(*prev)) as f64 / dt * 100.0
                }
                None => 0.0,
            };
            last.insert(id.clone(), (s.cpu_usage_ns, now));
            let total = std::fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|m| {
                    m.lines()
                        .next()
                        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                })
                .unwrap_or(0)
                * 1024;
            let limit = if s.memory_limit == 0 || s.memory_limit > total {
                total
            } else {
                s.memory_limit
            };
            rows.push(json!({
                "Container": id_of(&s.id), "ID": id_of(&s.id), "Name": s.name,
                "CPUPerc": format!("{cpu:.2}%"),
                "MemUsage": format!("{} / {}", human_binary(s.memory_usage), human_binary(limit)),
                "MemPerc": format!("{:.2}%", if limit > 0 { s.memory_usage as f64 * 100.0 / limit as f64 } else { 0.0 }),
                "PIDs": s.pids.to_string(),
            }));
        }
        Ok(rows)
    };
    // CPU use needs two samples: the first one primes the counters
    first(&mut last)?;
    std::thread::sleep(std::time::Duration::from_millis(if no_stream {
        100
    } else {
        500
    }));
    loop {
        let rows = first(&mut last)?;
        if !no_stream {
            print!("\x1b[2J\x1b[H");
        }
        print!("{}", render_all(&t, &rows)?);
        io::stdout().flush()?;
        if no_stream {
            return Ok(0);
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// Docker's memory sizes in `stats`: binary units (`1.5MiB`), as go-units' BytesSize.
fn human_binary(n: u64) -> String {
    progress::go_units(n, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB"])
}

/// `CONTAINER:PATH` as docker splits it: a colon before any slash.
fn container_path(arg: &str) -> Option<(&str, &str)> {
    let (c, p) = arg.split_once(':')?;
    (!c.is_empty() && !c.contains('/')).then_some((c, p))
}

/// Where `cp` copies from and to: the engine in process, or a daemon.
trait Copier {
    /// A tar of `path` in container `c`, written to `w`.
    fn copy_from(&self, c: &str, path: &str, w: &mut dyn Write) -> Res<()>;
    /// Extracts `tar` into directory `path` of container `c`; `Err((true, _))` when the
    /// path is not an existing directory (the caller then copies to its parent).
    fn copy_to(
        &self,
        c: &str,
        path: &str,
        tar: &mut (dyn Read + Send),
    ) -> Result<(), (bool, Failure)>;
}

impl Copier for Engine {
    fn copy_from(&self, c: &str, path: &str, w: &mut dyn Write) -> Res<()> {
        Ok(self.copy_from_container(c, path, w)?)
    }

    fn copy_to(
        &self,
        c: &str,
        path: &str,
        tar: &mut (dyn Read + Send),
    ) -> Result<(), (bool, Failure)> {
        self.copy_to_container(c, path, tar).map_err(|err| {
            (
                matches!(err, Error::NotFoundPath(_) | Error::InvalidArgument(_)),
                Failure::from(err),
            )
        })
    }
}

fn cmd_cp(e: &dyn Copier, src: &str, dest: &str) -> Res<u8> {
    match (container_path(src), container_path(dest)) {
        (Some(_), Some(_)) => Err(fail("copying between containers is not supported")),
        (None, None) => Err(fail("must specify at least one container source")),
        (Some((c, path)), None) => {
            if dest == "-" {
                e.copy_from(c, path, &mut io::stdout().lock())?;
                return Ok(0);
            }
            let dest = PathBuf::from(dest);
            let (dir, rename) = if dest.is_dir() {
                (dest.clone(), None)
            } else {
                let parent = dest
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(std::path::Path::new("."));
                if !parent.is_dir() {
                    return Err(fail(format!(
                        "destination directory {} does not exist",
                        parent.display()
                    )));
                }
                (parent.to_path_buf(), Some(dest.clone()))
            };
            // extracted beside the destination (never following a link in the archive out of
            // it), then renamed to the destination's name when that differs
            let stage = tempfile_dir(&dir)?;
            let mut buf = Vec::new();
            e.copy_from(c, path, &mut buf)?;
            longshore_graph::apply_layer(
                &buf[..],
                stage.path(),
                &longshore_graph::ApplyOptions::default(),
            )
            .map_err(|err| fail(format!("extract {src}: {err}")))?;
            for entry in std::fs::read_dir(stage.path())? {
                let entry = entry?;
                let target = match &rename {
                    Some(r) => r.clone(),
                    None => dir.join(entry.file_name()),
                };
                if target.is_dir() && entry.path().is_dir() {
                    // merge into an existing directory, as docker does
                    let status = std::process::Command::new("cp")
                        .arg("-a")
                        .arg(format!("{}/.", entry.path().display()))
                        .arg(&target)
                        .status()?;
                    if !status.success() {
                        return Err(fail(format!("copy into {}", target.display())));
                    }
                } else {
                    std::fs::rename(entry.path(), &target)?;
                }
            }
            Ok(0)
        }
        (None, Some((c, path))) => {
            if src == "-" {
                e.copy_to(c, path, &mut io::stdin()).map_err(|(_, f)| f)?;
                return Ok(0);
            }
            let src_path = PathBuf::from(src);
            let md = std::fs::symlink_metadata(&src_path)
                .map_err(|err| fail(format!("stat {src}: {err}")))?;
            let tar_of = |name: &std::path::Path| -> Res<Vec<u8>> {
                let mut b = tar::Builder::new(Vec::new());
                b.follow_symlinks(false);
                if md.is_dir() {
                    if src.ends_with("/.") {
                        b.append_dir_all(".", &src_path)?;
                    } else {
                        b.append_dir_all(name, &src_path)?;
                    }
                } else {
                    b.append_path_with_name(&src_path, name)?;
                }
                Ok(b.into_inner()?)
            };
            let base = src_path
                .file_name()
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."));
            // into an existing directory under the source's name; else as the new path
            match e.copy_to(c, path, &mut &tar_of(&base)?[..]) {
                Ok(()) => Ok(0),
                Err((true, _)) if !path.trim_end_matches('/').is_empty() => {
                    let p = std::path::Path::new(path.trim_end_matches('/'));
                    let parent = p
                        .parent()
                        .map(|p| p.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "/".into());
                    let name = p.file_name().map(PathBuf::from).unwrap_or(base);
                    e.copy_to(c, &parent, &mut &tar_of(&name)?[..])
                        .map_err(|(_, f)| f)?;
                    Ok(0)
                }
                Err((_, f)) => Err(f),
            }
        }
    }
}

fn tempfile_dir(beside: &std::path::Path) -> Res<TempDir> {
    let n = std::process::id();
    for i in 0..100 {
        let p = beside.join(format!(".longshore-cp-{n}-{i}"));
        if std::fs::create_dir(&p).is_ok() {
            return Ok(TempDir(p));
        }
    }
    Err(fail(format!(
        "cannot create a temporary directory in {}",
        beside.display()
    )))
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn print_json_or_template(values: &[Value], format: Option<String>) -> Res<u8> {
    match format {
        Some(f) => {
            let t = Template::parse(&f)?;
            for v in values {
                println!("{}", t.render(v)?);
            }
        }
        None => println!(
            "{}",
            serde_json::to_string_pretty(values).unwrap_or_default()
        ),
    }
    Ok(0)
}

/// `volume ls`'s output.
fn print_volumes(
    vols: &[longshore_engine::Volume],
    quiet: bool,
    format: Option<String>,
) -> Res<u8> {
    if quiet {
        for v in vols {
            println!("{}", v.name);
        }
        return Ok(0);
    }
    let rows: Vec<Value> = vols
        .iter()
        .map(|v| json!({"Driver": v.driver, "Name": v.name, "VolumeName": v.name, "Mountpoint": v.mountpoint}))
        .collect();
    let fmt = format.unwrap_or_else(|| "table {{.Driver}}\t{{.VolumeName}}".into());
    let fmt = if fmt == "table {{.Driver}}\t{{.Name}}" {
        "table {{.Driver}}\t{{.VolumeName}}".to_string()
    } else {
        fmt
    };
    print!("{}", render_all(&Template::parse(&fmt)?, &rows)?);
    Ok(0)
}

/// `network ls`'s output from (full ID, name, driver, scope) rows, filtered (name,
/// id, driver, scope, type) and formatted as docker does.
fn print_networks(rows: Vec<[String; 4]>, o: NetworkLsOpts) -> Res<u8> {
    let filters = parse_filters(&o.filter)?;
    for (k, _) in &filters {
        if !matches!(k.as_str(), "name" | "id" | "driver" | "scope" | "type") {
            return Err(fail(format!("invalid filter '{k}'")));
        }
    }
    let builtin = |name: &str| matches!(name, "bridge" | "host" | "none");
    let keep = |[id, name, driver, scope]: &[String; 4]| {
        let ok = |key: &str, f: &dyn Fn(&str) -> bool| {
            let vals: Vec<&String> = filters
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v)
                .collect();
            vals.is_empty() || vals.iter().any(|v| f(v))
        };
        ok("name", &|v| name.contains(v))
            && ok("id", &|v| !id.is_empty() && id.starts_with(v))
            && ok("driver", &|v| driver == v)
            && ok("scope", &|v| scope == v)
            && ok("type", &|v| match v {
                "builtin" => builtin(name),
                "custom" => !builtin(name),
                _ => false,
            })
    };
    let rows: Vec<&[String; 4]> = rows.iter().filter(|r| keep(r)).collect();
    if o.quiet {
        for [id, ..] in rows {
            println!("{}", if o.no_trunc { id.clone() } else { short(id) });
        }
        return Ok(0);
    }
    let values: Vec<Value> = rows
        .iter()
        .map(|[id, name, driver, scope]| {
            let id = if o.no_trunc { id.clone() } else { short(id) };
            json!({"ID": id, "NetworkID": id, "Name": name, "Driver": driver, "Scope": scope,
                   "IPv6": "false", "Internal": "false"})
        })
        .collect();
    let fmt = o
        .format
        .unwrap_or_else(|| "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}".into());
    // a table's ID column is headed NETWORK ID
    let fmt = if fmt.starts_with("table") {
        fmt.replace("{{.ID}}", "{{.NetworkID}}")
    } else {
        fmt
    };
    print!("{}", render_all(&Template::parse(&fmt)?, &values)?);
    Ok(0)
}

fn cmd_volume(e: &Engine, cmd: VolumeCmd) -> Res<u8> {
    match cmd {
        VolumeCmd::Create {
            label,
            driver,
            opt,
            name,
        } => {
            let opts = volume_opts(&opt)?;
            if driver != "local" {
                return Err(fail(format!(
                    "Error response from daemon: volume driver {driver:?} is not supported (local)"
                )));
            }
            let labels = label
                .iter()
                .map(|l| {
                    let (k, v) = l.split_once('=').unwrap_or((l, ""));
                    (k.to_string(), v.to_string())
                })
                .collect();
            let v = e.create_volume_with_options(name.as_deref(), labels, opts)?;
            println!("{}", v.name);
            Ok(0)
        }
        VolumeCmd::Ls {
            quiet,
            filter,
            format,
        } => print_volumes(&e.list_volumes(&parse_filters(&filter)?)?, quiet, format),
        VolumeCmd::Inspect { format, names } => {
            let mut out = Vec::new();
            for n in &names {
                out.push(serde_json::to_value(e.volume(n)?).unwrap_or_default());
            }
            print_json_or_template(&out, format)
        }
        VolumeCmd::Rm { force, names } => each_named(names, |n| e.remove_volume(n, force)),
        VolumeCmd::Prune { all, force, filter } => {
            let f = prune_filters(&filter, VOLUME_PRUNE_FILTERS)?;
            let what = if all {
                "This will remove all local volumes not used by at least one container."
            } else {
                "This will remove anonymous local volumes not used by at least one container."
            };
            if !confirm(force, what) {
                return Ok(0);
            }
            let rep = e.prune_volumes_report(all, &f)?;
            print_prune("Deleted Volumes:", &rep);
            Ok(0)
        }
    }
}

fn cmd_network(e: &Engine, cmd: NetworkCmd) -> Res<u8> {
    let net_err =
        |err: longshore_network::Error| fail(format!("Error response from daemon: {err}"));
    match cmd {
        NetworkCmd::Create {
            driver,
            subnet,
            ip_range,
            gateway,
            label,
            internal,
            aux_address,
            opt,
            name,
        } => {
            let gw = network_gateway(subnet.as_deref(), gateway.as_deref(), ip_range.as_deref())?;
            let aux = aux_addresses(&aux_address)?;
            if driver != "bridge" {
                return Err(fail(format!(
                    "Error response from daemon: plugin \"{driver}\" not found"
                )));
            }
            let mut req = longshore_network::NetworkCreate::new(name.clone());
            if let Some(s) = subnet {
                let n: ipnetwork::Ipv4Network = s
                    .parse()
                    .map_err(|err| fail(format!("invalid subnet {s:?}: {err}")))?;
                // the gateway is the first address of the subnet, as Docker picks it,
                // or --gateway
                let gw = ipnetwork::Ipv4Network::new(
                    gw.unwrap_or_else(|| std::net::Ipv4Addr::from(u32::from(n.network()) + 1)),
                    n.prefix(),
                )
                .map_err(|err| fail(format!("invalid subnet {s:?}: {err}")))?;
                req.gateway = Some(gw);
            }
            for l in &label {
                let (k, v) = l.split_once('=').unwrap_or((l, ""));
                req.labels.insert(k.to_string(), v.to_string());
            }
            req.aux_addresses = aux;
            req.internal = internal;
            if let Some(r) = ip_range {
                req.fixed_cidr = Some(
                    r.parse()
                        .map_err(|err| fail(format!("invalid --ip-range {r:?}: {err}")))?,
                );
            }
            for o in opt {
                match o.split_once('=') {
                    Some(("com.docker.network.bridge.name", v)) => req.bridge = Some(v.to_string()),
                    Some(("com.docker.network.bridge.enable_icc", v)) => {
                        req.icc = if v == "false" {
                            longshore_network::Icc::Isolated
                        } else {
                            longshore_network::Icc::Allowed
                        }
                    }
                    Some(("com.docker.network.driver.mtu", v)) => req.mtu = v.parse().ok(),
                    _ => return Err(fail(format!("unsupported network option {o:?}"))),
                }
            }
            let info = e.network()?.create_network(&req).map_err(net_err)?;
            println!(
                "{}",
                if info.id.is_empty() {
                    info.name
                } else {
                    info.id
                }
            );
            Ok(0)
        }
        NetworkCmd::Ls(o) => {
            let nets = e.network()?.list_networks().map_err(net_err)?;
            let mut rows: Vec<[String; 4]> = nets
                .iter()
                .map(|n| {
                    [
                        n.id.clone(),
                        n.name.clone(),
                        "bridge".into(),
                        "local".into(),
                    ]
                })
                .collect();
            // the daemon's IDs of the two built-in networks are their names
            rows.push(["host".into(), "host".into(), "host".into(), "local".into()]);
            rows.push(["none".into(), "none".into(), "null".into(), "local".into()]);
            print_networks(rows, o)
        }
        NetworkCmd::Inspect { format, names } => {
            let mut out = Vec::new();
            for n in &names {
                let info = e
                    .network()?
                    .network(n)
                    .map_err(|_| Failure::from(Error::NoSuchNetwork(n.clone())))?;
                out.push(json!({
                    "Name": info.name, "Id": info.id, "Driver": "bridge", "Scope": "local",
                    "IPAM": {"Driver": "default", "Config": [{"Subnet": info.gateway.network().to_string() + "/" + &info.gateway.prefix().to_string(), "Gateway": info.gateway.ip().to_string(), "AuxiliaryAddresses": info.aux_addresses}]},
                    "Internal": info.internal,
                    "Options": {"com.docker.network.bridge.name": info.bridge, "com.docker.network.bridge.enable_icc": info.icc.to_string(), "com.docker.network.driver.mtu": info.mtu.to_string()},
                    "Labels": info.labels,
                }));
            }
            print_json_or_template(&out, format)
        }
        NetworkCmd::Connect {
            alias,
            ip,
            network,
            container,
        } => {
            let mut o = longshore_engine::ConnectOptions::new();
            o.aliases = alias;
            if let Some(ip) = ip {
                o.ip = Some(
                    ip.parse()
                        .map_err(|_| fail(format!("invalid IPv4 address {ip:?} (--ip)")))?,
                );
            }
            e.connect_network(&network, &container, &o)
                .map_err(|err| fail(format!("Error response from daemon: {err}")))?;
            Ok(0)
        }
        NetworkCmd::Disconnect {
            force,
            network,
            container,
        } => {
            e.disconnect_network(&network, &container, force)
                .map_err(|err| fail(format!("Error response from daemon: {err}")))?;
            Ok(0)
        }
        NetworkCmd::Prune { force, filter } => {
            let f = prune_filters(&filter, CONTAINER_PRUNE_FILTERS)?;
            if !confirm(force, NETWORK_PRUNE_WARNING) {
                return Ok(0);
            }
            print_deleted("Deleted Networks:", &e.prune_networks(&f)?);
            Ok(0)
        }
        NetworkCmd::Rm { names } => each_named(names, |n| {
            e.network()?.remove_network(n).map_err(|err| match err {
                longshore_network::Error::NetworkNotFound(_) => Error::NoSuchNetwork(n.to_string()),
                err => Error::Network {
                    op: format!("remove network {n}"),
                    source: err,
                },
            })
        }),
    }
}

/// Runs `f` on each name, printing it as docker does, or the error (exit 1).
fn each_named(names: Vec<String>, f: impl Fn(&str) -> longshore_engine::Result<()>) -> Res<u8> {
    let mut failed = false;
    for n in names {
        match f(&n) {
            Ok(()) => println!("{n}"),
            Err(err) => {
                eprintln!("Error response from daemon: {err}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// Docker's prune prompt; true to go on (always with `-f`).
fn confirm(force: bool, what: &str) -> bool {
    if force {
        return true;
    }
    eprint!("WARNING! {what}\nAre you sure you want to continue? [y/N] ");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    matches!(line.trim(), "y" | "Y" | "yes" | "Yes" | "YES")
}

/// A prune's list (when anything went) and the space it freed.
/// `network create --gateway`: an address inside `--subnet`, which it needs (docker's
/// words); `--ip-range` needs a subnet too.
fn network_gateway(
    subnet: Option<&str>,
    gateway: Option<&str>,
    ip_range: Option<&str>,
) -> Res<Option<std::net::Ipv4Addr>> {
    if subnet.is_none() && (gateway.is_some() || ip_range.is_some()) {
        return Err(fail(
            "every ip-range or gateway must have a corresponding subnet",
        ));
    }
    let (Some(s), Some(g)) = (subnet, gateway) else {
        return Ok(None);
    };
    let n: ipnetwork::Ipv4Network = s
        .parse()
        .map_err(|err| fail(format!("invalid subnet {s:?}: {err}")))?;
    let ip: std::net::Ipv4Addr = g
        .parse()
        .map_err(|_| fail(format!("invalid gateway {g:?}: expected an IPv4 address")))?;
    if !n.contains(ip) {
        return Err(fail(format!("no matching subnet for gateway {g}")));
    }
    Ok(Some(ip))
}

/// `network create --aux-address name=ip`s.
fn aux_addresses(flags: &[String]) -> Res<std::collections::BTreeMap<String, std::net::Ipv4Addr>> {
    flags
        .iter()
        .map(|a| {
            a.split_once('=')
                .and_then(|(n, ip)| Some((n.to_string(), ip.parse().ok()?)))
                .ok_or_else(|| fail(format!("invalid --aux-address {a:?}: expected name=IPv4")))
        })
        .collect()
}

/// `build`'s flags checked the same way in process and through the daemon: `--platform`
/// (the builder's own only), `--progress` (its terminal mode: `Some(false)` for plain,
/// `Some(true)` for tty, `None` for auto), and BuildKit's `--output`/`--ssh`, refused.
fn build_checks(
    platform: Option<&str>,
    progress: &str,
    output: Option<&str>,
    ssh: &[String],
) -> Res<Option<bool>> {
    if let Some(p) = platform {
        longshore_engine::build::check_platform(p).map_err(|e| fail(format!("ERROR: {e}")))?;
    }
    if output.is_some() || !ssh.is_empty() {
        return Err(fail(format!(
            "ERROR: build {} needs BuildKit, which longshore's builder is not (the legacy builder)",
            if output.is_some() {
                "--output"
            } else {
                "--ssh"
            }
        )));
    }
    match progress {
        "auto" => Ok(None),
        "plain" => Ok(Some(false)),
        "tty" => Ok(Some(true)),
        p => Err(fail(format!(
            "ERROR: invalid --progress {p:?} (auto, plain, tty)"
        ))),
    }
}

/// `build --secret id=ID,src=PATH` (also `source=`; `type=file`): the files RUN
/// `--mount=type=secret` shows.
fn build_secrets(flags: &[String]) -> Res<std::collections::BTreeMap<String, PathBuf>> {
    let mut out = std::collections::BTreeMap::new();
    for f in flags {
        let (mut id, mut src) = (None, None);
        for kv in f.split(',') {
            match kv.split_once('=') {
                Some(("id", v)) => id = Some(v.to_string()),
                Some(("src" | "source", v)) => src = Some(PathBuf::from(v)),
                Some(("type", "file")) => {}
                _ => {
                    return Err(fail(format!(
                        "ERROR: invalid --secret {f:?}: expected id=ID,src=PATH"
                    )));
                }
            }
        }
        let (Some(id), Some(src)) = (id, src) else {
            return Err(fail(format!(
                "ERROR: invalid --secret {f:?}: expected id=ID,src=PATH"
            )));
        };
        if !src.is_file() {
            return Err(fail(format!(
                "ERROR: secret {id}: {} is not a file",
                src.display()
            )));
        }
        out.insert(id, src);
    }
    Ok(out)
}

/// `build --iidfile`: the image ID (`sha256:...`), as docker writes it.
fn write_iidfile(p: &std::path::Path, id: &str) -> Res<()> {
    std::fs::write(p, id).map_err(|e| fail(format!("write image ID to {}: {e}", p.display())))
}

/// `volume create -o key=value`s.
fn volume_opts(opt: &[String]) -> Res<std::collections::BTreeMap<String, String>> {
    opt.iter()
        .map(|o| {
            o.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| fail(format!("invalid option {o:?}: expected key=value")))
        })
        .collect()
}

/// The filters container, network and system prune take (`label!` is `label!=`).
const CONTAINER_PRUNE_FILTERS: &[&str] = &["until", "label", "label!"];
/// image prune's.
const IMAGE_PRUNE_FILTERS: &[&str] = &["until", "label", "label!", "dangling"];
/// volume prune's (docker's takes no `until`).
const VOLUME_PRUNE_FILTERS: &[&str] = &["label", "label!"];

/// A prune's `--filter`s for the engine, refused in docker's words when malformed or not
/// one of `allowed`.
fn prune_filters(
    flags: &[String],
    allowed: &[&str],
) -> Res<longshore_engine::system::PruneFilters> {
    Ok(longshore_engine::system::PruneFilters::parse(
        &parse_filters(flags)?,
        allowed,
    )?)
}

/// system prune's filters (its images'), checked for every prune it makes.
fn system_prune_filters(
    flags: &[String],
    volumes: bool,
) -> Res<longshore_engine::system::PruneFilters> {
    let pairs = parse_filters(flags)?;
    if volumes && pairs.iter().any(|(k, _)| k == "until") {
        return Err(fail(
            "ERROR: The \"until\" filter is not supported with \"--volumes\"",
        ));
    }
    prune_filters(flags, CONTAINER_PRUNE_FILTERS)
}

fn print_prune(title: &str, rep: &longshore_engine::system::PruneReport) {
    print_pruned(title, &rep.deleted, rep.space_reclaimed);
}

/// [`print_prune`] from the list and the bytes.
fn print_pruned(title: &str, deleted: &[String], space: u64) {
    print_deleted(title, deleted);
    println!("Total reclaimed space: {}", human_size(space));
}

/// `title`, what a prune deleted, one a line, and a blank line (nothing when none).
fn print_deleted(title: &str, deleted: &[String]) {
    if !deleted.is_empty() {
        println!("{title}");
        for d in deleted {
            println!("{d}");
        }
        println!();
    }
}

/// `system prune`'s question.
fn system_prune_warning(all: bool, volumes: bool) -> String {
    let mut what = vec![
        "all stopped containers",
        "all networks not used by at least one container",
    ];
    if volumes {
        what.push("all anonymous volumes not used by at least one container");
    }
    what.push(if all {
        "all images without at least one container associated to them"
    } else {
        "all dangling images"
    });
    let list: String = what.iter().map(|w| format!("  - {w}\n")).collect();
    format!("This will remove:\n{}", list.trim_end())
}

/// `network prune`'s question.
const NETWORK_PRUNE_WARNING: &str =
    "This will remove all custom networks not used by at least one container.";

/// One layer of `history`.
struct HistoryRow {
    id: Option<String>,
    created: Option<i64>,
    created_by: String,
    size: u64,
    comment: String,
}

/// `history`'s output.
fn print_history(
    rows: Vec<HistoryRow>,
    no_trunc: bool,
    quiet: bool,
    format: Option<String>,
    human: bool,
) -> Res<u8> {
    // --human=false: RFC 3339 times and sizes in bytes, as docker's
    let created_at = |x: &HistoryRow| {
        x.created
            .map(|t| {
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64),
                )
                .to_string()
            })
            .unwrap_or_default()
    };
    let since = |x: &HistoryRow| {
        if human {
            x.created.map(ago_secs).unwrap_or_default()
        } else {
            created_at(x)
        }
    };
    let size = |x: &HistoryRow| {
        if human {
            human_size(x.size)
        } else {
            x.size.to_string()
        }
    };
    let id = |x: &HistoryRow| {
        x.id.as_deref()
            .map(|d| if no_trunc { d.to_string() } else { short(d) })
            .unwrap_or_else(|| "<missing>".into())
    };
    if quiet {
        for x in &rows {
            println!("{}", id(x));
        }
        return Ok(0);
    }
    if let Some(fmt) = format {
        let values: Vec<Value> = rows
            .iter()
            .map(|x| {
                json!({"ID": id(x), "Image": id(x), "CreatedSince": since(x),
                       "CreatedAt": created_at(x), "CreatedBy": x.created_by, "Size": size(x),
                       "Comment": x.comment})
            })
            .collect();
        // a table's ID column is headed IMAGE
        let fmt = if fmt.starts_with("table") {
            fmt.replace("{{.ID}}", "{{.Image}}")
        } else {
            fmt
        };
        print!("{}", render_all(&Template::parse(&fmt)?, &values)?);
        return Ok(0);
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|x| {
            let by = if no_trunc || x.created_by.chars().count() <= 45 {
                x.created_by.clone()
            } else {
                format!("{}…", x.created_by.chars().take(44).collect::<String>())
            };
            vec![id(x), since(x), by, size(x), x.comment.clone()]
        })
        .collect();
    print!(
        "{}",
        table(
            &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
            &cells
        )
    );
    Ok(0)
}

/// `docker system df`.
fn cmd_df(e: &Engine, verbose: bool, format: Option<String>) -> Res<u8> {
    print_df(&e.disk_usage()?, verbose, format)
}

/// `system df`'s output, from the engine's disk usage or the daemon's `/system/df`.
fn print_df(
    du: &longshore_engine::system::DiskUsage,
    verbose: bool,
    format: Option<String>,
) -> Res<u8> {
    let pct = |part: u64, whole: u64| match (part * 100).checked_div(whole) {
        None => "0B".to_string(),
        Some(p) => format!("{} ({p}%)", human_size(part)),
    };
    let images_active = du.images.iter().filter(|i| i.containers > 0).count();
    let unused_image_bytes: u64 = du
        .images
        .iter()
        .filter(|i| i.containers == 0)
        .map(|i| i.size - i.shared_size)
        .sum();
    let containers_active = du
        .containers
        .iter()
        .filter(|c| c.state == "running" || c.state == "paused")
        .count();
    let container_bytes: u64 = du.containers.iter().map(|c| c.size_rw).sum();
    let container_reclaim: u64 = du
        .containers
        .iter()
        .filter(|c| c.state != "running" && c.state != "paused")
        .map(|c| c.size_rw)
        .sum();
    let volumes_active = du.volumes.iter().filter(|v| v.ref_count > 0).count();
    let volume_bytes: u64 = du.volumes.iter().map(|v| v.size).sum();
    let volume_reclaim: u64 = du
        .volumes
        .iter()
        .filter(|v| v.ref_count == 0)
        .map(|v| v.size)
        .sum();
    let rows = vec![
        serde_json::json!({"Type": "Images", "TotalCount": du.images.len().to_string(), "Active": images_active.to_string(), "Size": human_size(du.layers_size), "Reclaimable": pct(unused_image_bytes, du.layers_size)}),
        serde_json::json!({"Type": "Containers", "TotalCount": du.containers.len().to_string(), "Active": containers_active.to_string(), "Size": human_size(container_bytes), "Reclaimable": pct(container_reclaim, container_bytes)}),
        serde_json::json!({"Type": "Local Volumes", "TotalCount": du.volumes.len().to_string(), "Active": volumes_active.to_string(), "Size": human_size(volume_bytes), "Reclaimable": pct(volume_reclaim, volume_bytes)}),
        serde_json::json!({"Type": "Build Cache", "TotalCount": "0", "Active": "0", "Size": "0B", "Reclaimable": "0B"}),
    ];
    if !verbose || format.is_some() {
        let fmt = format.unwrap_or_else(|| {
            "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}".into()
        });
        let t = Template::parse(&fmt)?;
        let out = render_all(&t, &rows)?;
        print!("{out}");
        return Ok(0);
    }
    println!("Images space usage:\n");
    let mut img_rows = Vec::new();
    for i in &du.images {
        let (repo, tag) = i
            .repo_tags
            .first()
            .and_then(|t| t.rsplit_once(':'))
            .map(|(r, t)| (r.to_string(), t.to_string()))
            .unwrap_or(("<none>".into(), "<none>".into()));
        img_rows.push(vec![
            repo,
            tag,
            short(i.id.trim_start_matches("sha256:")),
            ago_secs(i.created),
            human_size(i.size),
            human_size(i.shared_size),
            human_size(i.size - i.shared_size),
            i.containers.to_string(),
        ]);
    }
    print!(
        "{}",
        format::table(
            &[
                "REPOSITORY",
                "TAG",
                "IMAGE ID",
                "CREATED",
                "SIZE",
                "SHARED SIZE",
                "UNIQUE SIZE",
                "CONTAINERS"
            ],
            &img_rows,
        )
    );
    println!("\nContainers space usage:\n");
    let mut c_rows = Vec::new();
    for c in &du.containers {
        c_rows.push(vec![
            c.id[..12].to_string(),
            c.image.clone(),
            format!("\"{}\"", c.command.chars().take(20).collect::<String>()),
            c.local_volumes.to_string(),
            human_size(c.size_rw),
            ago_secs(c.created),
            c.status.clone(),
            c.names
                .first()
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default(),
        ]);
    }
    print!(
        "{}",
        format::table(
            &[
                "CONTAINER ID",
                "IMAGE",
                "COMMAND",
                "LOCAL VOLUMES",
                "SIZE",
                "CREATED",
                "STATUS",
                "NAMES"
            ],
            &c_rows,
        )
    );
    println!("\nLocal Volumes space usage:\n");
    let v_rows: Vec<Vec<String>> = du
        .volumes
        .iter()
        .map(|v| vec![v.name.clone(), v.ref_count.to_string(), human_size(v.size)])
        .collect();
    print!(
        "{}",
        format::table(&["VOLUME NAME", "LINKS", "SIZE"], &v_rows)
    );
    println!("\nBuild cache usage: 0B");
    Ok(0)
}

/// `version`: the client's part and the server's (`GET /version`, or this process's).
fn print_version(server: &Value, format: Option<String>) -> Res<u8> {
    let v = json!({
        "Client": {"Version": env!("CARGO_PKG_VERSION"), "ApiVersion": "1.45", "Os": "linux", "Arch": go_arch()},
        "Server": server,
    });
    match format {
        Some(f) => println!("{}", Template::parse(&f)?.render(&v)?),
        None => println!(
            "Client:\n Version:           {}\n API version:       1.45\n OS/Arch:           linux/{}\n\nServer: longshore\n Engine:\n  Version:          {}\n  API version:      {} (minimum version {})\n  OS/Arch:          {}/{}",
            env!("CARGO_PKG_VERSION"),
            go_arch(),
            server["Version"].as_str().unwrap_or_default(),
            server["ApiVersion"].as_str().unwrap_or_default(),
            server["MinAPIVersion"].as_str().unwrap_or_default(),
            server["Os"].as_str().unwrap_or_default(),
            server["Arch"].as_str().unwrap_or_default(),
        ),
    }
    Ok(0)
}

/// `info` from `GET /info`'s shape.
fn print_info(v: &Value, format: Option<String>) -> Res<u8> {
    if let Some(f) = format {
        println!("{}", Template::parse(&f)?.render(v)?);
        return Ok(0);
    }
    let str_of = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    println!(
        "Containers: {}\n Running: {}\n Paused: {}\n Stopped: {}",
        v["Containers"], v["ContainersRunning"], v["ContainersPaused"], v["ContainersStopped"]
    );
    println!(
        "Images: {}\nServer Version: {}\nStorage Driver: {}\nLogging Driver: {}\nCgroup Driver: {}",
        v["Images"],
        str_of("ServerVersion"),
        str_of("Driver"),
        str_of("LoggingDriver"),
        str_of("CgroupDriver"),
    );
    println!(
        "Kernel Version: {}\nOperating System: {}\nCPUs: {}\nName: {}\nDocker Root Dir: {}",
        str_of("KernelVersion"),
        str_of("OperatingSystem"),
        v["NCPU"],
        str_of("Name"),
        str_of("DockerRootDir"),
    );
    Ok(0)
}

/// `inspect`'s output: the objects found (JSON or `--format`), then the last error.
fn print_inspect(out: Vec<Value>, failed: Option<String>, format: Option<String>) -> Res<u8> {
    match format {
        Some(f) => {
            let t = Template::parse(&f)?;
            for v in &out {
                println!("{}", t.render(v)?);
            }
        }
        None => println!(
            "{}",
            serde_json::to_string_pretty(&Value::Array(out)).unwrap_or_default()
        ),
    }
    match failed {
        Some(m) => Err(Failure { code: 1, msg: m }),
        None => Ok(0),
    }
}

/// One line of `events` (docker's text, or the template).
fn event_line(ev: &longshore_engine::Event, t: Option<&Template>) -> String {
    match t {
        Some(t) => t
            .render(&serde_json::to_value(ev).unwrap_or_default())
            .unwrap_or_default(),
        None => {
            let time = humantime::format_rfc3339_nanos(
                std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ev.time_nano as u64),
            );
            let attrs: Vec<String> = ev
                .actor
                .attributes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!(
                "{time} {} {} {} ({})",
                ev.kind,
                ev.action,
                ev.actor.id,
                attrs.join(", ")
            )
        }
    }
}

/// `port`: `(container port/proto, host ip, host port)` of a running container.
fn print_ports(
    ports: Vec<(String, String, String)>,
    private_port: Option<String>,
    container: &str,
) -> Res<u8> {
    let want = private_port.map(|p| {
        if p.contains('/') {
            p
        } else {
            format!("{p}/tcp")
        }
    });
    let mut any = false;
    for (key, ip, port) in ports {
        match &want {
            Some(w) if *w != key => continue,
            Some(_) => println!("{ip}:{port}"),
            None => println!("{key} -> {ip}:{port}"),
        }
        any = true;
    }
    if let (Some(w), false) = (want, any) {
        return Err(fail(format!(
            "Error: No public port '{w}' published for {container}"
        )));
    }
    Ok(0)
}

/// `top`: the titles and rows as a table.
fn print_top(titles: &[String], procs: &[Vec<String>]) {
    let header: Vec<&str> = titles.iter().map(String::as_str).collect();
    print!("{}", table(&header, procs));
}

/// A runtime for the engine's async jobs (pull, push, login, search).
fn runtime() -> Res<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Parses a pull's reference; says "Using default tag" as docker does when it has none.
fn pull_preamble(image: &str, quiet: bool) -> Res<longshore_registry::Reference> {
    let r = longshore_registry::Reference::parse(image)
        .map_err(|err| fail(format!("invalid reference format: {image}: {err}")))?;
    if r.tag().is_none() && r.digest().is_none() {
        if !quiet {
            println!("Using default tag: latest");
        }
        return r
            .with_tag("latest")
            .map_err(|err| fail(format!("invalid reference format: {image}: {err}")));
    }
    Ok(r)
}

/// The repository of `pull -a`/`push -a`, normalised (`docker.io/library/busybox`); a
/// tag or digest is refused in docker's words.
fn all_tags_repository(image: &str) -> Res<String> {
    let r = longshore_registry::Reference::parse(image)
        .map_err(|err| fail(format!("invalid reference format: {image}: {err}")))?;
    if r.tag().is_some() || r.digest().is_some() {
        return Err(fail("tag can't be used with --all-tags/-a"));
    }
    Ok(r.to_string())
}

/// `--platform os/arch[/variant]` (none: the host's).
fn parse_platform(p: Option<&str>) -> Res<Option<longshore_registry::Platform>> {
    p.filter(|p| !p.is_empty())
        .map(|p| {
            p.parse().map_err(|_| {
                fail(format!(
                    "invalid platform {p:?}: expected os/arch[/variant]"
                ))
            })
        })
        .transpose()
}

/// The path part of a repository (`library/busybox`), as docker's "Pulling from" shows.
fn all_tags_path(repo: &str) -> String {
    longshore_registry::Reference::parse(repo)
        .map(|r| r.path().to_string())
        .unwrap_or_else(|_| repo.to_string())
}

/// Runs a registry job, drawing its progress events as docker does (none with `quiet`).
fn with_progress<T, F: std::future::Future<Output = longshore_engine::Result<T>>>(
    rt: &tokio::runtime::Runtime,
    d: &mut progress::Display,
    quiet: bool,
    push: bool,
    job: impl FnOnce(longshore_registry::ProgressSender) -> F,
) -> Res<T> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let fut = job(tx);
    rt.block_on(async {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                biased;
                Some(p) = rx.recv() => {
                    if !quiet {
                        for m in progress::messages(&p, push) {
                            d.show(&m).map_err(fail)?;
                        }
                    }
                }
                r = &mut fut => {
                    while let Ok(p) = rx.try_recv() {
                        if !quiet {
                            for m in progress::messages(&p, push) {
                                d.show(&m).map_err(fail)?;
                            }
                        }
                    }
                    return r.map_err(Failure::from);
                }
            }
        }
    })
}

/// `login`'s server and credentials, from the flags, stdin or prompts.
fn login_credentials(
    username: Option<String>,
    password: Option<String>,
    password_stdin: bool,
    server: Option<String>,
) -> Res<(String, longshore_registry::Credentials)> {
    let server = server.unwrap_or_else(|| longshore_registry::DOCKER_HUB.to_string());
    if password.is_some() && password_stdin {
        return Err(fail(
            "--password and --password-stdin are mutually exclusive",
        ));
    }
    let password = if password_stdin {
        if username.is_none() {
            return Err(fail("Must provide --username with --password-stdin"));
        }
        let mut s = String::new();
        io::stdin().read_to_string(&mut s)?;
        Some(s.trim_end_matches(['\n', '\r']).to_string())
    } else {
        if password.is_some() {
            eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        }
        password
    };
    let prompt = |what: &str| -> Res<String> {
        eprint!("{what}: ");
        let mut s = String::new();
        io::stdin().read_line(&mut s)?;
        Ok(s.trim_end_matches(['\n', '\r']).to_string())
    };
    let username = match username {
        Some(u) => u,
        None => prompt("Username")?,
    };
    let password = match password {
        Some(p) => p,
        None => prompt("Password")?,
    };
    if username.is_empty() {
        return Err(fail("Error: Non-null Username Required"));
    }
    if password.is_empty() {
        return Err(fail("Error: Password Required"));
    }
    Ok((
        server,
        longshore_registry::Credentials::new(username, password),
    ))
}

/// Keeps login credentials in `config.json`, as docker does.
fn save_login(
    config_dir: &std::path::Path,
    server: &str,
    creds: &longshore_registry::Credentials,
) -> Res<u8> {
    let store = longshore_registry::CredentialStore::new(config_dir.join("config.json"));
    std::fs::create_dir_all(config_dir)?;
    store
        .store(server, creds)
        .map_err(|err| fail(format!("Error saving credentials: {err}")))?;
    println!("Login Succeeded");
    Ok(0)
}

/// `logout`: removes the credentials of `server` from `config.json`.
fn logout(config_dir: &std::path::Path, server: Option<String>) -> Res<u8> {
    let server = server.unwrap_or_else(|| longshore_registry::DOCKER_HUB.to_string());
    let store = longshore_registry::CredentialStore::new(config_dir.join("config.json"));
    let shown = longshore_registry::CredentialStore::server_key(&server);
    match store.erase(&server) {
        Ok(true) => println!("Removing login credentials for {shown}"),
        Ok(false) => println!("Not logged in to {shown}"),
        Err(err) => return Err(fail(format!("Error: {err}"))),
    }
    Ok(0)
}

/// `search`'s output from the API's results (`name`, `description`, `star_count`,
/// `is_official`, `is_automated`).
fn print_search(
    results: Vec<Value>,
    filters: &[String],
    format: Option<String>,
    no_trunc: bool,
    limit: Option<usize>,
) -> Res<u8> {
    let mut min_stars = 0;
    let mut official = None;
    let mut automated = None;
    for (k, v) in parse_filters(filters)? {
        let flag = || -> Res<bool> {
            v.parse()
                .map_err(|_| fail(format!("Error: invalid filter '{k}={v}'")))
        };
        match k.as_str() {
            "stars" => {
                min_stars = v
                    .parse()
                    .map_err(|_| fail(format!("Error: invalid filter 'stars={v}'")))?
            }
            "is-official" => official = Some(flag()?),
            "is-automated" => automated = Some(flag()?),
            _ => return Err(fail(format!("Error: invalid filter '{k}'"))),
        }
    }
    let rows: Vec<Value> = results
        .into_iter()
        .filter(|r| r["star_count"].as_u64().unwrap_or(0) >= min_stars)
        .filter(|r| official.is_none_or(|o| r["is_official"].as_bool().unwrap_or(false) == o))
        .filter(|r| automated.is_none_or(|a| r["is_automated"].as_bool().unwrap_or(false) == a))
        .take(limit.unwrap_or(usize::MAX))
        .map(|r| {
            let desc = r["description"].as_str().unwrap_or_default().replace('\n', " ");
            let desc = if !no_trunc && desc.chars().count() > 45 {
                format!("{}…", desc.chars().take(44).collect::<String>())
            } else {
                desc
            };
            let off = r["is_official"].as_bool().unwrap_or(false);
            let auto = r["is_automated"].as_bool().unwrap_or(false);
            json!({
                "Name": r["name"], "Description": desc, "StarCount": r["star_count"].as_u64().unwrap_or(0).to_string(),
                "IsOfficial": if off { "[OK]" } else { "" }, "IsAutomated": if auto { "[OK]" } else { "" },
            })
        })
        .collect();
    let fmt = format.unwrap_or_else(|| {
        "table {{.Name}}\t{{.Description}}\t{{.StarCount}}\t{{.IsOfficial}}".into()
    });
    let fmt = if fmt == "table {{.Name}}\t{{.Description}}\t{{.StarCount}}\t{{.IsOfficial}}" {
        // docker's headers
        "table {{.Name}}\t{{.Description}}\t{{.Stars}}\t{{.Official}}".to_string()
    } else {
        fmt
    };
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|mut r| {
            r["Stars"] = r["StarCount"].clone();
            r["Official"] = r["IsOfficial"].clone();
            r
        })
        .collect();
    print!("{}", render_all(&Template::parse(&fmt)?, &rows)?);
    Ok(0)
}

/// `events --since/--until`: unix seconds, a duration ago (`10m`), or RFC 3339.
fn event_time(s: &str) -> Res<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs() as i64
            - d.as_secs() as i64);
    }
    Ok(longshore_engine::containers::unix_time(s))
}

/// The architecture as Go names it (docker's `OS/Arch`).
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        a => a,
    }
}

/// The size of a tar of directory `dir` (512-byte headers, content padded to 512, the
/// closing 1 KiB), as docker counts the build context it sends.
fn tar_size(dir: &std::path::Path) -> u64 {
    let mut total = 1024;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            total += 512;
            if md.is_dir() {
                stack.push(e.path());
            } else if md.is_file() {
                total += md.len().div_ceil(512) * 512;
            }
        }
    }
    total
}

/// "2 minutes ago" for unix seconds.
fn ago_secs(secs: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    format!(
        "{} ago",
        longshore_engine::containers::human_duration(std::time::Duration::from_secs(
            (now - secs).max(0) as u64
        ))
    )
}

/// A Go duration flag (`30s`, `1m30s`, `500ms`), in ns.
fn go_duration_arg(s: &str) -> Result<i64, String> {
    longshore_engine::health::parse_go_duration(s)
        .ok_or_else(|| format!("time: invalid duration \"{s}\""))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_valid() {
        // clap's checks recurse through every subcommand: in a debug build they need more
        // than a test thread's 2 MiB of stack (the program's main thread has 8 MiB)
        std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(|| super::Cli::command().debug_assert())
            .unwrap()
            .join()
            .unwrap();
    }
}
