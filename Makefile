# Top-level entry points. `make test` is the command README.md and .ci/run use.
CARGO ?= cargo

.PHONY: all lib demo bench test test-rust test-c check-header clean

all: lib

lib:
	$(CARGO) build --release
	ln -sf libioeng.so target/release/libioeng.so.0

# Builds the C example and benchmark, runs the example, then a short benchmark of both
# backends (side by side with fio when it is installed) on scratch files; prints a table.
demo: lib
	$(MAKE) -C examples_c demo
	bash examples_c/compare_fio.sh --quick --no-build

# Every test: the header is current, Rust unit + integration tests, C tests on both backends.
test: check-header test-rust test-c

test-rust:
	$(CARGO) test

test-c: lib
	$(MAKE) -C c_tests check

# Fails when include/ioeng.h differs from what cbindgen generates from src/ffi.rs.
check-header:
	IOENG_CHECK_HEADER=1 $(CARGO) build --release

clean:
	$(CARGO) clean
	$(MAKE) -C c_tests clean
	$(MAKE) -C examples_c clean
