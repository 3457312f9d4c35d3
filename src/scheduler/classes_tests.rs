use super::*;
use QueueClass::{High, Read, Write};

/// A queued item: (class, bytes, label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct It(u16, u64, u32);

impl Costed for It {
    fn bytes(&self) -> u64 {
        self.1
    }
}

fn cfg(weight: u32) -> ClassConfig {
    ClassConfig::new(weight, -1, 0, 0).unwrap()
}

fn limited(iops: u64, bytes: u64) -> ClassConfig {
    ClassConfig::new(100, -1, iops, bytes).unwrap()
}

fn round(q: &mut ClassQueues<It>, room: usize, now: u64) -> Vec<It> {
    let mut got = Vec::new();
    q.take_round(room, || now, |item, _| got.push(item));
    got
}

/// A tiny deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn unclassed_dispatch_is_the_1_0_rule_exactly() {
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let mut classed: ClassQueues<It> = ClassQueues::new(0);
    let mut plain: Queues<It> = Queues::default();
    let mut positions = Vec::new();
    for step in 0..20_000u32 {
        match rng.below(10) {
            0..=5 => {
                let kind = [High, Read, Write, Read, Write][rng.below(5) as usize];
                let item = It(0, rng.below(1 << 20), step);
                let a = classed.push(0, kind, item);
                let b = plain.push(kind, item);
                positions.push((a, b));
            }
            6 if !positions.is_empty() => {
                let (a, b) = positions[rng.below(positions.len() as u64) as usize];
                assert_eq!(classed.take(a), plain.take(b));
            }
            _ => {
                let room = rng.below(9) as usize;
                let mut want = Vec::new();
                plain.take_round(room, |item| want.push(item));
                let mut read_clock = false;
                let mut got = Vec::new();
                classed.take_round(
                    room,
                    || {
                        read_clock = true;
                        0
                    },
                    |item, ioprio| {
                        assert_eq!(ioprio, 0);
                        got.push(item)
                    },
                );
                assert_eq!(got, want, "step {step}");
                assert!(!read_clock, "an unclassed round reads no clock");
            }
        }
    }
}

/// Dispatches `n` requests one per round from classes kept backlogged with requests
/// whose size `size(class, k)` gives; checks after every dispatch that each class is
/// within `bound` (in cost units) of its weighted share of the cost dispatched, and
/// returns the cost each class got.
fn backlogged_shares(
    weights: &[u32],
    n: usize,
    size: &mut impl FnMut(usize, usize) -> u64,
    bound: impl Fn(u128) -> u128,
) -> Vec<u128> {
    let mut q: ClassQueues<It> = ClassQueues::new(0);
    for &w in &weights[1..] {
        q.open(cfg(w), 0).unwrap();
    }
    q.update(0, cfg(weights[0]), 0);
    let total_weight: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    let mut pushed = vec![0; weights.len()];
    let mut got = vec![0u128; weights.len()];
    let mut max_cost = 0u128;
    let refill = |q: &mut ClassQueues<It>,
                  pushed: &mut Vec<usize>,
                  size: &mut dyn FnMut(usize, usize) -> u64| {
        for (class, count) in pushed.iter_mut().enumerate() {
            while q.class_len(class as u16) < 2 {
                let bytes = size(class, *count);
                let kind = if count.is_multiple_of(3) { Write } else { Read };
                q.push(class as u16, kind, It(class as u16, bytes, 0));
                *count += 1;
            }
        }
    };
    refill(&mut q, &mut pushed, size);
    for i in 0..n {
        let items = round(&mut q, 1, 0);
        assert_eq!(items.len(), 1);
        let It(class, bytes, _) = items[0];
        let cost = cost_fp(bytes);
        max_cost = max_cost.max(cost);
        got[usize::from(class)] += cost;
        let total: u128 = got.iter().sum();
        for (c, &w) in weights.iter().enumerate() {
            let share = total * u128::from(w) / total_weight;
            let off = got[c].abs_diff(share);
            assert!(
                off <= bound(max_cost),
                "dispatch {i}: class {c} got {} vs share {share} (max cost {max_cost})",
                got[c]
            );
        }
        refill(&mut q, &mut pushed, size);
    }
    got
}

