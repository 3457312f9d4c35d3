//! `Engine<D>`: one engine's lifecycle — open (driver + context + two threads), submit,
//! close (drain, join, release the kernel context) — for one statically chosen driver.

use std::sync::Arc;
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
    submitter: Option<JoinHandle<()>>,
    completer: Option<JoinHandle<()>>,
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
            abort_on_panic(|| run_submitter(&for_submitter.ctx, &for_submitter.driver))
        })
        .map_err(|err| Error::kernel("pthread_create", &err))?;
        let for_completer = Arc::clone(&shared);
        let completer = match sys::spawn_signals_blocked("ioeng-complete", move || {
            abort_on_panic(|| run_completer(&for_completer.ctx, &for_completer.driver))
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
            submitter: Some(submitter),
            completer: Some(completer),
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

    /// First half of close: refuses when called from this engine's own threads (they
    /// would wait for themselves), otherwise stops accepting and starts draining.
    pub(crate) fn begin_close(&self) -> Result<(), Error> {
        if self.shared.ctx.is_engine_thread() {
            return Err(Error::CloseFromCallback);
        }
        self.shared.ctx.begin_close();
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
    /// the slots it points into are freed only after both threads are gone.
    fn drop(&mut self) {
        if self.submitter.is_some() {
            self.shared.ctx.begin_close();
            self.join();
        }
    }
}
