//! An nftables session without process spawns: `libnftables.so.1` (the library the `nft`
//! command is built on, shipped by the nftables package) loaded with `dlopen(3)` and driven
//! from one long-lived thread inside the host namespace.
//!
//! Running `nft` costs a fork, an exec and the library's start-up for every command (several
//! milliseconds each on a loaded machine); the session parses and commits the same scripts in
//! process. Output is the same as `nft --echo --handle -f -`. When the library cannot be
//! loaded, [`NftSession::start`] returns `None` and callers spawn `nft` as before.

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::netns::NetnsRef;

const NFT_CTX_OUTPUT_HANDLE: c_uint = 1 << 3;
const NFT_CTX_OUTPUT_ECHO: c_uint = 1 << 5;

type CtxNew = unsafe extern "C" fn(u32) -> *mut c_void;
type CtxFree = unsafe extern "C" fn(*mut c_void);
type CtxInt = unsafe extern "C" fn(*mut c_void) -> c_int;
type CtxSetFlags = unsafe extern "C" fn(*mut c_void, c_uint);
type CtxGetBuf = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type RunCmd = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

struct Api {
    lib: *mut c_void,
    ctx: *mut c_void,
    free: CtxFree,
    get_out: CtxGetBuf,
    get_err: CtxGetBuf,
    run: RunCmd,
}

/// Looks `name` up in `lib` as a function of type `T` (a function pointer type).
fn sym<T: Copy>(lib: *mut c_void, name: &CStr) -> Option<T> {
    assert_eq!(std::mem::size_of::<T>(), std::mem::size_of::<*mut c_void>());
    // SAFETY: `lib` is a live handle from dlopen and `name` a NUL-terminated string.
    let p = unsafe { libc::dlsym(lib, name.as_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: T is a function pointer type of the same size as a data pointer (asserted
    // above) and its signature is the one libnftables.h declares for `name`.
    Some(unsafe { std::mem::transmute_copy::<*mut c_void, T>(&p) })
}

/// Copies a C string owned by the library (the output and error buffers).
fn owned(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: libnftables returns NUL-terminated buffers that stay valid until the next
    // command on the context; we copy before running another.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

impl Api {
    fn load() -> Option<Self> {
        // SAFETY: dlopen with a constant NUL-terminated name; the handle is closed in Drop.
        let lib = unsafe { libc::dlopen(c"libnftables.so.1".as_ptr(), libc::RTLD_NOW) };
        if lib.is_null() {
            return None;
        }
        let api = (|| {
            let new: CtxNew = sym(lib, c"nft_ctx_new")?;
            let free: CtxFree = sym(lib, c"nft_ctx_free")?;
            let buf_out: CtxInt = sym(lib, c"nft_ctx_buffer_output")?;
            let buf_err: CtxInt = sym(lib, c"nft_ctx_buffer_error")?;
            let set_flags: CtxSetFlags = sym(lib, c"nft_ctx_output_set_flags")?;
            let get_out: CtxGetBuf = sym(lib, c"nft_ctx_get_output_buffer")?;
            let get_err: CtxGetBuf = sym(lib, c"nft_ctx_get_error_buffer")?;
            let run: RunCmd = sym(lib, c"nft_run_cmd_from_buffer")?;
            // SAFETY: functions of libnftables with the signatures of its header; the
            // context is checked for NULL and owned by the returned Api.
            unsafe {
                let ctx = new(0);
                if ctx.is_null() {
                    return None;
                }
                if buf_out(ctx) != 0 || buf_err(ctx) != 0 {
                    free(ctx);
                    return None;
                }
                set_flags(ctx, NFT_CTX_OUTPUT_HANDLE | NFT_CTX_OUTPUT_ECHO);
                Some((ctx, free, get_out, get_err, run))
            }
        })();
        match api {
            Some((ctx, free, get_out, get_err, run)) => Some(Self {
                lib,
                ctx,
                free,
                get_out,
                get_err,
                run,
            }),
            None => {
                // SAFETY: the handle from dlopen above, not used afterwards.
                unsafe { libc::dlclose(lib) };
                None
            }
        }
    }

    /// Runs a script; `Ok(output)` or `Err(error text)`.
    fn run(&mut self, script: &str) -> Result<String, String> {
        let c = CString::new(script).map_err(|_| "script contains a NUL byte".to_string())?;
        // SAFETY: live context, NUL-terminated script; the buffers are copied right away.
        let (rc, out, err) = unsafe {
            let rc = (self.run)(self.ctx, c.as_ptr());
            (
                rc,
                owned((self.get_out)(self.ctx)),
                owned((self.get_err)(self.ctx)),
            )
        };
        if rc == 0 {
            Ok(out)
        } else {
            Err(err.trim().to_string())
        }
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        // SAFETY: the context and handle are ours and used by nobody after this.
        unsafe {
            (self.free)(self.ctx);
            libc::dlclose(self.lib);
        }
    }
}

type Job = (String, mpsc::Sender<Result<String, String>>);

/// A libnftables context living on its own thread in one namespace.
pub struct NftSession {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Option<JoinHandle<()>>,
}

impl NftSession {
    /// Starts the session in `ns`; `None` if the library cannot be loaded or the namespace
    /// entered (callers then run the `nft` command).
    pub fn start(ns: &NetnsRef) -> Option<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<bool>();
        let ns = ns.clone();
        let thread = std::thread::Builder::new()
            .name("ls-nft".into())
            .spawn(move || {
                let api = ns.enter().ok().and_then(|()| Api::load());
                let _ = ready_tx.send(api.is_some());
                let Some(mut api) = api else {
                    return;
                };
                while let Ok((script, reply)) = rx.recv() {
                    let _ = reply.send(api.run(&script));
                }
            })
            .ok()?;
        if ready_rx.recv().unwrap_or(false) {
            Some(Self {
                jobs: Mutex::new(Some(tx)),
                thread: Some(thread),
            })
        } else {
            let _ = thread.join();
            None
        }
    }

    /// Runs an nft script (as `nft --echo --handle -f -` would); `Err` carries nft's error
    /// text.
    pub fn run(&self, script: &str) -> Result<String, String> {
        let (tx, rx) = mpsc::channel();
        {
            let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            let Some(j) = jobs.as_ref() else {
                return Err("the nftables session is closed".into());
            };
            j.send((script.to_string(), tx))
                .map_err(|_| "the nftables session thread is gone".to_string())?;
        }
        rx.recv()
            .unwrap_or_else(|_| Err("the nftables session thread is gone".into()))
    }
}

impl Drop for NftSession {
    fn drop(&mut self) {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
