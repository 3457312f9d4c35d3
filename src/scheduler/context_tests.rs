//! Unit tests of `IoContext` (no kernel: `TestSlot` and a recording cancel).

use super::super::round::SubmitRound;
use super::super::tasks::{
    Callback, FIRST_RETRY_DELAY, FREE_RETRIES, IoRequest, KERNEL_CANCEL_RETRY_NS, Op, Priority,
};
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
    let mut round = SubmitRound::new(ctx.batch).unwrap();
    round.fill(&ctx);
    assert_eq!(
        offsets(&ctx, &round.batch),
        [20, 0, 1],
        "HIGH first, then READ (round 0)"
    );
    let first = round.batch.clone();
    round.fill(&ctx);
    assert_eq!(
        offsets(&ctx, &round.batch),
        [10],
        "one slot left; round 1 is WRITE first"
    );
    // Budget exhausted: completing one request frees exactly one slot.
    ctx.complete(&[(first[0], 1)]);
    assert_eq!(log, [1]);
    round.fill(&ctx);
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
fn exhausted_budget_gives_an_empty_round() {
    let mut log = Vec::new();
    let ctx = one_slot_two_reads_queued(&mut log);
    let mut round = SubmitRound::new(ctx.batch).unwrap();
    round.fill(&ctx);
    assert_eq!(offsets(&ctx, &round.batch), [0]);
    let in_flight = round.batch[0];
    // The only slot is in flight and a request is queued: the round is empty, and the
    // next one (run by whoever frees the slot) takes it.
    round.fill(&ctx);
    assert!(round.batch.is_empty());
    ctx.complete(&[(in_flight, 1)]);
    assert_eq!(log, [1]);
    round.fill(&ctx);
    assert_eq!(offsets(&ctx, &round.batch), [1]);
}

#[test]
fn repeated_eagain_resubmissions_wait_until_due() {
    let mut log = Vec::new();
    let eagain = -i64::from(libc::EAGAIN);
    let ctx = IoContext::<TestSlot>::new(1, 1, 0, false);
    ctx.push(event(Op::Read, Priority::Normal, 0, &mut log))
        .unwrap();
    let mut round = SubmitRound::new(ctx.batch).unwrap();
    round.fill(&ctx);
    let index = round.batch[0];
    for _ in 0..FREE_RETRIES {
        ctx.complete(&[(index, eagain)]);
        round.fill(&ctx);
        assert_eq!(round.batch, [index], "the first retries go out at once");
    }
    // Backing off: with nothing else to do the round returns empty and says when. (The
    // delays are tens of µs: a test thread descheduled that long between the completion
    // and the round finds the retry due already, and then only checks it waited.)
    let delay_ns = FIRST_RETRY_DELAY.as_nanos() as u64;
    let start = crate::sys::monotonic_ns();
    ctx.complete(&[(index, eagain)]);
    round.fill(&ctx);
    if round.batch.is_empty() {
        let due = round.next_retry().expect("a delayed resubmission");
        assert!(due >= start + delay_ns);
        // The engine's one timer function sees it (the POLLED event fd's timer, the
        // threads' sleeps, ioeng_next_timeout_ns).
        assert_eq!(ctx.next_wake_ns(), Some(due));
        while !round.retry_due() {
            std::thread::sleep(Duration::from_micros(5));
        }
        assert!(crate::sys::monotonic_ns() >= due);
        round.fill(&ctx);
    }
    assert!(
        crate::sys::monotonic_ns() >= start + delay_ns,
        "not before its delay"
    );
    assert_eq!(round.batch, [index]);
    assert_eq!(round.next_retry(), None);
    assert_eq!(ctx.next_wake_ns(), None, "issued: no timer left");
    // Backing off with a request queued behind the held slot: rounds stay empty until
    // the retry is due (the timer says when), then issue it; the queued request waits.
    ctx.push(event(Op::Read, Priority::Normal, 1, &mut log))
        .unwrap();
    let before = Instant::now();
    ctx.complete(&[(index, eagain)]);
    round.fill(&ctx);
    if round.batch.is_empty() {
        let due = ctx.next_wake_ns().expect("the retry's timer");
        while !round.retry_due() {
            std::thread::sleep(Duration::from_micros(5));
        }
        assert!(crate::sys::monotonic_ns() >= due);
        round.fill(&ctx);
    }
    assert!(before.elapsed() >= FIRST_RETRY_DELAY);
    assert_eq!(offsets(&ctx, &round.batch), [0]);
    ctx.complete(&[(index, 1)]);
    assert_eq!(log, [1], "retries never reach the callback");
    round.fill(&ctx);
    assert_eq!(offsets(&ctx, &round.batch), [1]);
}

