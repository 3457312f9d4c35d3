//! Linux AIO kernel ABI (`linux/aio_abi.h`) and its four syscalls, written by hand.

use std::mem::{offset_of, size_of};
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

/// `aio_context_t`: the kernel's handle for an AIO context.
pub(crate) type AioContextId = libc::c_ulong;

pub(crate) const IOCB_CMD_PREAD: u16 = 0;
pub(crate) const IOCB_CMD_PWRITE: u16 = 1;
pub(crate) const IOCB_CMD_FSYNC: u16 = 2;
pub(crate) const IOCB_CMD_FDSYNC: u16 = 3;
/// `aio_buf` is a `const struct iovec *`, `aio_nbytes` its count.
pub(crate) const IOCB_CMD_PREADV: u16 = 7;
pub(crate) const IOCB_CMD_PWRITEV: u16 = 8;
/// Waits for readiness: `aio_buf` holds the poll event mask (POLLIN, ...), the completion's
/// `res` the events that fired. Unlike a transfer it can be cancelled with `io_cancel`.
#[allow(dead_code)] // used by the stream and timer paths of interface 1.1
pub(crate) const IOCB_CMD_POLL: u16 = 5;

/// `aio_flags` bit: on completion, add 1 to the eventfd in `aio_resfd`.
pub(crate) const IOCB_FLAG_RESFD: u32 = 1 << 0;
/// `aio_flags` bit: `aio_reqprio` carries an IOPRIO_PRIO_VALUE for this request.
pub(crate) const IOCB_FLAG_IOPRIO: u32 = 1 << 1;

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

/// Header of the completion ring that `io_setup` maps into our address space: the context
/// id *is* its address (fs/aio.c `struct aio_ring`, unchanged since 2.6). The kernel
/// appends completions at `tail`; whoever consumes them advances `head`, and the kernel
/// supports that being user space (libaio and fio's `userspace_reap` rely on it).
#[repr(C)]
struct AioRingHeader {
    id: u32,
    /// Entries in the ring.
    nr: u32,
    /// Next entry to consume; written by the consumer (us, or the kernel inside
    /// io_getevents, which our completer never runs at the same time).
    head: u32,
    /// Next entry the kernel fills; published after the entry is written.
    tail: u32,
    magic: u32,
    compat_features: u32,
    incompat_features: u32,
    /// `size_of::<AioRingHeader>()`; the `io_event` array starts here.
    header_length: u32,
}

const _: () = assert!(size_of::<AioRingHeader>() == 32);
const _: () = assert!(offset_of!(AioRingHeader, nr) == 4);
const _: () = assert!(offset_of!(AioRingHeader, head) == 8);
const _: () = assert!(offset_of!(AioRingHeader, tail) == 12);
const _: () = assert!(offset_of!(AioRingHeader, magic) == 16);
const _: () = assert!(offset_of!(AioRingHeader, incompat_features) == 24);
const _: () = assert!(offset_of!(AioRingHeader, header_length) == 28);

const AIO_RING_MAGIC: u32 = 0xa10a10a1;

/// The user-space view of a context's completion ring: completions can be taken without
/// a syscall when some are already there.
///
/// Only one thread may use it (the completer), and never while that same thread is inside
/// `io_getevents` — trivially true, since the calls are made in sequence.
pub(crate) struct CompletionRing {
    header: *mut AioRingHeader,
}

impl CompletionRing {
    /// The ring of context `id`, or `None` when the mapping does not look like the ring
    /// layout this code knows (then the caller reaps with `io_getevents` only).
    ///
    /// # Safety
    /// `id` is a live context from `io_setup`, and the returned value is not used after
    /// `io_destroy(id)` (which unmaps the ring).
    pub(crate) unsafe fn of_context(id: AioContextId) -> Option<Self> {
        let header = id as usize as *mut AioRingHeader;
        if header.is_null() || !header.is_aligned() {
            return None;
        }
        // SAFETY: the caller guarantees `id` is a live context, so its ring header is
        // mapped and readable; these fields are written once by io_setup.
        let (magic, incompat, header_length, nr) = unsafe {
            (
                (*header).magic,
                (*header).incompat_features,
                (*header).header_length,
                (*header).nr,
            )
        };
        let known = magic == AIO_RING_MAGIC
            && incompat == 0
            && header_length as usize == size_of::<AioRingHeader>()
            && nr > 0;
        known.then_some(CompletionRing { header })
    }

    fn head(&self) -> &AtomicU32 {
        // SAFETY: the header stays mapped while `self` lives (see `of_context`), `head` is
        // an aligned u32, and every access to it, ours and the kernel's, is atomic-sized.
        unsafe { AtomicU32::from_ptr(&raw mut (*self.header).head) }
    }

    fn tail(&self) -> &AtomicU32 {
        // SAFETY: as for `head`.
        unsafe { AtomicU32::from_ptr(&raw mut (*self.header).tail) }
    }

    /// True when completions wait in the ring.
    pub(crate) fn has_events(&self) -> bool {
        // Relaxed for head: only this thread moves it. Acquire for tail: see `take`.
        self.head().load(Relaxed) != self.tail().load(Acquire)
    }

