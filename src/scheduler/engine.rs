//! `Engine<D>`: one engine's lifecycle — open (driver + context + two threads), submit,
//! close (drain, join, release the kernel context) — for one statically chosen driver.

use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::context::{Driver, IoContext, Stats};
use super::polled::{self, PollError};
use super::tasks::{Callback, IoEvent, IoRequest};
use super::worker::{PollPolicy, SubmitRole, run_completer, run_submitter};
use super::{Config, Mode};
use crate::error::Error;
use crate::sys;

/// State the engine's threads (or its poller) share with the handle.
///
/// `driver` is declared first so it drops first: its kernel context is torn down (and, for
/// AIO, `io_destroy` waits for any IO still in flight) before the slots in `ctx`, which
/// the kernel may point into, are freed, and before the event fd in `ctx` is closed.
pub(crate) struct Shared<D: Driver> {
    pub(crate) driver: D,
    pub(crate) ctx: IoContext<D::Slot>,
    /// The submit role (see `Driver`): the THREADS submitter takes it for each step, the
    /// completer when its callbacks queued work, a POLLED poller for the whole poll.
    pub(crate) submit: Mutex<SubmitRole>,
    pub(crate) policy: PollPolicy,
}

pub(crate) struct Engine<D: Driver> {
    shared: Arc<Shared<D>>,
    mode: Mode,
    submitter: Option<JoinHandle<()>>,
    completer: Option<JoinHandle<()>>,
}

impl<D: Driver> Engine<D> {
    pub(crate) fn open(config: &Config) -> Result<Self, Error> {
        let event = match config.mode {
            Mode::Threads => None,
            Mode::Polled => {
                Some(sys::EventFd::new().map_err(|err| Error::kernel("eventfd", &err))?)
            }
        };
        let driver = D::open(config.depth, config.batch, event.as_ref().map(|e| e.raw()))?;
        let mut ctx = IoContext::new(
            config.depth as usize,
            config.batch as usize,
            config.queue_capacity as usize,
            config.start_paused,
        );
        if let Some(event) = event {
            ctx = ctx.with_event_fd(event);
        }
        let shared = Arc::new(Shared {
            driver,
            ctx,
            submit: Mutex::new(SubmitRole::new(
                config.batch as usize,
                config.depth as usize,
            )),
            policy: PollPolicy::new(config),
        });
        let mut engine = Engine {
            shared,
            mode: config.mode,
            submitter: None,
            completer: None,
        };
        if config.mode == Mode::Threads {
            engine.start_threads(config)?;
        }
        Ok(engine)
    }

    /// Spawns (and pins, when configured) the submitter and completer threads. On failure
    /// the threads already started are stopped and joined.
    fn start_threads(&mut self, config: &Config) -> Result<(), Error> {
        let shared = &self.shared;
        let for_submitter = Arc::clone(shared);
        let submitter = sys::spawn_signals_blocked("ioeng-submit", move || {
            abort_on_panic(|| run_submitter(&for_submitter))
        })
        .map_err(|err| Error::kernel("pthread_create", &err))?;
        let for_completer = Arc::clone(shared);
        let completer = match sys::spawn_signals_blocked("ioeng-complete", move || {
            abort_on_panic(|| run_completer(&for_completer))
        }) {
            Ok(handle) => handle,
            Err(err) => {
                // The submitter waits for both thread handles before doing anything. Give
                // it its own handle twice: with nothing accepted it exits at once.
                shared.ctx.begin_close();
                let me = submitter.thread().clone();
                shared.ctx.set_threads(me.clone(), me);
                let _ = submitter.join();
                return Err(Error::kernel("pthread_create", &err));
            }
        };
        shared
            .ctx
            .set_threads(submitter.thread().clone(), completer.thread().clone());
        self.submitter = Some(submitter);
        self.completer = Some(completer);
        // Pinned before they do any work: both wait for `set_threads`... and then find
        // nothing accepted yet, so a refused CPU stops them with nothing to drain.
        let pins = [
            (
                &self.submitter,
                config.submitter_cpu,
                "pthread_setaffinity_np(submitter)",
            ),
            (
                &self.completer,
                config.completer_cpu,
                "pthread_setaffinity_np(completer)",
            ),
        ];
        let refused = pins.into_iter().find_map(|(handle, cpu, call)| {
            let (handle, cpu) = (handle.as_ref()?, cpu?);
            sys::pin_thread(handle, cpu)
                .err()
                .map(|errno| Error::Kernel { call, errno })
        });
        if let Some(err) = refused {
            shared.ctx.begin_close();
            self.join();
            return Err(err);
        }
        Ok(())
    }

