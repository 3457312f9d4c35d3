//! `IoContext<S>`: the state both engine threads and the submitting threads share —
//! queues, slots, budget, flags, counters — generic over the driver's slot type, and the
//! `Slot` and `Driver` contracts a backend implements.

use std::cell::{Cell, UnsafeCell};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::sync::{Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::cancel::Cancels;
use super::common::{Budget, Counters};
use super::flight::InFlight;
use super::locks::lock;
use super::stuck::StuckTransfers;
use super::waiting::{NO_DEADLINE, Waiting, WaitingQueues};
use super::tasks::{IoEvent, Outcome};
use crate::error::Error;
use crate::race_hooks::{self, Point};
use crate::sys::{EventFd, monotonic_ns};

/// The slot index a driver reports for a completion that belongs to no slot (the CQE
/// of an io_uring `ASYNC_CANCEL`): it only balances the in-flight count.
pub(crate) const CONTROL_INDEX: usize = usize::MAX;


/// Per-request storage a driver keeps for an IO while the kernel may touch it.
pub(crate) trait Slot: Default + Send {
    /// Whether this backend may hold a transfer forever that read(2) would refuse (see
    /// `super::stuck`), so in-flight transfers must be swept.
    const PROBE_STUCK_TRANSFERS: bool = false;

    /// The request occupying this slot (`None` while the slot is free).
    fn event_mut(&mut self) -> &mut Option<IoEvent>;
}

/// A kernel interface (`open` and `register_buffers` run before any request), split
/// into two roles that may run on two threads at once without
/// locks between them: the *submit role* (`submit`, `run_deferred`) and the *reap role*
/// (`completions_ready`, `reap`). Each role is held by one thread at a time: in THREADS
/// mode the submit role by whoever holds the engine's submit lock (the submitter, or the
/// completer submitting what its callbacks queued), the reap role by the completer; in
/// POLLED mode the polling thread holds both.
pub(crate) trait Driver: Sized + Send + Sync + 'static {
    type Slot: Slot;

    /// Creates the kernel context for `depth` IOs in flight and `batch` per submit call.
    /// With `event_fd`, every completion also adds to that eventfd (POLLED mode).
    fn open(depth: u32, batch: u32, event_fd: Option<RawFd>) -> Result<Self, Error>;

    /// Any thread, before the engine's first request: registers the buffers with the
    /// kernel for FIXED_BUF IO (io_uring), or does nothing (AIO only checks ranges).
    fn register_buffers(&self, _bufs: &[libc::iovec]) -> Result<(), i32> {
        Ok(())
    }

    /// Submit role: asks the kernel to stop the IOs of the slots in
    /// `targets` (each handed over once per occupant; they may have completed since).
    /// Every IO still completes exactly once, with `-ECANCELED` or its own result; a
    /// completion the request itself does not own is reported as [`CONTROL_INDEX`]
    /// and must have been published with [`IoContext::kernel_submit_control`].
    fn cancel(&self, _ctx: &IoContext<Self::Slot>, _targets: &[usize]) {}

    /// Submit role: hands the slots in `batch` (each holding an event) to the kernel, in
    /// one call unless the kernel accepts only part of it. Every slot ends either accepted
    /// (reported with [`IoContext::kernel_submit`]) or finished with an error (through
    /// [`IoContext::fail_unsubmitted`]). When the kernel is out of resources for now it
    /// calls `busy`, which must let completions make progress, then retries.
    fn submit(&self, ctx: &IoContext<Self::Slot>, batch: &[usize], busy: &mut impl FnMut());

    /// Submit role, while it has nothing to submit: runs kernel work that only the
    /// submitting thread can run (io_uring task_work that posts completions).
    /// Returns true if there was any.
    fn run_deferred(&self) -> bool {
        false
    }

    /// Reap role: whether completions are ready to reap without entering the kernel;
    /// `None` when the driver cannot tell cheaply (then the completer does not poll for
    /// completions and waits in the kernel at once).
    fn completions_ready(&self) -> Option<bool> {
        None
    }

    /// POLLED mode, by the poller (both roles) as it starts (`true`) and ends (`false`):
    /// stops and restarts the kernel's signal of the event fd for each completion, so
    /// that a running poller, which sees completions itself, is not woken for them.
    /// `None`: this driver cannot, at least for this poll (the kernel signals, and the
    /// poller sleeps on the fd; the answer to `false` is then ignored). `Some(signalled)`: whether the kernel may have signalled the fd since
    /// the last poll ended (meaningful for `true`).
    fn quiet_event_fd(&self, _quiet: bool) -> Option<bool> {
        None
    }

    /// POLLED mode, by the poller while the event fd is quiet and IO is in flight:
    /// sleeps in the kernel until a completion, until the event fd becomes readable (a
    /// thread queued work), or until `timeout` (`None`: no limit). `Err(EINTR)`: a
    /// signal interrupted the wait. `None`: this driver cannot.
    fn wait_event(&self, _timeout: Option<Duration>) -> Option<Result<(), i32>> {
        None
    }

    /// POLLED mode, by the poller: whether `wait_event` saw the event fd readable since
    /// the last call (it then holds a count to drain).
    fn take_wake_fired(&self) -> bool {
        false
    }

    /// Reap role: appends `(slot index, res)` for each completion there is. With `wait`,
    /// first waits in the kernel until at least one IO completed (or a signal interrupted
    /// the wait); without, never blocks.
    fn reap(&self, ctx: &IoContext<Self::Slot>, out: &mut Vec<(usize, i64)>, wait: bool);
}

