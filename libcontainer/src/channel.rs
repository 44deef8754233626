//! The typed channel between the runtime and the container's init process: one
//! `SOCK_SEQPACKET` socket pair, one message per packet.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, SysContext};

/// A message on the channel.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) enum Msg {
    /// Init → runtime, first thing: "here I am" (the kernel attaches our pid, translated
    /// into the runtime's pid namespace).
    Hello,
    /// Runtime → init: cgroups joined and id maps written; go on. Carries the container's
    /// state JSON (status "creating") for the hooks the init runs itself.
    Go {
        /// The OCI state document.
        state: String,
    },
    /// Init → runtime: the mounts are done but `pivot_root` has not happened: run the
    /// `prestart` and `createRuntime` hooks now.
    RunCreateHooks,
    /// Runtime → init: the hooks are done.
    HooksDone,
    /// Init → runtime: everything is set up; waiting to be released.
    Ready,
    /// Runtime → init: exec the user's process now (when not released through the fifo).
    Start,
    /// Init → runtime: setup failed.
    Failed {
        /// What failed.
        message: String,
        /// 126/127 for exec problems, 1 otherwise.
        code: i32,
    },
}

/// The largest packet either end sends or receives.
const MAX_PACKET: usize = 1 << 20;

/// One end of the channel.
#[derive(Debug)]
pub(crate) struct Channel {
    fd: OwnedFd,
}

/// A connected pair: (runtime end, init end).
pub(crate) fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .ctx(|| "socketpair for the init channel".into())?;
    nix::sys::socket::setsockopt(&a, nix::sys::socket::sockopt::PassCred, &true)
        .ctx(|| "SO_PASSCRED on the init channel".into())?;
    // a packet is limited by the sender's buffer (about 208 KiB by default), and `Go`
    // carries the state with the spec's annotations (Kubernetes allows 256 KiB of them):
    // as root, raise it past `wmem_max`; otherwise the default stays
    for end in [&a, &b] {
        let _ =
            nix::sys::socket::setsockopt(end, nix::sys::socket::sockopt::SndBufForce, &MAX_PACKET);
    }
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    /// Sends one message.
    pub(crate) fn send(&self, msg: &Msg) -> Result<()> {
        let bytes = serde_json::to_vec(msg).expect("channel messages always serialize");
        sendmsg::<()>(
            self.fd.as_raw_fd(),
            &[IoSlice::new(&bytes)],
            &[],
            MsgFlags::empty(),
            None,
        )
        .ctx(|| "send on the init channel".into())?;
        Ok(())
    }

    /// Receives one message; `None` when the other end has closed (exited or exec'd). A
    /// 4-byte packet (no message serializes that short) is the exec trampoline's errno.
    pub(crate) fn recv(&self) -> Result<Option<Msg>> {
        // the packet's size first (MSG_TRUNC reports it whole), then the packet
        let size = loop {
            match nix::sys::socket::recv(
                self.fd.as_raw_fd(),
                &mut [0u8; 1],
                MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC,
            ) {
                Ok(n) => break n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).ctx(|| "receive on the init channel".into()),
            }
        };
        let mut buf = vec![0u8; size.clamp(1, MAX_PACKET)];
        let n = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(self.fd.as_raw_fd(), &mut iov, None, MsgFlags::empty()) {
                Ok(m) => break m.bytes,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).ctx(|| "receive on the init channel".into()),
            }
        };
        if n == 0 {
            return Ok(None);
        }
        if n == 4 {
            // the exec trampoline's report: the user's program's execve failed
            let errno = i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
            return Ok(Some(Msg::Failed {
                message: std::io::Error::from_raw_os_error(errno).to_string(),
                code: if errno == libc::ENOENT { 127 } else { 126 },
            }));
        }
        serde_json::from_slice(&buf[..n])
            .map(Some)
            .map_err(|e| Error::Init(format!("garbled message on the init channel: {e}")))
    }

    /// Receives the init's `Hello` and returns its pid as this process sees it (the pid
    /// the kernel attached to the message, correct even across pid namespaces).
    pub(crate) fn recv_hello_pid(&self) -> Result<i32> {
        let mut buf = [0u8; 256];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
        let msg = loop {
            match recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::empty(),
            ) {
                Ok(m) => break m,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).ctx(|| "receive on the init channel".into()),
            }
        };
        let mut pid = None;
        for c in msg.cmsgs().ctx(|| "read control messages".into())? {
            if let ControlMessageOwned::ScmCredentials(cred) = c {
                pid = Some(cred.pid());
            }
        }
        let n = msg.bytes;
        if n == 0 {
            return Err(Error::Init(
                "the init process exited before saying hello".into(),
            ));
        }
        match serde_json::from_slice::<Msg>(&buf[..n]) {
            Ok(Msg::Hello) => pid.ok_or_else(|| Error::Init("no credentials on hello".into())),
            Ok(Msg::Failed { message, code }) => Err(failure(message, code)),
            other => Err(Error::Init(format!("expected Hello, got {other:?}"))),
        }
    }

    /// Receives a message and insists it is `want`.
    pub(crate) fn expect(&self, want: &Msg) -> Result<()> {
        match self.recv()? {
            Some(ref m) if m == want => Ok(()),
            Some(Msg::Failed { message, code }) => Err(failure(message, code)),
            Some(other) => Err(Error::Init(format!("expected {want:?}, got {other:?}"))),
            None => Err(Error::Init(format!(
                "the other side closed the channel while we waited for {want:?}"
            ))),
        }
    }

    /// The raw descriptor (to keep it open across the init's fd cleanup).
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Turns an init failure report into the matching error.
pub(crate) fn failure(message: String, code: i32) -> Error {
    if code == 126 || code == 127 {
        Error::Exec {
            path: String::new(),
            reason: message,
            code,
        }
    } else {
        Error::Init(message)
    }
}

/// Sends `fd` over the unix socket `sock` with SCM_RIGHTS (how runc hands a console's
/// pty master to `--console-socket`).
pub(crate) fn send_fd(sock: RawFd, fd: RawFd, name: &str) -> Result<()> {
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(
        sock,
        &[IoSlice::new(name.as_bytes())],
        &cmsg,
        MsgFlags::empty(),
        None,
    )
    .ctx(|| "send the console to --console-socket".into())?;
    Ok(())
}

/// Receives one descriptor sent with [`send_fd`].
pub fn recv_fd(sock: RawFd) -> Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .ctx(|| "receive a descriptor".into())?;
    for c in msg.cmsgs().ctx(|| "read control messages".into())? {
        if let ControlMessageOwned::ScmRights(fds) = c
            && let Some(&fd) = fds.first()
        {
            // SAFETY: the kernel just installed this descriptor in our table for us; nothing
            // else owns it.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    Err(Error::Init("no descriptor in the message".into()))
}
