//! How an idle engine thread waits for its next piece of work (THREADS mode): poll for
//! about as long as work recently took to arrive, or sleep at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::config::{Config, IdlePoll};
use crate::sys;

/// Default upper bound on how long an idle engine thread polls before it sleeps: about
/// the CPU a sleep and its wake-up cost (two threads on the two vCPUs of the VM this is
/// developed on, handing a futex back and forth: 28–30 µs of CPU per round trip, so about
/// 14 µs per sleep and wake-up; `examples_c/wake_cost` measures it). Polling longer
/// spends more CPU than the sleep it saves; it only buys latency, and a core spent on it
/// is taken from the application (measured at ext4 QD1, where a read takes 20–30 µs:
/// polling up to 50 µs gave 1.2× the IOPS at 0.45× the IOs per CPU-second). A caller
/// that wants the latency sets `idle_poll_us`.
const DEFAULT_MAX_POLL: Duration = Duration::from_micros(10);
/// Shortest poll; also the first one.
const MIN_POLL: Duration = Duration::from_micros(5);

/// When an idle engine thread may poll instead of sleeping (THREADS mode). Read from the
/// configuration at open; shared by the engine's two threads.
pub(crate) struct PollPolicy {
    /// Longest poll; zero = never poll.
    max: Duration,
    /// Held by the one engine thread polling right now: the other one sleeps instead of
    /// taking a second core away from the application and from io_uring's io-wq workers.
    polling: AtomicBool,
}

impl PollPolicy {
    pub(crate) fn new(config: &Config) -> Self {
        let max = match config.idle_poll {
            IdlePoll::Never => Duration::ZERO,
            IdlePoll::Max(max) => max,
            // On a single CPU a polling thread only delays the thread it waits for.
            IdlePoll::Default if sys::allowed_cpus() < 2 => Duration::ZERO,
            IdlePoll::Default => DEFAULT_MAX_POLL,
        };
        PollPolicy {
            max,
            polling: AtomicBool::new(false),
        }
    }
}

/// How an idle engine thread waits for its next piece of work.
///
/// Sleeping costs a futex wake-up plus a scheduler round trip on the thread that hands
/// over the work. So an idle thread may first poll, yielding the CPU on every turn, for
/// about as long as work recently took to arrive: the poll grows to cover the gaps it
/// observes, up to the policy's `max`. When work arrives later than `max`, polling would
/// have been wasted, and the thread sleeps at once until gaps are short again (a gap is
/// measured from the start of the idle period, sleep included). Only one thread of the
/// engine polls at a time (see `PollPolicy::polling`).
///
/// No timer shortens the poll (hybrid polling: sleep until shortly before the expected
/// completion, then poll): measured on the 2-vCPU VM this is developed on, a timer costs
/// as much as the poll it saves and wakes the thread 13–22 µs late (README, "CPU per IO
/// against fio's t/io_uring").
pub(crate) struct IdleWait<'a> {
    policy: &'a PollPolicy,
    limit: Duration,
    idle_since: Option<Instant>,
}

impl<'a> IdleWait<'a> {
    pub(crate) fn new(policy: &'a PollPolicy) -> Self {
        IdleWait {
            policy,
            limit: MIN_POLL.min(policy.max),
            idle_since: None,
        }
    }

    /// Polls `ready` for up to the current limit; true as soon as it holds.
    pub(crate) fn poll(&mut self, mut ready: impl FnMut() -> bool) -> bool {
        let start = *self.idle_since.get_or_insert_with(Instant::now);
        if ready() {
            return true;
        }
        if self.limit.is_zero() || self.policy.polling.swap(true, Ordering::Acquire) {
            return false;
        }
        let found = loop {
            if ready() {
                break true;
            }
            if start.elapsed() >= self.limit {
                break false;
            }
            std::thread::yield_now();
        };
        self.policy.polling.store(false, Ordering::Release);
        found
    }

    /// Work arrived: adapt the limit to how long it took.
    pub(crate) fn work_arrived(&mut self) {
        let Some(since) = self.idle_since.take() else {
            return;
        };
        self.limit = next_limit(since.elapsed(), self.policy.max);
    }
}

