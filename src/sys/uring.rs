//! io_uring calls the io-uring crate makes only through a short-lived `Submitter`: a
//! *registered ring fd* (`IORING_REGISTER_RING_FDS`, 5.18) belongs to the registering
//! thread and must outlive one call, so the driver keeps its index and enters with it
//! here. With it the kernel finds the ring in the thread's own table instead of looking
//! the fd up (`fget`/`fput`, two atomic operations) on every `io_uring_enter`.

use std::os::fd::RawFd;

/// `io_uring_enter` flag: `fd` is an index into the calling thread's registered rings.
const IORING_ENTER_REGISTERED_RING: u32 = 1 << 4;
/// `io_uring_enter` flag: `arg` is a `GeteventsArg` (5.11).
const IORING_ENTER_EXT_ARG: u32 = 1 << 3;
const IORING_REGISTER_RING_FDS: u32 = 20;
const IORING_UNREGISTER_RING_FDS: u32 = 21;

/// `struct io_uring_rsrc_update`: one registered ring fd.
#[repr(C)]
struct RsrcUpdate {
    /// The index; `u32::MAX` on registration lets the kernel choose one and write it.
    offset: u32,
    resv: u32,
    /// The ring's fd (registration only).
    data: u64,
}

const _: () = assert!(std::mem::size_of::<RsrcUpdate>() == 16);
const _: () = assert!(std::mem::offset_of!(RsrcUpdate, data) == 8);

/// `struct io_uring_getevents_arg` (`IORING_ENTER_EXT_ARG`): a wait's timeout, no mask.
#[repr(C)]
struct GeteventsArg {
    sigmask: u64,
    sigmask_sz: u32,
    min_wait_usec: u32,
    /// Address of a `KernelTimespec`, 0 for none.
    ts: u64,
}

const _: () = assert!(std::mem::size_of::<GeteventsArg>() == 24);
const _: () = assert!(std::mem::offset_of!(GeteventsArg, ts) == 16);

/// `struct __kernel_timespec`.
#[repr(C)]
struct KernelTimespec {
    tv_sec: i64,
    tv_nsec: i64,
}

const _: () = assert!(std::mem::size_of::<KernelTimespec>() == 16);

/// Registers `ring_fd` for the calling thread; its index, or the errno (`EINVAL` before
/// 5.18, `EBUSY` once the thread has 16). The registration holds a reference to the
/// ring until [`unregister_ring_fd`] on the same thread, or until the thread exits.
pub(crate) fn register_ring_fd(ring_fd: RawFd) -> Result<u32, i32> {
    let mut update = RsrcUpdate {
        offset: u32::MAX,
        resv: 0,
        data: ring_fd as u64,
    };
    ring_fds(ring_fd, IORING_REGISTER_RING_FDS, &mut update)?;
    Ok(update.offset)
}

/// Drops the calling thread's registration `index` (from [`register_ring_fd`] on this
/// thread).
pub(crate) fn unregister_ring_fd(ring_fd: RawFd, index: u32) -> Result<(), i32> {
    let mut update = RsrcUpdate {
        offset: index,
        resv: 0,
        data: 0,
    };
    ring_fds(ring_fd, IORING_UNREGISTER_RING_FDS, &mut update)
}

/// `io_uring_register(ring_fd, opcode, update, 1)` for one registered-ring entry.
fn ring_fds(ring_fd: RawFd, opcode: u32, update: &mut RsrcUpdate) -> Result<(), i32> {
    // SAFETY: `update` is a valid io_uring_rsrc_update for the one entry we pass; on
    // registration the kernel writes the chosen index into it before returning.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            ring_fd,
            opcode,
            std::ptr::from_mut(update),
            1,
        )
    };
    match rc {
        1 => Ok(()),
        rc if rc < 0 => Err(super::last_errno()),
        _ => Err(libc::EIO),
    }
}

/// `io_uring_enter` through the calling thread's registered ring `index`, without an
/// argument struct, or with a timeout (`EXT_ARG`) when `timeout` is given.
///
/// # Safety
/// `index` was registered by the calling thread ([`register_ring_fd`]) and not
/// unregistered since; the SQEs the call submits reference only memory that stays
/// valid until their completions are reaped.
pub(crate) unsafe fn enter_registered(
    index: u32,
    to_submit: u32,
    min_complete: u32,
    flags: u32,
    timeout: Option<std::time::Duration>,
) -> Result<usize, i32> {
    let ts = timeout.map(|t| KernelTimespec {
        tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    let arg = ts.as_ref().map(|ts| GeteventsArg {
        sigmask: 0,
        sigmask_sz: 0,
        min_wait_usec: 0,
        ts: std::ptr::from_ref(ts) as u64,
    });
    let (flags, arg_ptr, arg_size) = match &arg {
        Some(arg) => (
            flags | IORING_ENTER_EXT_ARG,
            std::ptr::from_ref(arg).cast::<libc::c_void>(),
            std::mem::size_of::<GeteventsArg>(),
        ),
        None => (flags, std::ptr::null(), 0),
    };
    // SAFETY: the caller vouches for `index` and for the SQEs; `arg` and the timespec it
    // points to live until the call returns, and the kernel only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_io_uring_enter,
            index,
            to_submit,
            min_complete,
            flags | IORING_ENTER_REGISTERED_RING,
            arg_ptr,
            arg_size,
        )
    };
    if rc < 0 {
        Err(super::last_errno())
    } else {
        Ok(rc as usize)
    }
}
