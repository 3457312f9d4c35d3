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
    /// The process could not get the memory for an engine's arrays (`RLIMIT_AS`, no
    /// overcommit): reported instead of Rust's abort on allocation failure.
    #[error("out of memory")]
    OutOfMemory,
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
            Error::OutOfMemory => libc::ENOMEM,
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

impl From<std::collections::TryReserveError> for Error {
    fn from(_: std::collections::TryReserveError) -> Self {
        Error::OutOfMemory
    }
}

/// An empty vector with room for `n` items, or `OutOfMemory`: for the allocations of an
/// engine's open whose size grows with its configuration (depth, batch), which a short
/// address space must fail cleanly rather than abort the process.
pub(crate) fn try_with_capacity<T>(n: usize) -> Result<Vec<T>, Error> {
    let mut vec = Vec::new();
    vec.try_reserve_exact(n)?;
    Ok(vec)
}

/// `n` items made by `item` (as `(0..n).map(..).collect()`), allocated as in
/// [`try_with_capacity`]; exactly `n` of capacity, so `into_boxed_slice` does not
/// reallocate.
pub(crate) fn try_vec<T>(n: usize, mut item: impl FnMut(usize) -> T) -> Result<Vec<T>, Error> {
    let mut vec = try_with_capacity(n)?;
    vec.extend((0..n).map(&mut item));
    Ok(vec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_impossible_allocation_is_out_of_memory() {
        assert_eq!(
            try_with_capacity::<u64>(1 << 57).err(), // 2^60 bytes
            Some(Error::OutOfMemory)
        );
        assert_eq!(Error::OutOfMemory.errno(), libc::ENOMEM);
        let v = try_vec(5, |i| i * 2).unwrap();
        assert_eq!((v.len(), v.capacity()), (5, 5));
        assert_eq!(v, [0, 2, 4, 6, 8]);
    }
}
