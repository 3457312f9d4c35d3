//! Linux AIO kernel ABI (`linux/aio_abi.h`) and its four syscalls, written by hand.

use std::mem::{offset_of, size_of};

/// `aio_context_t`: the kernel's handle for an AIO context.
pub(crate) type AioContextId = libc::c_ulong;

pub(crate) const IOCB_CMD_PREAD: u16 = 0;
pub(crate) const IOCB_CMD_PWRITE: u16 = 1;
pub(crate) const IOCB_CMD_FSYNC: u16 = 2;
pub(crate) const IOCB_CMD_FDSYNC: u16 = 3;

/// `struct iocb` (64 bytes). Field order is the little-endian one: `aio_key` comes
/// before `aio_rw_flags` on x86_64 and aarch64.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Iocb {
    /// Returned untouched in `IoEvent::data`: we store the slot index.
    pub aio_data: u64,
    pub aio_key: u32,
    pub aio_rw_flags: i32,
    pub aio_lio_opcode: u16,
    pub aio_reqprio: i16,
    pub aio_fildes: u32,
    pub aio_buf: u64,
    pub aio_nbytes: u64,
    pub aio_offset: i64,
    pub aio_reserved2: u64,
    pub aio_flags: u32,
    pub aio_resfd: u32,
}

#[cfg(not(target_endian = "little"))]
compile_error!("the iocb layout here is the little-endian one");

const _: () = assert!(size_of::<Iocb>() == 64);
const _: () = assert!(offset_of!(Iocb, aio_data) == 0);
const _: () = assert!(offset_of!(Iocb, aio_key) == 8);
const _: () = assert!(offset_of!(Iocb, aio_rw_flags) == 12);
const _: () = assert!(offset_of!(Iocb, aio_lio_opcode) == 16);
const _: () = assert!(offset_of!(Iocb, aio_reqprio) == 18);
const _: () = assert!(offset_of!(Iocb, aio_fildes) == 20);
const _: () = assert!(offset_of!(Iocb, aio_buf) == 24);
const _: () = assert!(offset_of!(Iocb, aio_nbytes) == 32);
const _: () = assert!(offset_of!(Iocb, aio_offset) == 40);
const _: () = assert!(offset_of!(Iocb, aio_reserved2) == 48);
const _: () = assert!(offset_of!(Iocb, aio_flags) == 56);
const _: () = assert!(offset_of!(Iocb, aio_resfd) == 60);

/// `struct io_event` (32 bytes).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IoEvent {
    /// The `aio_data` of the completed iocb.
    pub data: u64,
    /// Address of the completed iocb.
    pub obj: u64,
    /// Bytes transferred or `-errno`.
    pub res: i64,
    pub res2: i64,
}

const _: () = assert!(size_of::<IoEvent>() == 32);
const _: () = assert!(offset_of!(IoEvent, data) == 0);
const _: () = assert!(offset_of!(IoEvent, obj) == 8);
const _: () = assert!(offset_of!(IoEvent, res) == 16);
const _: () = assert!(offset_of!(IoEvent, res2) == 24);

/// `io_setup(nr_events, &ctx)`: a context able to hold `nr_events` IOs in flight.
pub(crate) fn io_setup(nr_events: u32) -> Result<AioContextId, i32> {
    let mut id: AioContextId = 0;
    // SAFETY: `id` is a valid, writable aio_context_t that must be zero on entry.
    let rc = unsafe { libc::syscall(libc::SYS_io_setup, nr_events as libc::c_long, &mut id) };
    if rc < 0 {
        Err(super::last_errno())
    } else {
        Ok(id)
    }
}

/// `io_destroy(ctx)`: cancels what it can and waits for the rest, then frees the context.
pub(crate) fn io_destroy(id: AioContextId) -> Result<(), i32> {
    // SAFETY: plain integer argument; a stale id only yields EINVAL.
    let rc = unsafe { libc::syscall(libc::SYS_io_destroy, id) };
    if rc < 0 {
        Err(super::last_errno())
    } else {
        Ok(())
    }
}

/// `io_submit(ctx, nr, iocbpp)`: returns how many iocbs the kernel accepted, or the errno
/// of the first one when it accepted none.
///
/// # Safety
/// Every pointer in `iocbs` points to an initialized `Iocb` whose buffer (`aio_buf`,
/// `aio_nbytes`) is valid for the operation, and both the iocb and the buffer stay valid
/// and untouched until its completion has been reaped by `io_getevents`.
pub(crate) unsafe fn io_submit(id: AioContextId, iocbs: &[*mut Iocb]) -> Result<usize, i32> {
    // SAFETY: `iocbs` is a live array of `len` pointers; the caller vouches for what they
    // point to and for how long.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_io_submit,
            id,
            iocbs.len() as libc::c_long,
            iocbs.as_ptr(),
        )
    };
    if rc < 0 {
        Err(super::last_errno())
    } else {
        Ok(rc as usize)
    }
}

/// `io_getevents(ctx, min_nr, nr, events, NULL)`: blocks until at least `min_nr` IOs
/// completed; fills the front of `events` and returns how many.
pub(crate) fn io_getevents(
    id: AioContextId,
    min_nr: usize,
    events: &mut [IoEvent],
) -> Result<usize, i32> {
    debug_assert!(min_nr <= events.len());
    // SAFETY: `events` is writable for `events.len()` entries; a NULL timeout means wait.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_io_getevents,
            id,
            min_nr as libc::c_long,
            events.len() as libc::c_long,
            events.as_mut_ptr(),
            std::ptr::null_mut::<libc::timespec>(),
        )
    };
    if rc < 0 {
        Err(super::last_errno())
    } else {
        Ok(rc as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_lifecycle() {
        let id = io_setup(8).expect("io_setup");
        assert!(id != 0);
        io_destroy(id).expect("io_destroy");
        assert_eq!(io_destroy(id), Err(libc::EINVAL));
    }
}
