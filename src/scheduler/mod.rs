//! The engine as C sees it: configuration, backend choice (with io_uring detection), and
//! `AnyEngine`, the only place where the backend is an enum. Below it everything is
//! generic over the driver: `Engine<AioDriver>` and `Engine<UringDriver>` are separate
//! monomorphized copies of the same scheduler and worker loops.

pub mod aio;
pub(crate) mod aio_helper;
pub(crate) mod aio_stream;
pub(crate) mod aio_timer;
pub(crate) mod cancel;
pub(crate) mod class_stats;
pub(crate) mod classes;
pub(crate) mod common;
pub mod config;
pub(crate) mod context;
pub(crate) mod driver;
pub(crate) mod engine;
pub(crate) mod flight;
pub(crate) mod histogram;
pub(crate) mod idle;
pub(crate) mod locks;
pub(crate) mod polled;
pub(crate) mod registered;
pub(crate) mod round;
pub(crate) mod shared;
pub(crate) mod slot;
pub(crate) mod stats;
pub(crate) mod steps;
pub(crate) mod stuck;
pub mod tasks;
pub(crate) mod token_bucket;
pub mod uring;
pub(crate) mod waiting;
pub(crate) mod wakeup;
pub(crate) mod worker;

use std::ffi::{CStr, CString};
use std::os::fd::{OwnedFd, RawFd};

use io_uring::{opcode, register::Probe};
use once_cell::sync::{Lazy, OnceCell};

pub(crate) use classes::ClassConfig;
pub use config::{BackendChoice, BackendKind, Config, IdlePoll, Mode};
use engine::Engine;
pub use stats::Stats;
use tasks::{Callback, IoRequest};

use crate::error::Error;
use aio::AioDriver;
use uring::UringDriver;

/// Why io_uring cannot be used here: the errno and a sentence for humans.
struct UringUnavailable {
    errno: i32,
    reason: CString,
}

fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EPERM => "EPERM",
        libc::ENOSYS => "ENOSYS",
        libc::EINVAL => "EINVAL",
        libc::ENOMEM => "ENOMEM",
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        libc::EAGAIN => "EAGAIN",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EACCES => "EACCES",
        _ => "errno",
    }
}

fn unavailable(errno: i32, what: &str) -> UringUnavailable {
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    // io::Error's text ends in " (os error N)"; the name already says which.
    let text = text.split(" (os error").next().unwrap_or_default();
    let reason = format!("{what}: {} ({text})", errno_name(errno));
    UringUnavailable {
        errno,
        reason: CString::new(reason).unwrap_or_default(),
    }
}

/// Errors that mean "not now" rather than "not on this machine" (out of fds or memory):
/// a probe failing with one of them is not cached, so the next open tries again.
const TRANSIENT_ERRNOS: [i32; 4] = [libc::EMFILE, libc::ENFILE, libc::ENOMEM, libc::EAGAIN];

/// Reasons for transient failures, built once so `uring_unavailable_reason` can hand C
/// a static string.
static TRANSIENT_REASONS: Lazy<Vec<UringUnavailable>> = Lazy::new(|| {
    TRANSIENT_ERRNOS
        .iter()
        .map(|&errno| unavailable(errno, "io_uring_setup failed, retried on the next open"))
        .collect()
});

/// The lasting answer of the probe, once one was seen: it does not change while the
/// process runs (seccomp, sysctl, kernel version).
static URING_PROBE: OnceCell<Result<(), UringUnavailable>> = OnceCell::new();

/// Whether io_uring is usable here; probes until it gets a lasting answer.
fn uring_status() -> Result<(), &'static UringUnavailable> {
    if let Some(answer) = URING_PROBE.get() {
        return answer.as_ref().map(|_| ());
    }
    match probe_uring() {
        Err(why) if TRANSIENT_ERRNOS.contains(&why.errno) => Err(TRANSIENT_REASONS
            .iter()
            .find(|known| known.errno == why.errno)
            .expect("every transient errno has a reason")),
        answer => URING_PROBE.get_or_init(|| answer).as_ref().map(|_| ()),
    }
}

