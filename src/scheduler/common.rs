//! The scheduling layer both backends share: the three queues, the fairness rule, the
//! slot budget and the submitter's round (`SubmitRound::fill`). Nothing here knows which
//! kernel interface runs underneath.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, Sender};

use super::locks::lock;
use super::tasks::QueueClass;
use crate::error::{Error, try_vec, try_with_capacity};

/// One queue (HIGH, READ or WRITE) in arrival order, whose items can also be taken out
/// of the middle in O(1) by their position (for deadline expiry, which must not scan).
///
/// Every item pushed gets the next *position* (a sequence number that never repeats in
/// this lane). An item taken out of the middle leaves a hole that dispatch steps over;
/// holes at the front are dropped at once and a lane with no live item holds no hole,
/// so holes never outnumber the live items behind them by more than one burst of
/// removals.
pub(crate) struct Lane<T> {
    items: VecDeque<Option<T>>,
    /// The position of `items[0]`: how many items (and holes) left from the front.
    head: u64,
    /// Items that are `Some`.
    live: usize,
}

impl<T> Default for Lane<T> {
    fn default() -> Self {
        Lane {
            items: VecDeque::new(),
            head: 0,
            live: 0,
        }
    }
}

impl<T> Lane<T> {
    /// Appends `item`; returns its position.
    fn push(&mut self, item: T) -> u64 {
        let position = self.head + self.items.len() as u64;
        self.items.push_back(Some(item));
        self.live += 1;
        position
    }

    fn pop_front(&mut self) -> Option<T> {
        while let Some(front) = self.items.pop_front() {
            self.head += 1;
            if let Some(item) = front {
                self.live -= 1;
                return Some(item);
            }
        }
        None
    }

    fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The item `pop_front` would return (holes may sit at the front after a pop).
    fn front(&self) -> Option<&T> {
        if self.live == 0 {
            return None;
        }
        self.items.iter().find_map(Option::as_ref)
    }

    /// The item at `position` if it is still queued.
    fn get(&self, position: u64) -> Option<&T> {
        let index = usize::try_from(position.checked_sub(self.head)?).ok()?;
        self.items.get(index)?.as_ref()
    }

    /// Takes the item at `position` out if it is still queued.
    fn take(&mut self, position: u64) -> Option<T> {
        let index = usize::try_from(position.checked_sub(self.head)?).ok()?;
        let item = self.items.get_mut(index)?.take()?;
        self.live -= 1;
        self.drop_holes();
        Some(item)
    }

    /// Takes out every item for which `pred` holds, in order.
    fn remove_where(&mut self, pred: &mut impl FnMut(&T) -> bool, out: &mut impl FnMut(T)) {
        if self.live == 0 {
            return;
        }
        for entry in self.items.iter_mut() {
            if entry.as_ref().is_some_and(&mut *pred) {
                out(entry.take().expect("checked above"));
                self.live -= 1;
            }
        }
        self.drop_holes();
    }

    /// Drops the holes at the front (all of them when nothing is live).
    fn drop_holes(&mut self) {
        if self.live == 0 {
            self.head += self.items.len() as u64;
            self.items.clear();
            return;
        }
        while self.items.front().is_some_and(Option::is_none) {
            self.items.pop_front();
            self.head += 1;
        }
    }
}

/// Where a queued item stands: its queue and its position there (see [`Lane`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct QueuePosition {
    class: QueueClass,
    position: u64,
}