#[test]
fn two_backlogged_classes_stay_within_one_max_cost_of_their_share() {
    // 300:100 with equal 4k requests: exactly 3 to 1.
    let got = backlogged_shares(&[300, 100], 4000, &mut |_, _| 4096, |c| c);
    let cost = cost_fp(4096);
    assert_eq!((got[0] / cost, got[1] / cost), (3000, 1000));
    // 1:1, 4k against 128k: equal cost.
    backlogged_shares(&[100, 100], 5000, &mut |c, _| [4096, 131072][c], |c| c);
    // Random sizes and weights.
    let mut rng = Rng(7);
    for _ in 0..20 {
        let weights = [1 + rng.below(10_000) as u32, 1 + rng.below(10_000) as u32];
        let mut sizes = Rng(rng.next() | 1);
        backlogged_shares(&weights, 3000, &mut |_, _| sizes.below(1 << 20), |c| c);
    }
}

#[test]
fn many_backlogged_classes_stay_within_the_sfq_bound() {
    // SFQ's proven bound for k classes is looser ((w_i/Σw)·Σ_j c_j); DESIGN §6.1's
    // "one maximum request cost" holds in these runs all the same.
    let mut rng = Rng(11);
    for k in 3..=6usize {
        let weights: Vec<u32> = (0..k).map(|_| 1 + rng.below(1000) as u32).collect();
        let mut sizes = Rng(rng.next() | 1);
        backlogged_shares(&weights, 4000, &mut |_, _| sizes.below(1 << 18), |c| c);
        let equal = vec![100; k];
        let mut sizes = Rng(rng.next() | 1);
        backlogged_shares(&equal, 4000, &mut |_, _| sizes.below(1 << 18), |c| c);
    }
}

#[test]
fn an_idle_class_banks_no_credit() {
    let mut q: ClassQueues<It> = ClassQueues::new(0);
    let b = q.open(cfg(100), 0).unwrap();
    for _ in 0..2000 {
        q.push(0, Read, It(0, 0, 0));
    }
    // Class 0 alone for 1000 dispatches: class 1 idle.
    for _ in 0..1000 {
        assert_eq!(round(&mut q, 1, 0)[0].0, 0);
    }
    for _ in 0..1000 {
        q.push(b, Read, It(b, 0, 0));
    }
    // From now on they alternate: no burst for the newcomer, no debt for class 0.
    let order: Vec<u16> = (0..100).map(|_| round(&mut q, 1, 0)[0].0).collect();
    let ones = order.iter().filter(|&&c| c == 1).count();
    assert!(ones.abs_diff(50) <= 1, "{order:?}");
    assert!(
        order.windows(3).all(|w| !(w[0] == w[1] && w[1] == w[2])),
        "{order:?}"
    );
}

#[test]
fn read_and_write_alternate_inside_a_class() {
    let mut q: ClassQueues<It> = ClassQueues::new(0);
    let b = q.open(cfg(100), 0).unwrap();
    for i in 0..8 {
        q.push(b, Read, It(b, 0, i));
        q.push(b, Write, It(b, 1, i));
    }
    // Only class 1 has work; depth 1: READ, WRITE, READ, ... as the seed's rule gives.
    let kinds: Vec<u64> = (0..16).map(|_| round(&mut q, 1, 0)[0].1).collect();
    assert_eq!(kinds, [0, 1].repeat(8));
}

#[test]
fn high_goes_first_across_classes_taking_turns() {
    let mut q: ClassQueues<It> = ClassQueues::new(0);
    let b = q.open(cfg(100), 0).unwrap();
    q.push(0, Read, It(0, 0, 0));
    q.push(b, Read, It(b, 0, 1));
    for i in 0..3 {
        q.push(0, High, It(0, 0, 10 + i));
        q.push(b, High, It(b, 0, 20 + i));
    }
    let labels: Vec<u32> = round(&mut q, 8, 0).iter().map(|it| it.2).collect();
    assert_eq!(labels, [10, 20, 11, 21, 12, 22, 0, 1]);
}

