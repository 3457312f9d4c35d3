//! IO classes (DESIGN §6.1, docs/ARCHITECTURE.md "IO classes"): the class table and the
//! dispatch order across classes — HIGH first (with the starvation guard), then weighted
//! fair queueing of the NORMAL requests, under each class's rate limits.
//!
//! Each class keeps its own `common::Queues` (HIGH, READ, WRITE). Until a class is opened
//! (or class 0 reconfigured, or `normal_min_percent` set) the engine is *unclassed*: every
//! call goes straight to class 0's `Queues`, so the order is the 1.0 rule bit for bit and
//! nothing here costs a clock read or an allocation.
//!
//! Classed, each dispatch picks one request:
//! - HIGH candidates are the HIGH fronts of classes whose limits let them go; NORMAL
//!   candidates the next NORMAL request (READ/WRITE by the seed's rule inside the class)
//!   of such classes, except a class whose HIGH front its limits hold: its NORMAL
//!   requests wait behind that HIGH (else they would spend its tokens as they come).
//! - Both waiting: with `normal_min_percent` p > 0 every such dispatch adds p to a credit,
//!   and once it reaches 100 the dispatch is NORMAL's (credit − 100); else HIGH's. So over
//!   any n contested dispatches NORMAL gets floor(p·n/100) or one more. p = 0: HIGH always.
//! - HIGH of different classes take turns (round robin, one request each).
//! - NORMAL by start-time fair queueing: each class has a start tag; the smallest goes
//!   (ties: the lower id), the virtual time becomes that tag, and the tag grows by
//!   cost/weight, cost = 1 + bytes/65536 (in 1/65536 units: exact). A class that becomes
//!   backlogged, or allowed again by its limits, starts at the virtual time: idle or
//!   throttled time banks no credit. A new weight re-prices what its tag is ahead of the
//!   virtual time (see `update`).

use super::common::{QueuePosition, Queues};
use super::tasks::{IoEvent, QueueClass};
use super::token_bucket::TokenBucket;
use crate::error::Error;

/// Class ids 0..MAX_CLASSES; 0 always exists.
pub(crate) const MAX_CLASSES: usize = 64;
pub(crate) const DEFAULT_WEIGHT: u32 = 100;
pub(crate) const MAX_WEIGHT: u32 = 10_000;
pub(crate) const MAX_NORMAL_MIN_PERCENT: u32 = 50;
/// "No refill pending" in `refill_at`.
pub(crate) const NEVER: u64 = u64::MAX;

/// A request's cost in 1/65536 units: 65536 + bytes (= 1 + bytes/65536, exactly).
pub(crate) fn cost_fp(bytes: u64) -> u128 {
    65536 + u128::from(bytes)
}

/// Virtual time per unit of `cost_fp / weight`: weights go to 10,000, so a cost of 1
/// still advances by 6.9·10⁶, and the truncation (< 1 per dispatch) never shows.
const VSCALE: u128 = 1 << 20;

/// What the class scheduler needs of a queued item: the bytes it moves (0 for FSYNC,
/// FDATASYNC, FALLOCATE, SYNC_FILE_RANGE), for its cost and for `bytes_per_sec_limit`.
pub(crate) trait Costed {
    fn bytes(&self) -> u64;
}

impl Costed for IoEvent {
    /// What the request moves (0 for the ops that move no data: cost 1).
    fn bytes(&self) -> u64 {
        if self.request.op.transfers() {
            self.request.total
        } else {
            0
        }
    }
}

/// A validated `ioeng_class_config_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClassConfig {
    pub(crate) weight: u32,
    /// IOPRIO_PRIO_VALUE for the kernel; 0 = none (class 0 of ioprio is "none" too).
    pub(crate) ioprio: u16,
    pub(crate) iops_limit: u64,
    pub(crate) bytes_limit: u64,
}

impl Default for ClassConfig {
    fn default() -> Self {
        ClassConfig {
            weight: DEFAULT_WEIGHT,
            ioprio: 0,
            iops_limit: 0,
            bytes_limit: 0,
        }
    }
}