/// Creates a tiny ring and checks the opcodes the engine issues. `Ok` = io_uring usable.
fn probe_uring() -> Result<(), UringUnavailable> {
    let ring = uring::build_ring(2, 2, false).map_err(|err| {
        unavailable(
            err.raw_os_error().unwrap_or(libc::EIO),
            "io_uring_setup failed",
        )
    })?;
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe).map_err(|err| {
        unavailable(
            err.raw_os_error().unwrap_or(libc::EIO),
            "IORING_REGISTER_PROBE failed (kernel older than 5.6)",
        )
    })?;
    for (code, name) in [
        (opcode::Read::CODE, "IORING_OP_READ"),
        (opcode::Write::CODE, "IORING_OP_WRITE"),
        (opcode::Fsync::CODE, "IORING_OP_FSYNC"),
        (opcode::Fallocate::CODE, "IORING_OP_FALLOCATE"),
        (opcode::SyncFileRange::CODE, "IORING_OP_SYNC_FILE_RANGE"),
    ] {
        if !probe.is_supported(code) {
            return Err(unavailable(
                libc::EOPNOTSUPP,
                &format!("{name} not supported"),
            ));
        }
    }
    Ok(())
}

/// `None` when io_uring is usable, else why not.
pub fn uring_unavailable_reason() -> Option<&'static CStr> {
    uring_status().err().map(|why| why.reason.as_c_str())
}

/// Runs the same expression on whichever engine `$any` holds: the one match per call
/// on the backend; each arm calls a different monomorphized `Engine<D>`.
macro_rules! on_engine {
    ($any:expr, $engine:ident => $call:expr) => {
        match &$any.0 {
            Backend::Aio($engine) => $call,
            Backend::Uring($engine) => $call,
        }
    };
}

/// An open engine of either backend. This enum is matched once per C call; the worker
/// threads below it run the driver's own monomorphized code.
pub struct AnyEngine(Backend);

enum Backend {
    Aio(Engine<AioDriver>),
    Uring(Engine<UringDriver>),
}

impl AnyEngine {
    /// Opens an engine. AUTO takes io_uring when the probe passed and the ring could be
    /// created, AIO otherwise; an explicit backend that cannot start is an error.
    pub fn open(config: &Config) -> Result<Self, Error> {
        let open_uring = || match uring_status() {
            Ok(()) => Engine::open(config).map(|e| AnyEngine(Backend::Uring(e))),
            Err(why) => Err(Error::Kernel {
                call: "io_uring_setup",
                errno: why.errno,
            }),
        };
        match config.backend {
            BackendChoice::Aio => Engine::open(config).map(|e| AnyEngine(Backend::Aio(e))),
            BackendChoice::Uring => open_uring(),
            BackendChoice::Auto => {
                open_uring().or_else(|_| Engine::open(config).map(|e| AnyEngine(Backend::Aio(e))))
            }
        }
    }

    pub fn submit(&self, request: IoRequest, callback: Callback) -> Result<(), Error> {
        on_engine!(self, engine => engine.submit(request, callback))
    }

    /// `(base, len)` of the registered buffers (for `IoRequest::from_spec`).
    pub fn registered_buffers(&self) -> Option<&[(usize, usize)]> {
        on_engine!(self, engine => engine.registered_buffers())
    }

    /// Queues validated requests in order, under one lock
    /// and with one wake-up; returns how many were taken (all but those refused by a
    /// full queue or close), or why none was.
    pub fn submit_batch(&self, batch: Vec<(IoRequest, Callback)>) -> Result<usize, Error> {
        on_engine!(self, engine => engine.submit_batch(batch))
    }

    /// Cancels the requests tagged `tag` (non-zero); returns how many were pending.
    pub fn cancel(&self, tag: u64) -> usize {
        on_engine!(self, engine => engine.cancel(tag))
    }