/// The HIGH, READ and WRITE queues plus the fairness state (docs/ARCHITECTURE.md,
/// "Fairness").
///
/// Generic over the queued item so the rule can be unit-tested with plain labels.
pub(crate) struct Queues<T> {
    high: Lane<T>,
    read: Lane<T>,
    write: Lane<T>,
    /// How far READ is ahead of WRITE in dispatches while both are backlogged: the class
    /// behind goes first. A class cannot bank credit while it is not backlogged: the
    /// count restarts at 0 when a round starts with one queue empty, and a class whose
    /// queue a round emptied keeps no credit. With rounds of equal room this is the
    /// original rule's alternation (a READ-first round puts READ ahead by `room`, the
    /// WRITE-first round after it evens the count); unlike a round parity alone it also
    /// halves the dispatches when the room varies from round to round (`depth` not a
    /// multiple of `batch`: full rounds and a short one per refill, where a parity hands
    /// one class every full round). Its magnitude stays within the largest room.
    read_lead: i64,
    /// Who goes first on a tie: flips every round in which READ/WRITE had room (rounds
    /// HIGH fills alone do not count: HIGH traffic in step with the rounds would otherwise
    /// always take the READ-first ones).
    read_first_on_tie: bool,
}

impl<T> Default for Queues<T> {
    fn default() -> Self {
        Queues {
            high: Lane::default(),
            read: Lane::default(),
            write: Lane::default(),
            read_lead: 0,
            read_first_on_tie: true,
        }
    }
}

impl<T> Queues<T> {
    fn lane(&self, class: QueueClass) -> &Lane<T> {
        match class {
            QueueClass::High => &self.high,
            QueueClass::Read => &self.read,
            QueueClass::Write => &self.write,
        }
    }

    fn lane_mut(&mut self, class: QueueClass) -> &mut Lane<T> {
        match class {
            QueueClass::High => &mut self.high,
            QueueClass::Read => &mut self.read,
            QueueClass::Write => &mut self.write,
        }
    }

    /// Queues `item` at the back of its class; returns where it stands.
    pub(crate) fn push(&mut self, class: QueueClass, item: T) -> QueuePosition {
        let position = self.lane_mut(class).push(item);
        QueuePosition { class, position }
    }

    /// The item at `at` while it is queued (`None` once dispatched or removed).
    pub(crate) fn get(&self, at: QueuePosition) -> Option<&T> {
        self.lane(at.class).get(at.position)
    }

    /// Takes the item at `at` out of its queue, if it is still there. O(1) amortized.
    pub(crate) fn take(&mut self, at: QueuePosition) -> Option<T> {
        self.lane_mut(at.class).take(at.position)
    }

    /// Removes every item for which `pred` holds (any queue, keeping the order of the
    /// rest) and hands it to `out`. O(queued); cancel uses it.
    pub(crate) fn remove_where(
        &mut self,
        mut pred: impl FnMut(&T) -> bool,
        mut out: impl FnMut(T),
    ) {
        for lane in [&mut self.high, &mut self.read, &mut self.write] {
            lane.remove_where(&mut pred, &mut out);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.high.live + self.read.live + self.write.live
    }

    /// (HIGH, READ, WRITE) lengths.
    pub(crate) fn lens(&self) -> (usize, usize, usize) {
        (self.high.live, self.read.live, self.write.live)
    }

    /// One dispatch round of the fairness rule: HIGH first until empty or `room` is
    /// reached, then READ and WRITE drained greedily, the one behind first (see
    /// `read_lead`). Hands each chosen item to `take` in dispatch order and returns how
    /// many it took.
    pub(crate) fn take_round(&mut self, room: usize, mut take: impl FnMut(T)) -> usize {
        let mut taken = drain_into(&mut self.high, room, &mut take);
        if taken == room {
            return taken;
        }
        let tie_read = self.read_first_on_tie;
        self.read_first_on_tie = !tie_read;
        if self.read.is_empty() || self.write.is_empty() {
            // No contest: whichever has requests takes the room, and nobody is behind.
            self.read_lead = 0;
            taken += drain_into(&mut self.read, room - taken, &mut take);
            return taken + drain_into(&mut self.write, room - taken, &mut take);
        }
        let read_first = self.read_lead < 0 || (self.read_lead == 0 && tie_read);
        let (first, second) = if read_first {
            (&mut self.read, &mut self.write)
        } else {
            (&mut self.write, &mut self.read)
        };
        let by_first = drain_into(first, room - taken, &mut take);
        let by_second = drain_into(second, room - taken - by_first, &mut take);
        let (reads, writes) = if read_first {
            (by_first, by_second)
        } else {
            (by_second, by_first)
        };
        debug_assert!(reads + writes <= room && room <= i64::MAX as usize);
        self.read_lead += reads as i64 - writes as i64;
        // A class that got all it asked for was not backlogged: it keeps no credit.
        if self.read.is_empty() {
            self.read_lead = self.read_lead.max(0);
        }
        if self.write.is_empty() {
            self.read_lead = self.read_lead.min(0);
        }
        taken + reads + writes
    }
}

/// One request at a time, for the class scheduler (`classes`), which chooses among many
/// `Queues` per dispatch: HIGH first in arrival order, then READ and WRITE by the rule of
/// `take_round` applied per request (the one behind in `read_lead` goes; on a tie the
/// round's `read_first_on_tie`, flipped by `end_normal_round` once per round in which the
/// class dispatched). With one dispatch per round this is `take_round`'s order exactly.
impl<T> Queues<T> {
    pub(crate) fn front_high(&self) -> Option<&T> {
        self.high.front()
    }

