//! Plain-fd helpers for the cold paths: is an fd a stream (no file position), and the
//! one-shot read/write that stands in for AIO where the kernel has no AIO path.

use std::ffi::c_void;

/// True when `fd` has no file position (pipe, FIFO, socket, tty): `lseek` says ESPIPE.
/// Such files ignore an offset or, like sockets, refuse any but 0 with ESPIPE.
/// Costs one syscall; called at most once per request, on its first continuation.
pub(crate) fn is_stream(fd: i32) -> bool {
    // SAFETY: lseek on any integer is harmless; SEEK_CUR with 0 moves nothing.
    let rc = unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) };
    rc < 0 && super::last_errno() == libc::ESPIPE
}

/// Whether `fd` is ready for a read (`write == false`) or a write without blocking,
/// asked with `poll(fd, 0)`; an error or hang-up counts as ready (the transfer then
/// reports it). `Err(errno)` when poll itself fails.
pub(crate) fn ready_now(fd: i32, write: bool) -> Result<bool, i32> {
    let mut pfd = libc::pollfd {
        fd,
        events: if write { libc::POLLOUT } else { libc::POLLIN },
        revents: 0,
    };
    // SAFETY: one valid pollfd, timeout 0: returns at once.
    let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
    if rc < 0 {
        return Err(super::last_errno());
    }
    if pfd.revents & libc::POLLNVAL != 0 {
        return Err(libc::EBADF);
    }
    Ok(rc > 0 && pfd.revents != 0)
}

/// One `preadv2`/`pwritev2` of `len` bytes at `offset` with the request's RWF flags
/// (`rw_flags`), or at the current position (offset -1, i.e. read(2)/write(2)) when the
/// file has none (ESPIPE) — the way io_uring treats an offset on such files. Returns
/// the bytes moved or `-errno`.
///
/// # Safety
/// `buf` is valid for `len` bytes: writable for a read, readable for a write.
pub(crate) unsafe fn transfer_once(
    write: bool,
    fd: i32,
    buf: *mut u8,
    len: u64,
    offset: u64,
    rw_flags: i32,
) -> i64 {
    let iov = libc::iovec {
        iov_base: buf.cast::<c_void>(),
        iov_len: len as usize,
    };
    let call = |off: libc::off_t| {
        // SAFETY: one iovec naming the caller's buffer, valid as the caller vouches.
        unsafe {
            if write {
                libc::pwritev2(fd, &iov, 1, off, rw_flags)
            } else {
                libc::preadv2(fd, &iov, 1, off, rw_flags)
            }
        }
    };
    let mut rc = call(offset as libc::off_t);
    if rc < 0 && super::last_errno() == libc::ESPIPE {
        rc = call(-1);
    }
    if rc < 0 {
        -i64::from(super::last_errno())
    } else {
        rc as i64
    }
}