/// Over every window of contested dispatches NORMAL gets floor(p·n/100) or one more.
fn check_guard(p: u32, rooms: &[usize], contested: usize) {
    let mut q: ClassQueues<It> = ClassQueues::new(p);
    let mut seq = Vec::new(); // true = NORMAL
    let mut rooms = rooms.iter().cycle();
    while seq.len() < contested {
        while q.lens().0 < 64 {
            q.push(0, High, It(0, 0, 1));
        }
        while q.lens().1 < 64 {
            q.push(0, Read, It(0, 0, 0));
        }
        seq.extend(
            round(&mut q, *rooms.next().unwrap(), 0)
                .iter()
                .map(|it| it.2 == 0),
        );
    }
    let mut prefix = vec![0usize];
    for &normal in &seq {
        prefix.push(prefix.last().unwrap() + usize::from(normal));
    }
    for a in 0..seq.len() {
        for b in (a + 1..=seq.len()).step_by(7) {
            let n = b - a;
            let got = prefix[b] - prefix[a];
            let floor = p as usize * n / 100;
            assert!(
                got + 1 >= floor && got <= floor + 1,
                "p={p}: {got} NORMAL in a window of {n}"
            );
        }
    }
}

#[test]
fn starvation_guard_gives_normal_its_percent_at_any_depth() {
    for p in [1, 10, 25, 33, 50] {
        check_guard(p, &[1], 1000);
        check_guard(p, &[7, 3, 16], 1000);
        check_guard(p, &[32], 1000);
    }
    // p = 0: strict priority.
    let mut q: ClassQueues<It> = ClassQueues::new(0);
    q.push(0, Read, It(0, 0, 0));
    for _ in 0..10 {
        q.push(0, High, It(0, 0, 1));
    }
    assert!(round(&mut q, 10, 0).iter().all(|it| it.2 == 1));
}

#[test]
fn the_guard_counts_only_contested_dispatches() {
    let mut q: ClassQueues<It> = ClassQueues::new(50);
    // NORMAL alone: no credit builds.
    for _ in 0..10 {
        q.push(0, Read, It(0, 0, 0));
    }
    assert_eq!(round(&mut q, 10, 0).len(), 10);
    for _ in 0..4 {
        q.push(0, High, It(0, 0, 1));
        q.push(0, Read, It(0, 0, 0));
    }
    let labels: Vec<u32> = round(&mut q, 8, 0).iter().map(|it| it.2).collect();
    assert_eq!(labels, [1, 0, 1, 0, 1, 0, 1, 0]);
}

const MS: u64 = 1_000_000;

#[test]
fn a_limited_class_waits_for_tokens_and_the_others_use_the_room() {
    let mut q: ClassQueues<It> = ClassQueues::new(0);
    let slow = q.open(limited(1000, 0), 0).unwrap(); // 10 per 10 ms burst
    for i in 0..100 {
        q.push(slow, Read, It(slow, 0, i));
        q.push(slow, High, It(slow, 0, 1000 + i)); // HIGH is limited too
        q.push(0, Read, It(0, 0, 2000 + i));
    }
    let got = round(&mut q, 64, 0);
    let from_slow = got.iter().filter(|it| it.0 == slow).count();
    assert_eq!(from_slow, 10, "one burst");
    assert_eq!(got.len(), 64, "class 0 took the rest");
    assert!(
        got.iter().filter(|it| it.0 == slow).all(|it| it.2 >= 1000),
        "HIGH first"
    );
    // Class 0 drains; then the slow class is held until its next token (1 ms).
    let got = round(&mut q, 64, 0);
    assert_eq!(got.len(), 46);
    assert!(got.iter().all(|it| it.0 == 0));
    assert_eq!(q.held(), 190);
    assert_eq!(q.refill_at(), MS);
    assert!(round(&mut q, 64, MS - 1).is_empty());
    assert_eq!(round(&mut q, 64, MS).len(), 1);
    // Over a simulated second it gets 1000 more.
    for i in 0..2000 {
        q.push(slow, Read, It(slow, 0, 3000 + i));
    }
    let mut now = MS;
    let mut n = 0;
    while now < 1001 * MS {
        n += round(&mut q, 64, now).len();
        now = q.refill_at().max(now + 1);
    }
    assert!(n.abs_diff(1000) <= 2, "{n}");
    assert!(q.throttled_ns(slow, now, false) > 990 * MS);
}

