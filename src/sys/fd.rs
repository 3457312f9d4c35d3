//! Plain-fd helpers for the cold paths: is an fd a stream (no file position), and the
//! one-shot read/write that stands in for AIO where the kernel has no AIO path.

/// How a file treats positions and short transfers (see `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FdKind {
    /// Has a position (regular file, block device, a character device that can tell
    /// its position: /dev/null, /dev/zero, memory and flash devices).
    File,
    /// A byte stream without a position: pipe, FIFO, stream socket, tty.
    Stream,
    /// One message per read without a position: datagram and seqpacket sockets,
    /// anonymous-inode fds (inotify, eventfd, signalfd, timerfd, ...), and character
    /// devices without a position other than ttys (/dev/fuse, /dev/kmsg, tun, input
    /// events). A short transfer there is a message boundary, which read(2) reports as
    /// it is; continuing it would wait for the next message and glue the two together.
    Message,
}

/// A new descriptor of the open file `fd` refers to (close-on-exec), owned by the
/// caller; `Err(errno)` when `fd` is not open (EBADF) or no number is free (EMFILE).
pub(crate) fn duplicate(fd: i32) -> Result<std::os::fd::OwnedFd, i32> {
    // SAFETY: F_DUPFD_CLOEXEC only reads `fd` and returns a new descriptor or -1.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EBADF));
    }
    // SAFETY: a successful F_DUPFD_CLOEXEC returns a new fd that nothing else owns.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(dup) })
}

/// `(st_dev, st_ino)` of the file `fd` refers to, or `None` when fstat fails. Tells
/// whether an fd number still refers to a file seen earlier, for files with an inode of
/// their own (an io_uring ring has one; eventfds, timerfds and the other anonymous-inode
/// files all share one, so for them it tells nothing).
pub(crate) fn identity(fd: i32) -> Option<(u64, u64)> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a full `stat` into valid storage or fails.
    if unsafe { libc::fstat(fd, stat.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: fstat succeeded, so `stat` is initialized.
    let stat = unsafe { stat.assume_init_ref() };
    Some((stat.st_dev, stat.st_ino))
}

/// Classifies `fd` with one or two syscalls (fstat, then getsockopt or lseek for sockets
/// and character devices), so it is asked at most once per request, at its first
/// continuation or on ESPIPE. An fd that fails fstat counts as a `File` (the next IO
/// then reports the error).
pub(crate) fn kind(fd: i32) -> FdKind {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a full `stat` into valid storage or fails.
    if unsafe { libc::fstat(fd, stat.as_mut_ptr()) } != 0 {
        return FdKind::File;
    }
    // SAFETY: fstat succeeded, so `stat` is initialized.
    let mode = unsafe { stat.assume_init_ref() }.st_mode & libc::S_IFMT;
    match mode {
        // Anonymous inodes carry no file type.
        0 => FdKind::Message,
        libc::S_IFREG | libc::S_IFBLK | libc::S_IFDIR => FdKind::File,
        libc::S_IFIFO => FdKind::Stream,
        libc::S_IFSOCK => {
            let mut ty: libc::c_int = 0;
            let mut len = size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: SO_TYPE writes one c_int into `ty`; `len` says how big it is.
            let rc = unsafe {
                libc::getsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_TYPE,
                    (&raw mut ty).cast(),
                    &mut len,
                )
            };
            if rc == 0 && ty != libc::SOCK_STREAM {
                FdKind::Message
            } else {
                FdKind::Stream
            }
        }
        _ => {
            // SAFETY: lseek on any integer is harmless; SEEK_CUR with 0 moves nothing.
            if unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) } >= 0 {
                return FdKind::File;
            }
            // No position (ESPIPE, or EINVAL from /dev/kmsg, which seeks only by
            // record): a terminal is a byte stream, every other such device hands out
            // whole records.
            // SAFETY: isatty only queries the fd (TCGETS).
            if unsafe { libc::isatty(fd) } == 1 {
                FdKind::Stream
            } else {
                FdKind::Message
            }
        }
    }
}

/// Whether `fd` is a terminal (one `TCGETS` ioctl; false for anything else or an error).
pub(crate) fn is_tty(fd: i32) -> bool {
    // SAFETY: isatty only queries the fd (TCGETS into libc's own storage).
    unsafe { libc::isatty(fd) == 1 }
}

