//! O_DIRECT alignment of an open file (`ioeng_dio_alignment`): statx(2) `STATX_DIOALIGN`
//! where the kernel reports it (Linux 6.1+ for files of ext4/xfs/f2fs/btrfs; block devices
//! since 6.11), else the logical block size of the block device (BLKSSZGET on a block
//! device fd, sysfs `queue/logical_block_size` for a file on a block-device filesystem),
//! else 4096, the largest logical block size in common use. Where the kernel does not
//! report DIOALIGN, a file that cannot do direct IO at all (procfs, sysfs, ...) is told
//! by its filesystem (`fs_without_direct_io`), never by opening it again.

use std::io::Read;

/// `struct statx` of linux/stat.h (256 bytes). Only the fields used here are named; the
/// kernel fills the rest, which stays opaque padding.
#[repr(C)]
#[allow(dead_code)] // fields are read by the kernel's layout, not all by us
pub(crate) struct Statx {
    mask: u32,
    blksize: u32,
    attributes: u64,
    nlink: u32,
    uid: u32,
    gid: u32,
    mode: u16,
    spare0: u16,
    ino: u64,
    size: u64,
    blocks: u64,
    attributes_mask: u64,
    /// atime, btime, ctime, mtime: four `struct statx_timestamp` of 16 bytes.
    timestamps: [u64; 8],
    rdev_major: u32,
    rdev_minor: u32,
    dev_major: u32,
    dev_minor: u32,
    mnt_id: u64,
    dio_mem_align: u32,
    dio_offset_align: u32,
    spare3: [u64; 12],
}

const _: () = assert!(std::mem::size_of::<Statx>() == 256);
const _: () = assert!(std::mem::offset_of!(Statx, mode) == 28);
const _: () = assert!(std::mem::offset_of!(Statx, rdev_major) == 128);
const _: () = assert!(std::mem::offset_of!(Statx, dev_major) == 136);
const _: () = assert!(std::mem::offset_of!(Statx, dio_mem_align) == 152);
const _: () = assert!(std::mem::offset_of!(Statx, dio_offset_align) == 156);

/// linux/stat.h request bits.
const STATX_TYPE: u32 = 0x1;
const STATX_DIOALIGN: u32 = 0x2000;
/// linux/fs.h `BLKSSZGET` = `_IO(0x12, 104)`: the logical block size (an `int`).
const BLKSSZGET: libc::c_ulong = 0x1268;

/// What the fallback assumes when nothing better is known.
pub(crate) const DEFAULT_ALIGN: u32 = 4096;

/// statx(fd, "", AT_EMPTY_PATH, STATX_TYPE | STATX_DIOALIGN). `Err(errno)` on failure.
fn statx_fd(fd: i32) -> Result<Statx, i32> {
    let mut stx = std::mem::MaybeUninit::<Statx>::zeroed();
    // SAFETY: statx writes at most one `struct statx` (256 bytes, asserted above) into
    // `stx`; the path is a static empty C string; no other pointer is passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_statx,
            fd,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            STATX_TYPE | STATX_DIOALIGN,
            stx.as_mut_ptr(),
        )
    };
    if rc < 0 {
        return Err(super::last_errno());
    }
    // SAFETY: zero-initialized and then (partly) written by the kernel: every bit pattern
    // is a valid Statx (integers only).
    Ok(unsafe { stx.assume_init() })
}

/// The logical block size of the block device `fd` refers to (BLKSSZGET).
fn block_device_lbs(fd: i32) -> Option<u32> {
    let mut size: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int to the pointer given, which points to `size`.
    let rc = unsafe { libc::ioctl(fd, BLKSSZGET, &raw mut size) };
    (rc == 0 && size > 0).then_some(size as u32)
}

/// The logical block size of block device `major:minor` from sysfs; for a partition the
/// `queue/` directory is its whole disk's (the parent directory).
pub(crate) fn sysfs_lbs(major: u32, minor: u32) -> Option<u32> {
    let base = format!("/sys/dev/block/{major}:{minor}");
    [
        format!("{base}/queue/logical_block_size"),
        format!("{base}/../queue/logical_block_size"),
    ]
    .iter()
    .find_map(|path| {
        let mut text = String::new();
        std::fs::File::open(path)
            .ok()?
            .read_to_string(&mut text)
            .ok()?;
        text.trim().parse::<u32>().ok().filter(|&n| n > 0)
    })
}

