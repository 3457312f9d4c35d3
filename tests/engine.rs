//! End-to-end tests through the C ABI on real files, on every available backend, in both
//! modes.

mod common;

use common::*;
use ioeng::ffi::*;

const EXT4_DIR: &str = "/tmp";
const TMPFS_DIR: &str = "/dev/shm";

#[test]
fn write_then_read_back_direct_and_buffered() {
    for setup in backends() {
        let name = setup.to_string();
        for (dir, direct) in [(EXT4_DIR, true), (TMPFS_DIR, false), (TMPFS_DIR, true)] {
            let engine = Engine::with(setup);
            assert_eq!(engine.backend(), setup.backend);
            let file = Scratch::new(dir, direct);
            let blocks = 64usize;
            let block = 16 * 1024;
            let mut data = AlignedBuf::new(blocks * block);
            fill_pattern(data.as_mut_slice(), 7);
            // One request per block over the whole buffer; every one must move a block.
            let transfer = |op, buf: &mut AlignedBuf| {
                let done = Done::new();
                for i in 0..blocks {
                    let at = buf.as_mut_ptr().wrapping_add(i * block);
                    let r = req(op, file.fd(), at, block as u64, (i * block) as u64);
                    assert_eq!(engine.submit(&r, &done, i as u64), 0);
                }
                let results = done.wait(blocks);
                assert!(
                    results.iter().all(|&(_, res)| res == block as i64),
                    "{name} op {op}: {results:?}"
                );
            };
            transfer(IOENG_OP_WRITE, &mut data);
            let mut back = AlignedBuf::new(blocks * block);
            transfer(IOENG_OP_READ, &mut back);
            assert!(
                back.as_slice() == data.as_slice(),
                "{name} {dir} direct={direct}: data differs"
            );
            let stats = engine.stats();
            assert_eq!(
                (stats.submitted, stats.completed, stats.in_flight),
                (128, 128, 0)
            );
            engine.close();
        }
    }
}

#[test]
fn eof_errors_and_fsync_give_the_documented_res() {
    let mut per_backend = Vec::new();
    for setup in backends() {
        let engine = Engine::with(setup);
        let file = Scratch::new(TMPFS_DIR, false);
        let mut data = vec![0u8; 10_000];
        fill_pattern(&mut data, 3);
        std::fs::write(&file.path, &data).unwrap();
        let direct = Scratch::new(EXT4_DIR, true);
        // Real blocks: O_DIRECT reads of a hole skip the alignment checks.
        std::fs::write(&direct.path, &data[..8192]).unwrap();
        direct.file.sync_all().unwrap();
        // A number no file holds: tests run in parallel threads, so a just-closed fd
        // could be reused by another test before the request reaches the kernel.
        let closed_fd = 1_000_000;
        // SAFETY: F_GETFD only queries the descriptor table.
        assert_eq!(unsafe { libc::fcntl(closed_fd, libc::F_GETFD) }, -1);
        let mut buf = AlignedBuf::new(32768);
        let p = buf.as_mut_ptr();
        let requests = [
            req(IOENG_OP_READ, file.fd(), p, 4096, 8192),
            req(IOENG_OP_READ, file.fd(), p, 4096, 10_000),
            req(IOENG_OP_READ, file.fd(), p, 4096, 20_000),
            req(IOENG_OP_READ, file.fd(), p, 16384, 0),
            req(IOENG_OP_READ, closed_fd, p, 4096, 0),
            req(IOENG_OP_READ, direct.fd(), p.wrapping_add(1), 4096, 0),
            req(IOENG_OP_READ, direct.fd(), p, 100, 0),
            req(IOENG_OP_FSYNC, file.fd(), std::ptr::null_mut(), 0, 0),
            req(IOENG_OP_FDATASYNC, direct.fd(), std::ptr::null_mut(), 0, 0),
            req(IOENG_OP_FSYNC, closed_fd, std::ptr::null_mut(), 0, 0),
        ];
        let mut results = Vec::new();
        for (tag, r) in requests.iter().enumerate() {
            // One at a time: the buffer is shared and the order must be deterministic.
            let done = Done::new();
            assert_eq!(engine.submit(r, &done, tag as u64), 0);
            results.push(done.wait(1)[0].1);
            if tag == 3 {
                assert!(
                    buf.as_slice()[..10_000] == data[..],
                    "EOF read returned wrong bytes"
                );
            }
        }
        let (ebadf, einval) = (-i64::from(libc::EBADF), -i64::from(libc::EINVAL));
        assert_eq!(
            results,
            [1808, 0, 0, 10_000, ebadf, einval, einval, 0, 0, ebadf],
            "{setup}"
        );
        per_backend.push(results);
        engine.close();
    }
    per_backend.dedup();
    assert_eq!(per_backend.len(), 1, "backends disagree");
}