impl ClassConfig {
    /// Checks the C fields: weight 1..=10000; `kernel_ioprio` -1 or
    /// IOPRIO_PRIO_VALUE(class 1..=3, level 0..=7).
    pub(crate) fn new(
        weight: u32,
        kernel_ioprio: i32,
        iops_limit: u64,
        bytes_limit: u64,
    ) -> Result<Self, Error> {
        if weight == 0 || weight > MAX_WEIGHT {
            return Err(Error::InvalidArgument("weight must be 1..=10000"));
        }
        let ioprio = match kernel_ioprio {
            -1 => 0,
            v if (1 << 13..4 << 13).contains(&v) && v & 0x1fff <= 7 => v as u16,
            _ => {
                return Err(Error::InvalidArgument(
                    "kernel_ioprio: -1 or class 1..3, level 0..7",
                ));
            }
        };
        Ok(ClassConfig {
            weight,
            ioprio,
            iops_limit,
            bytes_limit,
        })
    }

    fn limited(&self) -> bool {
        self.iops_limit != 0 || self.bytes_limit != 0
    }
}

/// Where a queued item stands: its class and its place in that class's queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ClassPosition {
    class: u16,
    at: QueuePosition,
}

struct Class<T> {
    queues: Queues<T>,
    config: ClassConfig,
    /// SFQ start tag of its next NORMAL dispatch.
    start: u128,
    iops: Option<TokenBucket>,
    bytes: Option<TokenBucket>,
    /// Since when its limits hold it (CLOCK_MONOTONIC ns), while they do.
    throttled_since: Option<u64>,
    /// Time held by its limits, closed periods.
    throttled_ns: u64,
    dispatched_normal: bool,
}

fn bucket(limit: u64, old: Option<TokenBucket>, now: u64) -> Option<TokenBucket> {
    match (limit, old) {
        (0, _) => None,
        (rate, Some(mut b)) => {
            b.set_rate(rate, now);
            Some(b)
        }
        (rate, None) => Some(TokenBucket::new(rate, now)),
    }
}

impl<T: Costed> Class<T> {
    fn new(config: ClassConfig, vtime: u128, now: u64) -> Self {
        Class {
            queues: Queues::default(),
            config,
            start: vtime,
            iops: bucket(config.iops_limit, None, now),
            bytes: bucket(config.bytes_limit, None, now),
            throttled_since: None,
            throttled_ns: 0,
            dispatched_normal: false,
        }
    }

    fn len(&self) -> usize {
        self.queues.len()
    }

    /// Whether its limits let a request of `bytes` go at `now`.
    fn allowed(&mut self, bytes: u64, now: u64) -> bool {
        self.iops.as_mut().is_none_or(|b| b.ready(1, now))
            && self.bytes.as_mut().is_none_or(|b| b.ready(bytes, now))
    }

    fn charge(&mut self, bytes: u64) {
        if let Some(b) = &mut self.iops {
            b.take(1);
        }
        if let Some(b) = &mut self.bytes {
            b.take(bytes);
        }
    }

    fn ready_at(&mut self, bytes: u64, now: u64) -> u64 {
        let iops = self.iops.as_mut().map_or(now, |b| b.ready_at(1, now));
        let by_bytes = self.bytes.as_mut().map_or(now, |b| b.ready_at(bytes, now));
        iops.max(by_bytes)
    }

    /// The bytes of its HIGH and NORMAL candidates.
    fn fronts(&self) -> (Option<u64>, Option<u64>) {
        (
            self.queues.front_high().map(Costed::bytes),
            self.queues.front_normal().map(Costed::bytes),
        )
    }

    /// Whether its limits let its HIGH front and its next NORMAL request go at `now`.
    /// While its HIGH front is held, its NORMAL requests wait too: small ones would
    /// spend the tokens as they come, and a HIGH request larger than the burst (which
    /// needs a full bucket) would wait for them all.
    fn candidates(&mut self, now: u64) -> (bool, bool) {
        let (high_bytes, normal_bytes) = self.fronts();
        let high_ok = high_bytes.is_some_and(|b| self.allowed(b, now));
        let normal_ok =
            (high_ok || high_bytes.is_none()) && normal_bytes.is_some_and(|b| self.allowed(b, now));
        (high_ok, normal_ok)
    }
}