#[test]
fn bytes_limit_paces_by_bytes() {
    let mut q: ClassQueues<It> = ClassQueues::new(0);
    let c = q.open(limited(0, 20_000_000), 0).unwrap();
    for i in 0..10_000 {
        q.push(c, Write, It(c, 65536, i));
    }
    let (mut now, mut bytes) = (0, 0u64);
    while now <= 1000 * MS {
        bytes += round(&mut q, 32, now).iter().map(|it| it.1).sum::<u64>();
        now = q.refill_at();
    }
    // One second at 20 MB/s plus the initial 10 ms burst, within one request.
    assert!(bytes.abs_diff(20_200_000) <= 65536, "{bytes}");
}

#[test]
fn removing_held_requests_lets_the_next_round_decide_again() {
    let mut q: ClassQueues<It> = ClassQueues::new(0);
    let c = q.open(limited(100, 0), 0).unwrap();
    let at: Vec<_> = (0..5).map(|i| q.push(c, Read, It(c, 0, i))).collect();
    assert_eq!(round(&mut q, 8, 0).len(), 1);
    assert_eq!((q.held(), q.refill_at()), (4, 10 * MS));
    // A removal from a held class clears what the last round found (the removed one
    // may be what the class waited for); the next round finds it again.
    assert!(q.take(at[3]).is_some());
    assert_eq!((q.held(), q.refill_at()), (0, NEVER));
    assert!(round(&mut q, 8, MS).is_empty());
    assert_eq!((q.held(), q.refill_at()), (3, 10 * MS));
    q.remove_where(|it| it.2 == 4, |_| {});
    assert_eq!((q.held(), q.refill_at()), (0, NEVER));
    assert!(round(&mut q, 8, MS).is_empty());
    assert_eq!((q.held(), q.refill_at()), (2, 10 * MS));
    assert_eq!(q.len(), 2);
}

#[test]
fn a_held_high_request_that_leaves_frees_its_class_normal_requests_at_their_own_time() {
    let mut q: ClassQueues<It> = ClassQueues::new(0);
    let c = q.open(limited(0, 1000), 0).unwrap(); // 1000 B/s: a burst of 10 bytes
    q.push(c, Read, It(c, 100, 0));
    assert_eq!(
        round(&mut q, 8, 0).len(),
        1,
        "the first goes, 90 bytes in debt"
    );
    // A HIGH of 4096 bytes may go at 100 ms (a full bucket); 1-byte NORMAL reads, at
    // 91 ms, wait behind it.
    let high = q.push(c, High, It(c, 4096, 1));
    for i in 2..5 {
        q.push(c, Read, It(c, 1, i));
    }
    assert!(round(&mut q, 8, 20 * MS).is_empty());
    assert_eq!((q.held(), q.refill_at()), (4, 100 * MS));
    // The HIGH is cancelled (or times out): its class's NORMAL requests are due at
    // their own time, not the HIGH's.
    // Until a round runs, nothing may claim they are held (or the engine would run no
    // round before the HIGH's time: `dispatchable` = queued - held).
    assert!(q.take(high).is_some());
    assert_eq!((q.held(), q.refill_at()), (0, NEVER));
    assert!(round(&mut q, 8, 20 * MS).is_empty());
    assert_eq!((q.held(), q.refill_at()), (3, 91 * MS));
    assert_eq!(round(&mut q, 8, 91 * MS).len(), 1);
}

#[test]
fn a_class_emptied_by_removals_is_held_no_longer() {
    let mut q: ClassQueues<It> = ClassQueues::new(0);
    let c = q.open(limited(100, 0), 0).unwrap();
    let other = q.open(limited(100, 0), 0).unwrap();
    for i in 0..3 {
        q.push(c, Read, It(c, 0, i));
        q.push(other, Read, It(other, 0, 10 + i));
    }
    // One token each (the next in 10 ms): both held from this round on. Then `c` is
    // emptied at 5 ms; `other` keeps its two.
    assert_eq!(round(&mut q, 8, 0).len(), 2);
    assert_eq!(q.held(), 4);
    q.remove_where(|it| it.0 == c, |_| {});
    let mut read_clock = false;
    q.end_emptied_holds(|| {
        read_clock = true;
        5 * MS
    });
    assert!(read_clock, "a class was emptied");
    assert_eq!(
        q.throttled_ns(c, 9 * MS, false),
        5 * MS,
        "stopped at the removal"
    );
    assert_eq!(q.throttled_ns(other, 9 * MS, false), 9 * MS, "still held");
    // Nothing emptied since: no clock read, nothing changes.
    q.end_emptied_holds(|| unreachable!("no class was emptied"));
    assert_eq!(q.throttled_ns(c, 9 * MS, false), 5 * MS);
}