    pub(crate) fn pop_high(&mut self) -> Option<T> {
        self.high.pop_front()
    }

    /// Which of READ and WRITE goes next; `None` when both are empty.
    fn next_normal(&self) -> Option<QueueClass> {
        match (self.read.is_empty(), self.write.is_empty()) {
            (true, true) => None,
            (false, true) => Some(QueueClass::Read),
            (true, false) => Some(QueueClass::Write),
            (false, false) => {
                let read_first =
                    self.read_lead < 0 || (self.read_lead == 0 && self.read_first_on_tie);
                Some(if read_first {
                    QueueClass::Read
                } else {
                    QueueClass::Write
                })
            }
        }
    }

    pub(crate) fn front_normal(&self) -> Option<&T> {
        self.lane(self.next_normal()?).front()
    }

    pub(crate) fn has_normal(&self) -> bool {
        !self.read.is_empty() || !self.write.is_empty()
    }

    pub(crate) fn pop_normal(&mut self) -> Option<T> {
        let lane = self.next_normal()?;
        if self.read.is_empty() || self.write.is_empty() {
            // No contest: nobody is behind.
            self.read_lead = 0;
            return self.lane_mut(lane).pop_front();
        }
        let item = self.lane_mut(lane).pop_front();
        self.read_lead += if lane == QueueClass::Read { 1 } else { -1 };
        // As in `take_round`: a queue that emptied keeps no credit.
        if self.read.is_empty() {
            self.read_lead = self.read_lead.max(0);
        }
        if self.write.is_empty() {
            self.read_lead = self.read_lead.min(0);
        }
        item
    }

