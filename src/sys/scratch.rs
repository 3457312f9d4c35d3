//! Unit tests only: scratch files on the real filesystem of the temp dir (ext4 here), so
//! the tests that need one drive the real syscalls on it.

use std::fs::{File, OpenOptions};

/// A new, already unlinked read-write file in the temp dir, sparse, of `size` bytes.
/// `name` keeps the files of concurrently running tests apart.
pub(crate) fn sparse_file(name: &str, size: u64) -> File {
    let path = std::env::temp_dir().join(format!(
        "ioeng-{name}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .expect("scratch file");
    let _ = std::fs::remove_file(&path);
    file.set_len(size).expect("set_len");
    file
}
