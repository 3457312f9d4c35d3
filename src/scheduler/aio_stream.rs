//! How the AIO driver moves data on a stream without ever blocking (docs/ARCHITECTURE.md,
//! "Streams on AIO"): what it learned about a request's file, and which IO goes next.
//!
//! Linux AIO has no asynchronous path for pipes, sockets, ttys or FIFOs: `io_submit` runs
//! the transfer on the calling thread and, on a blocking fd, waits there for the peer.
//! So a transfer on a file without a position is first tried with `RWF_NOWAIT` and, after
//! `-EAGAIN`, the request waits with an `IOCB_CMD_POLL` iocb (which `io_cancel` can stop,
//! unlike a running transfer) before the next try. Files the kernel refuses `RWF_NOWAIT`
//! for (ttys, FIFOs: no `FMODE_NOWAIT`) are transferred only once readiness was seen, and
//! files whose poll registers on several wait queues (ttys, a FIFO opened read-write),
//! which AIO poll refuses, are asked with `poll(fd, 0)` instead and retried with the
//! engine's -EAGAIN backoff. The state travels with the request (`IoEvent::driver_state`).

/// What the driver knows about a stream request, and where it is (bits of one `u8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct StreamState(pub(crate) u8);

impl StreamState {
    /// The file was classified (`IoEvent::classify`).
    const CLASSIFIED: u8 = 1 << 0;
    /// It has no position: its transfers go through this module.
    const STREAM: u8 = 1 << 1;
    /// The kernel refused `RWF_NOWAIT` for it (EOPNOTSUPP at submit).
    const NO_NOWAIT: u8 = 1 << 2;
    /// The kernel refused `IOCB_CMD_POLL` for it (EINVAL at submit).
    const NO_AIO_POLL: u8 = 1 << 3;
    /// The last try found nothing to move: wait for readiness before the next.
    const WAIT: u8 = 1 << 4;
    /// Readiness was seen since the last try: a try without `RWF_NOWAIT` will not block.
    const READY: u8 = 1 << 5;
    /// The iocb in flight is the readiness poll.
    const POLLING: u8 = 1 << 6;

    fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    fn with(self, bit: u8) -> Self {
        StreamState(self.0 | bit)
    }

    fn without(self, bit: u8) -> Self {
        StreamState(self.0 & !bit)
    }

    pub(crate) fn classified(self) -> bool {
        self.has(Self::CLASSIFIED)
    }

    /// After `IoEvent::classify`: `stream` when the file has no position.
    pub(crate) fn classify(self, stream: bool) -> Self {
        let state = self.with(Self::CLASSIFIED);
        if stream {
            state.with(Self::STREAM)
        } else {
            state
        }
    }

    pub(crate) fn is_stream(self) -> bool {
        self.has(Self::STREAM)
    }

    pub(crate) fn polling(self) -> bool {
        self.has(Self::POLLING)
    }

    /// The next IO of a stream request (`nonblocking`: its fd is O_NONBLOCK, asked only
    /// when the file refused `RWF_NOWAIT`). Returns the IO and the state to record.
    pub(crate) fn next(self, nonblocking: impl FnOnce() -> bool) -> (NextIo, Self) {
        let wait = || {
            if self.has(Self::NO_AIO_POLL) {
                (NextIo::Probe, self)
            } else {
                (NextIo::Poll, self.with(Self::POLLING))
            }
        };
        if self.has(Self::WAIT) {
            return wait();
        }
        if !self.has(Self::NO_NOWAIT) {
            return (
                NextIo::Transfer {
                    nowait: true,
                    capped: false,
                },
                self,
            );
        }
        if self.has(Self::READY) {
            // Readiness seen on a blocking file: a write of more than a pipe buffer's
            // page could still wait for room (read returns what is there).
            let capped = !nonblocking();
            return (
                NextIo::Transfer {
                    nowait: false,
                    capped,
                },
                self,
            );
        }
        if nonblocking() {
            // O_NONBLOCK: the plain transfer cannot block; -EAGAIN then means wait.
            return (
                NextIo::Transfer {
                    nowait: false,
                    capped: false,
                },
                self,
            );
        }
        wait()
    }

