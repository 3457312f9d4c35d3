//! How new work reaches whoever drives the engine, and the one place that knows the
//! engine's mode: THREADS unparks the engine threads; POLLED makes the event fd readable
//! for the caller's loop (docs/ARCHITECTURE.md, "Threads and roles").

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::thread::Thread;

use super::config::Mode;
use crate::sys::EventFd;

pub(crate) enum Wakeup {
    Threads(ThreadsWake),
    Polled(PolledWake),
}

pub(crate) struct ThreadsWake {
    /// (submitter, completer), set once both threads are spawned.
    threads: OnceLock<(Thread, Thread)>,
}

pub(crate) struct PolledWake {
    /// Readable while `ioeng_poll` has work. `None` only in a forked child's copy, whose
    /// fd was closed (`Engine::abandon_in_forked_child`).
    event: Option<EventFd>,
    /// True while the event fd is known to be signalled or a poller is running (which
    /// sees new work without it), so a burst of submits writes it once.
    signalled: AtomicBool,
    /// Set after a submitting thread (or a poller leaving work behind) wrote the event
    /// fd; taken by the poller to know that it must drain the fd.
    written: AtomicBool,
    /// IOENG_CONFIG_POLL_AFTER_SUBMIT: the thread that polled last (`sys::thread_token`),
    /// whose own submits leave the fd alone since it polls after them; 0: none yet, or
    /// the flag is off. Written by that thread at each poll and compared by submitters
    /// with their own token: tokens are never reused, so a thread only ever finds its
    /// own there while it is the last poller, and Relaxed is enough.
    quiet_poller: AtomicU64,
    /// Whether the caller made that promise (`Config::poll_after_submit`).
    poll_after_submit: bool,
    /// Set by the first `ioeng_event_fd` or `ioeng_next_timeout_ns` (`watch`): until then
    /// the caller cannot see whether the fd is readable, so a poll that returns with work
    /// left need not make it so (`unwatched_poll_ends`). Never cleared.
    watched: AtomicBool,
    /// Whether the last poll that returned unwatched left work without making the fd
    /// readable; the first `watch` then does.
    unannounced_work: AtomicBool,
}

impl Wakeup {
    pub(crate) fn threads() -> Self {
        Wakeup::Threads(ThreadsWake {
            threads: OnceLock::new(),
        })
    }

    pub(crate) fn polled(event: EventFd, poll_after_submit: bool) -> Self {
        Wakeup::Polled(PolledWake {
            event: Some(event),
            signalled: AtomicBool::new(false),
            written: AtomicBool::new(false),
            quiet_poller: AtomicU64::new(0),
            poll_after_submit,
            watched: AtomicBool::new(false),
            unannounced_work: AtomicBool::new(false),
        })
    }

    pub(crate) fn mode(&self) -> Mode {
        match self {
            Wakeup::Threads(_) => Mode::Threads,
            Wakeup::Polled(_) => Mode::Polled,
        }
    }

    /// POLLED mode: the event fd.
    pub(crate) fn event_fd(&self) -> Option<&EventFd> {
        match self {
            Wakeup::Polled(p) => p.event.as_ref(),
            Wakeup::Threads(_) => None,
        }
    }

    /// THREADS mode, once both engine threads exist.
    pub(crate) fn set_threads(&self, submitter: Thread, completer: Thread) {
        if let Wakeup::Threads(t) = self {
            let _ = t.threads.set((submitter, completer));
        }
    }

    /// THREADS mode: blocks until `set_threads` ran; engine threads call this first.
    pub(crate) fn wait_for_threads(&self) {
        if let Wakeup::Threads(t) = self {
            t.threads.wait();
        }
    }

    /// Wakes the submitter thread, or in POLLED mode makes the event fd readable.
    pub(crate) fn wake_submitter(&self) {
        match self {
            Wakeup::Polled(p) => {
                if !p.signalled.swap(true, Ordering::SeqCst) {
                    p.signal();
                }
            }
            Wakeup::Threads(t) => {
                if let Some((submitter, _)) = t.threads.get() {
                    submitter.unpark();
                }
            }
        }
    }

    /// THREADS mode: wakes the completer (the kernel took IO, or close waits for it).
    pub(crate) fn wake_completer(&self) {
        if let Wakeup::Threads(t) = self
            && let Some((_, completer)) = t.threads.get()
        {
            completer.unpark();
        }
    }

