//! Generates `include/ioeng.h` from `src/ffi.rs` with cbindgen.
//!
//! The header is committed. With `IOENG_CHECK_HEADER=1` the build fails instead of
//! rewriting a header that differs from the generated one, so CI catches a stale commit.
//!
//! The shared library is not linked by rustc (there is no cdylib crate type): the top-level
//! Makefile links `target/lib/libioeng.so.1.1.0` from the staticlib with the version script
//! `pkg/ioeng.map`, because rustc gives every cdylib its own anonymous version script, which
//! cannot carry the `IOENG_1.0` symbol versions (see the Makefile).

use std::{env, fs, path::PathBuf};

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let header_path = crate_dir.join("include").join("ioeng.h");
    println!("cargo:rerun-if-changed=src/ffi.rs");
    println!("cargo:rerun-if-changed=src/abi.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=include/ioeng.h");
    // No rerun-if-env-changed=IOENG_CHECK_HEADER on purpose: toggling it would rebuild the
    // crate twice per `make test`. The check still runs whenever the header's inputs changed
    // (and on every fresh build, as in CI), which is when a stale header can arise.

    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml must parse");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        // Only the FFI module and the structs it shares with the scheduler are the C
        // interface; nothing else is parsed.
        .with_src(crate_dir.join("src").join("ffi.rs"))
        .with_src(crate_dir.join("src").join("abi.rs"))
        .generate()
        .expect("cbindgen failed to generate include/ioeng.h")
        .write(&mut generated);

    let committed = fs::read(&header_path).unwrap_or_default();
    if committed == generated {
        return;
    }
    if env::var_os("IOENG_CHECK_HEADER").is_some_and(|v| v == "1") {
        panic!(
            "include/ioeng.h is out of date with src/ffi.rs: run `cargo build` and commit the header"
        );
    }
    fs::write(&header_path, generated).expect("cannot write include/ioeng.h");
}
