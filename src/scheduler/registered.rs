//! What a caller registers before the first request: buffers for FIXED_BUF requests
//! (`ioeng_register_buffers`), checked by io_uring's rules on both backends, and files
//! for FIXED_FILE requests (`ioeng_register_files`). Each is recorded once.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

use crate::error::Error;
use crate::sys;
use crate::sys::fd::FdKind;

/// The largest buffer io_uring registers (`SZ_1G` in io_uring/rsrc.c).
const MAX_REGISTERED_BUFFER: usize = 1 << 30;

/// `(base, len)` of each registered buffer, set once.
#[derive(Default)]
pub(crate) struct Registered(OnceLock<Box<[(usize, usize)]>>);

impl Registered {
    /// io_uring's own rules for a registered buffer (non-NULL, 1 byte to 1 GiB), checked
    /// for both backends so that they refuse the same tables with the same error, before
    /// the kernel pins anything.
    pub(crate) fn check(bufs: &[libc::iovec]) -> Result<(), Error> {
        let bad = bufs.iter().any(|iov| {
            iov.iov_base.is_null()
                || iov.iov_len == 0
                || iov.iov_len > MAX_REGISTERED_BUFFER
                || (iov.iov_base as usize).checked_add(iov.iov_len).is_none()
        });
        if bad {
            return Err(Error::InvalidArgument(
                "registered buffers must be non-NULL and 1 byte to 1 GiB long",
            ));
        }
        Ok(())
    }

    /// Records `bufs` after `register` (the driver's registration) succeeded; only once,
    /// and only before the first request (`Busy` otherwise).
    pub(crate) fn record(
        &self,
        bufs: &[libc::iovec],
        first_request_accepted: bool,
        register: impl FnOnce(&[libc::iovec]) -> Result<(), i32>,
    ) -> Result<(), Error> {
        if first_request_accepted || self.0.get().is_some() {
            return Err(Error::Busy);
        }
        register(bufs).map_err(|errno| Error::Kernel {
            call: "IORING_REGISTER_BUFFERS",
            errno,
        })?;
        let table = bufs
            .iter()
            .map(|iov| (iov.iov_base as usize, iov.iov_len))
            .collect();
        let _ = self.0.set(table);
        Ok(())
    }

    /// The registered buffers, if any.
    pub(crate) fn table(&self) -> Option<&[(usize, usize)]> {
        self.0.get().map(|b| &b[..])
    }
}

/// Files registered for FIXED_FILE requests: the engine's own descriptor of each
/// (close-on-exec duplicates, closed when the engine is freed), so that a request by
/// index reaches the file registered even after the caller closed its descriptor and
/// the number was reused. io_uring registers these descriptors with the kernel
/// (IORING_REGISTER_FILES: no file lookup per request); AIO submits on them.
#[derive(Default)]
pub(crate) struct RegisteredFiles(OnceLock<Files>);

struct Files {
    fds: Box<[OwnedFd]>,
    /// What each file is, classified once here: the engine's descriptor refers to the
    /// same open file until the engine is freed, so its kind never changes, and AIO
    /// need not ask with an fstat per request (`AioDriver::submit`).
    kinds: Box<[FdKind]>,
}

impl RegisteredFiles {
    /// Duplicates `fds` and records them after `register` (the driver's registration of
    /// the duplicates) succeeded; only once, and only before the first request (`Busy`
    /// otherwise). On any failure nothing is kept.
    pub(crate) fn record(
        &self,
        fds: &[RawFd],
        first_request_accepted: bool,
        register: impl FnOnce(&[RawFd]) -> Result<(), i32>,
    ) -> Result<(), Error> {
        if first_request_accepted || self.0.get().is_some() {
            return Err(Error::Busy);
        }
        let owned = fds
            .iter()
            .map(|&fd| match sys::fd::duplicate(fd) {
                Ok(dup) => Ok(dup),
                Err(libc::EBADF) => Err(Error::BadFd),
                Err(errno) => Err(Error::Kernel {
                    call: "fcntl(F_DUPFD_CLOEXEC)",
                    errno,
                }),
            })
            .collect::<Result<Box<[OwnedFd]>, Error>>()?;
        let raw: Vec<RawFd> = owned.iter().map(AsRawFd::as_raw_fd).collect();
        register(&raw).map_err(|errno| Error::Kernel {
            call: "IORING_REGISTER_FILES",
            errno,
        })?;
        let kinds = raw.iter().map(|&fd| sys::fd::kind(fd)).collect();
        let _ = self.0.set(Files { fds: owned, kinds });
        Ok(())
    }

    /// The registered files, by index, if any.
    pub(crate) fn table(&self) -> Option<&[OwnedFd]> {
        self.0.get().map(|files| &files.fds[..])
    }

    /// The kind of registered file `index`, if there is one.
    pub(crate) fn kind(&self, index: u32) -> Option<FdKind> {
        self.0.get()?.kinds.get(index as usize).copied()
    }
}