/// Whether `fd` is a pty master (`TIOCGPTN` succeeds only there).
pub(crate) fn is_pty_master(fd: i32) -> bool {
    let mut pty_number: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int into valid storage, or fails.
    unsafe { libc::ioctl(fd, libc::TIOCGPTN, &raw mut pty_number) == 0 }
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

/// Whether `fd` was opened (or set) O_NONBLOCK; false when that cannot be read.
pub(crate) fn is_nonblocking(fd: i32) -> bool {
    // SAFETY: F_GETFL takes no pointer.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    flags >= 0 && flags & libc::O_NONBLOCK != 0
}

/// For a blocking tty: a second open file description of the same terminal, O_NONBLOCK
/// (through /proc/self/fd), on which a transfer cannot wait for the peer; the caller's
/// fd and its flags stay untouched. `None` for anything else, and for a pty master,
/// which cannot be reopened (that would open a new pty), or when /proc is missing.
pub(crate) fn nonblocking_tty_twin(fd: i32, write: bool) -> Option<std::os::fd::OwnedFd> {
    // SAFETY: isatty only queries the fd (TCGETS).
    if unsafe { libc::isatty(fd) } != 1 {
        return None;
    }
    if is_pty_master(fd) {
        return None;
    }
    let path = std::ffi::CString::new(format!("/proc/self/fd/{fd}")).ok()?;
    let access = if write {
        libc::O_WRONLY
    } else {
        libc::O_RDONLY
    };
    // SAFETY: a NUL-terminated path; O_NOCTTY: never becomes our controlling terminal.
    let twin = unsafe {
        libc::open(
            path.as_ptr(),
            access | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    // SAFETY: a successful open returns a new fd that nothing else owns.
    (twin >= 0).then(|| unsafe { std::os::fd::FromRawFd::from_raw_fd(twin) })
}

/// Whether read(2)/write(2) on `fd` could ever transfer in that direction: a
/// zero-length preadv/pwritev (readv/writev where the file has no position), which
/// never blocks and moves nothing, fails (-EINVAL) for a file without that operation
/// (an epoll fd or pidfd read, a timerfd or signalfd written), which no amount of
/// waiting for readiness would change, and -EBADF for the wrong open mode. The
/// positional call first: it takes no file-position lock, which a blocking read(2) by
/// another thread on the same open file could hold.
pub(crate) fn transfer_possible(fd: i32, write: bool) -> Result<(), i32> {
    let none: *const libc::iovec = std::ptr::null();
    // SAFETY: zero iovecs: the kernel reads no iovec and touches no buffer.
    let mut rc = unsafe {
        if write {
            libc::pwritev(fd, none, 0, 0)
        } else {
            libc::preadv(fd, none, 0, 0)
        }
    };
    if rc < 0 && super::last_errno() == libc::ESPIPE {
        // SAFETY: as above.
        rc = unsafe {
            if write {
                libc::writev(fd, none, 0)
            } else {
                libc::readv(fd, none, 0)
            }
        };
    }
    if rc < 0 {
        Err(super::last_errno())
    } else {
        Ok(())
    }
}

/// One `preadv2`/`pwritev2` over `iov[..count]` at `offset` with the request's RWF
/// flags (`rw_flags`), or at the current position (offset -1, i.e. readv(2)/writev(2))
/// when the file has none (ESPIPE) — the way io_uring treats an offset on such files.
/// Returns the bytes moved or `-errno`.
///
/// # Safety
/// `iov` points to `count` iovecs whose buffers are valid for the transfer: writable
/// for a read, readable for a write.
pub(crate) unsafe fn transfer_once(
    write: bool,
    fd: i32,
    iov: *const libc::iovec,
    count: i32,
    offset: u64,
    rw_flags: i32,
) -> i64 {
    let call = |off: libc::off_t| {
        // SAFETY: the caller vouches for `iov` and the buffers it names.
        unsafe {
            if write {
                libc::pwritev2(fd, iov, count, off, rw_flags)
            } else {
                libc::preadv2(fd, iov, count, off, rw_flags)
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
