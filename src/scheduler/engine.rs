//! `Engine<D>`: one engine's lifecycle — open (driver + context + two threads), submit,
//! close (drain, join, release the kernel context) — for one statically chosen driver.

use std::cell::Cell;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use super::Config;
use super::context::{Driver, IoContext, Stats};
use super::tasks::{Callback, IoEvent, IoRequest};
use super::worker::{run_completer, run_submitter};
use crate::error::Error;
use crate::sys;

/// State the two engine threads share with the handle.
///
/// `driver` is declared first so it drops first: its kernel context is torn down (and, for
/// AIO, `io_destroy` waits for any IO still in flight) before the slots in `ctx`, which
/// the kernel may point into, are freed.
struct Shared<D: Driver> {
    driver: D,
    ctx: IoContext<D::Slot>,
}

pub(crate) struct Engine<D: Driver> {
    shared: Arc<Shared<D>>,
    /// (submitter, completer) until close joins them. Behind a lock so that close can
    /// join through `&self`: the C handle stays in place, shared with callbacks that
    /// still call ioeng_submit/ioeng_close on it, until both threads are gone.
    threads: Mutex<Option<(JoinHandle<()>, JoinHandle<()>)>>,
}

thread_local! {
    /// True on every engine thread of every engine (DESIGN §5.9): ioeng_close there
    /// would wait for an engine thread — its own, or one of another engine that may be
    /// closing this one — so it refuses with EDEADLK.
    static ON_ENGINE_THREAD: Cell<bool> = const { Cell::new(false) };
}

impl<D: Driver> Engine<D> {
    pub(crate) fn open(config: &Config) -> Result<Self, Error> {
        let driver = D::open(config.depth, config.batch)?;
        let ctx = IoContext::new(
            config.depth as usize,
            config.batch as usize,
            config.queue_capacity as usize,
            config.start_paused,
        );
        let shared = Arc::new(Shared { driver, ctx });

        let for_submitter = Arc::clone(&shared);
        let submitter = sys::spawn_signals_blocked("ioeng-submit", move || {
            engine_thread(|| run_submitter(&for_submitter.ctx, &for_submitter.driver))
        })
        .map_err(|err| Error::kernel("pthread_create", &err))?;
        let for_completer = Arc::clone(&shared);
        let completer = match sys::spawn_signals_blocked("ioeng-complete", move || {
            engine_thread(|| run_completer(&for_completer.ctx, &for_completer.driver))
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
        Ok(Engine {
            shared,
            threads: Mutex::new(Some((submitter, completer))),
        })
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

    pub(crate) fn register_buffers(&self, bufs: &[libc::iovec]) -> Result<(), Error> {
        let shared = &*self.shared;
        shared
            .ctx
            .register_buffers(bufs, |bufs| shared.driver.register_buffers(bufs))
    }

    pub(crate) fn resume(&self) {
        self.shared.ctx.resume();
    }

    pub(crate) fn stats(&self) -> Stats {
        self.shared.ctx.stats()
    }

    /// First half of close: refuses when called from any engine's thread (it could wait
    /// for itself, or for an engine that waits for it), otherwise stops accepting and
    /// starts draining.
    pub(crate) fn begin_close(&self) -> Result<(), Error> {
        if ON_ENGINE_THREAD.get() {
            return Err(Error::CloseFromCallback);
        }
        self.shared.ctx.begin_close();
        Ok(())
    }

    /// Second half of close: waits until every accepted request's callback ran and both
    /// threads are gone. Takes `&self`: callbacks may use the engine meanwhile.
    pub(crate) fn finish_close(&self) {
        let threads = self
            .threads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((submitter, completer)) = threads {
            // A worker panic is a libioeng bug; it has already been reported on stderr
            // (and the process aborted), so there is nothing to recover here.
            let _ = submitter.join();
            let _ = completer.join();
        }
    }

    /// Frees a forked child's copy of an engine: its threads exist only in the parent,
    /// so they are neither woken nor joined, no callback runs, and the kernel objects
    /// are left to the parent (the drivers' Drop skip them in a child).
    pub(crate) fn abandon_in_forked_child(self) {
        let threads = self
            .threads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(threads) = threads else {
            return;
        };
        // No pthread call on threads that do not exist here.
        std::mem::forget(threads);
        let shared = Arc::clone(&self.shared);
        drop(self);
        // Each parent thread's closure holds a clone that will never drop in this
        // process. Only when exactly those two are left besides ours is it known who
        // holds what; otherwise the copy is leaked, which is harmless.
        if Arc::strong_count(&shared) == 3 {
            for _ in 0..2 {
                // SAFETY: the count is 3: ours and the two held by threads that do not
                // exist in this process (fork copies only the calling thread), so no
                // code will ever use or drop those two; ours keeps the value alive.
                unsafe { Arc::decrement_strong_count(Arc::as_ptr(&shared)) };
            }
            drop(shared);
        } else {
            std::mem::forget(shared);
        }
    }
}

/// Runs an engine thread's loop, marked as an engine thread (see `ON_ENGINE_THREAD`);
/// a panic there (an invariant of libioeng broken) aborts the process. Unwinding would end one of the two threads and leave the other, and
/// `ioeng_close`, waiting forever for callbacks that can no longer come; a loud abort
/// (the panic message is printed first) beats a silent hang or a lost callback.
fn engine_thread(body: impl FnOnce()) {
    ON_ENGINE_THREAD.set(true);
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).is_err() {
        eprintln!("libioeng: an engine thread panicked; aborting to avoid losing callbacks");
        std::process::abort();
    }
}

impl<D: Driver> Drop for Engine<D> {
    /// Dropping without `begin_close` still drains: the kernel context (in `driver`) and
    /// the slots it points into are freed only after both threads are gone.
    fn drop(&mut self) {
        let running = self
            .threads
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some();
        if running {
            self.shared.ctx.begin_close();
            self.finish_close();
        }
    }
}