/// Everything the submitting threads and the two engine threads share.
pub(crate) struct IoContext<S> {
    /// What waits to be dispatched (see `WaitingQueues`).
    waiting: WaitingQueues,
    /// Cancelled and timed-out requests, and cancel marks (see `Cancels`).
    cancels: Cancels,
    /// Wakes a submitter that waits for a free slot (cancel, earlier deadline).
    control_tx: Sender<()>,
    control_rx: Receiver<()>,
    /// `(base, len)` of the registered buffers, set once before the first request.
    registered: OnceLock<Box<[(usize, usize)]>>,
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
    /// THREADS mode: (submitter, completer), set once both threads are spawned.
    threads: OnceLock<(Thread, Thread)>,
    /// POLLED mode: the eventfd that is readable while `ioeng_poll` has work.
    event: Option<EventFd>,
    /// POLLED mode: true while the event fd is known to be signalled or a poller is
    /// running (which sees new work without it), so a burst of submits writes it once.
    signalled: AtomicBool,
    /// POLLED mode: set after a submitting thread (or a poller leaving work behind) wrote
    /// the event fd; taken by the poller to know that it must drain the fd.
    written: AtomicBool,
}

thread_local! {
    /// The context whose reaping thread this is (the THREADS completer, or a thread inside
    /// `ioeng_poll`), as an address; 0 for none. A request pushed from there needs no
    /// wake-up: that thread looks for submit work after every batch of callbacks.
    static SERVING: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every field is Sync except `slots`; a slot is accessed only by the thread that
// holds its index in the budget protocol, so no slot is ever shared between threads, and
// its contents (`S: Send`) may move between them with the index.
unsafe impl<S: Send> Sync for IoContext<S> {}

/// Requests settled in one batch, waiting for their callbacks and slot release.
#[derive(Default)]
struct Finishing {
    events: Vec<(IoEvent, i64)>,
    slots: Vec<usize>,
}

/// Stats as read at one moment (each field individually).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub submitted: u64,
    pub completed: u64,
    pub in_flight: u64,
    pub queued_high: u64,
    pub queued_read: u64,
    pub queued_write: u64,
    pub kernel_submit_calls: u64,
    pub resubmits: u64,
    pub cancelled: u64,
    pub timed_out: u64,
}

/// The `Instant` at CLOCK_MONOTONIC `ns` (both clocks are CLOCK_MONOTONIC).
fn instant_of(ns: u64) -> Instant {
    Instant::now() + Duration::from_nanos(ns.saturating_sub(monotonic_ns()))
}

/// The largest buffer io_uring registers (`SZ_1G` in io_uring/rsrc.c).
const MAX_REGISTERED_BUFFER: usize = 1 << 30;

impl<S: Slot> IoContext<S> {
    pub(crate) fn new(depth: usize, batch: usize, queue_capacity: usize, paused: bool) -> Self {
        debug_assert!(depth > 0 && batch > 0 && batch <= depth);
        let (control_tx, control_rx) = crossbeam_channel::bounded(1);
        IoContext {
            waiting: WaitingQueues::new(queue_capacity),
            cancels: Cancels::new(depth),
            control_tx,
            control_rx,
            registered: OnceLock::new(),
            slots: (0..depth).map(|_| UnsafeCell::new(S::default())).collect(),
            budget: Budget::new(depth),
            batch,
            paused: AtomicBool::new(paused),
            closing: AtomicBool::new(false),
            flight: InFlight::default(),
            finishing: Mutex::new(Finishing::default()),
            counters: Counters::default(),
            stuck: S::PROBE_STUCK_TRANSFERS.then(|| StuckTransfers::new(depth)),
            threads: OnceLock::new(),
            event: None,
            signalled: AtomicBool::new(false),
            written: AtomicBool::new(false),
        }
    }

    /// POLLED mode: wake-ups go to `event` instead of to engine threads.
    pub(crate) fn with_event_fd(mut self, event: EventFd) -> Self {
        self.event = Some(event);
        self
    }

    /// Closes the POLLED event fd (a forked child's copy, see
    /// `Engine::abandon_in_forked_child`).
    pub(crate) fn close_event_fd(&mut self) {
        self.event = None;
    }

