//! `Container::exec`: a new process in a running container's namespaces and cgroups.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::{Process, Spec};

use crate::channel::{self, Msg};
use crate::error::{Error, Result, SysContext};
use crate::init::{self, InitArgs, Release, Stdio};
use crate::seccomp;
use crate::state::Status;
use crate::sys::{self, Forked};

use super::build::{CgroupJoin, PidNsGuard};
use super::{Container, procfs_fd, trampoline_fd};

impl Container {
    /// Runs `process` inside the running container (`runc exec`): joins its namespaces
    /// and cgroups, applies the process's user, capabilities, rlimits and the container's
    /// seccomp filter. Returns the new process's handle (it is our child): wait for it,
    /// signal it.
    pub fn exec(
        &self,
        process: &Process,
        stdio: Stdio,
        console_socket: Option<&Path>,
    ) -> Result<crate::process::ExecProcess> {
        let status = self.status();
        if status != Status::Running && status != Status::Created {
            return Err(Error::WrongState {
                id: self.state.id.clone(),
                status: status.to_string(),
                wanted: "cannot exec in a container that is not running",
            });
        }
        if process.terminal().unwrap_or(false) && console_socket.is_none() {
            return Err(Error::InvalidSpec(
                "process.terminal is set: a console socket is required".into(),
            ));
        }
        crate::spec::check_process_supported(process)?;
        // no capabilities in the exec'd process's spec: the container's, as runc does (not
        // every capability the runtime holds)
        let inherited;
        let process = match (process.capabilities(), self.state.process.as_ref()) {
            (None, Some(init)) => {
                let mut p = process.clone();
                p.set_capabilities(init.capabilities().clone());
                inherited = p;
                &inherited
            }
            _ => process,
        };
        let pidfd = self
            .pidfd()?
            .ok_or_else(|| Error::NotFound(self.state.id.clone()))?;
        let pid = self.state.pid;
        // user first, then the rest, mount last (it changes what paths mean)
        let mut join = Vec::new();
        let own = |n: &str| {
            std::fs::metadata(format!("/proc/self/ns/{n}"))
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                .ok()
        };
        let theirs = |n: &str| {
            std::fs::metadata(format!("/proc/{pid}/ns/{n}"))
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                .ok()
        };
        for (name, flag) in [
            ("user", CloneFlags::CLONE_NEWUSER),
            ("ipc", CloneFlags::CLONE_NEWIPC),
            ("uts", CloneFlags::CLONE_NEWUTS),
            ("net", CloneFlags::CLONE_NEWNET),
            ("cgroup", CloneFlags::CLONE_NEWCGROUP),
            ("mnt", CloneFlags::CLONE_NEWNS),
        ] {
            if own(name) != theirs(name) {
                let f = File::open(format!("/proc/{pid}/ns/{name}"))
                    .ctx(|| format!("open {name} namespace of {}", self.state.id))?;
                join.push((flag, OwnedFd::from(f)));
            }
        }
        // without a mount namespace of its own the container is only the init's chroot:
        // enter the same root, checked to be the container's rootfs, or refuse
        let enter_root = if own("mnt") == theirs("mnt") {
            Some(self.init_root(pid)?)
        } else {
            None
        };
        let pidns = PathBuf::from(format!("/proc/{pid}/ns/pid"));
        let seccomp = self
            .state
            .seccomp
            .as_ref()
            .map(|s| seccomp::compile_cached(s, &self.store.root().join(".seccomp-cache")))
            .transpose()?;
        let console = console_socket
            .map(|p| {
                std::os::unix::net::UnixStream::connect(p)
                    .ctx(|| format!("connect to console socket {}", p.display()))
            })
            .transpose()?;
        let spec = Spec::default();
        let (parent_end, child_end) = channel::pair()?;
        let release = Release::Channel;
        let guard = if own("pid") != theirs("pid") {
            Some(PidNsGuard::enter(&pidns)?)
        } else {
            None
        };
        let cg = self.cgroup().ok();
        let join_plan = match &cg {
            Some(cg) => CgroupJoin::plan(cg.as_ref(), false)?,
            None => CgroupJoin::none(),
        };
        let trampoline = trampoline_fd()?;
        let procfs = procfs_fd()?;
        // SAFETY: the child runs only `init::main`, which ends in execve or _exit
        let forked =
            unsafe { sys::spawn(0, join_plan.v2_fd()) }.ctx(|| "clone3 the exec process".into())?;
        match forked {
            Forked::Child => init::main(InitArgs {
                spec: &spec,
                process,
                bundle: &self.state.bundle,
                rootfs: Path::new("/"),
                channel: &child_end,
                release: &release,
                stdio: &stdio,
                console_socket: console.as_ref().map(|c| c.as_raw_fd()),
                hierarchies: &[],
                seccomp: seccomp.as_ref(),
                join: &join,
                new_userns: false,
                new_cgroupns: false,
                new_mountns: false,
                create_hooks: false,
                no_pivot: false,
                new_timens: false,
                time_offsets: "",
                joining: true,
                cgroup_tasks: &join_plan.v1_tasks,
                trampoline,
                procfs,
                enter_root: enter_root.as_ref().map(|f| f.as_raw_fd()),
            }),
            Forked::Parent(_) => {}
        }
        drop(guard);
        drop(child_end);
        // a failed hello means the child is gone already
        let child = parent_end.recv_hello_pid()?;
        drop(pidfd);
        let fail = |e: Error| {
            let _ = nix::sys::signal::kill(Pid::from_raw(child), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(child), None);
            e
        };
        if join_plan.parent_adds
            && let Some(cg) = &cg
        {
            cg.add_task(child).map_err(|e| fail(e.into()))?;
        }
        let state_json = serde_json::to_string(&self.oci_state()).expect("json");
        parent_end
            .send(&Msg::Go { state: state_json })
            .map_err(fail)?;
        parent_end.expect(&Msg::Ready).map_err(fail)?;
        parent_end.send(&Msg::Start).map_err(fail)?;
        match parent_end.recv().map_err(fail)? {
            None => Ok(crate::process::ExecProcess::new(child)),
            Some(Msg::Failed { message, code }) => Err(fail(channel::failure(message, code))),
            Some(other) => Err(fail(Error::Init(format!("unexpected {other:?} from exec")))),
        }
    }
}
