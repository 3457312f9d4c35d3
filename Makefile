# Top-level entry points. `make test` is the command README.md and .ci/run use.
CARGO ?= cargo

.PHONY: all lib demo bench test test-rust test-c check-header clean

all: lib

lib:
	$(CARGO) build --release
	ln -sf libioeng.so target/release/libioeng.so.1

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

# Fails when include/ioeng.h differs from what cbindgen generates from src/ffi.rs, or
# when libioeng.so exports anything but ioeng_* or lacks its soname.
check-header:
	IOENG_CHECK_HEADER=1 $(CARGO) build --release
	@extra=$$(nm -D --defined-only target/release/libioeng.so | awk '{print $$3}' | grep -v '^ioeng_' || true); \
	if [ -n "$$extra" ]; then echo "libioeng.so exports non-ioeng symbols: $$extra"; exit 1; fi
	@readelf -d target/release/libioeng.so | grep -q 'SONAME.*libioeng.so.1' || { echo "libioeng.so lacks soname libioeng.so.1"; exit 1; }
	@echo "check-header: include/ioeng.h current; exports only ioeng_*; soname libioeng.so.1"

clean:
	$(CARGO) clean
	$(MAKE) -C c_tests clean
	$(MAKE) -C examples_c clean
