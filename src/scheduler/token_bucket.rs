//! A token bucket for a class's `iops_limit` or `bytes_per_sec_limit` (DESIGN §6.1,
//! docs/ARCHITECTURE.md "IO classes"): the rate in units per second, a burst of 10 ms of
//! the rate or one request, whichever is larger.
//!
//! Tokens are kept in units × 10⁹ (unit-nanoseconds) so that refilling `rate × elapsed_ns`
//! is exact integer arithmetic: no drift however long the engine runs. A request whose
//! amount exceeds the 10 ms burst goes once the bucket is full and leaves it in debt,
//! which the refill repays before the next one: the long-run rate is exact either way.

const NS_PER_SEC: i128 = 1_000_000_000;
/// The burst: 10 ms of the rate.
const BURST_NS: i128 = 10_000_000;

#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    /// Units per second, > 0.
    rate: u64,
    /// Tokens now (unit-ns); negative while a large request's debt is repaid.
    tokens: i128,
    /// The most tokens the bucket holds: `rate × 10 ms` (unit-ns).
    cap: i128,
    /// CLOCK_MONOTONIC ns of the last refill.
    last_ns: u64,
}

impl TokenBucket {
    /// A full bucket for `rate` units per second (> 0) at time `now_ns`.
    pub(crate) fn new(rate: u64, now_ns: u64) -> Self {
        debug_assert!(rate > 0);
        let cap = i128::from(rate) * BURST_NS;
        TokenBucket {
            rate,
            tokens: cap,
            cap,
            last_ns: now_ns,
        }
    }

    #[cfg(test)]
    pub(crate) fn rate(&self) -> u64 {
        self.rate
    }

    /// The same bucket at a new rate: the tokens it holds stay, clamped to the new burst.
    pub(crate) fn set_rate(&mut self, rate: u64, now_ns: u64) {
        self.refill(now_ns);
        self.rate = rate;
        self.cap = i128::from(rate) * BURST_NS;
        self.tokens = self.tokens.min(self.cap);
    }

    fn refill(&mut self, now_ns: u64) {
        if now_ns > self.last_ns {
            let elapsed = i128::from(now_ns - self.last_ns);
            self.tokens = (self.tokens + elapsed * i128::from(self.rate)).min(self.cap);
            self.last_ns = now_ns;
        }
    }

    /// What must be in the bucket for a request of `amount` units to go: all of it, or a
    /// full bucket when it is larger than the burst.
    fn needed(&self, amount: u64) -> i128 {
        (i128::from(amount) * NS_PER_SEC).min(self.cap)
    }

    /// Whether a request of `amount` units may go at `now_ns`.
    pub(crate) fn ready(&mut self, amount: u64, now_ns: u64) -> bool {
        self.refill(now_ns);
        self.tokens >= self.needed(amount)
    }

    /// Takes `amount` units (after `ready` said yes).
    pub(crate) fn take(&mut self, amount: u64) {
        self.tokens -= i128::from(amount) * NS_PER_SEC;
    }

    /// When (CLOCK_MONOTONIC ns) a request of `amount` units may go; `now_ns` if now.
    /// At most `u64::MAX - 1`: `u64::MAX` is the callers' "nothing pending"
    /// (`classes::NEVER`), and a debt that takes longer than the clock can count (a
    /// 32 GiB request at 1 byte/s) must still read as a time to sleep until, not as none.
    pub(crate) fn ready_at(&mut self, amount: u64, now_ns: u64) -> u64 {
        self.refill(now_ns);
        let missing = self.needed(amount) - self.tokens;
        if missing <= 0 {
            return now_ns;
        }
        let rate = i128::from(self.rate);
        let wait = (missing + rate - 1) / rate;
        now_ns
            .saturating_add(u64::try_from(wait).unwrap_or(u64::MAX))
            .min(u64::MAX - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// Dispatches requests of `amount` as fast as the bucket allows for `secs` seconds
    /// of simulated time, jumping to each `ready_at`; returns the units dispatched.
    fn run(rate: u64, amount: u64, secs: u64) -> u64 {
        let mut bucket = TokenBucket::new(rate, 0);
        let (mut now, mut moved) = (0, 0);
        let end = secs * 1_000 * MS;
        while now <= end {
            now = bucket.ready_at(amount, now);
            if now > end {
                break;
            }
            assert!(bucket.ready(amount, now));
            bucket.take(amount);
            moved += amount;
        }
        moved
    }

    #[test]
    fn long_run_rate_is_exact_for_small_and_large_requests() {
        // 20 MB/s of 64 KiB writes: 10 ms of rate = 200,000 bytes > one request.
        let moved = run(20_000_000, 65536, 10);
        let expected = 20_000_000 * 10 + 200_000; // plus the initial burst
        assert!(moved.abs_diff(expected) <= 65536, "{moved} vs {expected}");
        // 1 MB/s of 1 MiB requests: larger than the 10 ms burst (10,000 bytes); each
        // goes on a full bucket and leaves a debt.
        let moved = run(1_000_000, 1 << 20, 20);
        assert!(moved.abs_diff(20_000_000) <= 1 << 20, "{moved}");
        // 50 IOPS: the burst is one request.
        assert_eq!(run(50, 1, 10), 501);
    }

    #[test]
    fn burst_is_ten_ms_of_the_rate_or_one_request() {
        let mut bucket = TokenBucket::new(100_000, 0); // 1000 requests per 10 ms
        let mut n = 0;
        while bucket.ready(1, 0) {
            bucket.take(1);
            n += 1;
        }
        assert_eq!(n, 1000);
        // 10 IOPS: 10 ms is a tenth of a request; one request may still go at once.
        let mut slow = TokenBucket::new(10, 0);
        assert!(slow.ready(1, 0));
        slow.take(1);
        assert!(!slow.ready(1, 0));
        // It left a debt of 0.9 request: the next waits until the bucket is full again.
        assert_eq!(slow.ready_at(1, 0), 100 * MS);
    }

    #[test]
    fn a_debt_longer_than_the_clock_counts_is_still_a_time() {
        // 1 byte/s and a 32 GiB request taken on credit: the next request waits about
        // 1,100 years, more than u64 ns hold; it must not read as u64::MAX ("never").
        let mut bucket = TokenBucket::new(1, 0);
        assert!(bucket.ready(1 << 35, 0));
        bucket.take(1 << 35);
        assert_eq!(bucket.ready_at(4096, 1), u64::MAX - 1);
    }

    #[test]
    fn an_idle_bucket_banks_no_more_than_the_burst() {
        let mut bucket = TokenBucket::new(1000, 0);
        assert_eq!(bucket.ready_at(1, 3_600 * 1000 * MS), 3_600 * 1000 * MS);
        let mut n = 0;
        while bucket.ready(1, 3_600 * 1000 * MS) {
            bucket.take(1);
            n += 1;
        }
        assert_eq!(n, 10);
    }

    #[test]
    fn a_new_rate_keeps_tokens_within_the_new_burst() {
        let mut bucket = TokenBucket::new(1_000_000, 0);
        bucket.set_rate(1000, 0);
        assert_eq!(bucket.rate(), 1000);
        let mut n = 0;
        while bucket.ready(1, 0) {
            bucket.take(1);
            n += 1;
        }
        assert_eq!(n, 10);
    }
}