    pub(crate) fn event_fd(&self) -> Option<&EventFd> {
        self.event.as_ref()
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

    pub(crate) fn budget_depth(&self) -> usize {
        self.budget.depth()
    }

    pub(crate) fn set_threads(&self, submitter: Thread, completer: Thread) {
        let _ = self.threads.set((submitter, completer));
    }

    /// Blocks until `set_threads` ran; engine threads call this first.
    pub(crate) fn wait_for_threads(&self) {
        self.threads.wait();
    }

    /// Marks the calling thread as this context's reaping thread until the returned
    /// guard drops (which restores the previous mark: a callback may poll another engine).
    pub(crate) fn serve_here(&self) -> ServingGuard {
        ServingGuard(SERVING.with(|s| s.replace(self as *const Self as usize)))
    }

    /// True on this context's reaping thread (see `serve_here`).
    pub(crate) fn served_here(&self) -> bool {
        SERVING.with(|s| s.get()) == self as *const Self as usize
    }

    /// Wakes the submitter thread, or in POLLED mode makes the event fd readable.
    pub(crate) fn wake_submitter(&self) {
        if let Some(event) = &self.event {
            if !self.signalled.swap(true, Ordering::SeqCst) {
                event.signal();
                // After the write, so that a poller that takes the flag drains a count
                // that is already there.
                self.written.store(true, Ordering::Release);
            }
        } else if let Some((submitter, _)) = self.threads.get() {
            submitter.unpark();
        }
    }

    /// There is new work for the submit step. Pushed from the reaping thread, nobody is
    /// woken: that thread runs a submit step after its callbacks (see `served_here`).
    fn notify_submit_work(&self) {
        // Pairs with the fence in `rearm_event`: either the poller sees this work, or we
        // see its `signalled = false` and signal.
        fence(Ordering::SeqCst);
        if !self.served_here() {
            self.wake_submitter();
        }
    }

    /// POLLED mode, by the poller: new work need not signal the event fd from now on (the
    /// poller runs and will look for it).
    pub(crate) fn poller_running(&self) {
        self.signalled.store(true, Ordering::SeqCst);
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
        let Some(event) = &self.event else {
            return true;
        };
        if drain {
            event.drain();
        }
        self.signalled.store(false, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.has_work_for_poll(ready)
    }

    /// POLLED mode: whether a poll would find work now (`ready` covers what the driver
    /// can see), without touching the event fd.
    pub(crate) fn has_work_for_poll(&self, ready: impl FnOnce() -> bool) -> bool {
        ready() || self.has_submit_work_now()
    }

    /// POLLED mode: makes the event fd readable, whatever `signalled` says.
    pub(crate) fn signal_event(&self) {
        if let Some(event) = &self.event {
            self.signalled.store(true, Ordering::SeqCst);
            event.signal();
            // The next poll must drain it (see `take_written`).
            self.written.store(true, Ordering::Release);
        }
    }

    /// Submit work that a round can take now: queued requests with a free slot, or
    /// resubmissions.
    fn has_submit_work_now(&self) -> bool {
        (self.queued() > 0 && !self.is_paused() && self.budget.has_slot_for_submitter())
            || self.budget.has_resubmits()
            || self.has_control_work()
    }

    fn wake_completer(&self) {
        if let Some((_, completer)) = self.threads.get() {
            completer.unpark();
        }
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
        {
            let mut waiting = lock(&self.waiting.lock);
            for event in events {
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
                if deadline != 0 && deadline < self.waiting.earliest_deadline.load(Ordering::Relaxed) {
                    self.waiting.earliest_deadline.store(deadline, Ordering::Relaxed);
                    earlier_deadline = true;
                }
                accepted += 1;
            }
            // Counted under the lock, before the submitter can see the requests, so a
            // callback never observes `completed > submitted`.
            Counters::add(&self.counters.submitted, accepted as u64);
            self.waiting.queued.fetch_add(accepted, Ordering::Relaxed);
        }
        if accepted == 0 {
            return Err(refusal.unwrap_or(Error::InvalidArgument("empty batch")));
        }
        if earlier_deadline {
            // A submitter waiting for a slot must re-arm its timer.
            let _ = self.control_tx.try_send(());
        }
        if earlier_deadline && self.event.is_none() {
            // So must one asleep in `park`, also when this push comes from the
            // completer's callbacks, which otherwise wake nobody (see
            // `notify_submit_work`): the completer's own submit step expires nothing
            // later on.
            self.wake_submitter();
        } else {
            self.notify_submit_work();
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
        let found = removed.len() + in_slots.len() + dead_found;
        if !in_slots.is_empty() {
            lock(&self.cancels.cancel_requests).extend(in_slots);
            self.cancels.has_cancel_requests.store(true, Ordering::Release);
        }
        let ecanceled = -i64::from(libc::ECANCELED);
        self.cancels.bury(removed.into_iter().map(|event| (event, ecanceled)));
        if found > 0 {
            let _ = self.control_tx.try_send(());
            self.notify_submit_work();
        }
        found
    }

    /// Bookkeeping after requests left the queues by cancel.
    fn forget_removed(&self, waiting: &mut Waiting, removed: &[IoEvent]) {
        if removed.is_empty() {
            return;
        }
        self.waiting.queued.fetch_sub(removed.len(), Ordering::Relaxed);
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
        self.waiting.earliest_deadline
            .store(waiting.earliest(), Ordering::Relaxed);
    }

    /// The registered buffers, if any.
    pub(crate) fn registered_buffers(&self) -> Option<&[(usize, usize)]> {
        self.registered.get().map(|b| &b[..])
    }

    /// Records the buffers for FIXED_BUF after `register` (the driver's registration)
    /// succeeded; only before the first request and only once (`Busy` otherwise).
    pub(crate) fn register_buffers(
        &self,
        bufs: &[libc::iovec],
        register: impl FnOnce(&[libc::iovec]) -> Result<(), i32>,
    ) -> Result<(), Error> {
        // io_uring's own rules for a registered buffer (non-NULL, 1 byte to 1 GiB), checked
        // here so that both backends refuse the same tables with the same error, before
        // the kernel pins anything.
        let bad = bufs.iter().any(|iov| {
            iov.iov_base.is_null()
                || iov.iov_len == 0
                || iov.iov_len > MAX_REGISTERED_BUFFER
                || (iov.iov_base as usize).checked_add(iov.iov_len).is_none()
        });
        if bad {
            return Err(Error::InvalidArgument(
                "registered buffers must be non-NULL and 1 byte to 1 GiB long",
            ));
        }
        // Holding the queue lock keeps a first request from slipping in meanwhile.
        let _waiting = lock(&self.waiting.lock);
        if self.counters.submitted.load(Ordering::Relaxed) != 0 || self.registered.get().is_some() {
            return Err(Error::Busy);
        }
        register(bufs).map_err(|errno| Error::Kernel {
            call: "IORING_REGISTER_BUFFERS",
            errno,
        })?;
        let table = bufs
            .iter()
            .map(|iov| (iov.iov_base as usize, iov.iov_len))
            .collect();
        let _ = self.registered.set(table);
        Ok(())
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
        let (high, read, write) = lock(&self.waiting.lock).queues.lens();
        let c = &self.counters;
        Stats {
            submitted: c.submitted.load(Ordering::Relaxed),
            completed: c.completed.load(Ordering::Relaxed),
            in_flight: self.flight.kernel.load(Ordering::Relaxed).max(0) as u64,
            queued_high: high as u64,
            queued_read: read as u64,
            queued_write: write as u64,
            kernel_submit_calls: c.kernel_submit_calls.load(Ordering::Relaxed),
            resubmits: c.resubmits.load(Ordering::Relaxed),
            cancelled: c.cancelled.load(Ordering::Relaxed),
            timed_out: c.timed_out.load(Ordering::Relaxed),
        }
    }

    /// POLLED mode: whether the event fd was written (by a submitting thread, or by a
    /// poller leaving work behind) since the last call.
    pub(crate) fn take_written(&self) -> bool {
        // Acquire pairs with the Release after the write: a drain that follows reads it.
        self.written.swap(false, Ordering::Acquire)
    }

    /// Changes whenever kernel completions were taken (see `complete`).
    pub(crate) fn reap_epoch(&self) -> u64 {
        self.flight.reap_epoch.load(Ordering::Relaxed)
    }

    /// Callbacks run so far.
    pub(crate) fn completed(&self) -> u64 {
        self.counters.completed.load(Ordering::Relaxed)
    }

    /// When an engine thread or a sleeping poller must wake by itself: the earliest
    /// queued deadline, or the next sweep of in-flight transfers (see `stuck`) while IO
    /// is in flight; `None`: only for new work.
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        let deadline = self.next_deadline();
        let sweep = match &self.stuck {
            Some(stuck) if self.flight.kernel.load(Ordering::Relaxed) > 0 => {
                stuck.next_sweep_ns()
            }
            _ => None,
        };
        let Some(sweep) = sweep.map(instant_of) else {
            return deadline;
        };
        Some(deadline.map_or(sweep, |d| d.min(sweep)))
    }

    // ---- submitter thread ---------------------------------------------------------

    pub(crate) fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    pub(crate) fn queued(&self) -> usize {
        self.waiting.queued.load(Ordering::Relaxed)
    }

    /// Whether a round would find something to submit (polled while idle; a stale answer
    /// only costs a park that the next wake-up ends).
    pub(crate) fn has_submit_work(&self) -> bool {
        (self.queued() > 0 && !self.is_paused())
            || self.budget.has_resubmits()
            || self.has_control_work()
    }

    /// Cancels or dead requests wait for the engine thread (see `service`).
    fn has_control_work(&self) -> bool {
        self.cancels.dead_count.load(Ordering::Relaxed) != 0
            || self.cancels.has_cancel_requests.load(Ordering::Relaxed)
    }

    /// Whether `service` has work now: cancels, dead requests, or `deadline` (the one
    /// `service` returned) has come.
    pub(crate) fn control_due(&self, deadline: Option<Instant>) -> bool {
        self.has_control_work() || deadline.is_some_and(|at| at <= Instant::now())
    }

    /// The channel that wakes a submitter waiting for a slot when control work arrives.
    pub(crate) fn control_rx(&self) -> &Receiver<()> {
        &self.control_rx
    }

    /// When the earliest queued deadline falls due (`None`: no queued request has one).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let earliest = self.waiting.earliest_deadline.load(Ordering::Relaxed);
        if earliest == NO_DEADLINE {
            return None;
        }
        Some(instant_of(earliest))
    }

    /// Times out queued requests whose deadline passed (under the queue lock): O(log n)
    /// per expired request. Returns whether any expired.
    fn expire_locked(&self, waiting: &mut Waiting, now: u64) -> bool {
        let expired = waiting.expire(now);
        self.waiting.earliest_deadline
            .store(waiting.earliest(), Ordering::Relaxed);
        if expired.is_empty() {
            return false;
        }
        self.waiting.queued.fetch_sub(expired.len(), Ordering::Relaxed);
        // Counted here, not from the callbacks' res: a kernel's own -ETIMEDOUT (a socket
        // read after a TCP timeout) is no deadline of ours.
        Counters::add(&self.counters.timed_out, expired.len() as u64);
        race_hooks::at(Point::ExpiredBeforeBury);
        let etimedout = -i64::from(libc::ETIMEDOUT);
        self.cancels.bury(expired.into_iter().map(|event| (event, etimedout)));
        true
    }

    /// The engine thread's housekeeping, in THREADS mode on the submitter before every
    /// round (and meant for `ioeng_poll` in POLLED mode): times out queued requests whose
    /// deadline passed, hands in-flight cancels to the driver, and runs the callbacks of
    /// cancelled and timed-out requests. Returns when the next queued deadline falls due,
    /// for the caller's wait. Costs two relaxed loads when there is nothing to do.
    pub(crate) fn service<D: Driver<Slot = S>>(&self, driver: &D) -> Option<Instant> {
        let earliest = self.waiting.earliest_deadline.load(Ordering::Relaxed);
        if earliest != NO_DEADLINE && earliest <= monotonic_ns() {
            let expired = self.expire_locked(&mut lock(&self.waiting.lock), monotonic_ns());
            if expired {
                race_hooks::at(Point::ServiceExpired);
            }
        }
        if self.cancels.has_cancel_requests.load(Ordering::Acquire) {
            self.cancels.has_cancel_requests.store(false, Ordering::Relaxed);
            let requests = std::mem::take(&mut *lock(&self.cancels.cancel_requests));
            let targets: Vec<usize> = requests
                .into_iter()
                .filter(|&(index, tag, generation)| {
                    // Only this thread fills slots, so the occupant checked here is the
                    // one the driver cancels, or (finished meanwhile by the completer) no
                    // request: the kernel then finds nothing to cancel.
                    self.cancels.slot_tags[index].load(Ordering::Relaxed) == tag
                        && self.cancels.slot_gens[index].load(Ordering::Relaxed) == generation
                        && self.cancels.slot_cancelled[index].swap(generation, Ordering::Relaxed)
                            != generation
                })
                .map(|(index, _, _)| index)
                .collect();
            if !targets.is_empty() {
                driver.cancel(self, &targets);
            }
        }
        if let Some(stuck) = &self.stuck
            && self.flight.kernel.load(Ordering::Relaxed) > 0
        {
            let mut targets = Vec::new();
            stuck.sweep(monotonic_ns(), &mut targets);
            if !targets.is_empty() {
                driver.cancel(self, &targets);
            }
        }
        self.finish_dead();
        self.next_wake()
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
        while let Some((event, res)) = self.cancels.pop_dead() {
            self.count_finished_one(res);
            event.finish(res);
        }
    }

    /// Whether the submitter must finish the request in slot `index` with -ECANCELED
    /// instead of issuing its next IO.
    pub(crate) fn cancel_requested(&self, index: usize) -> bool {
        // The caller holds the slot, so its occupant is live: its tag is set if it has
        // one, and its generation is the one a cancel of it recorded.
        self.cancels.slot_tags[index].load(Ordering::Relaxed) != 0
            && self.cancels.slot_cancelled[index].load(Ordering::Relaxed)
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
        let taken = waiting.queues.take_round(slots.len(), |event| {
            let &index = next.next().expect("take_round respects room");
            let tag = event.tag();
            if tag != 0 {
                self.cancels.slot_gens[index].fetch_add(1, Ordering::Relaxed);
                self.cancels.slot_tags[index].store(tag, Ordering::Relaxed);
            }
            with_deadline += usize::from(event.request.deadline_ns != 0);
            if let Some(stuck) = &self.stuck {
                stuck.dispatched(index, &event);
            }
            // SAFETY: the submitter took `index` from the free channel and holds it.
            let slot = unsafe { self.slot_mut(index) };
            debug_assert!(
                slot.event_mut().is_none(),
                "free slot still holds a request"
            );
            *slot.event_mut() = Some(event);
            out.push(index);
        });
        self.waiting.queued.fetch_sub(taken, Ordering::Relaxed);
        self.forget_deadlines(&mut waiting, with_deadline);
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
                self.flight.kernel
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
            self.flight.control
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
            self.flight.control
                .fetch_sub((reaped.len() - slots.len()) as isize, Ordering::Relaxed);
            self.flight.kernel
                .fetch_sub(slots.len() as isize, Ordering::Relaxed);
            self.settle_batch(&slots);
        } else {
            self.flight.kernel
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
    /// callbacks, then their slots return to the budget together, so the submitter wakes
    /// once and sees everything the callbacks submitted in one round.
    fn settle_batch(&self, results: &[(usize, i64)]) {
        let mut finishing = lock(&self.finishing);
        let Finishing { events, slots } = &mut *finishing;
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
                    events.push((slot.take().expect("checked above"), res));
                    slots.push(index);
                }
            }
        }
        if resubmitted {
            self.notify_submit_work();
        }
        self.count_finished(events);
        for ((event, res), &index) in events.drain(..).zip(slots.iter()) {
            if event.tag() != 0 {
                // Right before its callback: until then a cancel still counts it (its
                // result is final, so the kernel finds nothing left to stop).
                self.cancels.slot_tags[index].store(0, Ordering::Relaxed);
            }
            event.finish(res);
        }
        for index in slots.drain(..) {
            self.budget.release(index);
        }
    }

    /// Counts callbacks about to run. Counted before the calls, so a caller that
    /// waited for its callbacks reads stats that already include them.
    fn count_finished(&self, events: &[(IoEvent, i64)]) {
        Counters::add(&self.counters.completed, events.len() as u64);
        for &(_, res) in events {
            if res == -i64::from(libc::ECANCELED) {
                Counters::add(&self.counters.cancelled, 1);
            }
        }
    }

    fn count_finished_one(&self, res: i64) {
        Counters::add(&self.counters.completed, 1);
        if res == -i64::from(libc::ECANCELED) {
            Counters::add(&self.counters.cancelled, 1);
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

#[cfg(test)]
mod tests {
    use super::super::round::SubmitRound;
    use super::super::tasks::{Callback, FIRST_RETRY_DELAY, FREE_RETRIES, IoRequest, Op, Priority};
    use super::*;
    use crate::scheduler::waiting::STALE_DEADLINE_SLACK;
    use std::ffi::c_void;
    use std::time::Instant;

    #[derive(Default)]
    struct TestSlot(Option<IoEvent>);
    impl Slot for TestSlot {
        fn event_mut(&mut self) -> &mut Option<IoEvent> {
            &mut self.0
        }
    }

    unsafe extern "C" fn record(ctx: *mut c_void, res: i64) {
        // SAFETY: the tests pass a live `Vec<i64>` as ctx.
        unsafe { (*ctx.cast::<Vec<i64>>()).push(res) };
    }

    fn event(op: Op, prio: Priority, tag: u64, log: &mut Vec<i64>) -> IoEvent {
        let req = IoRequest::new(op, prio, 0, 8 as *mut u8, 1, tag).unwrap();
        IoEvent::new(req, Callback::new(record, (log as *mut Vec<i64>).cast()))
    }

    fn offsets(ctx: &IoContext<TestSlot>, batch: &[usize]) -> Vec<u64> {
        let offset_of = |index: usize| {
            // SAFETY: the test thread plays the submitter and holds every index in `batch`.
            let slot = unsafe { ctx.slot_mut(index) };
            slot.0.as_ref().expect("dispatched").request.offset
        };
        batch.iter().map(|&i| offset_of(i)).collect()
    }

    #[test]
    fn batches_respect_budget_batch_size_and_priority() {
        let mut log = Vec::new();
        let ctx = IoContext::<TestSlot>::new(4, 3, 0, false);
        for tag in 0..4 {
            ctx.push(event(Op::Read, Priority::Normal, tag, &mut log))
                .unwrap();
        }
        ctx.push(event(Op::Write, Priority::Normal, 10, &mut log))
            .unwrap();
        ctx.push(event(Op::Read, Priority::High, 20, &mut log))
            .unwrap();
        let mut round = SubmitRound::new(ctx.batch);
        round.fill(&ctx, None, || false);
        assert_eq!(
            offsets(&ctx, &round.batch),
            [20, 0, 1],
            "HIGH first, then READ (round 0)"
        );
        let first = round.batch.clone();
        round.fill(&ctx, None, || false);
        assert_eq!(
            offsets(&ctx, &round.batch),
            [10],
            "one slot left; round 1 is WRITE first"
        );
        // Budget exhausted: completing one request frees exactly one slot.
        ctx.complete(&[(first[0], 1)]);
        assert_eq!(log, [1]);
        round.fill(&ctx, None, || false);
        assert_eq!(offsets(&ctx, &round.batch), [2]);
        // A short transfer goes back to the submitter ahead of new requests.
        ctx.complete(&[(first[1], 0)]);
        assert_eq!(log, [1, 0], "EOF read finished with 0 bytes");
        ctx.flight.kernel.store(0, Ordering::Relaxed);
        let stats = ctx.stats();
        assert_eq!(
            (stats.submitted, stats.completed, stats.queued_read),
            (6, 2, 1)
        );
    }

    /// A context with a budget of one slot and READs at offsets 0 and 1 queued.
    fn one_slot_two_reads_queued(log: &mut Vec<i64>) -> IoContext<TestSlot> {
        let ctx = IoContext::<TestSlot>::new(1, 1, 0, false);
        for tag in 0..2 {
            ctx.push(event(Op::Read, Priority::Normal, tag, log))
                .unwrap();
        }
        ctx
    }

    #[test]
    fn exhausted_budget_polls_for_a_slot_before_blocking() {
        let mut log = Vec::new();
        let ctx = one_slot_two_reads_queued(&mut log);
        let mut round = SubmitRound::new(ctx.batch);
        round.fill(&ctx, None, || panic!("a slot was free: no wait"));
        assert_eq!(offsets(&ctx, &round.batch), [0]);
        let in_flight = round.batch[0];
        // The only slot is in flight and a request is queued: the round asks `await_slot`
        // once; the completion arriving during that poll frees the slot for this round.
        let mut asked = 0;
        round.fill(&ctx, None, || {
            asked += 1;
            ctx.complete(&[(in_flight, 1)]);
            true
        });
        assert_eq!(asked, 1);
        assert_eq!(log, [1]);
        assert_eq!(offsets(&ctx, &round.batch), [1]);
        // Nothing queued: an exhausted budget is not waited for.
        round.fill(&ctx, None, || panic!("nothing to dispatch: no wait"));
        assert!(round.batch.is_empty());
    }

    #[test]
    fn exhausted_budget_blocks_until_the_completer_frees_a_slot() {
        let mut log = Vec::new();
        let ctx = one_slot_two_reads_queued(&mut log);
        let mut round = SubmitRound::new(ctx.batch);
        round.fill(&ctx, None, || false);
        let in_flight = round.batch[0];
        std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                ctx.complete(&[(in_flight, 1)]);
            });
            // The poll finds nothing (`|| false`): the round blocks until the slot is free.
            round.fill(&ctx, None, || false);
        });
        assert_eq!(offsets(&ctx, &round.batch), [1]);
        assert_eq!(log, [1]);
    }

    #[test]
    fn repeated_eagain_resubmissions_wait_until_due() {
        let mut log = Vec::new();
        let eagain = -i64::from(libc::EAGAIN);
        let ctx = IoContext::<TestSlot>::new(1, 1, 0, false);
        ctx.push(event(Op::Read, Priority::Normal, 0, &mut log))
            .unwrap();
        let mut round = SubmitRound::new(ctx.batch);
        round.fill(&ctx, None, || false);
        let index = round.batch[0];
        for _ in 0..FREE_RETRIES {
            ctx.complete(&[(index, eagain)]);
            round.fill(&ctx, None, || false);
            assert_eq!(round.batch, [index], "the first retries go out at once");
        }
        // Backing off: with nothing else to do the round returns empty and says when.
        ctx.complete(&[(index, eagain)]);
        round.fill(&ctx, None, || panic!("nothing queued: no wait"));
        assert!(round.batch.is_empty());
        let due = round.next_retry().expect("a delayed resubmission");
        while !round.retry_due() {
            std::thread::sleep(Duration::from_micros(5));
        }
        assert!(Instant::now() >= due);
        round.fill(&ctx, None, || false);
        assert_eq!(round.batch, [index]);
        assert_eq!(round.next_retry(), None);
        // Backing off with a request queued behind the held slot: the round blocks
        // until the retry is due, then issues it (the queued request still waits).
        ctx.push(event(Op::Read, Priority::Normal, 1, &mut log))
            .unwrap();
        let before = Instant::now();
        ctx.complete(&[(index, eagain)]);
        round.fill(&ctx, None, || false);
        assert!(before.elapsed() >= FIRST_RETRY_DELAY);
        assert_eq!(offsets(&ctx, &round.batch), [0]);
        ctx.complete(&[(index, 1)]);
        assert_eq!(log, [1], "retries never reach the callback");
        round.fill(&ctx, None, || false);
        assert_eq!(offsets(&ctx, &round.batch), [1]);
    }

    /// A driver that records what it is asked to cancel and touches no kernel.
    #[derive(Default)]
    struct NullDriver {
        cancelled: Mutex<Vec<usize>>,
    }

    impl Driver for NullDriver {
        type Slot = TestSlot;
        fn open(_: u32, _: u32, _: Option<RawFd>) -> Result<Self, Error> {
            Ok(NullDriver::default())
        }
        fn submit(&self, _: &IoContext<TestSlot>, _: &[usize], _: &mut impl FnMut()) {}
        fn cancel(&self, _: &IoContext<TestSlot>, targets: &[usize]) {
            lock(&self.cancelled).extend_from_slice(targets);
        }
        fn reap(&self, _: &IoContext<TestSlot>, _: &mut Vec<(usize, i64)>, _: bool) {}
    }

    fn tagged(tag: u64, deadline_ns: u64, offset: u64, log: &mut Vec<i64>) -> IoEvent {
        let mut req =
            IoRequest::new(Op::Read, Priority::Normal, 0, 8 as *mut u8, 1, offset).unwrap();
        req.tag = tag;
        req.deadline_ns = deadline_ns;
        IoEvent::new(req, Callback::new(record, (log as *mut Vec<i64>).cast()))
    }

    #[test]
    fn cancel_finishes_queued_requests_on_the_engine_thread_and_asks_the_driver_for_slots() {
        let mut log = Vec::new();
        let driver = NullDriver::default();
        let ctx = IoContext::<TestSlot>::new(2, 2, 0, false);
        for offset in 0..4 {
            ctx.push(tagged(7 + offset % 2, 0, offset, &mut log))
                .unwrap();
        }
        let mut round = SubmitRound::new(ctx.batch);
        round.fill(&ctx, None, || false);
        assert_eq!(
            offsets(&ctx, &round.batch),
            [0, 1],
            "tags 7 and 8 in the slots"
        );
        // Tag 7: one in a slot (offset 0), one queued (offset 2).
        assert_eq!(ctx.cancel(7), 2);
        assert!(log.is_empty(), "no callback inside cancel");
        assert_eq!(ctx.stats().queued_read, 1);
        ctx.service(&driver);
        let ecanceled = -i64::from(libc::ECANCELED);
        assert_eq!(log, [ecanceled], "the queued one, on the engine thread");
        assert_eq!(*lock(&driver.cancelled), [round.batch[0]]);
        // The kernel answers -ECANCELED for the slot; a second cancel finds only tag 8.
        ctx.complete(&[(round.batch[0], ecanceled)]);
        assert_eq!(log, [ecanceled, ecanceled]);
        assert_eq!(ctx.cancel(7), 0);
        assert_eq!(ctx.cancel(8), 2);
        ctx.service(&driver);
        assert_eq!(*lock(&driver.cancelled), [round.batch[0], round.batch[1]]);
        // A cancelled request between kernel IOs finishes instead of being reissued.
        ctx.complete(&[(round.batch[1], -i64::from(libc::EAGAIN))]);
        round.fill(&ctx, None, || false);
        assert!(round.batch.is_empty());
        assert_eq!(log.len(), 4);
        assert!(log.iter().all(|&res| res == ecanceled));
        let stats = ctx.stats();
        assert_eq!((stats.cancelled, stats.completed), (4, 4));
    }

    #[test]
    fn a_cancel_mark_applies_to_its_occupant_only() {
        // The submit role may mark a request for cancel just as the completer finishes
        // it. The mark must then name nobody: neither the untagged request that reuses
        // the slot (its second IO is reissued, not failed with -ECANCELED) nor the next
        // tagged one (whose own cancel must still reach the driver).
        let mut log = Vec::new();
        let driver = NullDriver::default();
        let ctx = IoContext::<TestSlot>::new(1, 1, 0, false);
        let (eagain, ecanceled) = (-i64::from(libc::EAGAIN), -i64::from(libc::ECANCELED));
        let mut round = SubmitRound::new(ctx.batch);
        ctx.push(tagged(7, 0, 0, &mut log)).unwrap();
        round.fill(&ctx, None, || false);
        let index = round.batch[0];
        assert_eq!(ctx.cancel(7), 1);
        ctx.service(&driver);
        assert_eq!(*lock(&driver.cancelled), [index]);
        // The kernel finished it before the cancel took effect: the mark outlives it.
        ctx.complete(&[(index, 1)]);
        assert_eq!(log, [1]);
        ctx.push(tagged(0, 0, 1, &mut log)).unwrap();
        round.fill(&ctx, None, || false);
        assert_eq!(offsets(&ctx, &round.batch), [1]);
        ctx.complete(&[(index, eagain)]);
        round.fill(&ctx, None, || false);
        assert_eq!(round.batch, [index], "the untagged request is reissued");
        ctx.complete(&[(index, 1)]);
        assert_eq!(log, [1, 1]);
        ctx.push(tagged(8, 0, 2, &mut log)).unwrap();
        round.fill(&ctx, None, || false);
        ctx.complete(&[(index, eagain)]);
        round.fill(&ctx, None, || false);
        assert_eq!(round.batch, [index], "the next tagged request is reissued");
        assert_eq!(ctx.cancel(8), 1);
        ctx.service(&driver);
        assert_eq!(
            *lock(&driver.cancelled),
            [index, index],
            "its cancel reaches the driver"
        );
        ctx.complete(&[(index, ecanceled)]);
        assert_eq!(log, [1, 1, ecanceled]);
    }

    #[test]
    fn deadlines_expire_queued_requests_only() {
        let mut log = Vec::new();
        let driver = NullDriver::default();
        let ctx = IoContext::<TestSlot>::new(1, 1, 0, true);
        assert_eq!(ctx.next_deadline(), None, "no deadline: no timer");
        let now = monotonic_ns();
        ctx.push(tagged(0, now + 20_000_000, 0, &mut log)).unwrap();
        ctx.push(tagged(0, 1, 1, &mut log)).unwrap();
        ctx.push(tagged(0, 0, 2, &mut log)).unwrap();
        let due = ctx.next_deadline().expect("armed");
        assert!(due <= Instant::now(), "the past deadline is due at once");
        ctx.service(&driver);
        let etimedout = -i64::from(libc::ETIMEDOUT);
        assert_eq!(log, [etimedout]);
        let due = ctx.next_deadline().expect("the 20 ms one");
        assert!(due > Instant::now() + Duration::from_millis(10));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        ctx.service(&driver);
        assert_eq!(log, [etimedout, etimedout]);
        assert_eq!(ctx.next_deadline(), None, "none left with a deadline");
        assert_eq!(ctx.stats().timed_out, 2);
        // A request whose deadline passed is not dispatched even before `service` ran.
        ctx.push(tagged(0, 1, 3, &mut log)).unwrap();
        ctx.resume();
        let mut round = SubmitRound::new(ctx.batch);
        round.fill(&ctx, None, || false);
        assert_eq!(
            offsets(&ctx, &round.batch),
            [2],
            "the expired one was skipped"
        );
        ctx.service(&driver);
        assert_eq!(log, [etimedout, etimedout, etimedout]);
        // The kernel's own -ETIMEDOUT (a socket's) is no expired deadline.
        ctx.complete(&[(round.batch[0], etimedout)]);
        assert_eq!(log.len(), 4);
        assert_eq!(ctx.stats().timed_out, 3);
    }

    #[test]
    fn cancel_counts_a_timed_out_request_until_its_callback_starts() {
        let mut log = Vec::new();
        let ctx = IoContext::<TestSlot>::new(1, 1, 0, true);
        ctx.push(tagged(9, 1, 0, &mut log)).unwrap();
        assert!(ctx.expire_locked(&mut lock(&ctx.waiting.lock), monotonic_ns()));
        assert!(log.is_empty(), "expired, callback not yet run");
        assert_eq!(ctx.cancel(9), 1, "still accepted and not completed");
        ctx.finish_dead();
        let etimedout = -i64::from(libc::ETIMEDOUT);
        assert_eq!(log, [etimedout], "the callback keeps its -ETIMEDOUT");
        assert_eq!(ctx.cancel(9), 0);
        let stats = ctx.stats();
        assert_eq!((stats.timed_out, stats.cancelled), (1, 0));
    }

    #[test]
    fn expiry_takes_due_requests_out_of_the_middle_and_stale_deadlines_stay_bounded() {
        let mut log = Vec::new();
        let ctx = IoContext::<TestSlot>::new(1, 1, 0, true);
        let far = monotonic_ns() + 3_600_000_000_000;
        // 1000 far deadlines, with a due one in the middle of the queue.
        for offset in 0..1000 {
            let deadline = if offset == 500 { 1 } else { far + offset };
            ctx.push(tagged(0, deadline, offset, &mut log)).unwrap();
        }
        assert!(ctx.expire_locked(&mut lock(&ctx.waiting.lock), monotonic_ns()));
        ctx.finish_dead();
        assert_eq!(log, [-i64::from(libc::ETIMEDOUT)]);
        assert_eq!(ctx.queued(), 999);
        // Dispatching leaves stale heap entries behind; they never outgrow the live ones
        // by more than the slack, and the timer stays armed for a queued request.
        let mut waiting = lock(&ctx.waiting.lock);
        let mut taken = Vec::new();
        for _ in 0..990 {
            waiting.queues.take_round(1, |event| taken.push(event));
            waiting.forget_deadlines(1);
            assert!(waiting.deadlines.len() <= 2 * waiting.with_deadline + STALE_DEADLINE_SLACK);
        }
        assert_eq!(waiting.with_deadline, 9);
        assert_eq!(
            taken[500].request.offset, 501,
            "the expired one was skipped"
        );
        // The timer may be armed early for a stale entry, never late for a queued one.
        assert!(waiting.earliest() <= far + 991);
        let due = waiting.expire(far + 990);
        assert!(due.is_empty(), "stale entries only");
        assert_eq!(waiting.earliest(), far + 991);
    }

    #[test]
    fn paused_context_dispatches_nothing_and_capacity_is_enforced() {
        let mut log = Vec::new();
        let ctx = IoContext::<TestSlot>::new(2, 2, 2, true);
        ctx.push(event(Op::Read, Priority::Normal, 0, &mut log))
            .unwrap();
        ctx.push(event(Op::Read, Priority::Normal, 1, &mut log))
            .unwrap();
        let third = ctx.push(event(Op::Read, Priority::Normal, 2, &mut log));
        assert_eq!(third, Err(Error::QueueFull));
        let mut round = SubmitRound::new(ctx.batch);
        round.fill(&ctx, None, || false);
        assert!(round.batch.is_empty());
        ctx.begin_close();
        assert_eq!(
            ctx.push(event(Op::Read, Priority::Normal, 3, &mut log)),
            Err(Error::ShuttingDown)
        );
        round.fill(&ctx, None, || false);
        assert_eq!(
            offsets(&ctx, &round.batch),
            [0, 1],
            "close resumes a paused engine"
        );
        assert!(!ctx.drained_for_close());
        ctx.complete(&[(round.batch[0], 1), (round.batch[1], 1)]);
        assert!(ctx.drained_for_close());
        assert_eq!(log, [1, 1]);
    }
}
