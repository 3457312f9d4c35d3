//! libioeng: a Linux IO engine with one scheduler over two kernel interfaces.
//!
//! Layout (the architecture, top to bottom):
//! - [`ffi`]: the `extern "C"` layer (the only public C surface; cbindgen reads it).
//! - [`scheduler`]: backend choice and the engine handle; `scheduler::common`,
//!   `scheduler::context`, `scheduler::tasks` and `scheduler::worker` are the shared layer
//!   (queues, fairness, budget, the two thread loops), generic over a driver;
//!   `scheduler::aio` and `scheduler::uring` are the two drivers.
//! - `sys`: raw kernel ABI structs and syscalls (the only place `libc::syscall` is called).
//! - `tsan`: ThreadSanitizer happens-before annotations (active only under TSan).

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub(crate) mod error;
pub mod ffi;
mod race_hooks;
pub(crate) mod scheduler;
mod sys;
mod tsan;