/// The queues of every class, and the cross-class dispatch state.
pub(crate) struct ClassQueues<T> {
    /// Indexed by class id; `classes[0]` always exists, the rest as opened.
    classes: Vec<Class<T>>,
    /// False while the engine behaves as 1.0 (see the module comment).
    classed: bool,
    /// Some class has a limit: rounds read the clock.
    limited: bool,
    /// SFQ virtual time: the start tag of the last NORMAL dispatch.
    vtime: u128,
    normal_min_percent: u32,
    /// NORMAL's starvation-guard credit, in percent.
    credit: u32,
    /// Where the HIGH round robin looks first.
    high_next: usize,
    /// Requests in classes held by their limits after the last round.
    held: usize,
    /// When the earliest held class may go again (`NEVER`: none held).
    refill_at: u64,
}

impl<T: Costed> ClassQueues<T> {
    pub(crate) fn new(normal_min_percent: u32) -> Self {
        debug_assert!(normal_min_percent <= MAX_NORMAL_MIN_PERCENT);
        ClassQueues {
            classes: vec![Class::new(ClassConfig::default(), 0, 0)],
            classed: normal_min_percent != 0,
            limited: false,
            vtime: 0,
            normal_min_percent,
            credit: 0,
            high_next: 0,
            held: 0,
            refill_at: NEVER,
        }
    }

    fn recompute_modes(&mut self) {
        self.limited = self.classes.iter().any(|c| c.config.limited());
        self.classed = self.classes.len() > 1
            || self.normal_min_percent != 0
            || self.classes[0].config != ClassConfig::default();
    }

    /// Opens the next class; `Err(())` when all 63 are open.
    pub(crate) fn open(&mut self, config: ClassConfig, now: u64) -> Result<u16, ()> {
        if self.classes.len() >= MAX_CLASSES {
            return Err(());
        }
        self.classes.push(Class::new(config, self.vtime, now));
        self.recompute_modes();
        Ok((self.classes.len() - 1) as u16)
    }

    /// Whether `id` names a class (0 or an opened one).
    pub(crate) fn exists(&self, id: u16) -> bool {
        usize::from(id) < self.classes.len()
    }

    /// Whether anything but class 0's 1.0 order is in play (see the module comment).
    pub(crate) fn is_classed(&self) -> bool {
        self.classed
    }

    /// New settings for class `id` (which exists), from the next round on.
    pub(crate) fn update(&mut self, id: u16, config: ClassConfig, now: u64) {
        let vtime = self.vtime;
        let class = &mut self.classes[usize::from(id)];
        if class.start > vtime && config.weight != class.config.weight {
            // Its tag is ahead of the virtual time by (part of) its last step, priced at
            // the old weight: re-price that at the new one, as if it had applied at that
            // dispatch, or a raised weight would wait out the old step. Never below the
            // virtual time, and a change and its reverse cancel out: no credit banked.
            let ahead = class.start - vtime;
            class.start =
                vtime + ahead * u128::from(class.config.weight) / u128::from(config.weight);
        }
        if !config.limited()
            && let Some(since) = class.throttled_since.take()
        {
            // No limit holds it any more: its held period ends now. No later round would
            // end it: with no class limited they read no clock, unclassed they run none.
            class.throttled_ns += now.saturating_sub(since);
        }
        class.iops = bucket(config.iops_limit, class.iops.take(), now);
        class.bytes = bucket(config.bytes_limit, class.bytes.take(), now);
        class.config = config;
        self.recompute_modes();
        self.forget_holds();
    }

    #[cfg(test)]
    pub(crate) fn config(&self, id: u16) -> ClassConfig {
        self.classes[usize::from(id)].config
    }

    /// Queues `item` (of queue `kind`) in class `id`, which exists.
    pub(crate) fn push(&mut self, id: u16, kind: QueueClass, item: T) -> ClassPosition {
        let vtime = self.vtime;
        let class = &mut self.classes[usize::from(id)];
        if kind != QueueClass::High && !class.queues.has_normal() {
            // Newly backlogged: no credit from the time it was idle.
            class.start = class.start.max(vtime);
        }
        ClassPosition {
            class: id,
            at: class.queues.push(kind, item),
        }
    }