    /// `poll(fd, 0)` (the `Probe`) said ready: the transfer follows at once.
    pub(crate) fn probed_ready(self) -> Self {
        self.without(Self::WAIT).with(Self::READY)
    }

    /// What a completion means for a stream request: `Some(state)` when it was the
    /// driver's own step (the request goes again at once, `tasks::RESUBMIT_NOW`), `None`
    /// when `res` is the transfer's result for the request to settle. `user_nowait`: the
    /// caller asked for -EAGAIN (IOENG_REQ_NOWAIT), so it is not waited for.
    pub(crate) fn completed(self, res: i64, user_nowait: bool) -> (Option<Self>, Self) {
        if self.polling() {
            // Ready, an error or hang-up to be reported by the transfer, or the poll was
            // cancelled (res 0; the submitter then finds the cancel mark).
            let next = self.without(Self::POLLING | Self::WAIT).with(Self::READY);
            return (Some(next), next);
        }
        let after_try = self.without(Self::READY);
        if res == -i64::from(libc::EAGAIN) && !user_nowait {
            let next = after_try.with(Self::WAIT);
            return (Some(next), next);
        }
        (None, after_try)
    }

    /// `io_submit` refused the IO with `errno`: `Some(state)` when that only told us what
    /// the file cannot do (the request goes again at once, differently), `None` when it is
    /// the request's error. `possible`: `sys::fd::transfer_possible`, asked when the
    /// refusal could hide a file that can never transfer (an epoll fd).
    pub(crate) fn refused(
        self,
        errno: i32,
        user_nowait: bool,
        possible: impl FnOnce() -> Result<(), i32>,
    ) -> Result<Option<Self>, i32> {
        if self.polling() {
            if errno == libc::EINVAL {
                // Several wait queues (tty, FIFO opened O_RDWR): ask poll(2) instead.
                return Ok(Some(self.without(Self::POLLING).with(Self::NO_AIO_POLL)));
            }
            return Err(errno);
        }
        if errno == libc::EOPNOTSUPP && !self.has(Self::NO_NOWAIT) && !user_nowait {
            // Our RWF_NOWAIT, not the caller's: the kernel checks it before it looks for
            // a read/write operation at all, so an fd that can never transfer is found
            // here, and gets read(2)'s error instead of a poll that never ends.
            possible()?;
            return Ok(Some(self.with(Self::NO_NOWAIT)));
        }
        Ok(None)
    }
}

/// The next IO of a stream request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NextIo {
    /// The transfer; `nowait`: with `RWF_NOWAIT`; `capped`: on a blocking file after
    /// readiness, so a write goes in pieces of at most [`PIPE_BUF`] bytes (a tty's goes
    /// whole through a non-blocking twin instead, see `sys::fd::nonblocking_tty_twin`).
    Transfer { nowait: bool, capped: bool },
    /// An `IOCB_CMD_POLL` for the direction of the transfer.
    Poll,
    /// Ask `poll(fd, 0)` on the submitting thread: ready → the transfer, now; not ready
    /// → -EAGAIN, retried with the engine's backoff.
    Probe,
}

/// Bytes a blocking pipe or FIFO takes without waiting once poll says writable (one free
/// buffer page).
pub(crate) const PIPE_BUF: u64 = 4096;