/// `(mem_align, offset_align)` for O_DIRECT IO on `fd`, or `Err(errno)`:
/// EBADF (not an open fd), EOPNOTSUPP (the kernel says the file cannot do direct IO, it
/// lives on a pseudo filesystem without it, or it is neither a regular file nor a block
/// device).
pub(crate) fn alignment(fd: i32) -> Result<(u32, u32), i32> {
    let stx = statx_fd(fd)?;
    let file_type = u32::from(stx.mode) & libc::S_IFMT;
    let (regular, block) = (file_type == libc::S_IFREG, file_type == libc::S_IFBLK);
    if stx.mask & STATX_TYPE == 0 || !(regular || block) {
        return Err(libc::EOPNOTSUPP);
    }
    if stx.mask & STATX_DIOALIGN != 0 {
        // Both zero: the kernel says this file cannot do direct IO (statx(2)).
        if stx.dio_mem_align == 0 || stx.dio_offset_align == 0 {
            return Err(libc::EOPNOTSUPP);
        }
        return Ok((stx.dio_mem_align, stx.dio_offset_align));
    }
    // Without DIOALIGN the kernel says nothing about direct IO: a file of the kernel's
    // pseudo filesystems (procfs, sysfs, ...) has none, told apart by the filesystem.
    if fs_without_direct_io(fd) {
        return Err(libc::EOPNOTSUPP);
    }
    Ok(fallback(fd, &stx, block))
}

/// Filesystems whose files never take O_DIRECT (an O_DIRECT open fails with EINVAL) and
/// whose kernel does not say so through DIOALIGN: the pseudo filesystems of the kernel's
/// own state (`f_type` values of linux/magic.h).
const NO_DIRECT_IO_FS: [libc::c_long; 11] = [
    0x9fa0,      // PROC_SUPER_MAGIC
    0x6265_6572, // SYSFS_MAGIC
    0x6462_6720, // DEBUGFS_MAGIC
    0x7472_6163, // TRACEFS_MAGIC
    0x0027_e0eb, // CGROUP_SUPER_MAGIC
    0x6367_7270, // CGROUP2_SUPER_MAGIC
    0x7363_6673, // SECURITYFS_MAGIC
    0xcafe_4a11, // BPF_FS_MAGIC
    0x6265_6570, // CONFIGFS_MAGIC
    0x6165_676c, // PSTOREFS_MAGIC
    0xde5e_81e4, // EFIVARFS_MAGIC
];

/// Whether `fd`'s filesystem is one whose files cannot do direct IO at all
/// (`NO_DIRECT_IO_FS`). Asked with fstatfs, a pure query: no second open of the file,
/// which would drop the caller's POSIX record locks on its close, break a lease, or
/// wake an fanotify or FUSE listener.
fn fs_without_direct_io(fd: i32) -> bool {
    let mut sfs = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: fstatfs writes one `struct statfs` into valid storage or fails.
    if unsafe { libc::fstatfs(fd, sfs.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: fstatfs succeeded, so `sfs` is initialized.
    let f_type = unsafe { sfs.assume_init_ref() }.f_type;
    NO_DIRECT_IO_FS.contains(&(f_type as libc::c_long))
}

/// The pre-DIOALIGN rule: memory and offsets aligned to the device's logical block size.
fn fallback(fd: i32, stx: &Statx, block: bool) -> (u32, u32) {
    let lbs = if block {
        block_device_lbs(fd)
    } else {
        sysfs_lbs(stx.dev_major, stx.dev_minor)
    }
    .unwrap_or(DEFAULT_ALIGN);
    (lbs, lbs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn fallback_uses_the_filesystems_device() {
        // /tmp on the test machine is a block-device filesystem (ext4 on virtio) or tmpfs
        // (an anonymous device: no sysfs entry, so 4096).
        let file = std::fs::File::open("/proc/self/exe").unwrap();
        let stx = statx_fd(file.as_raw_fd()).unwrap();
        let expected = sysfs_lbs(stx.dev_major, stx.dev_minor).unwrap_or(DEFAULT_ALIGN);
        assert_eq!(
            fallback(file.as_raw_fd(), &stx, false),
            (expected, expected)
        );
        assert!(expected.is_power_of_two() && expected >= 512);
    }

    #[test]
    fn anonymous_device_falls_back_to_4096() {
        assert_eq!(sysfs_lbs(0, 0), None);
    }

    #[test]
    fn proc_and_sys_files_cannot_do_direct_io() {
        for path in [
            "/proc/self/status",
            "/proc/version",
            "/sys/kernel/uevent_seqnum",
        ] {
            let Ok(file) = std::fs::File::open(path) else {
                continue;
            };
            assert_eq!(alignment(file.as_raw_fd()), Err(libc::EOPNOTSUPP), "{path}");
        }
    }

    #[test]
    fn bad_fd_and_pipe() {
        assert_eq!(alignment(-1), Err(libc::EBADF));
        let mut fds = [0; 2];
        // SAFETY: pipe writes two fds into the array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        assert_eq!(alignment(fds[0]), Err(libc::EOPNOTSUPP));
        for fd in fds {
            // SAFETY: closes the fds pipe just made.
            unsafe { libc::close(fd) };
        }
    }
}