#[test]
fn live_update_changes_weight_and_limits_at_the_next_round() {
    let mut q: ClassQueues<It> = ClassQueues::new(0);
    let c = q.open(limited(100, 0), 0).unwrap();
    for i in 0..50 {
        q.push(c, Read, It(c, 0, i));
    }
    assert_eq!(round(&mut q, 64, 0).len(), 1);
    q.update(c, cfg(100), 0);
    assert_eq!(q.held(), 0);
    assert_eq!(round(&mut q, 64, 0).len(), 49);
    // Class 0 can be reconfigured too, and that alone makes the engine classed.
    let mut q: ClassQueues<It> = ClassQueues::new(0);
    q.update(0, limited(100, 0), 0);
    for i in 0..5 {
        q.push(0, Read, It(0, 0, i));
    }
    assert_eq!(round(&mut q, 8, 0).len(), 1);
    assert_eq!(q.config(0).iops_limit, 100);
}

#[test]
fn at_most_63_classes_open() {
    let mut q: ClassQueues<It> = ClassQueues::new(0);
    for id in 1..64u16 {
        assert_eq!(q.open(cfg(1), 0), Ok(id));
    }
    assert_eq!(q.open(cfg(1), 0), Err(()));
    assert!(q.exists(63) && !q.exists(64));
}

#[test]
fn class_config_bounds() {
    assert!(ClassConfig::new(0, -1, 0, 0).is_err());
    assert!(ClassConfig::new(10_001, -1, 0, 0).is_err());
    assert!(ClassConfig::new(1, -1, 0, 0).is_ok());
    assert!(ClassConfig::new(10_000, -1, 0, 0).is_ok());
    let prio = |class: i32, level: i32| (class << 13) | level;
    for class in 1..=3 {
        for level in 0..=7 {
            assert_eq!(
                ClassConfig::new(100, prio(class, level), 0, 0)
                    .unwrap()
                    .ioprio,
                prio(class, level) as u16
            );
        }
        assert!(ClassConfig::new(100, prio(class, 8), 0, 0).is_err());
    }
    for bad in [-2, 0, 7, prio(4, 0), prio(0, 3), i32::MAX] {
        assert!(ClassConfig::new(100, bad, 0, 0).is_err(), "{bad}");
    }
}

#[test]
fn the_kernel_ioprio_goes_with_each_request() {
    let mut q: ClassQueues<It> = ClassQueues::new(0);
    let c = q
        .open(ClassConfig::new(100, (2 << 13) | 4, 0, 0).unwrap(), 0)
        .unwrap();
    q.push(c, Read, It(c, 0, 0));
    q.push(0, Read, It(0, 0, 1));
    let mut got = Vec::new();
    q.take_round(8, || 0, |item, ioprio| got.push((item.0, ioprio)));
    assert_eq!(got, [(0, 0), (1, (2 << 13) | 4)]);
}

#[test]
fn removing_the_last_limit_ends_the_held_period_then() {
    let mut q: ClassQueues<It> = ClassQueues::new(0);
    let c = q.open(limited(10, 0), 0).unwrap(); // one now, then one per 100 ms
    for i in 0..5 {
        q.push(c, Read, It(c, 0, i));
    }
    assert_eq!(round(&mut q, 8, 0).len(), 1);
    assert_eq!(round(&mut q, 8, 100 * MS).len(), 1);
    assert_eq!(q.throttled_ns(c, 150 * MS, false), 150 * MS);
    // No class is limited from here on: rounds read no clock.
    q.update(c, cfg(100), 150 * MS);
    q.take_round(8, || unreachable!("no class is limited"), |_, _| {});
    assert_eq!(q.len(), 0);
    assert_eq!(
        q.throttled_ns(c, 200 * MS, false),
        150 * MS,
        "held until the update"
    );
}

