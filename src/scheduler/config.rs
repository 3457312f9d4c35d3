//! The engine's configuration as validated from `ioeng_config_t` (by `ffi`): backend,
//! sizes, mode and the idle policy. Read once at open; nothing reads the environment.

/// Which backend the caller asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    Auto,
    Aio,
    Uring,
}

/// Which backend an engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Aio,
    Uring,
}

/// A validated configuration (see `ioeng_config_t`).
#[derive(Debug, Clone)]
pub struct Config {
    pub backend: BackendChoice,
    /// 1..=32768 IOs in flight.
    pub depth: u32,
    /// 1..=depth IOs per kernel submit call.
    pub batch: u32,
    /// 0 = unbounded.
    pub queue_capacity: u32,
    pub start_paused: bool,
    pub mode: Mode,
    pub idle_poll: IdlePoll,
    /// CPU to pin the submitter thread to (THREADS mode); `None` inherits.
    pub submitter_cpu: Option<usize>,
    /// CPU to pin the completer thread to (THREADS mode); `None` inherits.
    pub completer_cpu: Option<usize>,
    /// 0..=50: NORMAL's share of dispatches while HIGH also waits (§6.1); 0 = strict.
    pub normal_min_percent: u32,
    /// Keep per-class latency histograms (a clock read per submit batch and per
    /// completion batch).
    pub latency_stats: bool,
    /// IOENG_CONFIG_SINGLE_POLLER: one thread polls and closes (POLLED io_uring uses it).
    pub single_poller: bool,
    /// IOENG_CONFIG_POLL_AFTER_SUBMIT (POLLED): the polling thread polls after its own
    /// submits, which therefore leave the event fd alone (`Wakeup::quiet_submit_here`).
    pub poll_after_submit: bool,
}

/// Who drives the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A submitter and a completer thread.
    Threads,
    /// No engine thread: the caller's `ioeng_poll`.
    Polled,
}

/// How long an idle engine thread polls before it sleeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdlePoll {
    /// The engine's own policy.
    Default,
    /// Never: sleep at once.
    Never,
    /// At most this long.
    Max(std::time::Duration),
}