    pub(crate) fn submit(&self, request: IoRequest, callback: Callback) -> Result<(), Error> {
        self.shared.ctx.push(IoEvent::new(request, callback))
    }

    pub(crate) fn resume(&self) {
        self.shared.ctx.resume();
    }

    pub(crate) fn stats(&self) -> Stats {
        self.shared.ctx.stats()
    }

    /// POLLED mode: `ioeng_poll`.
    pub(crate) fn poll(&self, min_complete: u64, timeout: Option<Duration>) -> Result<u64, Error> {
        if self.mode != Mode::Polled {
            return Err(Error::WrongMode);
        }
        polled::poll(&self.shared, min_complete, timeout).map_err(|err| match err {
            PollError::Busy => Error::Busy,
            PollError::Interrupted => Error::Kernel {
                call: "ppoll",
                errno: libc::EINTR,
            },
        })
    }

    /// POLLED mode: the event fd (`ioeng_event_fd`).
    pub(crate) fn event_fd(&self) -> Result<RawFd, Error> {
        match self.shared.ctx.event_fd() {
            Some(event) => Ok(event.raw()),
            None => Err(Error::WrongMode),
        }
    }

    /// First half of close: refuses when called from this engine's own threads or, in
    /// POLLED mode, from inside its `ioeng_poll` (they would wait for themselves) or while
    /// another thread polls it; otherwise stops accepting and starts draining.
    pub(crate) fn begin_close(&self) -> Result<(), Error> {
        let ctx = &self.shared.ctx;
        if ctx.is_engine_thread() || ctx.served_here() {
            return Err(Error::CloseFromCallback);
        }
        if self.mode == Mode::Polled && self.shared.submit.try_lock().is_err() {
            return Err(Error::Busy);
        }
        ctx.begin_close();
        Ok(())
    }

    /// Second half of close: waits until every accepted request's callback ran.
    fn join(&mut self) {
        for handle in [self.submitter.take(), self.completer.take()]
            .into_iter()
            .flatten()
        {
            // A worker panic is a libioeng bug; it has already been reported on stderr
            // and there is nothing more to recover here.
            let _ = handle.join();
        }
    }
}

/// Runs an engine thread's loop; a panic there (an invariant of libioeng broken) aborts
/// the process. Unwinding would end one of the two threads and leave the other, and
/// `ioeng_close`, waiting forever for callbacks that can no longer come; a loud abort
/// (the panic message is printed first) beats a silent hang or a lost callback.
fn abort_on_panic(body: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).is_err() {
        eprintln!("libioeng: an engine thread panicked; aborting to avoid losing callbacks");
        std::process::abort();
    }
}

impl<D: Driver> Drop for Engine<D> {
    /// Dropping without `begin_close` still drains: the kernel context (in `driver`) and
    /// the slots it points into are freed only after both threads are gone, or in POLLED
    /// mode after this thread completed everything accepted.
    fn drop(&mut self) {
        self.shared.ctx.begin_close();
        match self.mode {
            Mode::Threads => self.join(),
            Mode::Polled => {
                // `begin_close` refused a concurrent poller, so the role is free.
                let drained = polled::drain(&self.shared);
                debug_assert!(drained.is_ok());
            }
        }
    }
}