    /// POLLED mode, by the poller: new work need not signal the event fd from now on (the
    /// poller runs and will look for it).
    pub(crate) fn poller_running(&self) {
        if let Wakeup::Polled(p) = self {
            p.signalled.store(true, Ordering::SeqCst);
        }
    }

    /// POLLED mode, by the poller before it sleeps or returns: drains the event fd (if
    /// `drain`) and clears `signalled`, so that the next submit writes the fd again; the
    /// caller then checks for work (`IoContext::rearm_event`). False in THREADS mode.
    ///
    /// The fd is drained *before* `signalled` is cleared: a submitter that sees the flag
    /// clear signals after the drain, so the drain can never eat the only signal of work
    /// that the caller's check might miss. The fence pairs with the one in
    /// `IoContext::notify_submit_work`: either the poller's check sees that work, or the
    /// submitter sees `signalled == false` and signals.
    pub(crate) fn rearm(&self, drain: bool) -> bool {
        let Wakeup::Polled(p) = self else {
            return false;
        };
        if drain && let Some(event) = &p.event {
            event.drain();
        }
        p.signalled.store(false, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        true
    }

    /// POLLED mode: makes the event fd readable, whatever `signalled` says.
    pub(crate) fn signal_event(&self) {
        if let Wakeup::Polled(p) = self {
            p.signalled.store(true, Ordering::SeqCst);
            p.signal();
        }
    }

    /// POLLED mode, by `ioeng_event_fd` and `ioeng_next_timeout_ns` (any thread): the
    /// caller watches the fd from now on. The first call makes the fd readable when the
    /// last poll returned unwatched with work left (`unwatched_poll_ends`).
    pub(crate) fn watch(&self) {
        let Wakeup::Polled(p) = self else {
            return;
        };
        // SeqCst on both sides (here and in `unwatched_poll_ends`), each flag written
        // before the other is read: a poll that finds `watched` clear comes earlier in
        // the single order than this swap, so the load below sees what it stored. Either
        // that poll leaves the fd as usual or this call signals it.
        if !p.watched.swap(true, Ordering::SeqCst) && p.unannounced_work.load(Ordering::SeqCst) {
            self.signal_event();
        }
    }

    /// POLLED mode, by a poller about to return; `work` says whether work for a poll
    /// remains. True when the poll may return at once and leave the fd as it is: work
    /// remains and nobody watches the fd (`watch` never ran), so nobody can see it, and
    /// the next poll starts with a pass of its own. That saves a write, a later drain
    /// and, on io_uring, a wake-up poll re-armed per busy poll (2–4% of the CPU per IO
    /// of a loop of `ioeng_poll`, tmpfs QD32 and ext4 QD128). With no work left the poll
    /// ends as usual (fd drained, timer armed), so a later first `watch` finds the fd
    /// as it would have been, but for a count that skipping polls did not drain (one
    /// spurious wake-up at worst, which the contract allows).
    pub(crate) fn unwatched_poll_ends(&self, work: impl FnOnce() -> bool) -> bool {
        let Wakeup::Polled(p) = self else {
            return false;
        };
        // Relaxed: a stale `false` only takes the careful path below.
        if p.watched.load(Ordering::Relaxed) {
            return false;
        }
        let work = work();
        // SeqCst: see `watch`.
        p.unannounced_work.store(work, Ordering::SeqCst);
        crate::race_hooks::at(crate::race_hooks::Point::PollUnwatched);
        work && !p.watched.load(Ordering::SeqCst)
    }

    /// POLLED mode: whether the event fd was written (by a submitting thread, or by a
    /// poller leaving work behind) since the last call.
    pub(crate) fn take_written(&self) -> bool {
        match self {
            // Acquire pairs with the Release after the write: a drain that follows reads it.
            Wakeup::Polled(p) => p.written.swap(false, Ordering::Acquire),
            Wakeup::Threads(_) => false,
        }
    }
}

thread_local! {
    /// The engine whose reaping thread this is (the THREADS completer, or a thread inside
    /// `ioeng_poll`), by the address of its `Wakeup`; 0 for none. A request pushed from
    /// there needs no wake-up: that thread looks for submit work after every batch of
    /// callbacks.
    static SERVING: Cell<usize> = const { Cell::new(0) };
}

impl Wakeup {
    /// Marks the calling thread as this engine's reaping thread until the returned guard
    /// drops (which restores the previous mark: a callback may poll another engine).
    pub(crate) fn serve_here(&self) -> ServingGuard {
        ServingGuard(SERVING.with(|s| s.replace(self as *const Self as usize)))
    }

