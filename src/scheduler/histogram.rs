//! A log-linear latency histogram (DESIGN §6.1 statistics): 32 linear buckets per power
//! of two, so a bucket's middle is within 1/64 (1.6 %) of any value in it, from 1 ns
//! exactly up to 2^44 ns (4.9 hours: far above the 60 s the contract asks for, since a
//! rate-limited class may hold a request for minutes); larger values share one last
//! bucket, which reads as the largest value recorded. Recording is one relaxed atomic
//! add on a fixed array (10 KiB): no allocation, no lock.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::error::{Error, try_vec};

/// Values below this have a bucket each.
const LINEAR: u64 = 64;
/// Sub-buckets per power of two above `LINEAR`.
const SUB_BITS: u32 = 5;
/// Powers of two covered above `LINEAR` (2^6 .. 2^44).
const OCTAVES: usize = 38;
/// The last bucket: every value above `MAX_TRACKED_NS`.
const OVERFLOW: usize = LINEAR as usize + (OCTAVES << SUB_BITS);
const BUCKETS: usize = OVERFLOW + 1;
/// The largest value with a bucket of its own range.
const MAX_TRACKED_NS: u64 = (1 << 44) - 1;

pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
}

fn bucket_of(v: u64) -> usize {
    if v > MAX_TRACKED_NS {
        return OVERFLOW;
    }
    if v < LINEAR {
        return v as usize;
    }
    let octave = 63 - v.leading_zeros(); // >= 6
    let sub = (v >> (octave - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    LINEAR as usize + (((octave - 6) as usize) << SUB_BITS) + sub as usize
}

/// The value a bucket stands for: its middle (its only value below `LINEAR`); the
/// overflow bucket stands for "above the range", which `percentiles` clamps to the
/// largest value recorded.
fn value_of(bucket: usize) -> u64 {
    if bucket == OVERFLOW {
        return u64::MAX;
    }
    if bucket < LINEAR as usize {
        return bucket as u64;
    }
    let above = bucket - LINEAR as usize;
    let octave = (above >> SUB_BITS) as u32 + 6;
    let sub = (above & ((1 << SUB_BITS) - 1)) as u64;
    let width = 1u64 << (octave - SUB_BITS);
    ((1 << SUB_BITS) + sub) * width + width / 2
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Histogram {
    /// `default`, or `OutOfMemory` instead of the allocation-failure abort (at open).
    pub(crate) fn try_new() -> Result<Self, Error> {
        Ok(Histogram {
            buckets: try_vec(BUCKETS, |_| AtomicU64::new(0))?.into_boxed_slice(),
        })
    }
}

impl Histogram {
    pub(crate) fn record(&self, ns: u64) {
        self.buckets[bucket_of(ns)].fetch_add(1, Relaxed);
    }

    /// The counts (zeroing them with `reset`).
    fn snapshot(&self, reset: bool) -> Vec<u64> {
        self.buckets
            .iter()
            .map(|b| {
                if reset {
                    b.swap(0, Relaxed)
                } else {
                    b.load(Relaxed)
                }
            })
            .collect()
    }

    /// The values at quantiles `qs` (each in (0, 1], as per-mille to stay exact: 500 =
    /// p50, 999 = p99.9), each clamped to `max_ns`; zeros when nothing was recorded.
    pub(crate) fn percentiles<const N: usize>(
        &self,
        per_mille: [u64; N],
        max_ns: u64,
        reset: bool,
    ) -> [u64; N] {
        let counts = self.snapshot(reset);
        let total: u64 = counts.iter().sum();
        let mut out = [0; N];
        if total == 0 {
            return out;
        }
        for (slot, q) in out.iter_mut().zip(per_mille) {
            // The smallest value with at least q of the samples at or below it.
            let rank = (total * q).div_ceil(1000).max(1);
            let mut seen = 0;
            for (bucket, &count) in counts.iter().enumerate() {
                seen += count;
                if seen >= rank {
                    *slot = value_of(bucket).min(max_ns);
                    break;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_from_1us_to_60s_is_within_3_percent_of_its_bucket() {
        let mut v = 1_000u64;
        while v <= 60_000_000_000 {
            let got = value_of(bucket_of(v));
            let err = got.abs_diff(v) as f64 / v as f64;
            assert!(err <= 1.0 / 64.0 + 1e-12, "{v} -> {got}: {err}");
            v += v / 97 + 1;
        }
        for v in 0..LINEAR {
            assert_eq!(value_of(bucket_of(v)), v);
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_of(MAX_TRACKED_NS + 1), OVERFLOW);
        assert!(bucket_of(MAX_TRACKED_NS) < OVERFLOW);
        // Buckets are in value order.
        for b in 1..BUCKETS {
            assert!(value_of(b) > value_of(b - 1));
        }
    }

    #[test]
    fn latencies_of_minutes_and_hours_keep_their_precision() {
        // A rate-limited class holds requests for minutes: 40 s, 80 s, 10 min and 4 h
        // must read back within the buckets' 1.6 %, not at a ceiling.
        for v in [
            40_000_000_000u64,
            80_000_000_000,
            600_000_000_000,
            14_400_000_000_000,
        ] {
            let got = value_of(bucket_of(v));
            assert!(
                got.abs_diff(v) as f64 / v as f64 <= 1.0 / 64.0,
                "{v} -> {got}"
            );
        }
        let h = Histogram::default();
        for v in [1_000_000u64, 40_000_000_000, 80_000_000_000] {
            h.record(v);
        }
        let [p50, p99] = h.percentiles([500, 990], 80_000_000_000, false);
        assert!(p50.abs_diff(40_000_000_000) <= 40_000_000_000 / 64, "{p50}");
        assert!(p99.abs_diff(80_000_000_000) <= 80_000_000_000 / 64, "{p99}");
        // Beyond the range (about 5 hours) a percentile reads as the largest value.
        let beyond = (1u64 << 44) + 12_345;
        h.record(beyond);
        assert_eq!(h.percentiles([1000], beyond, false), [beyond]);
    }

    #[test]
    fn percentiles_by_rank_clamped_to_max_and_reset() {
        let h = Histogram::default();
        assert_eq!(h.percentiles([500, 990], 0, false), [0, 0]);
        for us in 1..=1000u64 {
            h.record(us * 1000);
        }
        let max = 1_000_000;
        let [p50, p99, p999, p100] = h.percentiles([500, 990, 999, 1000], max, false);
        for (got, want) in [(p50, 500_000u64), (p99, 990_000), (p999, 999_000)] {
            assert!(
                got.abs_diff(want) as f64 / want as f64 <= 0.016,
                "{got} vs {want}"
            );
        }
        assert_eq!(
            p100, max,
            "a bucket value above the largest sample is clamped"
        );
        assert_ne!(h.percentiles([500], max, true), [0]);
        assert_eq!(h.percentiles([500], max, false), [0], "reset zeroed it");
    }
}