/// Bytes a blocking pty master takes without waiting once poll says writable. Poll says
/// so when the slave's input buffer is below its memory limit (`pty_write_room` > 0);
/// a master writes raw (its termios cannot be changed), so a write is copied into that
/// buffer, first into the free tail of its last chunk, then into new chunks of at most
/// `TTY_BUFFER_PAGE` bytes (1792 with 4 KiB pages), and the first new chunk is granted
/// whenever the limit was not yet exceeded (drivers/tty/tty_buffer.c, `tty_buffer_alloc`).
/// So a piece no larger than one chunk never waits; a bigger one may wait for the slave's
/// reader inside `io_submit` (4096 does, measured). Unless another thread writes the
/// same pty meanwhile, which could use up the room first. Also the piece of a tty slave
/// that has no twin (no /proc): a raw one behaves the same; one with output processing
/// (OPOST) writes only what `tty_write_room` allows and may wait for the rest, so a
/// small piece narrows that window without closing it.
pub(crate) const PTY_PIECE: u64 = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    const EAGAIN: i64 = -(libc::EAGAIN as i64);

    fn stream() -> StreamState {
        StreamState::default().classify(true)
    }

    #[test]
    fn a_pipe_tries_nowait_then_polls_then_tries_again() {
        let s = stream();
        assert!(s.classified() && s.is_stream());
        let (io, s) = s.next(|| unreachable!("a NOWAIT file never asks"));
        assert_eq!(
            io,
            NextIo::Transfer {
                nowait: true,
                capped: false
            }
        );
        let (again, s) = s.completed(EAGAIN, false);
        assert!(again.is_some());
        let (io, s) = s.next(|| false);
        assert_eq!(io, NextIo::Poll);
        assert!(s.polling());
        let (again, s) = s.completed(1, false);
        assert!(again.is_some() && !s.polling());
        let (io, s) = s.next(|| false);
        assert_eq!(
            io,
            NextIo::Transfer {
                nowait: true,
                capped: false
            }
        );
        assert_eq!(
            s.completed(5, false).0,
            None,
            "bytes are the request's result"
        );
        // The caller's NOWAIT: -EAGAIN is its result.
        assert_eq!(stream().completed(EAGAIN, true).0, None);
    }

    #[test]
    fn a_tty_is_probed_and_written_in_capped_pieces_when_blocking() {
        let s = stream();
        let refused = s.refused(libc::EOPNOTSUPP, false, || Ok(()));
        let s = refused.unwrap().expect("our NOWAIT refused: try otherwise");
        assert_eq!(s.next(|| false).0, NextIo::Poll);
        let (_, s) = s.next(|| false);
        let s = s.refused(libc::EINVAL, false, || Ok(())).unwrap().unwrap();
        let (io, s) = s.next(|| false);
        assert_eq!(io, NextIo::Probe);
        let s = s.probed_ready();
        let (io, s) = s.next(|| false);
        assert_eq!(
            io,
            NextIo::Transfer {
                nowait: false,
                capped: true
            }
        );
        let (again, s) = s.completed(100, false);
        assert!(again.is_none());
        assert_eq!(
            s.next(|| false).0,
            NextIo::Probe,
            "readiness is asked again"
        );
        // O_NONBLOCK: the plain transfer, uncapped; -EAGAIN then waits.
        assert_eq!(
            s.next(|| true).0,
            NextIo::Transfer {
                nowait: false,
                capped: false
            }
        );
    }

    #[test]
    fn refusals_that_are_the_requests_error() {
        let s = stream();
        // An fd with no read operation (epoll): read(2)'s error.
        assert_eq!(
            s.refused(libc::EOPNOTSUPP, false, || Err(libc::EINVAL)),
            Err(libc::EINVAL)
        );
        // The caller's own NOWAIT on a tty: -EOPNOTSUPP, as in 1.0.
        assert_eq!(s.refused(libc::EOPNOTSUPP, true, || Ok(())), Ok(None));
        assert_eq!(s.refused(libc::EBADF, false, || Ok(())), Ok(None));
        let (_, polling) = s.completed(EAGAIN, false).1.next(|| false);
        assert_eq!(
            polling.refused(libc::EBADF, false, || Ok(())),
            Err(libc::EBADF)
        );
    }
}
