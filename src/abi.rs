//! C ABI structs that the engine fills itself, so that their layout is defined once: the
//! scheduler builds them and `ffi` hands them to C. cbindgen reads this file with
//! `ffi.rs` (build.rs).

/// Counters, read with ioeng_stats(). Each is exact when the engine is idle; while IO runs
/// they are read one by one and need not be mutually consistent.
#[repr(C)]
#[derive(Default)]
pub struct IoengStats {
    /// Requests accepted by ioeng_submit().
    pub submitted: u64,
    /// Callbacks invoked (counted as each one starts).
    pub completed: u64,
    /// IOs in the kernel now.
    pub in_flight: u64,
    /// Requests waiting in the HIGH queue.
    pub queued_high: u64,
    /// Requests waiting in the READ queue.
    pub queued_read: u64,
    /// Requests waiting in the WRITE queue.
    pub queued_write: u64,
    /// io_submit / io_uring_enter calls that submitted at least one IO (on AIO, handing
    /// FALLOCATE/SYNC_FILE_RANGE commands to the engine's helper thread counts as one).
    pub kernel_submit_calls: u64,
    /// Kernel IOs issued again: short reads/writes before EOF, -EAGAIN/-EINTR.
    pub resubmits: u64,
    /// Callbacks that got -ECANCELED.
    pub cancelled: u64,
    /// Requests whose deadline passed while queued (their callbacks get -ETIMEDOUT; a
    /// kernel's own -ETIMEDOUT, e.g. from a socket, is not counted).
    pub timed_out: u64,
    /// Zero; room for later counters.
    pub reserved: [u64; 6],
}

const _: () = assert!(std::mem::size_of::<IoengStats>() == 128);
const _: () = assert!(std::mem::offset_of!(IoengStats, submitted) == 0);
const _: () = assert!(std::mem::offset_of!(IoengStats, completed) == 8);
const _: () = assert!(std::mem::offset_of!(IoengStats, in_flight) == 16);
const _: () = assert!(std::mem::offset_of!(IoengStats, queued_high) == 24);
const _: () = assert!(std::mem::offset_of!(IoengStats, queued_read) == 32);
const _: () = assert!(std::mem::offset_of!(IoengStats, queued_write) == 40);
const _: () = assert!(std::mem::offset_of!(IoengStats, kernel_submit_calls) == 48);
const _: () = assert!(std::mem::offset_of!(IoengStats, resubmits) == 56);
const _: () = assert!(std::mem::offset_of!(IoengStats, cancelled) == 64);
const _: () = assert!(std::mem::offset_of!(IoengStats, timed_out) == 72);
const _: () = assert!(std::mem::offset_of!(IoengStats, reserved) == 80);

/// One IO class's statistics, read with ioeng_class_stats() (since 1.1). Counters count
/// callbacks (a request that was cancelled or timed out counts too, with the bytes it
/// moved: none); each is exact when the engine is idle.
#[repr(C)]
#[derive(Default, Debug)]
pub struct IoengClassStats {
    /// Completed READ and READV requests.
    pub reads: u64,
    /// Completed WRITE and WRITEV requests.
    pub writes: u64,
    /// Completed requests of the other ops (FSYNC, FDATASYNC, ...).
    pub others: u64,
    /// Bytes moved by the completed reads.
    pub bytes_read: u64,
    /// Bytes moved by the completed writes.
    pub bytes_written: u64,
    /// Requests of the class waiting in the engine now.
    pub queued: u64,
    /// Requests of the class in the kernel now.
    pub in_flight: u64,
    /// Time the class was held by its iops/bytes limits, in ns (0 for IOENG_CLASS_HIGH:
    /// limits belong to classes).
    pub throttled_ns: u64,
    /// Latency percentiles (queued by ioeng_submit → callback start), in ns: bucket
    /// values (within 3 %, for latencies up to 2^44 ns, about 4.9 hours; one above
    /// reads as `max_ns`) clamped to `max_ns`; 0 when nothing completed or when
    /// `latency_stats` is off.
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    /// The largest latency seen (0 with `latency_stats` off).
    pub max_ns: u64,
    /// Zero; room for later counters.
    pub reserved: [u64; 7],
}

const _: () = assert!(std::mem::size_of::<IoengClassStats>() == 160);
const _: () = assert!(std::mem::offset_of!(IoengClassStats, reads) == 0);
const _: () = assert!(std::mem::offset_of!(IoengClassStats, writes) == 8);
const _: () = assert!(std::mem::offset_of!(IoengClassStats, others) == 16);
const _: () = assert!(std::mem::offset_of!(IoengClassStats, bytes_read) == 24);
const _: () = assert!(std::mem::offset_of!(IoengClassStats, bytes_written) == 32);
const _: () = assert!(std::mem::offset_of!(IoengClassStats, queued) == 40);
const _: () = assert!(std::mem::offset_of!(IoengClassStats, in_flight) == 48);
const _: () = assert!(std::mem::offset_of!(IoengClassStats, throttled_ns) == 56);
const _: () = assert!(std::mem::offset_of!(IoengClassStats, p50_ns) == 64);
const _: () = assert!(std::mem::offset_of!(IoengClassStats, p90_ns) == 72);
const _: () = assert!(std::mem::offset_of!(IoengClassStats, p99_ns) == 80);
const _: () = assert!(std::mem::offset_of!(IoengClassStats, p999_ns) == 88);
const _: () = assert!(std::mem::offset_of!(IoengClassStats, max_ns) == 96);
const _: () = assert!(std::mem::offset_of!(IoengClassStats, reserved) == 104);
