//! `IoContext<S>`: the state both engine threads and the submitting threads share —
//! queues, slots, budget, flags, counters — generic over the driver's slot type, and the
//! `Slot` and `Driver` contracts a backend implements.

use std::cell::UnsafeCell;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

use super::cancel::{ANY_TAG, Cancels};
use super::class_stats::{ClassStats, HIGH_ENTRY};
use super::classes::{ClassConfig, MAX_CLASSES};
use super::common::Budget;
use super::config::Mode;
use super::flight::InFlight;
use super::locks::lock;
use super::registered::{Registered, RegisteredFiles};
pub(crate) use super::slot::Slot;
use super::stats::{Counters, Stats};
use super::stuck::StuckTransfers;
use super::tasks::{IoEvent, Outcome};
use super::waiting::{NO_DEADLINE, Waiting, WaitingQueues};
use super::wakeup::{ServingGuard, Wakeup};
use crate::abi::IoengClassStats;
use crate::error::{Error, try_vec};
use crate::race_hooks::{self, Point};
use crate::sys::fd::FdKind;
use crate::sys::{EventFd, instant_of, monotonic_ns};

/// The slot index a driver reports for a completion that belongs to no slot (see
/// `driver::Driver::cancel`): it only balances the in-flight count.
pub(crate) const CONTROL_INDEX: usize = usize::MAX;

/// Everything the submitting threads and the two engine threads share.
pub(crate) struct IoContext<S> {
    /// What waits to be dispatched (see `WaitingQueues`).
    waiting: WaitingQueues,
    /// Cancelled and timed-out requests, and cancel marks (see `Cancels`).
    cancels: Cancels,
    /// The buffers registered for FIXED_BUF requests (see `Registered`).
    registered: Registered,
    /// The files registered for FIXED_FILE requests (see `RegisteredFiles`).
    registered_files: RegisteredFiles,
    /// Slot storage, indexed by the budget's slot indices. Slot `i` may be touched only
    /// by whoever holds index `i` (see `Budget`). Contiguous, so AIO can hand the kernel
    /// pointers into it.
    slots: Box<[UnsafeCell<S>]>,
    pub(crate) budget: Budget,
    pub(crate) batch: usize,
    paused: AtomicBool,
    /// Set (under the queue lock) when close begins; from then on nothing is accepted.
    closing: AtomicBool,
    /// What the kernel holds (see `InFlight`).
    flight: InFlight,
    /// Serializes callbacks (the completer runs them, and the submitter runs the rare
    /// ones for requests the kernel refused at submit time) and guards the scratch list
    /// of requests finished in the current batch.
    finishing: Mutex<Finishing>,
    pub(crate) counters: Counters,
    /// Backends that may hold a transfer forever (`Slot::PROBE_STUCK_TRANSFERS`).
    stuck: Option<StuckTransfers>,
    /// Who is woken for new work, and how: the engine's mode (see `Wakeup`).
    wakeup: Wakeup,
    /// CLOCK_MONOTONIC ns of the earliest delayed resubmission (`NO_DEADLINE`: none),
    /// published by the submit role (`SubmitRound`) for `next_wake_ns`.
    next_retry_ns: AtomicU64,
    /// THREADS: CLOCK_MONOTONIC ns until which the parked submitter sleeps (`NO_DEADLINE`:
    /// until unparked; 0: awake). A round run by the completer that sets an earlier timer
    /// (a held class's refill, a deadline, a delayed resubmission) wakes it; see
    /// `announce_submitter_sleep` and `wake_submitter_for_timers`.
    submitter_sleeps_until: AtomicU64,
    /// Per-class counters and histograms (see `ClassStats`).
    class_stats: ClassStats,
    /// Bit `i`: class `i` exists (bit 0 always). Classes are never closed, so a request
    /// validated against it stays valid; read without the queue lock at submit.
    open_classes: AtomicU64,
}

// SAFETY: every field is Sync except `slots`; a slot is accessed only by the thread that
// holds its index in the budget protocol, so no slot is ever shared between threads, and
// its contents (`S: Send`) may move between them with the index.
unsafe impl<S: Send> Sync for IoContext<S> {}

/// Requests settled in one batch, waiting for their callbacks and slot release: each
/// stays in its slot until its callback ran (moving a 200-byte event out of the slot
/// and through this list cost three copies per request), and the list holds the slot
/// index and the result.
#[derive(Default)]
struct Finishing {
    done: Vec<(usize, i64)>,
    slots: Vec<usize>,
}

impl<S: Slot> IoContext<S> {
    #[cfg(test)]
    pub(crate) fn new(depth: usize, batch: usize, queue_capacity: usize, paused: bool) -> Self {
        Self::with_classes(depth, batch, queue_capacity, paused, 0, false)
            .expect("memory for a test context")
    }

    /// `new` with the class settings of the configuration (§6.1): the starvation guard's
    /// `normal_min_percent` and whether latency histograms are kept. `OutOfMemory` when
    /// the arrays sized by `depth` cannot be allocated.
    pub(crate) fn with_classes(
        depth: usize,
        batch: usize,
        queue_capacity: usize,
        paused: bool,
        normal_min_percent: u32,
        latency_stats: bool,
    ) -> Result<Self, Error> {
        debug_assert!(depth > 0 && batch > 0 && batch <= depth);
        Ok(IoContext {
            waiting: WaitingQueues::new(queue_capacity, normal_min_percent),
            cancels: Cancels::new(depth)?,
            registered: Registered::default(),
            registered_files: RegisteredFiles::default(),
            slots: try_vec(depth, |_| UnsafeCell::new(S::default()))?.into_boxed_slice(),
            budget: Budget::new(depth)?,
            batch,
            paused: AtomicBool::new(paused),
            closing: AtomicBool::new(false),
            flight: InFlight::default(),
            finishing: Mutex::new(Finishing::default()),
            counters: Counters::default(),
            stuck: if S::PROBE_STUCK_TRANSFERS {
                Some(StuckTransfers::new(depth)?)
            } else {
                None
            },
            wakeup: Wakeup::threads(),
            next_retry_ns: AtomicU64::new(NO_DEADLINE),
            submitter_sleeps_until: AtomicU64::new(0),
            class_stats: ClassStats::new(latency_stats)?,
            open_classes: AtomicU64::new(1),
        })
    }

