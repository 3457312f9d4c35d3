//! The crate's error type, mapped to a negative errno at the C boundary.

use thiserror::Error;

/// Every failure the engine reports synchronously.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// A request or configuration the contract rejects.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// A negative file descriptor.
    #[error("bad file descriptor")]
    BadFd,
    /// `close` has begun; no new requests are accepted.
    #[error("engine is shutting down")]
    ShuttingDown,
    /// The queues hold `queue_capacity` requests.
    #[error("queue is full")]
    QueueFull,
    /// Too late or too often (registering buffers after the first request, or twice),
    /// or another thread is polling (or closing) this POLLED engine.
    #[error("resource busy")]
    Busy,
    /// `close` was called from one of the engine's own callbacks.
    #[error("close called from an engine callback")]
    CloseFromCallback,
    /// The call needs the other mode (`ioeng_poll` on a THREADS engine, ...).
    #[error("not available in this engine's mode")]
    WrongMode,
    /// A kernel call failed while creating the engine.
    #[error("{call} failed: errno {errno}")]
    Kernel { call: &'static str, errno: i32 },
}

impl Error {
    /// The positive errno this error stands for.
    pub fn errno(&self) -> i32 {
        match self {
            Error::InvalidArgument(_) => libc::EINVAL,
            Error::BadFd => libc::EBADF,
            Error::ShuttingDown => libc::ESHUTDOWN,
            Error::QueueFull => libc::EAGAIN,
            Error::Busy => libc::EBUSY,
            Error::CloseFromCallback => libc::EDEADLK,
            Error::WrongMode => libc::EINVAL,
            Error::Kernel { errno, .. } => *errno,
        }
    }

    /// A kernel failure from an `io::Error` (or `EIO` if it carries no errno).
    pub(crate) fn kernel(call: &'static str, err: &std::io::Error) -> Self {
        Error::Kernel {
            call,
            errno: err.raw_os_error().unwrap_or(libc::EIO),
        }
    }
}
