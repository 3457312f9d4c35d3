//! Helpers for the integration tests: engines of each backend and mode through the C ABI
//! (a POLLED engine gets a thread that polls it), a completion recorder, scratch files on
//! ext4 (/tmp here) and tmpfs (/dev/shm).
#![allow(dead_code)]

use std::ffi::{CStr, c_void};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ioeng::ffi::*;

/// A backend and a mode to run a test on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    pub backend: IoengBackend,
    pub mode: IoengMode,
}

impl std::fmt::Display for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = if self.backend == IOENG_BACKEND_AIO {
            "aio"
        } else {
            "uring"
        };
        let mode = if self.mode == IOENG_MODE_POLLED {
            "polled"
        } else {
            "threads"
        };
        write!(f, "{backend} {mode}")
    }
}

/// Backend × mode pairs the tests run on. io_uring is skipped loudly when unavailable,
/// unless IOENG_REQUIRE_URING=1, which turns the skip into a failure (CI).
pub fn backends() -> Vec<Setup> {
    let mut list = vec![IOENG_BACKEND_AIO];
    let reason = ioeng_uring_unavailable_reason();
    if reason.is_null() {
        list.push(IOENG_BACKEND_URING);
    } else {
        // SAFETY: a non-NULL result is a static NUL-terminated string.
        let why = unsafe { CStr::from_ptr(reason) }.to_string_lossy();
        assert!(
            std::env::var("IOENG_REQUIRE_URING").as_deref() != Ok("1"),
            "io_uring required (IOENG_REQUIRE_URING=1) but unavailable: {why}"
        );
        eprintln!("SKIP io_uring half of this test: io_uring unavailable: {why}");
    }
    let modes = [IOENG_MODE_THREADS, IOENG_MODE_POLLED];
    list.into_iter()
        .flat_map(|backend| modes.map(|mode| Setup { backend, mode }))
        .collect()
}

/// An open engine; a POLLED one with the thread that polls it.
pub struct Engine(pub *mut Ioeng, Option<Poller>);

/// Polls a POLLED engine until stopped (as an application's event loop would).
pub struct Poller {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// The handle, sendable to the poller thread (which stops before the handle is closed).
struct Handle(*mut Ioeng);
// SAFETY: ioeng_poll may be called from any thread; close waits for the poller to stop.
unsafe impl Send for Handle {}
// SAFETY: the handle is thread-safe for everything but close, which takes `self`.
unsafe impl Send for Engine {}
// SAFETY: as above.
unsafe impl Sync for Engine {}

/// The default configuration for `setup`.
pub fn config_for(setup: Setup) -> IoengConfig {
    let mut cfg = config(setup.backend);
    cfg.mode = setup.mode;
    cfg
}

pub fn config(backend: IoengBackend) -> IoengConfig {
    let mut cfg = std::mem::MaybeUninit::uninit();
    // SAFETY: writes a full config into valid storage.
    unsafe { ioeng_config_init(cfg.as_mut_ptr()) };
    // SAFETY: initialized just above.
    let mut cfg = unsafe { cfg.assume_init() };
    cfg.backend = backend;
    cfg
}

impl Engine {
    pub fn open(cfg: &IoengConfig) -> Result<Engine, i32> {
        let mut handle = std::ptr::null_mut();
        // SAFETY: valid config and out pointer.
        let rc = unsafe { ioeng_open(cfg, &mut handle) };
        if rc != 0 {
            return Err(rc);
        }
        let poller = (cfg.mode == IOENG_MODE_POLLED).then(|| {
            let stop = Arc::new(AtomicBool::new(false));
            let (h, flag) = (Handle(handle), Arc::clone(&stop));
            let thread = std::thread::spawn(move || {
                let h = h;
                while !flag.load(Ordering::Acquire) {
                    // SAFETY: live handle until close, which stops this thread first.
                    let rc = unsafe { ioeng_poll(h.0, 1, 1_000_000) };
                    assert!(rc >= 0 || rc == -libc::EINTR, "ioeng_poll: {rc}");
                }
            });
            Poller { stop, thread }
        });
        Ok(Engine(handle, poller))
    }

    pub fn with(setup: Setup) -> Engine {
        Engine::open(&config_for(setup)).expect("ioeng_open")
    }

