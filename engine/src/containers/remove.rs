//! `rm`: a container, its read-write layer, its records, and with `-v` its anonymous
//! volumes.

use std::fs;

use super::names;
use crate::engine::Engine;
use crate::error::{Error, Result, graph};

/// Options of `docker rm`.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RemoveOptions {
    /// `-f`: kill a running container first.
    pub force: bool,
    /// `-v`: remove its anonymous volumes too.
    pub volumes: bool,
    /// `-l`: remove a link (Docker 1.4's legacy links; refused here).
    pub link: bool,
}

impl Engine {
    /// Removes a container (`docker rm`). A running one needs `force`, in Docker's words.
    pub fn remove_container(&self, name_or_id: &str, opts: &RemoveOptions) -> Result<()> {
        self.remove_container_deferred(name_or_id, opts)
            .map(Removal::finish)
    }

    /// [`Engine::remove_container`], leaving the deletion of the container's files to the
    /// returned [`Removal`]: its directory and read-write layer are moved aside, so the
    /// container is gone (name free, not listed) when this returns. Deleting files costs
    /// a discard each on a disk mounted with `discard`; the monitor of a `run --rm`
    /// container tells its client first and deletes after.
    pub(crate) fn remove_container_deferred(
        &self,
        name_or_id: &str,
        opts: &RemoveOptions,
    ) -> Result<Removal> {
        if opts.link {
            return Err(Error::InvalidArgument(
                "rm --link: legacy links are removed with the container that holds them".into(),
            ));
        }
        let mut c = self.container(name_or_id)?;
        if !matches!(c.live_status(), "running" | "paused" | "restarting")
            && crate::monitor::monitor_alive(&c.dir)
        {
            // the container exited and its monitor is still recording it (unmounting,
            // taking the network down): wait for it, as Docker's rm waits for the
            // container's lock; a monitor that restarts it instead is a conflict
            c = self.wait_exit_recorded(c)?;
        }
        let status = c.live_status().to_string();
        if matches!(status.as_str(), "running" | "paused" | "restarting")
            || crate::monitor::monitor_alive(&c.dir)
        {
            if !opts.force {
                return Err(Error::Conflict(format!(
                    "You cannot remove a {status} container {}. Stop the container before attempting removal or force remove",
                    c.record.id
                )));
            }
            let _ = fs::write(c.dir.join("stopped-by-user"), b"");
            if let Ok(rc) = longshore_container::Container::load(self.runtime_root(), &c.record.id)
            {
                let _ = rc.resume();
                let _ = rc.signal(libc::SIGKILL, true);
            }
            self.settle(&c)?;
        }
        // held until the directory is gone: a second rm waits, and a listing never
        // sweeps a removal in progress
        let lock = super::lock_dir(&c.dir, true);
        let mut c = self.container(&c.record.id)?;
        c.state.status = "removing".into();
        self.save_state(&c)?;
        if let Ok(mut rc) = longshore_container::Container::load(self.runtime_root(), &c.record.id)
        {
            let _ = rc.delete(true);
        }
        self.teardown_network(&mut c);
        super::unmount_rootfs(&c.dir);
        let purge = self
            .store()?
            .remove_container_deferred(&c.record.id)
            .or_else(|e| match e {
                longshore_graph::Error::LayerNotFound(_) => Ok(Default::default()),
                e => Err(e),
            })
            .map_err(graph(format!(
                "remove the read-write layer of {}",
                c.record.name
            )))?;
        if opts.volumes {
            let prefix = format!("anon-{}-", &c.record.id[..12]);
            if let Ok(rd) = fs::read_dir(self.root.join("volumes")) {
                for e in rd.flatten() {
                    if e.file_name().to_string_lossy().starts_with(&prefix) {
                        let _ = fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        let _ = fs::remove_file(crate::monitor::attach_socket(&c.record.id));
        let mut removal = Removal {
            purge,
            dir: None,
            _lock: lock,
        };
        // moved aside in one step: without its 64-hex name the directory is not a
        // container any more (a listing sweeps an unlocked `.trash-` one)
        let trash = self
            .containers_dir()
            .join(format!("{TRASH_PREFIX}{}", c.record.id));
        if fs::rename(&c.dir, &trash).is_ok() {
            removal.dir = Some(trash.clone());
            names::release_into(&self.containers_dir(), &c.record.name, &trash);
        } else {
            // the state file first: without it the directory is not a container any more
            let _ = fs::remove_file(c.dir.join("state.json"));
            fs::remove_dir_all(&c.dir).map_err(Error::io(format!("remove {}", c.dir.display())))?;
            names::release(&self.containers_dir(), &c.record.name);
        }
        self.event("container", "destroy", &c.record.id, c.event_attributes());
        Ok(removal)
    }
}

/// The name prefix of a removed container's directory whose files are still to go.
pub(crate) const TRASH_PREFIX: &str = ".trash-";

/// What a removal left to delete: the container's directory and read-write layer, moved
/// aside. [`Removal::finish`] or dropping it deletes them; the container's lock is held
/// until then, so that no listing sweeps them meanwhile.
#[must_use = "dropping a Removal deletes its files at once"]
pub(crate) struct Removal {
    purge: longshore_graph::Purge,
    dir: Option<std::path::PathBuf>,
    _lock: Option<super::DirLock>,
}

impl Removal {
    /// Deletes the files now.
    pub(crate) fn finish(self) {}
}

impl Drop for Removal {
    fn drop(&mut self) {
        std::mem::take(&mut self.purge).run();
        if let Some(d) = self.dir.take() {
            let _ = fs::remove_dir_all(d);
        }
    }
}

/// How long `rm` waits for the monitor of an exited container to finish recording it.
const EXIT_RECORDING: std::time::Duration = std::time::Duration::from_secs(10);

impl Engine {
    /// Waits until the monitor of `c` (whose init is gone) has finished, or restarts it;
    /// the container as it is then.
    fn wait_exit_recorded(&self, mut c: super::Container) -> Result<super::Container> {
        let deadline = std::time::Instant::now() + EXIT_RECORDING;
        let mut pause = std::time::Duration::from_micros(200);
        while crate::monitor::monitor_alive(&c.dir) && std::time::Instant::now() < deadline {
            std::thread::sleep(pause);
            pause = (pause * 2).min(std::time::Duration::from_millis(10));
            c = self.container(&c.record.id)?;
            if matches!(c.live_status(), "running" | "paused" | "restarting") {
                break;
            }
        }
        Ok(c)
    }
}

/// Blocks until the container `id` under `root` is removed (by `rm`, or by its monitor for
/// `run --rm`), or until `timeout` passes; true when it is gone. It sleeps on an inotify
/// watch of the container's directory rather than polling, so that `run --rm` returns as soon
/// as the monitor has removed the container. Needs no engine: the caller may have closed it.
pub fn wait_removed(root: &std::path::Path, id: &str, timeout: std::time::Duration) -> bool {
    // gone already (the monitor of a `run --rm` container removes it before it sends the
    // exit code): no watch, whose release costs an SRCU grace period (6-16 ms here)
    if !root.join("containers").join(id).exists() {
        return true;
    }
    RemovalWatch::new(root, id).wait(timeout)
}

/// An inotify watch of a container's directory, for waits in several steps (the daemon's
/// removed-condition wait looks at its client between them): one watch for the whole
/// wait, closed off the caller's path (closing an inotify instance waits for an SRCU grace
/// period: 10-15 ms here, measured with strace on `docker run --rm`).
pub(crate) struct RemovalWatch {
    dir: std::path::PathBuf,
    fd: Option<std::os::fd::OwnedFd>,
}

impl RemovalWatch {
    /// Watches container `id`'s directory under `root` (no watch when inotify fails: the
    /// waits then poll).
    pub(crate) fn new(root: &std::path::Path, id: &str) -> RemovalWatch {
        use rustix::fs::inotify;
        let dir = root.join("containers").join(id);
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC)
            .ok()
            .and_then(|fd| {
                inotify::add_watch(
                    &fd,
                    &dir,
                    inotify::WatchFlags::DELETE_SELF | inotify::WatchFlags::MOVE_SELF,
                )
                .ok()
                .map(|_| fd)
            });
        RemovalWatch { dir, fd }
    }

    /// Waits up to `timeout` for the directory to go; true when it is gone.
    pub(crate) fn wait(&mut self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 512];
        loop {
            if !self.dir.exists() {
                return true;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            match &self.fd {
                Some(fd) => {
                    // rounded up: a timeout under a millisecond must not become 0 (a
                    // busy loop of polls until the deadline)
                    let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
                    let mut fds = [nix::poll::PollFd::new(
                        std::os::fd::AsFd::as_fd(fd),
                        nix::poll::PollFlags::POLLIN,
                    )];
                    let timeout =
                        nix::poll::PollTimeout::try_from(ms).unwrap_or(nix::poll::PollTimeout::MAX);
                    if matches!(nix::poll::poll(&mut fds, timeout), Ok(n) if n > 0) {
                        // drain the events; the loop looks at the directory itself
                        let _ = rustix::fs::inotify::Reader::new(fd, &mut buf).next();
                    }
                }
                // no watch (the directory went between the check and the watch, or
                // inotify is out of instances): poll now and then
                None => std::thread::sleep(left.min(std::time::Duration::from_millis(5))),
            }
        }
    }
}

impl Drop for RemovalWatch {
    fn drop(&mut self) {
        if let Some(fd) = self.fd.take() {
            // the close's grace period on a thread of its own, not before the answer
            if let Err(e) = std::thread::Builder::new().spawn(move || drop(fd)) {
                tracing::debug!("close the removal watch on a thread: {e}");
            }
        }
    }
}