    /// Moves every completion in the ring to `out` (no syscall); returns how many.
    pub(crate) fn take(&self, out: &mut impl FnMut(&IoEvent)) -> usize {
        // SAFETY: `nr` was validated in `of_context` and never changes.
        let nr = unsafe { (*self.header).nr };
        let mut head = self.head().load(Relaxed);
        // Acquire pairs with the kernel's write barrier between filling an entry and
        // advancing `tail`, so the entries before `tail` are complete when we read them.
        let tail = self.tail().load(Acquire);
        if head >= nr || tail >= nr {
            debug_assert!(
                false,
                "aio ring indices out of range: {head}, {tail} of {nr}"
            );
            return 0;
        }
        if head == tail {
            return 0;
        }
        let mut taken = 0;
        while head != tail {
            // SAFETY: `head < nr`, and the ring maps `nr` io_events right after the header
            // (`header_length` checked); the kernel does not rewrite entries between head
            // and tail until we advance head past them.
            let event = unsafe {
                let events = self.header.add(1).cast::<IoEvent>();
                std::ptr::read_volatile(events.add(head as usize))
            };
            out(&event);
            taken += 1;
            head = if head + 1 == nr { 0 } else { head + 1 };
        }
        // Release: we finished reading the entries before the kernel may reuse them.
        self.head().store(head, Release);
        taken
    }
}

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

/// `io_cancel(ctx, iocb, result)`: asks the kernel to stop an IO in flight. Most files
/// cannot stop one (`EINVAL`); when it can, the IO still completes through the ring
/// (with `-ECANCELED`) and the call returns `EINPROGRESS`, so the result is advisory.
///
/// # Safety
/// `iocb` points to an iocb submitted to `id` (or to one the kernel no longer holds:
/// then the kernel finds nothing and says `EINVAL`).
pub(crate) unsafe fn io_cancel(id: AioContextId, iocb: *mut Iocb) -> Result<(), i32> {
    let mut result = IoEvent::default();
    // SAFETY: the kernel only looks `iocb` up among its in-flight requests (by address
    // and key) and writes at most one io_event into `result`, which is valid storage.
    let rc = unsafe { libc::syscall(libc::SYS_io_cancel, id, iocb, &raw mut result) };
    if rc < 0 {
        Err(super::last_errno())
    } else {
        Ok(())
    }
}

/// `io_getevents(ctx, min_nr, nr, events, NULL)`: blocks until at least `min_nr` IOs
/// completed; fills the front of `events` and returns how many.
/// `io_getevents(ctx, min_nr, nr, events, timeout)`: with `wait`, blocks until at least
/// `min_nr` IOs completed (NULL timeout), else returns at once (zero timeout); fills the
/// front of `events` and returns how many.
pub(crate) fn io_getevents(
    id: AioContextId,
    min_nr: usize,
    events: &mut [IoEvent],
    wait: bool,
) -> Result<usize, i32> {
    debug_assert!(min_nr <= events.len());
    let mut zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let timeout = if wait {
        std::ptr::null_mut()
    } else {
        &raw mut zero
    };
    // SAFETY: `events` is writable for `events.len()` entries; `timeout` is NULL (wait)
    // or a live zero timespec.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_io_getevents,
            id,
            min_nr as libc::c_long,
            events.len() as libc::c_long,
            events.as_mut_ptr(),
            timeout,
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

    /// Submits a buffered read of `buf.len()` bytes of `fd`, tagged `tag`.
    fn submit_read(id: AioContextId, fd: i32, buf: &mut [u8], tag: u64) {
        let mut iocb = Iocb {
            aio_data: tag,
            aio_lio_opcode: IOCB_CMD_PREAD,
            aio_fildes: fd as u32,
            aio_buf: buf.as_mut_ptr() as u64,
            aio_nbytes: buf.len() as u64,
            ..Iocb::default()
        };
        let ptrs = [&raw mut iocb];
        // SAFETY: `iocb` and `buf` outlive the IO: the callers reap it before returning.
        assert_eq!(unsafe { io_submit(id, &ptrs) }, Ok(1));
    }

    #[test]
    fn completion_ring_is_read_in_user_space_and_agrees_with_io_getevents() {
        use std::io::Write;
        let path = std::env::temp_dir().join(format!("ioeng_ring_{}", std::process::id()));
        let mut file = std::fs::File::create(&path).expect("create");
        file.write_all(&[7u8; 4096]).expect("write");
        let file = std::fs::File::open(&path).expect("open");
        std::fs::remove_file(&path).expect("unlink");
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);

        let id = io_setup(8).expect("io_setup");
        // SAFETY: `id` is live until the io_destroy below, after the ring's last use.
        let ring = unsafe { CompletionRing::of_context(id) }.expect("a ring of known layout");
        assert!(!ring.has_events());
        let mut buf = vec![0u8; 4096];
        for round in 0..3u64 {
            // A buffered read completes inside io_submit: its completion is in the ring.
            submit_read(id, fd, &mut buf, 40 + round);
            assert!(ring.has_events());
            let mut got = Vec::new();
            assert_eq!(ring.take(&mut |e: &IoEvent| got.push((e.data, e.res))), 1);
            assert_eq!(got, [(40 + round, 4096)]);
            assert!(!ring.has_events(), "head advanced past the taken entry");
            assert!(buf.iter().all(|&b| b == 7));
            // The kernel's own reaping continues from the head we stored.
            buf.fill(0);
            submit_read(id, fd, &mut buf, 50 + round);
            let mut events = [IoEvent::default(); 4];
            assert_eq!(io_getevents(id, 1, &mut events, true), Ok(1));
            assert_eq!((events[0].data, events[0].res), (50 + round, 4096));
            assert!(!ring.has_events());
        }
        io_destroy(id).expect("io_destroy");
    }

    #[test]
    fn context_lifecycle() {
        let id = io_setup(8).expect("io_setup");
        assert!(id != 0);
        io_destroy(id).expect("io_destroy");
        assert_eq!(io_destroy(id), Err(libc::EINVAL));
    }
}
