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