    pub(crate) fn end_normal_round(&mut self) {
        self.read_first_on_tie = !self.read_first_on_tie;
    }
}

/// Pops up to `room` items from the front of `lane` into `take`; returns how many.
fn drain_into<T>(lane: &mut Lane<T>, room: usize, take: &mut impl FnMut(T)) -> usize {
    let mut n = 0;
    while n < room {
        let Some(item) = lane.pop_front() else { break };
        take(item);
        n += 1;
    }
    n
}

/// The in-flight budget: `depth` slot indices circulating between the two threads.
///
/// A slot index is owned by exactly one party at a time: the free list (nobody), the
/// submitter (filling it), the kernel (in flight), the completer (settling it), or the
/// `resubmit` channel (waiting for the submitter to issue its next chunk). Holding the
/// index is what entitles a thread to touch the slot.
///
/// The free list moves indices in batches: the completer returns a whole settled batch
/// and the submitter takes a whole round's worth, each under one lock, so a request
/// costs no atomic read-modify-write of its own here (a channel took two per request:
/// 1.4% of the process at ext4 QD128, `perf`). The lock also orders the slot's contents:
/// whatever the releasing thread wrote to a slot happens-before the taker's accesses.
pub(crate) struct Budget {
    /// Free slot indices; taken from the end (the most recently freed slot is the one
    /// most likely still in cache).
    free: Mutex<Vec<usize>>,
    /// `free.len()`, for the checks made without the lock (`has_slot_for_submitter`,
    /// `all_free`, the empty check in `take_free`); written only under the lock.
    free_count: AtomicUsize,
    resubmit_tx: Sender<usize>,
    resubmit_rx: Receiver<usize>,
    depth: usize,
}

impl Budget {
    /// `OutOfMemory` when the free list or the resubmit channel cannot be allocated.
    pub(crate) fn new(depth: usize) -> Result<Self, Error> {
        // Reversed so that the first round takes slots 0, 1, 2, ... (`take_free` pops).
        let free = try_vec(depth, |i| depth - 1 - i)?;
        // The channel allocates its `depth` places at once and aborts if it cannot: first
        // make sure a block of that size can be had (two words a place, in crossbeam's
        // array flavour). A block that large is mmapped and returned on drop, so the
        // channel's allocation right after gets the same room.
        drop(try_with_capacity::<[usize; 2]>(depth)?);
        let (resubmit_tx, resubmit_rx) = crossbeam_channel::bounded(depth);
        Ok(Budget {
            free: Mutex::new(free),
            free_count: AtomicUsize::new(depth),
            resubmit_tx,
            resubmit_rx,
            depth,
        })
    }

    /// Completer (or the submitter handing back slots a round could not fill): these
    /// slots' requests are finished; their indices go back to the submitter.
    pub(crate) fn release(&self, indices: &[usize]) {
        if indices.is_empty() {
            return;
        }
        let mut free = lock(&self.free);
        debug_assert!(indices.iter().all(|&index| index < self.depth));
        debug_assert!(
            free.len() + indices.len() <= self.depth,
            "slot released twice"
        );
        free.extend_from_slice(indices);
        // Release: a thread that reads the count as `depth` (`all_free`, Acquire) also
        // sees every write made to these slots before they came back; close frees the
        // slots after that check.
        self.free_count.store(free.len(), Ordering::Release);
    }

    /// Completer: the slot's request needs another kernel IO; it keeps its slot.
    pub(crate) fn resubmit(&self, index: usize) {
        debug_assert!(index < self.depth);
        let _ = self.resubmit_tx.try_send(index);
    }

    /// Moves free slots into `slots` until it holds `wanted` or none is free.
    pub(crate) fn take_free(&self, slots: &mut Vec<usize>, wanted: usize) {
        // A stale zero is harmless: whoever frees a slot runs the next round or wakes
        // the thread holding the submit role (`worker::submit_after_callbacks`).
        if slots.len() >= wanted || self.free_count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut free = lock(&self.free);
        let n = (wanted - slots.len()).min(free.len());
        let keep = free.len() - n;
        slots.extend(free.drain(keep..).rev());
        self.free_count.store(keep, Ordering::Relaxed);
    }

    /// True when every slot is free: nothing in flight, nothing waiting to be resubmitted.
    pub(crate) fn all_free(&self) -> bool {
        self.free_count.load(Ordering::Acquire) == self.depth
    }

    pub(crate) fn has_resubmits(&self) -> bool {
        !self.resubmit_rx.is_empty()
    }

    /// True when the submitter could take a slot now: one is free or awaits resubmission.
    pub(crate) fn has_slot_for_submitter(&self) -> bool {
        self.free_count.load(Ordering::Relaxed) != 0 || self.has_resubmits()
    }