#[test]
fn synchronous_errors() {
    let mut cfg = config(IOENG_BACKEND_AIO);
    cfg.depth = 0;
    assert_eq!(Engine::open(&cfg).err(), Some(-libc::EINVAL));
    cfg.depth = IOENG_MAX_DEPTH + 1;
    assert_eq!(Engine::open(&cfg).err(), Some(-libc::EINVAL));
    cfg.depth = 8;
    cfg.batch = 9;
    assert_eq!(Engine::open(&cfg).err(), Some(-libc::EINVAL));
    cfg.batch = 0;
    cfg.backend = 3;
    assert_eq!(Engine::open(&cfg).err(), Some(-libc::EINVAL));
    cfg.backend = IOENG_BACKEND_AIO;
    cfg.reserved[0] = 1;
    assert_eq!(Engine::open(&cfg).err(), Some(-libc::EINVAL));
    cfg.reserved[0] = 0;
    cfg.flags = 2; // not an IOENG_CONFIG_* bit
    assert_eq!(Engine::open(&cfg).err(), Some(-libc::EINVAL));
    for setup in backends() {
        let mut cfg = config_for(setup);
        cfg.queue_capacity = 2;
        cfg.start_paused = 1;
        let engine = Engine::open(&cfg).unwrap();
        let done = Done::new();
        let mut byte = [0u8; 1];
        let p = byte.as_mut_ptr();
        let file = Scratch::new(TMPFS_DIR, false);
        let mut bad_op = req(IOENG_OP_READ, file.fd(), p, 1, 0);
        bad_op.op = 8; // the first after IOENG_OP_SYNC_FILE_RANGE
        let mut bad_prio = req(IOENG_OP_READ, file.fd(), p, 1, 0);
        bad_prio.prio = 2;
        let einval = -libc::EINVAL;
        assert_eq!(engine.submit(&bad_op, &done, 0), einval);
        assert_eq!(engine.submit(&bad_prio, &done, 0), einval);
        assert_eq!(
            engine.submit(
                &req(IOENG_OP_READ, file.fd(), std::ptr::null_mut(), 1, 0),
                &done,
                0
            ),
            einval
        );
        assert_eq!(
            engine.submit(&req(IOENG_OP_WRITE, file.fd(), p, 0, 0), &done, 0),
            einval
        );
        assert_eq!(
            engine.submit(
                &req(IOENG_OP_WRITE, file.fd(), p, 2, i64::MAX as u64 - 1),
                &done,
                0
            ),
            einval
        );
        assert_eq!(
            engine.submit(&req(IOENG_OP_READ, -1, p, 1, 0), &done, 0),
            -libc::EBADF
        );
        // SAFETY: NULL arguments are the point of the test.
        unsafe {
            let r = req(IOENG_OP_READ, file.fd(), p, 1, 0);
            extern "C" fn nop(_: *mut std::ffi::c_void, _: i64) {}
            assert_eq!(
                ioeng_submit(std::ptr::null_mut(), &r, Some(nop), std::ptr::null_mut()),
                einval
            );
            assert_eq!(
                ioeng_submit(engine.0, std::ptr::null(), Some(nop), std::ptr::null_mut()),
                einval
            );
            assert_eq!(
                ioeng_submit(engine.0, &r, None, std::ptr::null_mut()),
                einval
            );
        }
        let fsync = req(IOENG_OP_FSYNC, file.fd(), std::ptr::null_mut(), 0, 0);
        assert_eq!(engine.submit(&fsync, &done, 1), 0);
        assert_eq!(engine.submit(&fsync, &done, 2), 0);
        assert_eq!(engine.submit(&fsync, &done, 3), -libc::EAGAIN);
        assert!(done.snapshot().is_empty(), "paused engine ran a callback");
        engine.close();
        assert_eq!(
            done.snapshot(),
            [(1, 0), (2, 0)],
            "close drains a paused engine"
        );
    }
}