    /// POLLED mode: wake-ups go to `event` instead of to engine threads; with
    /// `poll_after_submit` (IOENG_CONFIG_POLL_AFTER_SUBMIT) not for the polling thread's
    /// own submits.
    pub(crate) fn with_event_fd(mut self, event: EventFd, poll_after_submit: bool) -> Self {
        self.wakeup = Wakeup::polled(event, poll_after_submit);
        self
    }

    /// Who drives the engine (the one source of truth: `Wakeup`).
    pub(crate) fn mode(&self) -> Mode {
        self.wakeup.mode()
    }

    /// How new work is signalled (the event fd, the engine threads).
    pub(crate) fn wakeup(&self) -> &Wakeup {
        &self.wakeup
    }

    pub(crate) fn event_fd(&self) -> Option<&EventFd> {
        self.wakeup.event_fd()
    }

    /// The slot at `index`.
    ///
    /// # Safety
    /// The calling thread must hold `index` under the budget protocol (see `Budget`), and
    /// no other reference to this slot may be alive.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slot_mut(&self, index: usize) -> &mut S {
        debug_assert!(index < self.slots.len());
        // SAFETY: the caller holds the index, so no other thread or reference touches
        // this slot until the index is handed on.
        unsafe { &mut *self.slots[index].get() }
    }

    /// Pointer to the first slot, for drivers that give the kernel addresses inside it.
    pub(crate) fn slots_base(&self) -> *mut S {
        UnsafeCell::raw_get(self.slots.as_ptr())
    }

    /// Marks the calling thread as this context's reaping thread until the returned
    /// guard drops (see `Wakeup::serve_here`).
    pub(crate) fn serve_here(&self) -> ServingGuard {
        self.wakeup.serve_here()
    }

    /// True on this context's reaping thread (see `serve_here`).
    pub(crate) fn served_here(&self) -> bool {
        self.wakeup.served_here()
    }

    /// Wakes the submitter thread, or in POLLED mode makes the event fd readable.
    pub(crate) fn wake_submitter(&self) {
        self.wakeup.wake_submitter();
    }

    /// There is new work for the submit step. Pushed from the reaping thread, nobody is
    /// woken: that thread runs a submit step after its callbacks (see `served_here`).
    fn notify_submit_work(&self) {
        if self.served_here() {
            return;
        }
        // Pairs with the fence in `Wakeup::rearm`: either the poller sees this work, or
        // we see its `signalled = false` and signal.
        fence(Ordering::SeqCst);
        self.wake_submitter();
    }

    /// POLLED mode, by the poller before it sleeps or returns: clears the event fd, then
    /// tells whether there is work for a poll (`ready` covers what the driver can see), so
    /// that no signal is lost in between. Afterwards the fd is readable again as soon as
    /// new work arrives.
    ///
    /// The fd is drained *before* `signalled` is cleared: a submitter that sees the flag
    /// clear signals after the drain, so the drain can never eat the only signal of work
    /// that the check below might miss.
    ///
    /// `drain: false` skips the read when the caller knows nothing can have signalled the
    /// fd since it last drained it (a stale count only costs a spurious wake-up).
    pub(crate) fn rearm_event(&self, drain: bool, ready: impl FnOnce() -> bool) -> bool {
        if !self.wakeup.rearm(drain) {
            return true;
        }
        self.has_work_for_poll(ready)
    }

    /// POLLED mode: whether a poll would find work now (`ready` covers what the driver
    /// can see), without touching the event fd.
    pub(crate) fn has_work_for_poll(&self, ready: impl FnOnce() -> bool) -> bool {
        ready() || self.has_submit_work_now()
    }

    /// Submit work that a round can take now: queued requests with a free slot, or
    /// resubmissions. With the budget exhausted, the completer that frees a slot runs
    /// the round (see `worker::submit_after_callbacks`).
    pub(crate) fn has_submit_work_now(&self) -> bool {
        (self.dispatchable() > 0 && !self.is_paused() && self.budget.has_slot_for_submitter())
            || self.budget.has_resubmits()
            || self.has_control_work()
    }

    fn wake_completer(&self) {
        self.wakeup.wake_completer();
    }

    // ---- submitting threads -------------------------------------------------------

    /// Queues an event; never blocks on kernel progress.
    pub(crate) fn push(&self, event: IoEvent) -> Result<(), Error> {
        self.push_batch(std::iter::once(event)).map(|_| ())
    }

    /// Queues events in order under one lock and with at most one wake-up, until the
    /// queues are full; returns how many it took, or the reason when it took none.
    /// Events it did not take are dropped without their callbacks.
    pub(crate) fn push_batch(
        &self,
        events: impl IntoIterator<Item = IoEvent>,
    ) -> Result<usize, Error> {
        let mut accepted = 0;
        let mut refusal = None;
        let mut earlier_deadline = false;
        // One clock read per batch, only with latency statistics on.
        let queued_ns = if self.class_stats.latency_on() {
            monotonic_ns()
        } else {
            0
        };
        {
            let mut waiting = lock(&self.waiting.lock);
            for mut event in events {
                event.queued_ns = queued_ns;
                // Checked under the queue lock so that close, which sets `closing` under
                // the same lock, sees every request accepted before it.
                if self.closing.load(Ordering::Relaxed) {
                    refusal = Some(Error::ShuttingDown);
                    break;
                }
                if self.waiting.capacity != 0 && waiting.queues.len() >= self.waiting.capacity {
                    refusal = Some(Error::QueueFull);
                    break;
                }
                let deadline = waiting.push(event);
                if deadline != 0
                    && deadline < self.waiting.earliest_deadline.load(Ordering::Relaxed)
                {
                    self.waiting
                        .earliest_deadline
                        .store(deadline, Ordering::Relaxed);
                    earlier_deadline = true;
                }
                accepted += 1;
            }
            // Counted under the lock, before the submitter can see the requests, so a
            // callback never observes `completed > submitted`. This is the counter's only
            // writer, and it holds the queue lock: a load and a store do, no atomic
            // read-modify-write.
            let submitted = &self.counters.submitted;
            submitted.store(
                submitted.load(Ordering::Relaxed) + accepted as u64,
                Ordering::Relaxed,
            );
            self.waiting.add_queued(&waiting, accepted as isize);
        }
        if accepted == 0 {
            return Err(refusal.unwrap_or(Error::InvalidArgument("empty batch")));
        }
        if earlier_deadline && self.mode() == Mode::Threads {
            // A submitter asleep in `park` must re-arm its timer, also when this push
            // comes from the completer's callbacks, which otherwise wake nobody (see
            // `notify_submit_work`): the completer's own submit step expires nothing
            // later on.
            self.wake_submitter();
        } else if self.served_here() {
            // From a callback on the reaping thread, which looks for submit work after
            // its callbacks (a poller also re-checks `paused` and arms its timer before
            // it returns or sleeps): nobody to wake, nothing to order.
        } else if self.wakeup.quiet_submit_here() {
            // POLLED, IOENG_CONFIG_POLL_AFTER_SUBMIT, on the thread that polls: it polls
            // before it waits on the fd (the caller's promise), and that poll dispatches
            // this and arms the timer of its deadline; so no write now, and no drain then.
        } else {
            // One fence for both pairings: with the one in `Wakeup::rearm` (either the
            // poller sees this push, or we see its `signalled = false` and signal) and
            // with the one in `resume` (either we see `paused` cleared, or resume's
            // signal, or the poller it leaves it to, comes after this push and sees it).
            fence(Ordering::SeqCst);
            if !earlier_deadline && self.mode() == Mode::Polled && self.is_paused() {
                // POLLED and paused: a poll could not dispatch it, so the event fd stays
                // quiet (DESIGN §6.3; `resume` signals it). An earlier deadline does
                // signal: the poller must move its timer (`polled::arm_timer`).
            } else {
                self.wake_submitter();
            }
        }
        Ok(accepted)
    }

    /// Cancels every accepted, not yet completed request tagged `tag` (non-zero):
    /// queued ones complete with -ECANCELED without reaching the kernel; for those in
    /// a slot, the submitter asks the kernel to stop them. Returns how many there were.
    pub(crate) fn cancel(&self, tag: u64) -> usize {
        debug_assert!(tag != 0);
        let mut removed = Vec::new();
        let mut in_slots = Vec::new();
        let dead_found;
        {
            let mut waiting = lock(&self.waiting.lock);
            waiting
                .queues
                .remove_where(|event| event.tag() == tag, |event| removed.push(event));
            self.forget_removed(&mut waiting, &removed);
            // Cancelled or timed out already, callback not yet started: still counted
            // (its callback keeps the result it has). Under the queue lock, so that a
            // request moving from the queues to `dead` is seen in one place or the other.
            dead_found = lock(&self.cancels.dead)
                .iter()
                .filter(|(event, _)| event.tag() == tag)
                .count();
            // Under the queue lock, dispatch cannot move a request from the queues into
            // a slot meanwhile: each one is counted exactly once.
            for (index, slot_tag) in self.cancels.slot_tags.iter().enumerate() {
                if slot_tag.load(Ordering::Relaxed) == tag {
                    let generation = self.cancels.slot_gens[index].load(Ordering::Relaxed);
                    in_slots.push((index, tag, generation));
                }
            }
        }
        self.request_cancels(removed, in_slots, dead_found)
    }

    /// Cancels every accepted, not yet completed request, tagged or not (as `cancel`
    /// does for one tag): queued ones complete with -ECANCELED, those in a slot are
    /// asked to stop, those in `dead` keep their result. Returns how many there were.
    pub(crate) fn cancel_all(&self) -> usize {
        let mut removed = Vec::new();
        let mut in_slots = Vec::new();
        let dead_found;
        {
            let mut waiting = lock(&self.waiting.lock);
            waiting
                .queues
                .remove_where(|_| true, |event| removed.push(event));
            self.forget_removed(&mut waiting, &removed);
            // As in `cancel`: under the queue lock, a request is in the queues, in
            // `dead` or in a slot, and seen exactly once.
            dead_found = lock(&self.cancels.dead).len();
            for (index, live) in self.cancels.slot_live.iter().enumerate() {
                let generation = live.load(Ordering::Relaxed);
                if generation != 0 {
                    in_slots.push((index, ANY_TAG, generation));
                }
            }
        }
        self.request_cancels(removed, in_slots, dead_found)
    }

    /// The end of `cancel` and `cancel_all`: hands the in-slot cancels to the submit
    /// role, buries the removed requests and wakes the engine; returns the count.
    fn request_cancels(
        &self,
        removed: Vec<IoEvent>,
        in_slots: Vec<(usize, u64, u64)>,
        dead_found: usize,
    ) -> usize {
        let found = removed.len() + in_slots.len() + dead_found;
        if !in_slots.is_empty() {
            lock(&self.cancels.cancel_requests).extend(in_slots);
            self.cancels
                .has_cancel_requests
                .store(true, Ordering::Release);
        }
        let ecanceled = -i64::from(libc::ECANCELED);
        self.cancels
            .bury(removed.into_iter().map(|event| (event, ecanceled)));
        if found > 0 {
            self.notify_submit_work();
        }
        found
    }

    /// Bookkeeping after requests left the queues by cancel (under the queue lock), the
    /// same for `cancel` and `cancel_all`: the held count and refill time that the
    /// engine's timers read must drop the removed ones, or an idle engine would wake
    /// (THREADS: spin, POLLED: signal its fd) for a refill nothing waits for.
    fn forget_removed(&self, waiting: &mut Waiting, removed: &[IoEvent]) {
        if removed.is_empty() {
            return;
        }
        waiting.queues.end_emptied_holds(monotonic_ns);
        self.waiting.publish_held(waiting);
        self.waiting.add_queued(waiting, -(removed.len() as isize));
        let with_deadline = removed
            .iter()
            .filter(|e| e.request.deadline_ns != 0)
            .count();
        self.forget_deadlines(waiting, with_deadline);
    }

    /// `n` queued requests with a deadline left the queues.
    fn forget_deadlines(&self, waiting: &mut Waiting, n: usize) {
        if n == 0 {
            return;
        }
        waiting.forget_deadlines(n);
        self.waiting
            .earliest_deadline
            .store(waiting.earliest(), Ordering::Relaxed);
    }

    /// The registered buffers, if any.
    pub(crate) fn registered_buffers(&self) -> Option<&[(usize, usize)]> {
        self.registered.table()
    }

    /// Records the buffers for FIXED_BUF after `register` (the driver's registration)
    /// succeeded; only before the first request and only once (`Busy` otherwise).
    pub(crate) fn register_buffers(
        &self,
        bufs: &[libc::iovec],
        register: impl FnOnce(&[libc::iovec]) -> Result<(), i32>,
    ) -> Result<(), Error> {
        Registered::check(bufs)?;
        self.before_first_request(|accepted| self.registered.record(bufs, accepted, register))
    }

    /// Runs `record` (a registration, allowed only before the first request) with
    /// whether a request was accepted already, under the queue lock, which keeps a first
    /// request from slipping in meanwhile.
    fn before_first_request<R>(&self, record: impl FnOnce(bool) -> R) -> R {
        let _waiting = lock(&self.waiting.lock);
        record(self.counters.submitted.load(Ordering::Relaxed) != 0)
    }

    /// The registered files (the engine's descriptors, by index), if any.
    pub(crate) fn registered_files(&self) -> Option<&[OwnedFd]> {
        self.registered_files.table()
    }

    /// The kind of registered file `index` (classified at registration), if any.
    pub(crate) fn registered_file_kind(&self, index: u32) -> Option<FdKind> {
        self.registered_files.kind(index)
    }

    /// Records the files for FIXED_FILE after `register` (the driver's registration of
    /// the engine's duplicates) succeeded; only before the first request and only once
    /// (`Busy` otherwise).
    pub(crate) fn register_files(
        &self,
        fds: &[RawFd],
        register: impl FnOnce(&[RawFd]) -> Result<(), i32>,
    ) -> Result<(), Error> {
        self.before_first_request(|accepted| self.registered_files.record(fds, accepted, register))
    }

    pub(crate) fn resume(&self) {
        self.paused.store(false, Ordering::Relaxed);
        self.notify_submit_work();
    }

    /// Stops accepting and lets the submitter drain everything accepted, paused or not.
    pub(crate) fn begin_close(&self) {
        {
            let _queues = lock(&self.waiting.lock);
            self.closing.store(true, Ordering::Relaxed);
        }
        self.resume();
    }

    /// Whether close began. Relaxed: read by a poller holding the submit role, which
    /// close held while it set the flag.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    pub(crate) fn stats(&self) -> Stats {
        let queued = lock(&self.waiting.lock).queues.lens();
        self.counters.read(queued, self.in_kernel())
    }

    /// Changes whenever kernel completions were taken (see `complete`).
    pub(crate) fn reap_epoch(&self) -> u64 {
        self.flight.reap_epoch.load(Ordering::Relaxed)
    }

    /// Callbacks run so far.
    pub(crate) fn completed(&self) -> u64 {
        self.counters.completed.load(Ordering::Relaxed)
    }

    /// `next_wake_ns` as an `Instant`, for a thread about to sleep.
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        self.next_wake_ns().map(instant_of)
    }

    /// The engine's timers, in one place (docs/ARCHITECTURE.md, "Timers"): when the
    /// holder of the submit role must act by itself although no new work arrives, in
    /// CLOCK_MONOTONIC ns; `None`: only for new work. The earliest of
    /// - a queued request's deadline (`Waiting`),
    /// - a delayed resubmission after repeated `EAGAIN` (`SubmitRound`),
    /// - a throttled class's token refill (`next_refill_ns`),
    /// - the sweep of in-flight transfers (`stuck`), while IO is in flight.
    ///
    /// The THREADS submitter sleeps until then, a poller inside `ioeng_poll` too, and
    /// between polls the POLLED event fd's timer fires then (`polled::arm_timer`);
    /// `ioeng_next_timeout_ns` reports it. Read without a clock, in a few relaxed loads
    /// (the submitter converts it only when it is about to sleep).
    pub(crate) fn next_wake_ns(&self) -> Option<u64> {
        let sweep = match &self.stuck {
            Some(stuck) if self.flight.kernel.load(Ordering::Relaxed) > 0 => stuck.next_sweep_ns(),
            _ => None,
        };
        let earliest = self
            .waiting
            .earliest_deadline
            .load(Ordering::Relaxed)
            .min(self.next_retry_ns.load(Ordering::Relaxed))
            .min(self.next_refill_ns().unwrap_or(NO_DEADLINE))
            .min(sweep.unwrap_or(NO_DEADLINE));
        (earliest != NO_DEADLINE).then_some(earliest)
    }

    /// THREADS submitter, about to park until `wake_ns` (`None`: until unparked).
    /// Returns whether it may: false when a round on the completer set an earlier timer
    /// since the submitter read `wake_ns`, which it must not sleep past.
    pub(crate) fn announce_submitter_sleep(&self, wake_ns: Option<u64>) -> bool {
        let until = wake_ns.unwrap_or(NO_DEADLINE);
        self.submitter_sleeps_until.store(until, Ordering::Relaxed);
        // Pairs with the fence in `wake_submitter_for_timers`: either that round's timer
        // is visible to the read below, or it sees this announcement and wakes us.
        fence(Ordering::SeqCst);
        self.next_wake_ns().is_none_or(|at| at >= until)
    }

    /// THREADS submitter, awake again: no round needs to wake it for a timer.
    pub(crate) fn submitter_awake(&self) {
        self.submitter_sleeps_until.store(0, Ordering::Relaxed);
    }

    /// THREADS completer, after a submit round it ran: the submitter sleeps on the
    /// engine's timers, which the round may have moved earlier; wake it if so.
    pub(crate) fn wake_submitter_for_timers(&self) {
        // See `announce_submitter_sleep`.
        fence(Ordering::SeqCst);
        let sleeps_until = self.submitter_sleeps_until.load(Ordering::Relaxed);
        if self.next_wake_ns().is_some_and(|at| at < sleeps_until) {
            self.wake_submitter();
        }
    }

    /// Submit role (`SubmitRound`), whenever its delayed resubmissions change: the
    /// earliest one's time, for `next_wake_ns`.
    pub(crate) fn set_next_retry(&self, at_ns: Option<u64>) {
        self.next_retry_ns
            .store(at_ns.unwrap_or(NO_DEADLINE), Ordering::Relaxed);
    }

    /// Submit role (`SubmitRound`), as it delays one more resubmission to `at_ns`: O(1)
    /// where `set_next_retry` scans (a burst of retries at a large depth).
    pub(crate) fn lower_next_retry(&self, at_ns: u64) {
        // Only the submit role writes it: a load and a store, no read-modify-write.
        if at_ns < self.next_retry_ns.load(Ordering::Relaxed) {
            self.next_retry_ns.store(at_ns, Ordering::Relaxed);
        }
    }

    /// When a class held by its rate limit has tokens again (CLOCK_MONOTONIC ns), as a
    /// wake time: `earliest_refill_ns`, except that a refill already due while every
    /// slot is busy is none (nothing could be dispatched, and a wake time in the past
    /// would spin the submitter and the poller; the completion that frees a slot runs the
    /// next round anyway). A clock read only while requests are held.
    fn next_refill_ns(&self) -> Option<u64> {
        self.earliest_refill_ns()
            .filter(|&at| self.budget.has_slot_for_submitter() || at > monotonic_ns())
    }

    // ---- submitter thread ---------------------------------------------------------

    pub(crate) fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    pub(crate) fn queued(&self) -> usize {
        self.waiting.queued.load(Ordering::Relaxed)
    }

    /// When a class that its limits hold has tokens again (CLOCK_MONOTONIC ns); `None`
    /// when no queued request is held. Part of `next_wake_ns`, so every sleeping engine
    /// thread or poller wakes by itself then.
    pub(crate) fn earliest_refill_ns(&self) -> Option<u64> {
        if self.waiting.held.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let at = self.waiting.refill_ns.load(Ordering::Relaxed);
        (at != NO_DEADLINE).then_some(at)
    }

    /// Queued requests a round may dispatch: all but those their class's limits hold
    /// until their refill time (a clock read only while some are held).
    pub(crate) fn dispatchable(&self) -> usize {
        let queued = self.queued();
        match self.earliest_refill_ns() {
            Some(at) if at > monotonic_ns() => {
                queued.saturating_sub(self.waiting.held.load(Ordering::Relaxed))
            }
            _ => queued,
        }
    }

    /// Whether a round would find something to submit (polled while idle; a stale answer
    /// only costs a park that the next wake-up ends).
    pub(crate) fn has_submit_work(&self) -> bool {
        (self.dispatchable() > 0 && !self.is_paused())
            || self.budget.has_resubmits()
            || self.has_control_work()
    }

    /// Cancels or dead requests wait for the engine thread (see `service`).
    pub(crate) fn has_control_work(&self) -> bool {
        self.cancels.dead_count.load(Ordering::Relaxed) != 0
            || self.cancels.has_cancel_requests.load(Ordering::Relaxed)
    }

    /// Whether `service` has work now: cancels, dead requests, or `wake_ns` (from
    /// `next_wake_ns`, CLOCK_MONOTONIC ns) has come.
    pub(crate) fn control_due(&self, wake_ns: Option<u64>) -> bool {
        self.has_control_work() || wake_ns.is_some_and(|at| at <= monotonic_ns())
    }

    /// Times out queued requests whose deadline passed (under the queue lock): O(log n)
    /// per expired request. Returns whether any expired.
    fn expire_locked(&self, waiting: &mut Waiting, now: u64) -> bool {
        let expired = waiting.expire(now);
        self.waiting
            .earliest_deadline
            .store(waiting.earliest(), Ordering::Relaxed);
        if expired.is_empty() {
            return false;
        }
        waiting.queues.end_emptied_holds(|| now);
        self.waiting.publish_held(waiting);
        self.waiting.add_queued(waiting, -(expired.len() as isize));
        // Counted here, not from the callbacks' res: a kernel's own -ETIMEDOUT (a socket
        // read after a TCP timeout) is no deadline of ours.
        Counters::add(&self.counters.timed_out, expired.len() as u64);
        race_hooks::at(Point::ExpiredBeforeBury);
        let etimedout = -i64::from(libc::ETIMEDOUT);
        self.cancels
            .bury(expired.into_iter().map(|event| (event, etimedout)));
        true
    }

    /// The submit role's housekeeping before every round (THREADS: on the submitter or
    /// the completer; POLLED: in `ioeng_poll`): times out queued requests whose
    /// deadline passed, hands in-flight cancels to the driver (`cancel`), and runs the callbacks of
    /// cancelled and timed-out requests. Costs two relaxed loads when there is nothing to do.
    /// `cancel` hands in-flight requests (slot indices) to the driver's cancel.
    pub(crate) fn service(&self, mut cancel: impl FnMut(&[usize])) {
        let earliest = self.waiting.earliest_deadline.load(Ordering::Relaxed);
        if earliest != NO_DEADLINE && earliest <= monotonic_ns() {
            let expired = self.expire_locked(&mut lock(&self.waiting.lock), monotonic_ns());
            if expired {
                race_hooks::at(Point::ServiceExpired);
            }
        }
        if self.cancels.has_cancel_requests.load(Ordering::Acquire) {
            self.cancels
                .has_cancel_requests
                .store(false, Ordering::Relaxed);
            let requests = std::mem::take(&mut *lock(&self.cancels.cancel_requests));
            let targets: Vec<usize> = requests
                .into_iter()
                .filter(|&(index, tag, generation)| {
                    // Only this thread fills slots, so the occupant checked here is the
                    // one the driver cancels, or (finished meanwhile by the completer) no
                    // request: the kernel then finds nothing to cancel.
                    let occupant = if tag == ANY_TAG {
                        self.cancels.slot_live[index].load(Ordering::Relaxed)
                    } else if self.cancels.slot_tags[index].load(Ordering::Relaxed) == tag {
                        self.cancels.slot_gens[index].load(Ordering::Relaxed)
                    } else {
                        0
                    };
                    occupant == generation
                        && self.cancels.slot_cancelled[index].swap(generation, Ordering::Relaxed)
                            != generation
                })
                .map(|(index, _, _)| index)
                .collect();
            if !targets.is_empty() {
                cancel(&targets);
            }
        }
        if let Some(stuck) = &self.stuck
            && self.flight.kernel.load(Ordering::Relaxed) > 0
            && stuck.may_be_due()
        {
            let mut targets = Vec::new();
            stuck.sweep(monotonic_ns(), &mut targets);
            if !targets.is_empty() {
                cancel(&targets);
            }
        }
        self.finish_dead();
    }

    /// Runs the callbacks of cancelled and timed-out requests (`dead`), one at a time
    /// with every other callback of the engine, including any buried meanwhile (also
    /// by those callbacks). Costs one relaxed load when there are none.
    pub(crate) fn finish_dead(&self) {
        if self.cancels.dead_count.load(Ordering::Acquire) == 0 {
            return;
        }
        race_hooks::at(Point::ServiceTookDead);
        let _finishing = lock(&self.finishing);
        let now = self.latency_clock();
        while let Some((event, res)) = self.cancels.pop_dead() {
            self.count_finished_one(res);
            self.class_stats.recorder(now).finished(&event, res, false);
            event.finish(res);
        }
    }

    /// Whether the submitter must finish the request in slot `index` with -ECANCELED
    /// instead of issuing its next IO.
    pub(crate) fn cancel_requested(&self, index: usize) -> bool {
        // The caller holds the slot, so its occupant is live and its generation is the
        // one a cancel of it recorded (never 0: the first dispatch makes 1).
        self.cancels.slot_cancelled[index].load(Ordering::Relaxed)
            == self.cancels.slot_gens[index].load(Ordering::Relaxed)
    }

    /// Runs one fairness round into the held `slots`; returns how many it filled.
    pub(crate) fn dispatch_round(&self, slots: &[usize], out: &mut Vec<usize>) -> usize {
        let mut waiting = lock(&self.waiting.lock);
        // A request whose deadline passed must not reach the kernel, even if the
        // submitter had no time to expire it yet.
        let earliest = self.waiting.earliest_deadline.load(Ordering::Relaxed);
        if earliest != NO_DEADLINE {
            let now = monotonic_ns();
            if earliest <= now {
                self.expire_locked(&mut waiting, now);
            }
        }
        let mut next = slots.iter();
        let mut with_deadline = 0;
        let mut class_stats = self.class_stats.recorder(0);
        let taken = waiting
            .queues
            .take_round(slots.len(), monotonic_ns, |mut event, ioprio| {
                let &index = next.next().expect("take_round respects room");
                event.ioprio = ioprio;
                class_stats.dispatched(&event);
                let tag = event.tag();
                // Only the submit role writes the generation: no read-modify-write needed.
                let generation = self.cancels.slot_gens[index].load(Ordering::Relaxed) + 1;
                self.cancels.slot_gens[index].store(generation, Ordering::Relaxed);
                self.cancels.slot_live[index].store(generation, Ordering::Relaxed);
                if tag != 0 {
                    self.cancels.slot_tags[index].store(tag, Ordering::Relaxed);
                }
                with_deadline += usize::from(event.request.deadline_ns != 0);
                if let Some(stuck) = &self.stuck {
                    stuck.dispatched(index, &event);
                }
                // SAFETY: the submitter took `index` from the free list and holds it.
                let slot = unsafe { self.slot_mut(index) };
                debug_assert!(
                    slot.event_mut().is_none(),
                    "free slot still holds a request"
                );
                *slot.event_mut() = Some(event);
                out.push(index);
            });
        self.waiting.add_queued(&waiting, -(taken as isize));
        self.forget_deadlines(&mut waiting, with_deadline);
        if waiting.queues.is_classed() {
            self.waiting.publish_held(&waiting);
        }
        taken
    }

    /// True once close began and nothing is queued, in flight or waiting to be resubmitted.
    pub(crate) fn drained_for_close(&self) -> bool {
        let _queues = lock(&self.waiting.lock);
        if !self.closing.load(Ordering::Relaxed)
            || self.queued() != 0
            || self.cancels.dead_count.load(Ordering::Acquire) != 0
        {
            return false;
        }
        // Pairs with the fence in `complete`: either we see the completer's last slot
        // release here, or it sees `closing` there and wakes us. Without both fences
        // (store-buffering) each side could miss the other and we would sleep forever.
        fence(Ordering::SeqCst);
        self.budget.all_free()
    }

    /// Runs one kernel submit call (`call` returns how many IOs the kernel took, or an
    /// errno) and publishes what it accepted to the completer.
    ///
    /// The call is counted in `kernel_submit_calls` *before* it is made (and uncounted if
    /// it took nothing): the completer may reap and call back for these IOs before the
    /// syscall even returns here, and a caller who saw its callbacks must already see the
    /// call counted.
    pub(crate) fn kernel_submit(
        &self,
        call: impl FnOnce() -> Result<usize, i32>,
    ) -> Result<usize, i32> {
        let calls = &self.counters.kernel_submit_calls;
        calls.fetch_add(1, Ordering::Relaxed);
        let result = call();
        match result {
            Ok(accepted) if accepted > 0 => {
                // Relaxed: this count only gates whether the completer waits in the
                // kernel; what the slots hold reaches it through the kernel's completion.
                self.flight
                    .kernel
                    .fetch_add(accepted as isize, Ordering::Relaxed);
                self.wake_completer();
            }
            _ => {
                calls.fetch_sub(1, Ordering::Relaxed);
            }
        }
        result
    }

    /// Like `kernel_submit` for control IOs (io_uring `ASYNC_CANCEL`): their
    /// completions are awaited like any IO's, but they are not counted as submit calls.
    pub(crate) fn kernel_submit_control(
        &self,
        call: impl FnOnce() -> Result<usize, i32>,
    ) -> Result<usize, i32> {
        let result = call();
        if let Ok(accepted) = result
            && accepted > 0
        {
            self.flight
                .control
                .fetch_add(accepted as isize, Ordering::Relaxed);
            self.wake_completer();
        }
        result
    }

    /// The kernel refused the IO in slot `index` at submit time; `res` stands for its
    /// kernel result (`-errno`, or what the driver's fallback transfer gave) and is
    /// settled like a completion (it may finish the request or resubmit it).
    pub(crate) fn fail_unsubmitted(&self, index: usize, res: i64) {
        // The submitter holds `index`; the kernel never took it.
        self.settle_batch(&[(index, res)]);
    }

    /// THREADS submitter: waits (without spinning) until the completer reaped something,
    /// or briefly when nothing is in flight; for kernel calls that failed with EAGAIN/EBUSY.
    pub(crate) fn wait_for_progress(&self) {
        // Relaxed: the epoch only says "something changed"; no data hangs on it.
        let epoch = self.flight.reap_epoch.load(Ordering::Relaxed);
        for _ in 0..10 {
            std::thread::park_timeout(Duration::from_micros(100));
            if self.flight.reap_epoch.load(Ordering::Relaxed) != epoch {
                return;
            }
        }
    }

    pub(crate) fn mark_submitter_exited(&self) {
        // Release: pairs with the completer's Acquire load, so a completer that sees the
        // submitter gone also sees every `kernel_in_flight` increment it made.
        self.flight.submitter_exited.store(true, Ordering::Release);
        self.wake_completer();
    }

    // ---- completer thread ---------------------------------------------------------

    /// IOs in the kernel now (accepted by it, not yet reaped).
    pub(crate) fn in_kernel(&self) -> u64 {
        self.flight.kernel.load(Ordering::Relaxed).max(0) as u64
    }

    /// Whether the completer may block in the kernel: only while an IO is there.
    pub(crate) fn kernel_has_work(&self) -> bool {
        self.flight.kernel.load(Ordering::Relaxed) > 0
            || self.flight.control.load(Ordering::Relaxed) > 0
    }

    pub(crate) fn submitter_has_exited(&self) -> bool {
        self.flight.submitter_exited.load(Ordering::Acquire)
    }

    /// Settles a reaped batch: resubmits or finishes each request, running callbacks.
    pub(crate) fn complete(&self, reaped: &[(usize, i64)]) {
        if reaped.is_empty() {
            return;
        }
        race_hooks::at(Point::Reaped);
        if reaped.iter().any(|&(index, _)| index == CONTROL_INDEX) {
            // Cold path: an in-flight cancel was issued. Its own completion only
            // balances its count.
            let slots: Vec<_> = reaped
                .iter()
                .copied()
                .filter(|&(index, _)| index != CONTROL_INDEX)
                .collect();
            self.flight
                .control
                .fetch_sub((reaped.len() - slots.len()) as isize, Ordering::Relaxed);
            self.flight
                .kernel
                .fetch_sub(slots.len() as isize, Ordering::Relaxed);
            self.settle_batch(&slots);
        } else {
            self.flight
                .kernel
                .fetch_sub(reaped.len() as isize, Ordering::Relaxed);
            self.settle_batch(reaped);
        }
        self.flight.reap_epoch.fetch_add(1, Ordering::Relaxed);
        // See `drained_for_close`: orders our slot releases before the `closing` check.
        fence(Ordering::SeqCst);
        if self.closing.load(Ordering::Relaxed) {
            // The submitter may be parked waiting for the last slot to come home.
            self.wake_submitter();
        }
    }

    /// Applies kernel results to the requests in their slots (all held by the caller):
    /// short or retryable ones go back to the submitter, finished ones get their
    /// callbacks, then their slots return to the budget together, so the round that
    /// follows (`worker::submit_after_callbacks`, or the poller's) sees everything the
    /// callbacks submitted and every slot they freed at once.
    fn settle_batch(&self, results: &[(usize, i64)]) {
        let mut finishing = lock(&self.finishing);
        let Finishing { done, slots } = &mut *finishing;
        // Both lists end each batch empty; only an unwind out of a callback leaves them
        // filled, which happens only in a child that forked inside a POLLED callback,
        // whose copy of the engine is never used again (`fork::after_callback`).
        debug_assert!(done.is_empty() && slots.is_empty());
        let mut resubmitted = false;
        for &(index, res) in results {
            // SAFETY: the caller (completer after reaping, or submitter after a refused
            // submit) holds `index`.
            let slot = unsafe { self.slot_mut(index) }.event_mut();
            let Some(event) = slot.as_mut() else {
                debug_assert!(false, "completion for an empty slot {index}");
                continue;
            };
            let res = match &self.stuck {
                Some(stuck) => stuck.result(index, res),
                None => res,
            };
            let res = if !S::KERNEL_CANCELS_ON_ITS_OWN {
                res
            } else if res == -i64::from(libc::ECANCELED)
                && !self.cancel_requested(index)
                && event.retry_kernel_cancel(monotonic_ns())
            {
                // io_uring cancels an IO by itself when no io-wq worker can be started
                // for it (a pids limit) or when its submitting thread exited while it
                // waited. Nobody asked for that cancel and the IO did not run: it goes
                // again, backing off as after EINTR (for a bounded time: see
                // `retry_kernel_cancel`). A cancel requested meanwhile still ends it
                // (`SubmitRound::route_resubmit`).
                -i64::from(libc::EINTR)
            } else {
                event.kernel_cancels_end();
                res
            };
            match event.settle(res) {
                Outcome::Resubmit => {
                    Counters::add(&self.counters.resubmits, 1);
                    self.budget.resubmit(index);
                    resubmitted = true;
                }
                Outcome::Done(res) => {
                    if let Some(stuck) = &self.stuck {
                        stuck.finished(index);
                    }
                    done.push((index, res));
                    slots.push(index);
                }
            }
        }
        if resubmitted {
            self.notify_submit_work();
        }
        self.count_finished(done.iter().map(|&(index, res)| {
            // SAFETY: held by the caller (above); nothing else touches a held slot.
            let event = unsafe { self.slot_mut(index) }.event_mut().as_ref();
            (event.expect("settled above"), res)
        }));
        for &(index, res) in done.iter() {
            // Right before its callback: until then a cancel still counts it (its
            // result is final, so the kernel finds nothing left to stop).
            self.cancels.slot_live[index].store(0, Ordering::Relaxed);
            // SAFETY: held by the caller until `release` below.
            let slot = unsafe { self.slot_mut(index) }.event_mut();
            if slot.as_ref().is_some_and(|event| event.tag() != 0) {
                self.cancels.slot_tags[index].store(0, Ordering::Relaxed);
            }
            // Only the callback leaves the slot (see `Finishing`).
            let callback = slot.take().expect("settled above").into_callback();
            callback.invoke(res);
        }
        done.clear();
        self.budget.release(slots);
        slots.clear();
    }

    /// Counts callbacks about to run. Counted before the calls, so a caller that
    /// waited for its callbacks reads stats that already include them.
    fn count_finished<'e>(&self, events: impl ExactSizeIterator<Item = (&'e IoEvent, i64)>) {
        Counters::add(&self.counters.completed, events.len() as u64);
        let mut class_stats = self.class_stats.recorder(self.latency_clock());
        for (event, res) in events {
            if res == -i64::from(libc::ECANCELED) {
                Counters::add(&self.counters.cancelled, 1);
            }
            class_stats.finished(event, res, true);
        }
    }

    /// The clock for latency statistics: read once per batch of callbacks, and only
    /// when they are on.
    fn latency_clock(&self) -> u64 {
        if self.class_stats.latency_on() {
            monotonic_ns()
        } else {
            0
        }
    }

    fn count_finished_one(&self, res: i64) {
        Counters::add(&self.counters.completed, 1);
        if res == -i64::from(libc::ECANCELED) {
            Counters::add(&self.counters.cancelled, 1);
        }
    }
}