    /// Submit role: slots handed back for their request's next IO.
    pub(crate) fn resubmissions(&self) -> &Receiver<usize> {
        &self.resubmit_rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use QueueClass::{High, Read, Write};

    fn round(queues: &mut Queues<&'static str>, room: usize) -> Vec<&'static str> {
        let mut got = Vec::new();
        queues.take_round(room, |item| got.push(item));
        got
    }

    fn queues_with(items: &[(QueueClass, &'static str)]) -> Queues<&'static str> {
        let mut queues = Queues::default();
        for &(class, name) in items {
            queues.push(class, name);
        }
        queues
    }

    #[test]
    fn high_goes_first_with_room_one() {
        let mut q = queues_with(&[
            (Read, "r0"),
            (Write, "w0"),
            (Read, "r1"),
            (Write, "w1"),
            (High, "h0"),
            (High, "h1"),
        ]);
        let order: Vec<_> = (0..6).flat_map(|_| round(&mut q, 1)).collect();
        // HIGH fills the first two rounds; then READ first, WRITE first, ...
        assert_eq!(order, ["h0", "h1", "r0", "w0", "r1", "w1"]);
        assert_eq!(q.len(), 0);
        assert!(round(&mut q, 1).is_empty());
    }

    #[test]
    fn read_and_write_alternate_which_goes_first() {
        let mut q = queues_with(&[(Read, "r0"), (Read, "r1"), (Write, "w0"), (Write, "w1")]);
        assert_eq!(round(&mut q, 3), ["r0", "r1", "w0"]);
        // READ is now ahead by one: WRITE goes first.
        q.push(Read, "r2");
        q.push(Write, "w2");
        assert_eq!(round(&mut q, 3), ["w1", "w2", "r2"]);
    }

    #[test]
    fn high_is_strict_priority_within_a_round() {
        let mut q = queues_with(&[(Read, "r0"), (High, "h0"), (Write, "w0"), (High, "h1")]);
        assert_eq!(round(&mut q, 2), ["h0", "h1"]);
        // The HIGH-only round did not count: this is READ/WRITE round 0, READ first.
        assert_eq!(round(&mut q, 8), ["r0", "w0"]);
        q.push(Read, "r1");
        q.push(Write, "w1");
        assert_eq!(round(&mut q, 8), ["w1", "r1"]);
    }

    #[test]
    fn saturated_read_and_write_share_dispatches_equally() {
        let mut q = Queues::default();
        for _ in 0..10_000 {
            q.push(Read, "r");
            q.push(Write, "w");
        }
        let (mut reads, mut writes) = (0, 0);
        for _ in 0..1000 {
            for item in round(&mut q, 4) {
                if item == "r" {
                    reads += 1;
                } else {
                    writes += 1;
                }
            }
        }
        assert_eq!((reads, writes), (2000, 2000));
    }

    /// Dispatches of READ and WRITE, both saturated, over `rounds` rounds whose room
    /// cycles through `rooms` (a refill of `depth = m * batch + r` slots: m full rounds and
    /// one of r).
    fn shares(rooms: &[usize], rounds: usize) -> (usize, usize) {
        let mut q = Queues::default();
        for _ in 0..rounds * 16 {
            q.push(Read, "r");
            q.push(Write, "w");
        }
        let (mut reads, mut writes) = (0, 0);
        for &room in rooms.iter().cycle().take(rounds) {
            for item in round(&mut q, room) {
                if item == "r" {
                    reads += 1;
                } else {
                    writes += 1;
                }
            }
        }
        (reads, writes)
    }

    #[test]
    fn saturated_read_and_write_share_dispatches_equally_when_the_room_varies() {
        // depth 17, batch 16: a round parity gave READ 16 of every 17 dispatches.
        let (reads, writes) = shares(&[16, 1], 1000);
        assert!(reads.abs_diff(writes) <= 16, "{reads} vs {writes}");
        // depth 3, batch 2: a parity gave 2:1.
        let (reads, writes) = shares(&[2, 1], 999);
        assert!(reads.abs_diff(writes) <= 2, "{reads} vs {writes}");
        for rooms in [&[4, 4, 3][..], &[5, 2, 7, 1], &[8]] {
            let (reads, writes) = shares(rooms, 1000);
            assert!(
                reads.abs_diff(writes) <= 8,
                "{rooms:?}: {reads} vs {writes}"
            );
        }
    }

    #[test]
    fn a_class_that_empties_builds_no_credit() {
        // READ gets one request per round while WRITE is backlogged: it is served every
        // other round (WRITE-first rounds fill the room), and that small share must not
        // become a debt WRITE pays once READ is backlogged too.
        let mut q = Queues::default();
        for _ in 0..1000 {
            q.push(Write, "w");
        }
        let mut order = String::new();
        for _ in 0..10 {
            q.push(Read, "r");
            order.extend(round(&mut q, 4));
        }
        // As with a round parity: READ's waiting request goes first in READ-first rounds.
        assert_eq!(order, "rwwwwwww".to_owned() + &"rrwwwwww".repeat(4));
        for _ in 0..100 {
            q.push(Read, "r");
        }
        let next: String = (0..8).flat_map(|_| round(&mut q, 4)).collect();
        assert_eq!(next.matches('r').count(), 16, "{next}");
    }

    #[test]
    fn high_rounds_do_not_skew_read_write_alternation() {
        // One HIGH arrives before every other round (in step with the parity): READ and
        // WRITE must still alternate.
        let mut q = Queues::default();
        for _ in 0..4 {
            q.push(Read, "r");
            q.push(Write, "w");
        }
        let mut order = Vec::new();
        for _ in 0..8 {
            q.push(High, "h");
            order.extend(round(&mut q, 1));
            order.extend(round(&mut q, 1));
        }
        assert_eq!(order.concat(), "hrhwhrhwhrhwhrhw");
    }

    #[test]
    fn zero_room_is_not_a_round() {
        let mut q = queues_with(&[(Read, "r0"), (Write, "w0")]);
        assert!(round(&mut q, 0).is_empty());
        assert_eq!(round(&mut q, 1), ["r0"]);
    }

    #[test]
    fn items_taken_from_the_middle_leave_holes_that_dispatch_steps_over() {
        let mut q = Queues::default();
        let at: Vec<_> = ["r0", "r1", "r2", "r3"]
            .into_iter()
            .map(|name| q.push(Read, name))
            .collect();
        let w0 = q.push(Write, "w0");
        assert_eq!(q.take(at[1]), Some("r1"));
        assert_eq!(q.take(at[1]), None, "taken once");
        assert_eq!(q.get(at[2]), Some(&"r2"));
        assert_eq!(q.lens(), (0, 3, 1));
        assert_eq!(round(&mut q, 2), ["r0", "r2"]);
        assert_eq!(q.get(at[0]), None, "dispatched");
        assert_eq!(q.take(w0), Some("w0"));
        // Cancel-style removal keeps the positions of the rest valid.
        q.remove_where(|&name| name == "r3", |_| {});
        assert_eq!(q.len(), 0);
        let r4 = q.push(Read, "r4");
        assert_eq!(q.get(r4), Some(&"r4"));
        assert_eq!(round(&mut q, 8), ["r4"]);
    }

    #[test]
    fn budget_circulates_depth_slots() {
        let budget = Budget::new(4).unwrap();
        assert!(budget.all_free());
        let mut taken = Vec::new();
        budget.take_free(&mut taken, 3);
        assert_eq!(taken, [0, 1, 2]);
        budget.take_free(&mut taken, 8);
        assert_eq!(taken, [0, 1, 2, 3]);
        assert!(
            !budget.has_slot_for_submitter(),
            "never more than depth in flight"
        );
        budget.resubmit(2);
        assert!(
            budget.has_slot_for_submitter(),
            "a resubmission holds its slot"
        );
        let _ = budget.resubmissions().try_recv();
        budget.release(&[1, 3]);
        assert!(!budget.all_free());
        let mut again = Vec::new();
        budget.take_free(&mut again, 1);
        assert_eq!(again, [3], "the slot freed last goes first");
        budget.release(&[0, 2]);
        assert!(!budget.all_free());
        budget.release(&again);
        assert!(budget.all_free());
    }
}
