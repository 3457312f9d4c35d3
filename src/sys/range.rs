//! fallocate(2) and sync_file_range(2) as raw syscalls: what the AIO driver's helper
//! thread runs for IOENG_OP_FALLOCATE and IOENG_OP_SYNC_FILE_RANGE (Linux AIO has no
//! command for either; io_uring runs them itself).

/// A syscall's return value as the engine reports results: 0, or `-errno`.
#[allow(clippy::unnecessary_cast)] // c_long is i64 on the 64-bit targets only
fn result(rc: libc::c_long) -> i64 {
    if rc < 0 {
        -i64::from(super::last_errno())
    } else {
        rc as i64
    }
}

/// `fallocate(fd, mode, offset, len)`: 0 or `-errno`, exactly as the kernel answers
/// (no argument is checked here: an invalid mode or range is the kernel's to refuse).
pub(crate) fn fallocate(fd: i32, mode: u32, offset: u64, len: u64) -> i64 {
    // SAFETY: fallocate takes no pointers; any fd, mode or range is at worst refused.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fallocate,
            fd,
            mode as libc::c_int,
            offset as libc::off_t,
            len as libc::off_t,
        )
    };
    result(rc)
}

/// `sync_file_range(fd, offset, len, flags)`: 0 or `-errno`, exactly as the kernel
/// answers (`len` 0: to the end of the file).
pub(crate) fn sync_file_range(fd: i32, offset: u64, len: u64, flags: u32) -> i64 {
    // SAFETY: sync_file_range takes no pointers; any fd, range or flags are at worst
    // refused. (On x86_64 and aarch64 the 64-bit arguments go in one register each, in
    // this order; the arm32 variant with reordered arguments is not a target.)
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sync_file_range,
            fd,
            offset as libc::off64_t,
            len as libc::off64_t,
            flags as libc::c_uint,
        )
    };
    result(rc)
}

/// `BLKGETSIZE64` (`_IOR(0x12, 114, size_t)`, linux/fs.h): a block device's size in bytes.
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;

/// How far a range command on `fd` can find data: a regular file's size, a block
/// device's; `None` for anything else or when it cannot be asked (the caller then
/// assumes data may lie anywhere). Cold path: asked once per 4 GiB of a SYNC_FILE_RANGE.
pub(crate) fn data_end(fd: i32) -> Option<u64> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a full `stat` into valid storage or fails.
    if unsafe { libc::fstat(fd, stat.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: fstat succeeded, so `stat` is initialized.
    let stat = unsafe { stat.assume_init_ref() };
    match stat.st_mode & libc::S_IFMT {
        libc::S_IFREG => Some(stat.st_size as u64),
        libc::S_IFBLK => {
            let mut size: u64 = 0;
            // SAFETY: BLKGETSIZE64 writes one u64 into `size`, a live local.
            let rc = unsafe { libc::ioctl(fd, BLKGETSIZE64 as _, &mut size) };
            (rc == 0).then_some(size)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn scratch() -> std::fs::File {
        crate::sys::scratch::sparse_file("range", 0)
    }

    #[test]
    fn results_are_the_kernels() {
        let file = scratch();
        let fd = file.as_raw_fd();
        assert_eq!(fallocate(fd, 0, 0, 8192), 0);
        assert_eq!(file.metadata().unwrap().len(), 8192);
        assert_eq!(fallocate(fd, 0, 0, 0), -i64::from(libc::EINVAL), "len 0");
        // PUNCH_HOLE without KEEP_SIZE is refused by the VFS.
        let punch = libc::FALLOC_FL_PUNCH_HOLE as u32;
        assert_eq!(fallocate(fd, punch, 0, 4096), -i64::from(libc::EOPNOTSUPP));
        assert_eq!(fallocate(-1, 0, 0, 1), -i64::from(libc::EBADF));
        let all = libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        assert_eq!(sync_file_range(fd, 0, 0, all), 0);
        assert_eq!(sync_file_range(fd, 4096, 1 << 40, all), 0);
        assert_eq!(sync_file_range(fd, 0, 0, 1 << 7), -i64::from(libc::EINVAL));
        assert_eq!(sync_file_range(-1, 0, 0, all), -i64::from(libc::EBADF));
        assert_eq!(data_end(fd), Some(8192));
        file.set_len(6 << 30).unwrap();
        assert_eq!(data_end(fd), Some(6 << 30));
        assert_eq!(data_end(-1), None);
        let (read, _write) = std::io::pipe().unwrap();
        assert_eq!(data_end(read.as_raw_fd()), None);
    }
}