    /// Submits; the result lands in `done` under `tag`.
    pub fn submit(&self, req: &IoengReq, done: &Arc<Done>, tag: u64) -> i32 {
        let ctx = Box::into_raw(Box::new((Arc::clone(done), tag)));
        // SAFETY: live handle; `ctx` is a leaked box reclaimed by `on_done` exactly once,
        // or below if the request was refused.
        let rc = unsafe { ioeng_submit(self.0, req, Some(on_done), ctx.cast()) };
        if rc != 0 {
            // SAFETY: refused, so the callback will never reclaim it.
            drop(unsafe { Box::from_raw(ctx) });
        }
        rc
    }

    pub fn stats(&self) -> IoengStats {
        let mut stats = IoengStats::default();
        // SAFETY: live handle, valid out pointer.
        assert_eq!(unsafe { ioeng_stats(self.0, &mut stats) }, 0);
        stats
    }

    pub fn backend(&self) -> IoengBackend {
        // SAFETY: live handle.
        unsafe { ioeng_backend(self.0) }
    }

    pub fn resume(&self) {
        // SAFETY: live handle.
        assert_eq!(unsafe { ioeng_resume(self.0) }, 0);
    }

    /// Closes (a POLLED engine after its poller stopped: close drains on this thread).
    pub fn close(self) {
        if let Some(poller) = self.1 {
            poller.stop.store(true, Ordering::Release);
            poller.thread.join().expect("the poller thread");
        }
        // SAFETY: live handle, not used afterwards.
        assert_eq!(unsafe { ioeng_close(self.0) }, 0);
    }
}

/// Collects `(tag, res)` of completions in callback order.
#[derive(Default)]
pub struct Done {
    results: Mutex<Vec<(u64, i64)>>,
    changed: Condvar,
}

unsafe extern "C" fn on_done(ctx: *mut c_void, res: i64) {
    // SAFETY: `ctx` is the box leaked by `Engine::submit`, reclaimed exactly once here.
    let ctx = unsafe { Box::from_raw(ctx.cast::<(Arc<Done>, u64)>()) };
    let (done, tag) = *ctx;
    done.results.lock().unwrap().push((tag, res));
    done.changed.notify_all();
}

impl Done {
    pub fn new() -> Arc<Done> {
        Arc::new(Done::default())
    }

    /// Waits for `n` completions (panics after 60 s) and returns them in order.
    pub fn wait(&self, n: usize) -> Vec<(u64, i64)> {
        let guard = self.results.lock().unwrap();
        let (guard, timeout) = self
            .changed
            .wait_timeout_while(guard, Duration::from_secs(60), |r| r.len() < n)
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "only {} of {n} callbacks arrived",
            guard.len()
        );
        guard.clone()
    }

    pub fn snapshot(&self) -> Vec<(u64, i64)> {
        self.results.lock().unwrap().clone()
    }
}

pub fn req(op: IoengOp, fd: i32, buf: *mut u8, len: u64, offset: u64) -> IoengReq {
    IoengReq {
        op,
        prio: IOENG_PRIO_NORMAL,
        fd,
        buf: buf.cast(),
        len,
        offset,
        flags: 0,
        tag: 0,
        deadline_ns: 0,
        buf_index: 0,
        class_id: 0,
        reserved: 0,
    }
}

/// A scratch file removed on drop.
pub struct Scratch {
    pub path: PathBuf,
    pub file: File,
}

impl Scratch {
    pub fn new(dir: &str, direct: bool) -> Scratch {
        use std::os::unix::fs::OpenOptionsExt;
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = PathBuf::from(dir).join(format!("ioeng-rust-{}-{n}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(if direct { libc::O_DIRECT } else { 0 })
            .open(&path)
            .expect("create scratch file");
        Scratch { path, file }
    }

    pub fn fd(&self) -> i32 {
        self.file.as_raw_fd()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// 4096-aligned heap buffer for O_DIRECT.
pub struct AlignedBuf {
    ptr: *mut u8,
    len: usize,
}

impl AlignedBuf {
    pub fn new(len: usize) -> AlignedBuf {
        let layout = std::alloc::Layout::from_size_align(len, 4096).unwrap();
        // SAFETY: non-zero size layout.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        AlignedBuf { ptr, len }
    }
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr
    }
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `len` initialized bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `len` initialized bytes owned exclusively by self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = std::alloc::Layout::from_size_align(self.len, 4096).unwrap();
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, layout) };
    }
}

// SAFETY: plain owned memory.
unsafe impl Send for AlignedBuf {}

pub fn fill_pattern(buf: &mut [u8], seed: u64) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for byte in buf {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *byte = x as u8;
    }
}