    /// True on this engine's reaping thread (see `serve_here`).
    pub(crate) fn served_here(&self) -> bool {
        SERVING.with(|s| s.get()) == self as *const Self as usize
    }

    /// POLLED with IOENG_CONFIG_POLL_AFTER_SUBMIT, by a poller: records the calling
    /// thread as the one that polls after its own submits (`quiet_submit_here`).
    pub(crate) fn polling_here(&self) {
        if let Wakeup::Polled(p) = self
            && p.poll_after_submit
        {
            p.quiet_poller
                .store(crate::sys::thread_token(), Ordering::Relaxed);
        }
    }

    /// True when a submit on the calling thread needs no signal of the event fd: it
    /// is the thread that polled last, which promised to poll again before it waits
    /// (IOENG_CONFIG_POLL_AFTER_SUBMIT), and it is not inside a poll of another engine
    /// (a callback there submitting here is not what a loop's round polls after).
    pub(crate) fn quiet_submit_here(&self) -> bool {
        match self {
            Wakeup::Polled(p) if p.poll_after_submit => {
                p.quiet_poller.load(Ordering::Relaxed) == crate::sys::thread_token()
                    && SERVING.with(|s| s.get()) == 0
            }
            _ => false,
        }
    }
}

/// Restores the previous `serve_here` mark when dropped.
pub(crate) struct ServingGuard(usize);

impl Drop for ServingGuard {
    fn drop(&mut self) {
        SERVING.with(|s| s.set(self.0));
    }
}

impl PolledWake {
    fn signal(&self) {
        if let Some(event) = &self.event {
            event.signal();
        }
        // After the write, so that a poller that takes the flag drains a count that is
        // already there.
        self.written.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn polled() -> Wakeup {
        Wakeup::polled(EventFd::new().expect("eventfd"), false)
    }

    fn readable(w: &Wakeup) -> bool {
        w.event_fd().expect("POLLED").is_readable()
    }

    #[test]
    fn unwatched_polls_leave_the_fd_alone_only_when_work_remains() {
        let w = polled();
        assert!(w.unwatched_poll_ends(|| true), "work left, nobody watching");
        assert!(!readable(&w));
        assert!(
            !w.unwatched_poll_ends(|| false),
            "no work: the poll ends as usual (drain, timer)"
        );
    }

    #[test]
    fn the_first_watch_announces_work_an_unwatched_poll_left() {
        let w = polled();
        assert!(w.unwatched_poll_ends(|| true));
        w.watch();
        assert!(readable(&w), "the first watch signals the work left");
        assert!(w.take_written(), "and records the write for the next drain");
        assert!(
            !w.unwatched_poll_ends(|| panic!("not asked once watched")),
            "watched: polls leave the fd as usual"
        );
    }

    #[test]
    fn a_watch_after_polls_that_left_nothing_keeps_the_fd_quiet() {
        let w = polled();
        w.watch();
        assert!(!readable(&w), "a fresh engine");
        let w = polled();
        assert!(w.unwatched_poll_ends(|| true));
        assert!(
            !w.unwatched_poll_ends(|| false),
            "a later poll took that work"
        );
        w.watch();
        assert!(!readable(&w), "only the last poll's answer counts");
        w.watch();
        assert!(!readable(&w), "a second watch does nothing");
    }

    #[test]
    fn a_watch_before_the_poll_records_its_answer_leaves_the_signal_to_the_poll() {
        // `work` runs after the poll's first look at `watched` and before it stores its
        // answer: the watcher finds no unannounced work, so the poll must see the watch
        // in its second look and leave the fd as usual (signal it for the work).
        let w = polled();
        let skipped = w.unwatched_poll_ends(|| {
            w.watch();
            true
        });
        assert!(!readable(&w), "the watch found no unannounced work");
        assert!(!skipped, "so the poll must not skip the signal");
    }

    #[test]
    fn threads_mode_has_no_fd_to_watch() {
        let w = Wakeup::threads();
        w.watch();
        assert!(!w.unwatched_poll_ends(|| true));
    }
}