    /// Cancels every accepted request, tagged or not; returns how many were pending.
    pub fn cancel_all(&self) -> usize {
        on_engine!(self, engine => engine.cancel_all())
    }

    /// Registers buffers for FIXED_BUF requests (before the first request, once).
    pub fn register_buffers(&self, bufs: &[libc::iovec]) -> Result<(), Error> {
        on_engine!(self, engine => engine.register_buffers(bufs))
    }

    /// See `ioeng_register_files`.
    pub fn register_files(&self, fds: &[RawFd]) -> Result<(), Error> {
        on_engine!(self, engine => engine.register_files(fds))
    }

    /// The engine's descriptors of the registered files (FIXED_FILE requests), by index.
    pub fn registered_files(&self) -> Option<&[OwnedFd]> {
        on_engine!(self, engine => engine.registered_files())
    }

    /// POLLED mode: runs the engine on this thread (see `ioeng_poll`).
    pub fn poll(
        &self,
        min_complete: u64,
        timeout: Option<std::time::Duration>,
    ) -> Result<u64, Error> {
        on_engine!(self, engine => engine.poll(min_complete, timeout))
    }

    /// POLLED mode: the engine's event fd.
    pub fn event_fd(&self) -> Result<std::os::fd::RawFd, Error> {
        on_engine!(self, engine => engine.event_fd())
    }

    /// POLLED mode: how long the caller's loop may sleep (see `ioeng_next_timeout_ns`).
    pub fn next_timeout_ns(&self) -> Result<i64, Error> {
        on_engine!(self, engine => engine.next_timeout_ns())
    }

    pub fn resume(&self) {
        on_engine!(self, engine => engine.resume())
    }

    pub fn stats(&self) -> Stats {
        on_engine!(self, engine => engine.stats())
    }

    /// Whether a request may name IO class `id` (0, or one opened).
    pub fn class_exists(&self, id: u16) -> bool {
        on_engine!(self, engine => engine.class_exists(id))
    }

    /// Opens an IO class; `None` when all 63 are open.
    pub(crate) fn class_open(&self, config: ClassConfig) -> Option<u16> {
        on_engine!(self, engine => engine.class_open(config))
    }

    /// New settings for IO class `id` (0 included), from the next dispatch round on.
    pub(crate) fn class_update(&self, id: u16, config: ClassConfig) -> Result<(), Error> {
        on_engine!(self, engine => engine.class_update(id, config))
    }

    /// Class `id`'s statistics (`None`: every HIGH request), zeroed with `reset`.
    pub fn class_stats(
        &self,
        id: Option<u16>,
        reset: bool,
    ) -> Result<crate::abi::IoengClassStats, Error> {
        on_engine!(self, engine => engine.class_stats(id, reset))
    }

    pub fn backend(&self) -> BackendKind {
        match &self.0 {
            Backend::Aio(_) => BackendKind::Aio,
            Backend::Uring(_) => BackendKind::Uring,
        }
    }

    /// Refuses with `CloseFromCallback` on one of this engine's threads; otherwise stops
    /// accepting new requests. Follow with `finish_close` (or drop).
    pub fn begin_close(&self) -> Result<(), Error> {
        on_engine!(self, engine => engine.begin_close())
    }

    /// Waits until every accepted callback ran and joins the threads; the kernel state
    /// goes when the engine is dropped. Callbacks may still use `&self` meanwhile.
    pub fn finish_close(&self) {
        on_engine!(self, engine => engine.finish_close())
    }

    /// Releases a forked child's copy without touching the parent's threads or kernel
    /// objects, and without running a callback.
    pub fn abandon_in_forked_child(self) {
        match self.0 {
            Backend::Aio(engine) => engine.abandon_in_forked_child(),
            Backend::Uring(engine) => engine.abandon_in_forked_child(),
        }
    }
}
