//! Generates `include/ioeng.h` from `src/ffi.rs` with cbindgen.
//!
//! The header is committed. With `IOENG_CHECK_HEADER=1` the build fails instead of
//! rewriting a header that differs from the generated one, so CI catches a stale commit.

use std::{env, fs, path::PathBuf};

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let header_path = crate_dir.join("include").join("ioeng.h");
    println!("cargo:rerun-if-changed=src/ffi.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=include/ioeng.h");
    println!("cargo:rerun-if-env-changed=IOENG_CHECK_HEADER");
    // A versioned soname so C programs link against the ABI major, not the file name.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libioeng.so.1");

    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml must parse");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        // Only the FFI module is the C interface; nothing else is parsed.
        .with_src(crate_dir.join("src").join("ffi.rs"))
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