/// Records what `service` asks the driver to cancel (no kernel involved).
#[derive(Default)]
struct NullDriver {
    cancelled: Mutex<Vec<usize>>,
}

impl NullDriver {
    fn cancel(&self) -> impl FnMut(&[usize]) + '_ {
        |targets| lock(&self.cancelled).extend_from_slice(targets)
    }
}

fn tagged(tag: u64, deadline_ns: u64, offset: u64, log: &mut Vec<i64>) -> IoEvent {
    let mut req = IoRequest::new(Op::Read, Priority::Normal, 0, 8 as *mut u8, 1, offset).unwrap();
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
    let mut round = SubmitRound::new(ctx.batch).unwrap();
    round.fill(&ctx);
    assert_eq!(
        offsets(&ctx, &round.batch),
        [0, 1],
        "tags 7 and 8 in the slots"
    );
    // Tag 7: one in a slot (offset 0), one queued (offset 2).
    assert_eq!(ctx.cancel(7), 2);
    assert!(log.is_empty(), "no callback inside cancel");
    assert_eq!(ctx.stats().queued_read, 1);
    ctx.service(driver.cancel());
    let ecanceled = -i64::from(libc::ECANCELED);
    assert_eq!(log, [ecanceled], "the queued one, on the engine thread");
    assert_eq!(*lock(&driver.cancelled), [round.batch[0]]);
    // The kernel answers -ECANCELED for the slot; a second cancel finds only tag 8.
    ctx.complete(&[(round.batch[0], ecanceled)]);
    assert_eq!(log, [ecanceled, ecanceled]);
    assert_eq!(ctx.cancel(7), 0);
    assert_eq!(ctx.cancel(8), 2);
    ctx.service(driver.cancel());
    assert_eq!(*lock(&driver.cancelled), [round.batch[0], round.batch[1]]);
    // A cancelled request between kernel IOs finishes instead of being reissued.
    ctx.complete(&[(round.batch[1], -i64::from(libc::EAGAIN))]);
    round.fill(&ctx);
    assert!(round.batch.is_empty());
    assert_eq!(log.len(), 4);
    assert!(log.iter().all(|&res| res == ecanceled));
    let stats = ctx.stats();
    assert_eq!((stats.cancelled, stats.completed), (4, 4));
}