/// IO classes (§6.1): the operations behind `ioeng_class_*`.
impl<S: Slot> IoContext<S> {
    /// Whether a request may name class `id`. One relaxed load.
    pub(crate) fn class_exists(&self, id: u16) -> bool {
        usize::from(id) < MAX_CLASSES && self.open_classes.load(Ordering::Acquire) >> id & 1 != 0
    }

    /// Opens a class; `None` when all 63 are open.
    pub(crate) fn class_open(&self, config: ClassConfig) -> Option<u16> {
        let mut waiting = lock(&self.waiting.lock);
        let id = waiting.queues.open(config, monotonic_ns()).ok()?;
        self.class_stats.enable(usize::from(id));
        // Release: a request naming `id` finds the class in the queues.
        self.open_classes.fetch_or(1 << id, Ordering::Release);
        Some(id)
    }

    /// New settings for an existing class, from the next dispatch round on.
    pub(crate) fn class_update(&self, id: u16, config: ClassConfig) -> Result<(), Error> {
        {
            let mut waiting = lock(&self.waiting.lock);
            if !waiting.queues.exists(id) {
                return Err(Error::InvalidArgument("no IO class with this id"));
            }
            waiting.queues.update(id, config, monotonic_ns());
            self.waiting.publish_held(&waiting);
        }
        // Raised limits may let held requests go now.
        self.notify_submit_work();
        Ok(())
    }

    /// Statistics of class `id`, or of every HIGH request with `None`; zeroes the
    /// counters and histogram with `reset`. `Err` for a class that does not exist.
    pub(crate) fn class_stats(
        &self,
        id: Option<u16>,
        reset: bool,
    ) -> Result<IoengClassStats, Error> {
        let mut out = IoengClassStats::default();
        {
            let mut waiting = lock(&self.waiting.lock);
            match id {
                Some(id) if !waiting.queues.exists(id) => {
                    return Err(Error::InvalidArgument("no IO class with this id"));
                }
                Some(id) => {
                    out.queued = waiting.queues.class_len(id) as u64;
                    out.throttled_ns = waiting.queues.throttled_ns(id, monotonic_ns(), reset);
                }
                None => out.queued = waiting.queues.lens().0 as u64,
            }
        }
        let entry = id.map_or(HIGH_ENTRY, usize::from);
        self.class_stats.read(entry, reset, &mut out);
        Ok(out)
    }
}

#[cfg(test)]
#[path = "context_tests.rs"]
mod tests;
