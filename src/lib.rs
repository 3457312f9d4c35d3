//! libioeng: a Linux IO engine with one scheduler over two kernel interfaces.
//!
//! Layout, top to bottom (docs/ARCHITECTURE.md, "Layers"; `pkg/check_layers.sh` checks
//! that no module uses one above it):
//! - [`ffi`]: the `extern "C"` layer (the only public C surface; cbindgen reads it).
//! - [`scheduler`]: backend choice and the engine handle (`mod`, `engine`), the two modes'
//!   loops (`worker`, `polled`) built from the steps (`steps`), the shared state
//!   (`context` and the concerns it holds: `waiting`, `cancel`, `wakeup`, `flight`,
//!   `stats`, `registered`, `stuck`), the scheduling rules (`common`, `round`), the
//!   request (`tasks`), the driver contract (`driver`, `slot`) and the two drivers
//!   (`aio`, `uring`).
//! - `sys`: raw kernel ABI structs and syscalls (the only place `libc::syscall` is called).
//! - `tsan`, `race_hooks`: ThreadSanitizer annotations; race hooks for tests.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod abi;
pub(crate) mod error;
pub mod ffi;
mod race_hooks;
pub(crate) mod scheduler;
mod sys;
mod tsan;