    pub(crate) fn get(&self, at: ClassPosition) -> Option<&T> {
        self.classes.get(usize::from(at.class))?.queues.get(at.at)
    }

    pub(crate) fn take(&mut self, at: ClassPosition) -> Option<T> {
        let class = self.classes.get_mut(usize::from(at.class))?;
        let item = class.queues.take(at.at)?;
        if class.throttled_since.is_some() {
            self.forget_holds();
        }
        Some(item)
    }

    /// After a removal from a held class (cancel, deadline): the removed request may be
    /// what the class waited for (a held HIGH front keeps its class's NORMAL requests
    /// behind it, and its refill time is the HIGH's), so the next round decides afresh
    /// who is held and until when, as after `update`. It costs at most a round that
    /// dispatches nothing.
    fn forget_holds(&mut self) {
        self.held = 0;
        self.refill_at = NEVER;
    }

    pub(crate) fn remove_where(
        &mut self,
        mut pred: impl FnMut(&T) -> bool,
        mut out: impl FnMut(T),
    ) {
        let mut from_held = false;
        for class in &mut self.classes {
            let mut removed = 0;
            class.queues.remove_where(&mut pred, |item| {
                removed += 1;
                out(item)
            });
            from_held |= removed > 0 && class.throttled_since.is_some();
        }
        if from_held {
            self.forget_holds();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.classes.iter().map(Class::len).sum()
    }

    /// After removals (cancel, deadlines): a class they emptied is no longer held, so its
    /// held period ends now (`now` is read only then). Without this its throttled time
    /// would grow until the next round, which an idle engine never runs.
    pub(crate) fn end_emptied_holds(&mut self, now: impl FnOnce() -> u64) {
        let emptied = |c: &Class<T>| c.len() == 0 && c.throttled_since.is_some();
        if !self.classes.iter().any(emptied) {
            return;
        }
        let now = now();
        for class in self.classes.iter_mut().filter(|c| emptied(c)) {
            if let Some(since) = class.throttled_since.take() {
                class.throttled_ns += now.saturating_sub(since);
            }
        }
    }

    /// (HIGH, READ, WRITE) lengths over all classes.
    pub(crate) fn lens(&self) -> (usize, usize, usize) {
        self.classes.iter().fold((0, 0, 0), |(h, r, w), c| {
            let (ch, cr, cw) = c.queues.lens();
            (h + ch, r + cr, w + cw)
        })
    }

    /// Requests queued in class `id`.
    pub(crate) fn class_len(&self, id: u16) -> usize {
        self.classes.get(usize::from(id)).map_or(0, Class::len)
    }

    /// Time class `id` was held by its limits up to `now` (zeroed with `reset`).
    pub(crate) fn throttled_ns(&mut self, id: u16, now: u64, reset: bool) -> u64 {
        let Some(class) = self.classes.get_mut(usize::from(id)) else {
            return 0;
        };
        let open = class
            .throttled_since
            .map_or(0, |since| now.saturating_sub(since));
        let total = class.throttled_ns + open;
        if reset {
            class.throttled_ns = 0;
            if class.throttled_since.is_some() {
                class.throttled_since = Some(now);
            }
        }
        total
    }

    /// Queued requests their classes' limits held at the last round (never more than
    /// are queued there: a removal from a held class clears it, see `forget_holds`; new
    /// arrivals are not counted until a round sees them, so a stale value can only cost
    /// a round that dispatches nothing).
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// When the earliest held class may go again (CLOCK_MONOTONIC ns), or `NEVER`.
    pub(crate) fn refill_at(&self) -> u64 {
        self.refill_at
    }

    /// One dispatch round of up to `room` requests: each chosen one goes to `take` with
    /// its class's kernel ioprio (0: none). `now` is read once, only when a class has a
    /// limit. Returns how many it took.
    pub(crate) fn take_round(
        &mut self,
        room: usize,
        now: impl FnOnce() -> u64,
        mut take: impl FnMut(T, u16),
    ) -> usize {
        if !self.classed {
            return self.classes[0]
                .queues
                .take_round(room, |item| take(item, 0));
        }
        if room == 0 {
            return 0;
        }
        let now = if self.limited { now() } else { 0 };
        for class in &mut self.classes {
            class.dispatched_normal = false;
        }
        let mut taken = 0;
        while taken < room {
            let Some((index, normal)) = self.choose(now) else {
                break;
            };
            let count = self.classes.len();
            let class = &mut self.classes[index];
            let item = if normal {
                let item = class.queues.pop_normal().expect("a NORMAL candidate");
                class.dispatched_normal = true;
                let step = cost_fp(item.bytes()) * VSCALE / u128::from(class.config.weight);
                self.vtime = class.start;
                class.start += step;
                item
            } else {
                self.high_next = (index + 1) % count;
                class.queues.pop_high().expect("a HIGH candidate")
            };
            class.charge(item.bytes());
            take(item, class.config.ioprio);
            taken += 1;
        }
        for class in &mut self.classes {
            if class.dispatched_normal {
                class.queues.end_normal_round();
            }
        }
        self.note_held(now);
        taken
    }

    /// The next dispatch: (class index, NORMAL?), or `None` when no class may go.
    fn choose(&mut self, now: u64) -> Option<(usize, bool)> {
        let n = self.classes.len();
        let vtime = self.vtime;
        let mut high = None;
        let mut normal: Option<(usize, u128)> = None;
        for k in 0..n {
            let index = (self.high_next + k) % n;
            let class = &mut self.classes[index];
            let (high_ok, normal_ok) = class.candidates(now);
            if (high_ok || normal_ok)
                && let Some(since) = class.throttled_since.take()
            {
                // Allowed again: count the held time, and bank no credit for it.
                class.throttled_ns += now.saturating_sub(since);
                class.start = class.start.max(vtime);
            }
            if high_ok && high.is_none() {
                high = Some(index);
            }
            let start = class.start;
            if normal_ok
                && normal.is_none_or(|(best, best_start)| {
                    start < best_start || (start == best_start && index < best)
                })
            {
                normal = Some((index, start));
            }
        }
        match (high, normal.map(|(index, _)| index)) {
            (None, None) => None,
            (Some(h), None) => Some((h, false)),
            (None, Some(n)) => Some((n, true)),
            (Some(h), Some(n)) => {
                let p = self.normal_min_percent;
                if p != 0 {
                    self.credit += p;
                    if self.credit >= 100 {
                        self.credit -= 100;
                        return Some((n, true));
                    }
                }
                Some((h, false))
            }
        }
    }

    /// After a round: which classes their limits hold, how many requests they hold, and
    /// when the first may go again.
    fn note_held(&mut self, now: u64) {
        self.held = 0;
        self.refill_at = NEVER;
        if !self.limited {
            // `update` ended the held period of the class whose last limit it removed.
            debug_assert!(self.classes.iter().all(|c| c.throttled_since.is_none()));
            return;
        }
        for class in &mut self.classes {
            if class.len() == 0 || !class.config.limited() {
                // Emptied (cancel, deadlines) or unlimited while held: the period ends.
                if let Some(since) = class.throttled_since.take() {
                    class.throttled_ns += now.saturating_sub(since);
                }
                continue;
            }
            let (high_ok, normal_ok) = class.candidates(now);
            if high_ok || normal_ok {
                continue; // left for lack of room, not held
            }
            class.throttled_since.get_or_insert(now);
            self.held += class.len();
            // Its next dispatch: its HIGH front if it has one (the NORMAL ones wait
            // behind it), else its next NORMAL request.
            let (high_bytes, normal_bytes) = class.fronts();
            let at = high_bytes
                .or(normal_bytes)
                .map_or(NEVER, |b| class.ready_at(b, now));
            self.refill_at = self.refill_at.min(at);
        }
    }
}

#[cfg(test)]
#[path = "classes_tests.rs"]
mod tests;