#[test]
fn class_0_back_to_unclassed_stops_its_throttled_time() {
    let mut q: ClassQueues<It> = ClassQueues::new(0);
    q.update(0, limited(10, 0), 0);
    for i in 0..5 {
        q.push(0, Read, It(0, 0, i));
    }
    assert_eq!(round(&mut q, 8, 0).len(), 1);
    // Its limit removed: the unclassed rounds never look at throttled time again.
    q.update(0, ClassConfig::default(), 150 * MS);
    assert!(!q.is_classed());
    assert_eq!(round(&mut q, 8, 0).len(), 4);
    assert_eq!(q.throttled_ns(0, 10_000 * MS, false), 150 * MS);
}

#[test]
fn a_held_high_request_keeps_its_class_normal_requests_behind_it() {
    let mut q: ClassQueues<It> = ClassQueues::new(0);
    let c = q.open(limited(0, 1_000_000), 0).unwrap(); // burst 10,000 bytes
    for i in 0..200 {
        q.push(c, Read, It(c, 512, i));
        q.push(0, Read, It(0, 512, 1000 + i));
    }
    // The burst goes (19 of 512 bytes, 272 left), class 0 beside it.
    let got = round(&mut q, 64, 0);
    assert_eq!(got.iter().filter(|it| it.0 == c).count(), 19);
    // A HIGH request larger than the burst needs a full bucket: 9,728 bytes more,
    // 9.728 ms. Meanwhile no NORMAL request of its class may take the tokens; class 0's
    // NORMAL ones go (the limit is the class's own).
    q.push(c, High, It(c, 65536, 9999));
    let got = round(&mut q, 64, MS);
    assert!(got.iter().all(|it| it.0 == 0), "{got:?}");
    assert!(!got.is_empty());
    while q.class_len(0) != 0 {
        round(&mut q, 64, MS);
    }
    // Held whole (not a spin on a NORMAL request that could go), until the HIGH may.
    assert_eq!(q.held(), q.class_len(c));
    assert_eq!(q.refill_at(), 9_728_000);
    assert!(round(&mut q, 64, 9_728_000 - 1).is_empty());
    assert_eq!(round(&mut q, 64, 9_728_000)[0].2, 9999);
}

#[test]
fn a_raised_weight_applies_from_the_next_dispatch() {
    let mut q: ClassQueues<It> = ClassQueues::new(0);
    let a = q.open(cfg(100), 0).unwrap();
    let b = q.open(cfg(1), 0).unwrap();
    for i in 0..300 {
        q.push(a, Read, It(a, 4096, i));
        q.push(b, Read, It(b, 4096, i));
    }
    let order: Vec<u16> = (0..3).map(|_| round(&mut q, 1, 0)[0].0).collect();
    assert_eq!(order, [a, b, a]);
    // b's tag is 100 of a's steps ahead; at weight 10000 its rest is under one of them.
    q.update(b, cfg(10_000), 0);
    let order: Vec<u16> = (0..101).map(|_| round(&mut q, 1, 0)[0].0).collect();
    assert_eq!(order[0], b, "{order:?}");
    assert!(order.iter().filter(|&&c| c == b).count() >= 99, "{order:?}");
}

#[test]
fn toggling_a_weight_banks_no_credit() {
    let mut q: ClassQueues<It> = ClassQueues::new(0);
    let b = q.open(cfg(100), 0).unwrap();
    for i in 0..1000 {
        q.push(0, Read, It(0, 4096, i));
        q.push(b, Read, It(b, 4096, i));
    }
    // Up to 10000 and back before each dispatch: still equal shares.
    let mut ones = 0;
    for n in 1..=1000 {
        q.update(b, cfg(10_000), 0);
        q.update(b, cfg(100), 0);
        ones += usize::from(round(&mut q, 1, 0)[0].0 == b);
        assert!(ones.abs_diff(n / 2) <= 1, "{ones} of {n}");
    }
}