#[test]
fn cancel_all_reaches_untagged_requests_in_slots_and_spares_later_ones() {
    let mut log = Vec::new();
    let driver = NullDriver::default();
    let ctx = IoContext::<TestSlot>::new(2, 2, 0, false);
    ctx.push(tagged(0, 0, 0, &mut log)).unwrap();
    ctx.push(tagged(0, 0, 1, &mut log)).unwrap();
    let mut round = SubmitRound::new(ctx.batch).unwrap();
    round.fill(&ctx);
    let slots = round.batch.clone();
    assert_eq!(
        offsets(&ctx, &slots),
        [0, 1],
        "two untagged requests in the slots"
    );
    ctx.push(tagged(7, 0, 2, &mut log)).unwrap();
    ctx.push(tagged(0, 0, 3, &mut log)).unwrap();
    // Two in slots (untagged), two queued (tagged and not).
    assert_eq!(ctx.cancel_all(), 4);
    assert!(log.is_empty(), "no callback inside cancel_all");
    ctx.service(driver.cancel());
    let ecanceled = -i64::from(libc::ECANCELED);
    assert_eq!(log, [ecanceled, ecanceled], "the queued ones");
    assert_eq!(*lock(&driver.cancelled), slots, "both slots asked to stop");
    // One finished before the cancel took effect (it keeps its result); the other is
    // between two kernel IOs and finishes instead of being reissued.
    ctx.complete(&[(slots[0], 1), (slots[1], -i64::from(libc::EAGAIN))]);
    round.fill(&ctx);
    assert!(round.batch.is_empty());
    assert_eq!(log, [ecanceled, ecanceled, 1, ecanceled]);
    assert_eq!(ctx.cancel_all(), 0, "nothing left");
    // A request accepted afterwards, in a slot an old mark named, is not affected.
    ctx.push(tagged(0, 0, 4, &mut log)).unwrap();
    round.fill(&ctx);
    let later = round.batch[0];
    ctx.complete(&[(later, -i64::from(libc::EAGAIN))]);
    round.fill(&ctx);
    assert_eq!(round.batch, [later], "reissued, not cancelled");
    ctx.complete(&[(later, 1)]);
    assert_eq!(log.len(), 5);
    assert_eq!(log[4], 1);
    let stats = ctx.stats();
    assert_eq!((stats.cancelled, stats.completed), (3, 5));
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
    let mut round = SubmitRound::new(ctx.batch).unwrap();
    ctx.push(tagged(7, 0, 0, &mut log)).unwrap();
    round.fill(&ctx);
    let index = round.batch[0];
    assert_eq!(ctx.cancel(7), 1);
    ctx.service(driver.cancel());
    assert_eq!(*lock(&driver.cancelled), [index]);
    // The kernel finished it before the cancel took effect: the mark outlives it.
    ctx.complete(&[(index, 1)]);
    assert_eq!(log, [1]);
    ctx.push(tagged(0, 0, 1, &mut log)).unwrap();
    round.fill(&ctx);
    assert_eq!(offsets(&ctx, &round.batch), [1]);
    ctx.complete(&[(index, eagain)]);
    round.fill(&ctx);
    assert_eq!(round.batch, [index], "the untagged request is reissued");
    ctx.complete(&[(index, 1)]);
    assert_eq!(log, [1, 1]);
    ctx.push(tagged(8, 0, 2, &mut log)).unwrap();
    round.fill(&ctx);
    ctx.complete(&[(index, eagain)]);
    round.fill(&ctx);
    assert_eq!(round.batch, [index], "the next tagged request is reissued");
    assert_eq!(ctx.cancel(8), 1);
    ctx.service(driver.cancel());
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
    assert_eq!(ctx.next_wake(), None, "no deadline: no timer");
    let now = monotonic_ns();
    ctx.push(tagged(0, now + 200_000_000, 0, &mut log)).unwrap();
    ctx.push(tagged(0, 1, 1, &mut log)).unwrap();
    ctx.push(tagged(0, 0, 2, &mut log)).unwrap();
    let due = ctx.next_wake().expect("armed");
    assert!(due <= Instant::now(), "the past deadline is due at once");
    ctx.service(driver.cancel());
    let etimedout = -i64::from(libc::ETIMEDOUT);
    assert_eq!(log, [etimedout]);
    // (200 ms: room for a test thread descheduled for a while before this check.)
    let due = ctx.next_wake().expect("the 200 ms one");
    assert!(due > Instant::now() + Duration::from_millis(100));
    std::thread::sleep(due.saturating_duration_since(Instant::now()));
    ctx.service(driver.cancel());
    assert_eq!(log, [etimedout, etimedout]);
    assert_eq!(ctx.next_wake(), None, "none left with a deadline");
    assert_eq!(ctx.stats().timed_out, 2);
    // A request whose deadline passed is not dispatched even before `service` ran.
    ctx.push(tagged(0, 1, 3, &mut log)).unwrap();
    ctx.resume();
    let mut round = SubmitRound::new(ctx.batch).unwrap();
    round.fill(&ctx);
    assert_eq!(
        offsets(&ctx, &round.batch),
        [2],
        "the expired one was skipped"
    );
    ctx.service(driver.cancel());
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
        waiting
            .queues
            .take_round(1, || 0, |event, _| taken.push(event));
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
    let mut round = SubmitRound::new(ctx.batch).unwrap();
    round.fill(&ctx);
    assert!(round.batch.is_empty());
    ctx.begin_close();
    assert_eq!(
        ctx.push(event(Op::Read, Priority::Normal, 3, &mut log)),
        Err(Error::ShuttingDown)
    );
    round.fill(&ctx);
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

#[test]
fn polled_next_timeout_is_the_fd_then_the_earliest_timer() {
    use super::super::polled::next_timeout_ns;
    let mut log = Vec::new();
    let threads = IoContext::<TestSlot>::new(2, 1, 0, true);
    assert_eq!(next_timeout_ns(&threads), None, "THREADS: no event fd");
    let event = EventFd::new().expect("eventfd");
    let ctx = IoContext::<TestSlot>::new(2, 1, 0, true).with_event_fd(event, false);
    assert_eq!(next_timeout_ns(&ctx), Some(-1), "nothing pending");
    // Paused, a deadline 200 ms away, earlier than any: the push signals the fd (the
    // poller must move its timer), so a poll has work now.
    let due = monotonic_ns() + 200_000_000;
    ctx.push(tagged(1, due, 0, &mut log)).unwrap();
    assert_eq!(next_timeout_ns(&ctx), Some(0), "the fd is readable");
    // A poll that finds nothing to do drains it: then the time left.
    assert!(
        !ctx.rearm_event(true, || false),
        "paused: no work for a poll"
    );
    let left = next_timeout_ns(&ctx).expect("POLLED");
    assert!(left > 150_000_000 && left <= 200_000_000, "{left} ns left");
    // Paused, no deadline: the fd stays quiet, the timer stays the deadline's.
    ctx.push(tagged(2, 0, 1, &mut log)).unwrap();
    assert!(
        ctx.event_fd().is_some_and(|e| !e.is_readable()),
        "paused: quiet"
    );
    assert!(next_timeout_ns(&ctx).expect("POLLED") > 150_000_000);
    // Resume: the queued requests can go now.
    ctx.resume();
    assert_eq!(next_timeout_ns(&ctx), Some(0), "resumed: readable");
    assert!(log.is_empty());
}

#[test]
fn after_a_poll_the_pollers_own_submits_leave_the_event_fd_alone_with_poll_after_submit() {
    let mut log = Vec::new();
    let quiet = |ctx: &IoContext<TestSlot>| ctx.event_fd().is_some_and(|e| !e.is_readable());
    for promised in [false, true] {
        let event = EventFd::new().expect("eventfd");
        let ctx = IoContext::<TestSlot>::new(4, 4, 0, false).with_event_fd(event, promised);
        // Before any poll there is no polling thread: a submit signals.
        ctx.push(tagged(1, 0, 0, &mut log)).unwrap();
        assert!(!quiet(&ctx), "before the first poll the fd is readable");
        // A poll on this thread that ends with the fd drained and `signalled` clear.
        ctx.wakeup().polling_here();
        ctx.wakeup().poller_running();
        ctx.wakeup().rearm(true);
        assert!(quiet(&ctx));
        // The poller's own submit: quiet only with the promise.
        ctx.push(tagged(2, 0, 0, &mut log)).unwrap();
        assert_eq!(
            quiet(&ctx),
            promised,
            "the poller's submit, promised={promised}"
        );
        ctx.wakeup().rearm(true);
        // Another thread's submit always signals.
        let other = tagged(3, 0, 0, &mut log);
        std::thread::scope(|scope| {
            scope.spawn(|| ctx.push(other).unwrap());
        });
        assert!(!quiet(&ctx), "another thread's submit, promised={promised}");
    }
    assert!(log.is_empty());
}

fn event_in(class_id: u16, prio: Priority, tag: u64, log: &mut Vec<i64>) -> IoEvent {
    let mut event = event(Op::Read, prio, tag, log);
    event.request.class_id = class_id;
    event
}

#[test]
fn held_requests_neither_spin_the_engine_nor_let_it_sleep_past_their_refill() {
    let mut log = Vec::new();
    let ctx = IoContext::<TestSlot>::new(8, 8, 0, false);
    // 10 IOPS: a burst of one request, then one per 100 ms (wide enough that a test
    // thread descheduled for a while still sees every step; the bucket's own arithmetic
    // is tested without a clock in token_bucket.rs).
    let limited = ClassConfig::new(100, 3 << 13, 10, 0).unwrap();
    let id = ctx.class_open(limited).unwrap();
    assert!(ctx.class_exists(id) && !ctx.class_exists(id + 1));
    for tag in 0..12 {
        ctx.push(event_in(id, Priority::High, tag, &mut log))
            .unwrap();
    }
    let mut round = SubmitRound::new(ctx.batch).unwrap();
    round.fill(&ctx);
    assert_eq!(round.batch.len(), 1, "the burst");
    // SAFETY: the test thread plays the submitter and holds every index in `batch`.
    let slot = unsafe { ctx.slot_mut(round.batch[0]) };
    assert_eq!(
        slot.0.as_ref().unwrap().ioprio,
        3 << 13,
        "the class's kernel ioprio"
    );
    let stats = ctx.class_stats(Some(id), false).unwrap();
    assert_eq!((stats.in_flight, stats.queued), (1, 11));
    let high = ctx.class_stats(None, false).unwrap();
    assert_eq!(
        (high.in_flight, high.queued),
        (1, 11),
        "HIGH counts them too"
    );
    ctx.complete(&round.batch.iter().map(|&i| (i, 1)).collect::<Vec<_>>());
    round.fill(&ctx);
    assert!(round.batch.is_empty(), "held");
    // Nothing to do until the refill, and the engine's wake-up is set for it.
    assert_eq!(ctx.queued(), 11);
    assert_eq!(ctx.dispatchable(), 0);
    assert!(!ctx.has_submit_work());
    let wake = ctx.next_wake_ns().expect("a refill to wake for");
    assert_eq!(Some(wake), ctx.earliest_refill_ns());
    let now = monotonic_ns();
    assert!(wake > now && wake <= now + 100_000_000, "{wake} vs {now}");
    // Past it, the next round takes one.
    std::thread::sleep(Duration::from_nanos(
        wake.saturating_sub(monotonic_ns()) + 1000,
    ));
    assert_eq!(ctx.dispatchable(), 11);
    round.fill(&ctx);
    assert_eq!(round.batch.len(), 1);
    ctx.complete(&round.batch.iter().map(|&i| (i, 1)).collect::<Vec<_>>());
    // Lifting the limit lets the rest go at once (as far as the depth allows).
    ctx.class_update(id, ClassConfig::new(100, -1, 0, 0).unwrap())
        .unwrap();
    assert_eq!(ctx.dispatchable(), 10);
    round.fill(&ctx);
    assert_eq!(round.batch.len(), 8);
    ctx.complete(&round.batch.iter().map(|&i| (i, 1)).collect::<Vec<_>>());
    round.fill(&ctx);
    assert_eq!(round.batch.len(), 2);
    ctx.complete(&round.batch.iter().map(|&i| (i, 1)).collect::<Vec<_>>());
    let stats = ctx.class_stats(Some(id), true).unwrap();
    assert_eq!(
        (stats.reads, stats.bytes_read, stats.in_flight),
        (12, 12, 0)
    );
    assert!(stats.throttled_ns > 0);
    let stats = ctx.class_stats(Some(id), false).unwrap();
    assert_eq!((stats.reads, stats.throttled_ns), (0, 0), "reset");
    assert!(ctx.class_stats(Some(id + 1), false).is_err());
    assert_eq!(log.len(), 12);
}

#[test]
fn a_refill_while_every_slot_is_busy_is_no_reason_to_wake() {
    let mut log = Vec::new();
    let ctx = IoContext::<TestSlot>::new(1, 1, 0, false);
    // 10 IOPS: a burst of one request, then one per 100 ms (room for a test thread
    // descheduled for a while before the refill is checked to be in the future).
    let id = ctx
        .class_open(ClassConfig::new(100, -1, 10, 0).unwrap())
        .unwrap();
    for tag in 0..3 {
        ctx.push(event_in(id, Priority::Normal, tag, &mut log))
            .unwrap();
    }
    let mut round = SubmitRound::new(ctx.batch).unwrap();
    round.fill(&ctx);
    assert_eq!(round.batch.len(), 1);
    let refill = ctx.earliest_refill_ns().expect("held");
    assert_eq!(
        ctx.next_wake_ns(),
        Some(refill),
        "in the future: wake for it"
    );
    std::thread::sleep(Duration::from_nanos(
        refill.saturating_sub(monotonic_ns()) + 1000,
    ));
    // Due, but the one slot is busy: no wake time in the past (the waits would spin);
    // the completion that frees the slot is what wakes the engine.
    assert_eq!(ctx.next_wake_ns(), None);
    assert!(!ctx.control_due(ctx.next_wake_ns()));
    ctx.complete(&[(round.batch[0], 1)]);
    assert_eq!(ctx.next_wake_ns(), Some(refill));
    round.fill(&ctx);
    assert_eq!(round.batch.len(), 1);
    ctx.complete(&[(round.batch[0], 1)]);
    let mut rest = SubmitRound::new(1).unwrap();
    while log.len() < 3 {
        rest.fill(&ctx);
        for &index in &rest.batch {
            ctx.complete(&[(index, 1)]);
        }
    }
}

/// A slot of a backend whose kernel cancels IO on its own (as io_uring's).
#[derive(Default)]
struct CancellingSlot(Option<IoEvent>);
impl Slot for CancellingSlot {
    const KERNEL_CANCELS_ON_ITS_OWN: bool = true;
    fn event_mut(&mut self) -> &mut Option<IoEvent> {
        &mut self.0
    }
}

/// Completes the request in the context's only slot with `res` until its callback ran;
/// returns how many kernel results that took. (Watches the context's own count: the
/// callback's log is written through a raw pointer.)
fn complete_until_done<S: Slot>(ctx: &IoContext<S>, res: i64) -> usize {
    let mut round = SubmitRound::new(ctx.batch).unwrap();
    let mut results = 0;
    while ctx.completed() == 0 {
        ctx.flight.kernel.store(1, Ordering::Relaxed);
        ctx.complete(&[(0, res)]);
        results += 1;
        // The retry waits out its backoff in the round's delayed list.
        round.fill(ctx);
        while ctx.completed() == 0 && round.batch.is_empty() {
            std::hint::spin_loop();
            round.fill(ctx);
        }
        assert!(results <= 100_000, "retried without end");
    }
    results
}

#[test]
fn an_ecanceled_nobody_asked_for_is_retried_for_a_bounded_time_where_the_kernel_cancels_by_itself()
{
    let ecanceled = -i64::from(libc::ECANCELED);
    // io_uring-like: retried for KERNEL_CANCEL_RETRY_NS of such results in a row, then
    // the file's own error reaches the callback.
    let mut log = Vec::new();
    let ctx = IoContext::<CancellingSlot>::new(1, 1, 0, false);
    ctx.push(event(Op::Read, Priority::Normal, 0, &mut log))
        .unwrap();
    let mut round = SubmitRound::new(1).unwrap();
    round.fill(&ctx);
    assert_eq!(round.batch, [0]);
    let started = Instant::now();
    let results = complete_until_done(&ctx, ecanceled);
    let took = started.elapsed();
    assert!(results > 1, "retried");
    assert!(
        took >= Duration::from_nanos(KERNEL_CANCEL_RETRY_NS),
        "reported after {took:?}"
    );
    assert_eq!(log, [ecanceled]);
    // AIO-like: never cancels by itself, so the file's error is reported at once.
    let mut log = Vec::new();
    let ctx = IoContext::<TestSlot>::new(1, 1, 0, false);
    ctx.push(event(Op::Read, Priority::Normal, 0, &mut log))
        .unwrap();
    let mut round = SubmitRound::new(1).unwrap();
    round.fill(&ctx);
    assert_eq!(complete_until_done(&ctx, ecanceled), 1);
    assert_eq!(log, [ecanceled]);
}
