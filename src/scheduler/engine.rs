//! `Engine<D>`: one engine's lifecycle — open (driver + context, and in THREADS mode two
//! threads), submit, close (drain, join or drive to the end, release the kernel
//! context) — for one statically chosen driver.

use std::os::fd::{OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::classes::ClassConfig;
use super::config::{Config, Mode};
use super::context::IoContext;
use super::driver::Driver;
use super::idle::PollPolicy;
use super::locks::{lock, try_lock};
use super::polled::{self, PollError};
use super::shared::{Shared, SubmitRole};
use super::stats::Stats;
use super::tasks::{Callback, IoEvent, IoRequest};
use super::worker::{run_completer, run_submitter};
use crate::abi::IoengClassStats as ClassStats;
use crate::error::{Error, try_with_capacity};
use crate::race_hooks::{self, Point};
use crate::sys;

pub(crate) struct Engine<D: Driver> {
    shared: Arc<Shared<D>>,
    /// THREADS: (submitter, completer) until close joins them. Behind a lock so that close
    /// can join through `&self`: the C handle stays in place, shared with callbacks that
    /// still call ioeng_submit/ioeng_close on it, until both threads are gone.
    threads: Mutex<Option<(JoinHandle<()>, JoinHandle<()>)>>,
    /// Set once close finished (or a forked child abandoned its copy): drop has nothing
    /// left to drain.
    finished: AtomicBool,
}

impl<D: Driver> Engine<D> {
    pub(crate) fn open(config: &Config) -> Result<Self, Error> {
        let event = match config.mode {
            Mode::Threads => None,
            Mode::Polled => {
                Some(sys::EventFd::new().map_err(|err| Error::kernel("eventfd", &err))?)
            }
        };
        let driver = match &event {
            Some(event) if config.single_poller => {
                D::open_single_poller(config.depth, config.batch, event.raw())?
            }
            _ => D::open(config.depth, config.batch, event.as_ref().map(|e| e.raw()))?,
        };
        let mut ctx = IoContext::with_classes(
            config.depth as usize,
            config.batch as usize,
            config.queue_capacity as usize,
            config.start_paused,
            config.normal_min_percent,
            config.latency_stats,
        )?;
        if let Some(event) = event {
            ctx = ctx.with_event_fd(event, config.poll_after_submit);
        }
        let shared = Arc::new(Shared {
            driver,
            ctx,
            submit: Mutex::new(SubmitRole::new(
                config.batch as usize,
                config.depth as usize,
            )?),
            policy: PollPolicy::new(config),
        });
        let engine = Engine {
            shared,
            threads: Mutex::new(None),
            finished: AtomicBool::new(false),
        };
        if config.mode == Mode::Threads {
            engine.start_threads(config)?;
        }
        Ok(engine)
    }

    /// Spawns (and pins, when configured) the submitter and completer threads. On failure
    /// the threads already started are stopped and joined.
    fn start_threads(&self, config: &Config) -> Result<(), Error> {
        let shared = &self.shared;
        // The completer's list of reaped completions, made here where a failure can
        // still be reported (in the thread it would abort the process).
        let reaped = try_with_capacity(config.depth as usize)?;
        let for_submitter = Arc::clone(shared);
        let submitter = sys::spawn_signals_blocked("ioeng-submit", move || {
            engine_thread(|| run_submitter(&for_submitter))
        })
        .map_err(|err| Error::kernel("pthread_create", &err))?;
        let for_completer = Arc::clone(shared);
        let completer = match sys::spawn_signals_blocked("ioeng-complete", move || {
            engine_thread(|| run_completer(&for_completer, reaped))
        }) {
            Ok(handle) => handle,
            Err(err) => {
                // The submitter waits for both thread handles before doing anything. Give
                // it its own handle twice: with nothing accepted it exits at once.
                shared.ctx.begin_close();
                let me = submitter.thread().clone();
                shared.ctx.wakeup().set_threads(me.clone(), me);
                let _ = submitter.join();
                self.finished.store(true, Ordering::Relaxed);
                return Err(Error::kernel("pthread_create", &err));
            }
        };
        shared
            .ctx
            .wakeup()
            .set_threads(submitter.thread().clone(), completer.thread().clone());
        // Pinned before they do any work: both wait for `set_threads`... and then find
        // nothing accepted yet, so a refused CPU stops them with nothing to drain.
        let pins = [
            (
                &submitter,
                config.submitter_cpu,
                "pthread_setaffinity_np(submitter)",
            ),
            (
                &completer,
                config.completer_cpu,
                "pthread_setaffinity_np(completer)",
            ),
        ];
        let refused = pins.into_iter().find_map(|(handle, cpu, call)| {
            sys::pin_thread(handle, cpu?)
                .err()
                .map(|errno| Error::Kernel { call, errno })
        });
        *lock(&self.threads) = Some((submitter, completer));
        if let Some(err) = refused {
            shared.ctx.begin_close();
            self.finish_close();
            return Err(err);
        }
        Ok(())
    }

    pub(crate) fn submit(&self, request: IoRequest, callback: Callback) -> Result<(), Error> {
        self.shared.ctx.push(IoEvent::new(request, callback))
    }

    /// `(base, len)` of the registered buffers, for validating FIXED_BUF requests.
    pub(crate) fn registered_buffers(&self) -> Option<&[(usize, usize)]> {
        self.shared.ctx.registered_buffers()
    }

    /// Queues validated requests under one lock with one wake-up.
    pub(crate) fn submit_batch(&self, batch: Vec<(IoRequest, Callback)>) -> Result<usize, Error> {
        let events = batch
            .into_iter()
            .map(|(request, callback)| IoEvent::new(request, callback));
        self.shared.ctx.push_batch(events)
    }

    pub(crate) fn cancel(&self, tag: u64) -> usize {
        self.shared.ctx.cancel(tag)
    }

    pub(crate) fn cancel_all(&self) -> usize {
        self.shared.ctx.cancel_all()
    }

    pub(crate) fn register_buffers(&self, bufs: &[libc::iovec]) -> Result<(), Error> {
        let shared = &*self.shared;
        shared
            .ctx
            .register_buffers(bufs, |bufs| shared.driver.register_buffers(bufs))
    }

    /// The registered files, for resolving FIXED_FILE requests.
    pub(crate) fn registered_files(&self) -> Option<&[OwnedFd]> {
        self.shared.ctx.registered_files()
    }

    pub(crate) fn register_files(&self, fds: &[RawFd]) -> Result<(), Error> {
        let shared = &*self.shared;
        shared
            .ctx
            .register_files(fds, |fds| shared.driver.register_files(fds))
    }

    pub(crate) fn resume(&self) {
        self.shared.ctx.resume();
    }

    pub(crate) fn stats(&self) -> Stats {
        self.shared.ctx.stats()
    }

    pub(crate) fn class_exists(&self, id: u16) -> bool {
        self.shared.ctx.class_exists(id)
    }

    pub(crate) fn class_open(&self, config: ClassConfig) -> Option<u16> {
        self.shared.ctx.class_open(config)
    }

    pub(crate) fn class_update(&self, id: u16, config: ClassConfig) -> Result<(), Error> {
        self.shared.ctx.class_update(id, config)
    }

    pub(crate) fn class_stats(&self, id: Option<u16>, reset: bool) -> Result<ClassStats, Error> {
        self.shared.ctx.class_stats(id, reset)
    }

    /// POLLED mode: `ioeng_poll`.
    pub(crate) fn poll(&self, min_complete: u64, timeout: Option<Duration>) -> Result<u64, Error> {
        if self.shared.ctx.mode() != Mode::Polled {
            return Err(Error::WrongMode);
        }
        polled::poll(&self.shared, min_complete, timeout).map_err(|err| match err {
            PollError::Busy => Error::Busy,
            PollError::WrongThread => Error::InvalidArgument(
                "IOENG_CONFIG_SINGLE_POLLER: poll from another thread than the poller",
            ),
            PollError::Interrupted => Error::Kernel {
                call: "ppoll",
                errno: libc::EINTR,
            },
        })
    }

    /// POLLED mode: the event fd (`ioeng_event_fd`).
    pub(crate) fn event_fd(&self) -> Result<RawFd, Error> {
        match self.shared.ctx.event_fd() {
            Some(event) => {
                self.shared.ctx.wakeup().watch();
                Ok(event.raw())
            }
            None => Err(Error::WrongMode),
        }
    }

    /// POLLED mode: `ioeng_next_timeout_ns` (see `polled::next_timeout_ns`).
    pub(crate) fn next_timeout_ns(&self) -> Result<i64, Error> {
        polled::next_timeout_ns(&self.shared.ctx).ok_or(Error::WrongMode)
    }

    /// First half of close: refuses when called from any engine's thread (it could wait
    /// for itself, or for an engine that waits for it) or from inside this engine's
    /// `ioeng_poll`, and in POLLED mode while another thread polls it; otherwise stops
    /// accepting and starts draining.
    pub(crate) fn begin_close(&self) -> Result<(), Error> {
        let ctx = &self.shared.ctx;
        // On any engine thread of any engine, close would wait for an engine thread — its
        // own, or one of another engine that may be closing this one.
        if sys::fork::on_engine_thread() || ctx.served_here() {
            return Err(Error::CloseFromCallback);
        }
        if self.shared.ctx.mode() == Mode::Polled {
            // Closing is marked while this thread holds the poller's role, so a poll
            // either ran before (and the role was busy: -EBUSY here) or starts after and
            // sees the close (-EBUSY there); the drain never finds the role taken for good.
            let Some(_role) = try_lock(&self.shared.submit) else {
                return Err(Error::Busy);
            };
            // The drain runs on this thread: it must be the one the driver is tied to.
            if !self.shared.driver.bind_poller() {
                return Err(Error::InvalidArgument(
                    "IOENG_CONFIG_SINGLE_POLLER: close from another thread than the poller",
                ));
            }
            ctx.begin_close();
            return Ok(());
        }
        ctx.begin_close();
        Ok(())
    }

    /// Second half of close: returns once every accepted request's callback ran — after
    /// both threads are joined (THREADS), or after driving the engine to the end on this
    /// thread (POLLED). Takes `&self`: callbacks may use the engine meanwhile.
    pub(crate) fn finish_close(&self) {
        match self.shared.ctx.mode() {
            Mode::Threads => {
                let threads = lock(&self.threads).take();
                if let Some((submitter, completer)) = threads {
                    // A worker panic is a libioeng bug; it has already been reported on
                    // stderr (and the process aborted): nothing to recover here.
                    let _ = submitter.join();
                    let _ = completer.join();
                }
            }
            Mode::Polled => {
                race_hooks::at(Point::PolledCloseChecked);
                polled::drain(&self.shared);
            }
        }
        self.finished.store(true, Ordering::Relaxed);
    }

    /// Releases a forked child's copy of an engine. Its threads exist only in the parent,
    /// so they are neither woken nor joined, and no callback runs. No destructor of the
    /// copy runs either: the parent's threads may have held its locks (the channels'
    /// wakers, the queues' mutex) at the fork, and nobody here would ever release them,
    /// so dropping could block for good. Only the copy of an io_uring ring is released
    /// (unmapped and its fd closed: no lock in this process), so that the child does not
    /// keep the parent's ring, and the buffers registered with it, alive; and only while
    /// its fd number still refers to that ring: a child that closed the inherited
    /// descriptors may have reused the numbers for its own files. The event fd and the
    /// other descriptors stay open (an eventfd or timerfd cannot be told from the child's
    /// own ones; all are close-on-exec); the memory stays until the child exits or execs.
    pub(crate) fn abandon_in_forked_child(self) {
        let mut this = std::mem::ManuallyDrop::new(self);
        // `get_mut` takes no lock: `this` is ours alone.
        let had_threads = this
            .threads
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some();
        let shared = &mut this.shared;
        // Each parent thread's closure holds a clone that will never drop in this
        // process. Only when exactly those two are left besides ours is it known who
        // holds what; otherwise the descriptors stay open too, which is harmless.
        if had_threads && Arc::strong_count(shared) == 3 {
            for _ in 0..2 {
                // SAFETY: the count is 3: ours and the two held by threads that do not
                // exist in this process (fork copies only the calling thread), so no
                // code will ever use or drop those two; ours keeps the value alive.
                unsafe { Arc::decrement_strong_count(Arc::as_ptr(shared)) };
            }
        }
        if let Some(shared) = Arc::get_mut(shared) {
            // SAFETY: `shared` is the only reference to the driver in this process (the
            // count is 1 and this thread is the only one), and the `Arc` is never dropped
            // (`this` is ManuallyDrop), so the driver is released once, here, and never
            // used or dropped again. It takes no lock.
            unsafe { shared.driver.release_in_forked_child() };
        }
    }
}

/// Runs an engine thread's loop, marked as an engine thread (`sys::fork::on_engine_thread`);
/// a panic there (an invariant of libioeng broken) aborts the process. Unwinding would
/// end one of the two threads and leave the other, and `ioeng_close`, waiting forever
/// for callbacks that can no longer come; a loud abort (the panic message is printed
/// first) beats a silent hang or a lost callback.
fn engine_thread(body: impl FnOnce()) {
    sys::fork::mark_engine_thread();
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).is_err() {
        eprintln!("libioeng: an engine thread panicked; aborting to avoid losing callbacks");
        std::process::abort();
    }
}

impl<D: Driver> Drop for Engine<D> {
    /// Dropping without close still drains: the kernel context (in `driver`) and the
    /// slots it points into are freed only after both threads are gone, or in POLLED
    /// mode after this thread completed everything accepted.
    fn drop(&mut self) {
        if !*self.finished.get_mut() {
            self.shared.ctx.begin_close();
            self.finish_close();
        }
    }
}