/// The poll limit after work took `gap` to arrive: none when that was longer than `max`,
/// else a quarter more than the gap, at least `MIN_POLL` but never above `max` (a caller's
/// `idle_poll_us` may be below `MIN_POLL`).
fn next_limit(gap: Duration, max: Duration) -> Duration {
    if gap > max {
        Duration::ZERO
    } else {
        (gap + gap / 4).clamp(MIN_POLL.min(max), max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max: Duration) -> PollPolicy {
        PollPolicy {
            max,
            polling: AtomicBool::new(false),
        }
    }

    #[test]
    fn never_polls_with_a_zero_limit() {
        let never = policy(Duration::ZERO);
        let mut wait = IdleWait::new(&never);
        let mut asked = 0;
        assert!(!wait.poll(|| {
            asked += 1;
            false
        }));
        assert_eq!(asked, 1, "checked once, no polling");
    }

    #[test]
    fn stops_polling_after_a_gap_longer_than_the_limit_and_resumes_after_short_ones() {
        let p = policy(Duration::from_micros(200));
        let mut wait = IdleWait::new(&p);
        assert_eq!(wait.limit, MIN_POLL);
        // Work after 2 ms: far longer than the limit, so the next idle period sleeps at once.
        assert!(!wait.poll(|| false));
        std::thread::sleep(Duration::from_millis(2));
        wait.work_arrived();
        assert_eq!(wait.limit, Duration::ZERO);
        let mut asked = 0;
        let idle_from = Instant::now();
        assert!(!wait.poll(|| {
            asked += 1;
            false
        }));
        assert_eq!(asked, 1);
        // Work that arrives quickly again (measured from the idle start) brings polling
        // back. `idle_from` bounds that gap from above: a test thread descheduled for
        // longer than the limit proves nothing here, and then only the range is checked.
        wait.work_arrived();
        if idle_from.elapsed() <= p.max {
            assert!(wait.limit >= MIN_POLL && wait.limit <= p.max);
        } else {
            assert!(wait.limit == Duration::ZERO || wait.limit >= MIN_POLL);
        }
    }

    #[test]
    fn a_limit_below_the_shortest_poll_is_kept() {
        // idle_poll_us = 1..4: below MIN_POLL. Work within the limit keeps polling up to
        // the limit (clamping to [MIN_POLL, max] with max < MIN_POLL aborted the engine).
        let us = Duration::from_micros;
        for max in [us(1), us(2), us(4)] {
            assert_eq!(next_limit(Duration::ZERO, max), max);
            assert_eq!(next_limit(max, max), max);
            assert_eq!(
                next_limit(max + Duration::from_nanos(1), max),
                Duration::ZERO
            );
        }
        assert_eq!(next_limit(us(2), us(50)), MIN_POLL);
        assert_eq!(next_limit(us(20), us(50)), us(25));
        assert_eq!(next_limit(us(45), us(50)), us(50));
    }

    #[test]
    fn the_default_sleeps_through_a_disk_reads_wait() {
        // A gap as long as an O_DIRECT read on a virtio disk (20–30 µs) costs more CPU to
        // poll through than a sleep and wake-up: after one such gap the default policy
        // sleeps at once. `thread::sleep` never returns early, so the gap is at least
        // 25 µs however the test thread is scheduled.
        let p = policy(DEFAULT_MAX_POLL);
        let mut wait = IdleWait::new(&p);
        assert!(!wait.poll(|| false));
        std::thread::sleep(Duration::from_micros(25));
        wait.work_arrived();
        assert_eq!(wait.limit, Duration::ZERO);
    }

    #[test]
    fn only_one_thread_polls_at_a_time() {
        let p = policy(Duration::from_millis(50));
        p.polling.store(true, Ordering::Relaxed); // another engine thread is polling
        let mut wait = IdleWait::new(&p);
        let started = Instant::now();
        let mut asked = 0;
        assert!(!wait.poll(|| {
            asked += 1;
            false
        }));
        assert_eq!(asked, 1, "the second thread sleeps instead of polling");
        // Below the 50 ms it would poll, and above an ordinary descheduling.
        assert!(started.elapsed() < Duration::from_millis(40));
        p.polling.store(false, Ordering::Relaxed);
        assert!(!wait.poll(|| false));
        assert!(
            !p.polling.load(Ordering::Relaxed),
            "the token is released after polling"
        );
    }
}
