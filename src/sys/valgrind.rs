//! Working with valgrind's memcheck, which cannot see what the kernel writes into user
//! memory outside the syscalls it wraps.

/// True when this process runs under valgrind (its preload objects are mapped).
/// Read once: valgrind is there from the first instruction or not at all.
///
/// Under valgrind the AIO completer reaps only through `io_getevents`: valgrind sizes
/// io_setup's ring from the requested count (the kernel maps more), so reading the ring
/// in user space trips "Invalid read", and only io_getevents tells it which read
/// buffers the kernel filled.
pub(crate) fn running_on_valgrind() -> bool {
    static ANSWER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ANSWER.get_or_init(|| {
        std::fs::read_to_string("/proc/self/maps")
            .map(|maps| maps.contains("vgpreload"))
            .unwrap_or(false)
    })
}

/// memcheck's MAKE_MEM_DEFINED request: `('M' << 24 | 'C' << 16) + 2`.
#[cfg(target_arch = "x86_64")]
const MAKE_MEM_DEFINED: u64 = ((b'M' as u64) << 24 | (b'C' as u64) << 16) + 2;

/// Tells memcheck that the kernel wrote `len` bytes at `addr` (an io_uring read, which
/// valgrind does not follow). A handful of no-op instructions when not under valgrind;
/// call it only when [`running_on_valgrind`] said yes anyway. x86-64 only (elsewhere a
/// no-op).
pub(crate) fn mark_defined(addr: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let args: [u64; 6] = [MAKE_MEM_DEFINED, addr as u64, len as u64, 0, 0, 0];
        // SAFETY: valgrind's client-request sequence for amd64: four rotations of rdi
        // that add up to 128 bits (rdi ends unchanged) and `xchg rbx, rbx` (a no-op);
        // natively nothing changes but rdx, which receives its own default. Under
        // valgrind the tool reads the six words at rax and only updates its own shadow
        // memory. `args` lives across the asm.
        unsafe {
            std::arch::asm!(
                "rol rdi, 3",
                "rol rdi, 13",
                "rol rdi, 61",
                "rol rdi, 51",
                "xchg rbx, rbx",
                in("rax") args.as_ptr(),
                inout("rdx") 0u64 => _,
                out("rdi") _,
                options(nostack),
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (addr, len);
}
