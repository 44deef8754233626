//! The build benchmark: a 10-step Dockerfile (FROM busybox, ENV, WORKDIR, COPY of
//! 200 small files, COPY of a 20 MB file, RUN steps, EXPOSE, CMD) built cold and fully
//! cached, and a no-op RUN step, into a fresh store. RUN steps run with chroot (as the tests
//! do); the engine's container runner adds its container start to each RUN.
//!
//! `sudo cargo run --release -p longshore-build --example bench_build [rounds]`

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use longshore_build::{BuildOptions, Context, RunStep, StepRunner, build};
use longshore_graph::{Store, StoreOptions};

struct Chroot;

impl StepRunner for Chroot {
    fn run(&self, step: RunStep<'_>) -> Result<i32, String> {
        let out = Command::new("chroot")
            .arg(step.rootfs)
            .args(["/bin/busybox", "sh", "-c", "cd \"$0\" && exec \"$@\""])
            .arg(&step.workdir)
            .args(&step.args)
            .env_clear()
            .envs(step.env.iter().filter_map(|e| e.split_once('=')))
            .output()
            .map_err(|e| format!("chroot: {e}"))?;
        step.output
            .write_all(&out.stdout)
            .map_err(|e| e.to_string())?;
        step.output
            .write_all(&out.stderr)
            .map_err(|e| e.to_string())?;
        Ok(out.status.code().unwrap_or(128))
    }
}

const DOCKERFILE: &str = "FROM base:1
ENV APP=/app
WORKDIR /app
COPY files/ ./files/
COPY big.bin ./
RUN echo built > /app/stamp
RUN ls /app/files > /dev/null
RUN true
EXPOSE 8080
CMD [\"sh\"]
";

fn opts(df: &str, no_cache: bool) -> BuildOptions {
    BuildOptions {
        dockerfile: df.into(),
        no_cache,
        ..BuildOptions::default()
    }
}

fn time(store: &Store, ctx: &Context, o: &BuildOptions) -> Duration {
    let mut out = Vec::new();
    let t = Instant::now();
    build(store, ctx, o, &Chroot, &mut out)
        .unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&out)));
    t.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let (mut cold, mut cached, mut noop) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let dir = tempfile::Builder::new()
            .prefix("longshore-build-bench-")
            .tempdir()
            .unwrap();
        let store = Store::open(dir.path().join("store"), StoreOptions::default()).unwrap();
        let base_ctx = dir.path().join("base");
        longshore_test_support::busybox_rootfs(&base_ctx.join("rootfs")).unwrap();
        let ctx = Context::dir(&base_ctx).unwrap();
        let mut o = opts("FROM scratch\nCOPY rootfs/ /\n", false);
        o.tags = vec!["base:1".into()];
        build(&store, &ctx, &o, &Chroot, &mut Vec::new()).unwrap();

        let app = dir.path().join("app");
        fs::create_dir_all(app.join("files")).unwrap();
        for i in 0..200 {
            fs::write(
                app.join(format!("files/f{i:03}.txt")),
                format!("file {i}\n"),
            )
            .unwrap();
        }
        let big: Vec<u8> = (0..20u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        fs::write(app.join("big.bin"), big).unwrap();
        let ctx = Context::dir(&app).unwrap();
        cold.push(time(&store, &ctx, &opts(DOCKERFILE, false)));
        cached.push(time(&store, &ctx, &opts(DOCKERFILE, false)));
        let t1 = time(&store, &ctx, &opts("FROM base:1\n", true));
        let t2 = time(&store, &ctx, &opts("FROM base:1\nRUN true\n", true));
        noop.push(t2.saturating_sub(t1));
    }
    println!("driver: {}", {
        let d = tempfile::Builder::new()
            .prefix("longshore-build-bench-")
            .tempdir()
            .unwrap();
        Store::open(d.path(), StoreOptions::default())
            .unwrap()
            .driver()
            .name()
    });
    println!(
        "10-step build, cold:         median {:?} of {rounds} ({cold:?})",
        median(cold.clone())
    );
    println!(
        "10-step build, fully cached: median {:?} of {rounds} ({cached:?})",
        median(cached.clone())
    );
    println!(
        "no-op RUN step:              median {:?} of {rounds} ({noop:?})",
        median(noop.clone())
    );
}
