# Top-level entry points. `make test` is the command README.md and .ci/run use.
#
#   make                 build target/lib/: libioeng.so.1.1.0 (+ links libioeng.so.1, libioeng.so)
#                        and libioeng.a; tests and examples link against this directory
#   make demo            build and run the C example and a short benchmark (fresh clone is fine)
#   make test            every test (see `test` below)
#   make install         PREFIX=/usr/local LIBDIR=$(PREFIX)/lib INCLUDEDIR=$(PREFIX)/include
#                        MANDIR=$(PREFIX)/share/man DESTDIR=; stripped libraries
#   make install-debug   the shared library's debug info (LIBDIR/.debug/, same variables)
#   make uninstall       removes what `make install` installed (same variables)
CARGO ?= cargo
CC    ?= cc

# Version and ABI major come from Cargo.toml, the one place the version is written.
VERSION := $(shell sed -n 's/^version = "\([0-9.]*\)"/\1/p' Cargo.toml | head -n 1)
MAJOR   := $(firstword $(subst ., ,$(VERSION)))
SOFILE  := libioeng.so.$(VERSION)
SONAME  := libioeng.so.$(MAJOR)

# Build output used by c_tests/, examples_c/ and make install.
STAGE   := target/lib
RUSTA   := target/release/libioeng.a
# What a program linking libioeng.a statically also needs (rustc --print native-static-libs
# minus -lgcc_s: gcc's driver adds the unwinder itself, libgcc_s as needed in a dynamic link
# and libgcc_eh in a `gcc -static` one, where an explicit -lgcc_s cannot be satisfied).
LIBS_PRIVATE := -lutil -lrt -lpthread -lm -ldl -lc
# The shared library is linked by `cc -shared`, which gets libgcc_s explicitly.
SO_LIBS := -lgcc_s $(LIBS_PRIVATE)

# Installation directories (GNU conventions).
PREFIX       ?= /usr/local
LIBDIR       ?= $(PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
DATADIR      ?= $(PREFIX)/share
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
CMAKEDIR     ?= $(LIBDIR)/cmake/ioeng
MANDIR       ?= $(DATADIR)/man
DESTDIR      ?=
# Installed copies: the shared library stripped (--strip-unneeded) with a .gnu_debuglink
# to its debug info, which `make install-debug` installs as LIBDIR/.debug/$(SOFILE).debug
# (where gdb looks for a debuglink next to the library); libioeng.a without debug info
# and without rustc's embedded LLVM bitcode (.llvmbc, only for cross-language LTO).
DIST         := $(STAGE)/dist
MAN3         := $(wildcard man/man3/*.3)
MAN7         := $(wildcard man/man7/*.7)

.PHONY: all lib demo bench test test-rust test-c test-install check-header check-msrv check-layers \
        check-man dist install install-debug uninstall clean FORCE

all: lib

# cargo is incremental; the staged files below change only when libioeng.a did, so the
# C programs linked against target/lib relink only then.
lib: $(STAGE)/$(SOFILE) $(STAGE)/$(SONAME) $(STAGE)/libioeng.so $(STAGE)/libioeng.a

$(RUSTA): FORCE
	$(CARGO) build --release

# The shared library is linked here from the staticlib rather than by rustc as a cdylib:
# rustc always adds its own anonymous version script for a cdylib, which GNU ld refuses to
# combine with a named one and lld lets win over it, so a cdylib cannot carry the IOENG_1.0
# symbol versions. `-u` pulls in each exported function; the version script hides the rest.
# (readelf, not nm: nm takes the objects for LTO bitcode because rustc embeds .llvmbc.)
$(STAGE)/$(SOFILE): $(RUSTA) pkg/ioeng.map
	@mkdir -p $(STAGE)
	@syms=$$(readelf -sW $(RUSTA) 2>/dev/null | awk '$$4 == "FUNC" && $$5 == "GLOBAL" && $$7 != "UND" && $$8 ~ /^ioeng_/ { print "-Wl,-u," $$8 }' | sort -u); \
	[ -n "$$syms" ] || { echo "no ioeng_* functions found in $(RUSTA)"; exit 1; }; \
	set -x; $(CC) -shared -o $@.tmp -Wl,-soname,$(SONAME) -Wl,--version-script=pkg/ioeng.map \
	  -Wl,--no-undefined -Wl,--gc-sections -Wl,-z,relro -Wl,-z,now $$syms $(RUSTA) $(SO_LIBS)
	mv -f $@.tmp $@

# Normal prerequisites (make follows the links): a link left by an older version of the
# library (libioeng.so.1 -> libioeng.so.1.0.0) points at an older file and is renewed.
$(STAGE)/$(SONAME): $(STAGE)/$(SOFILE)
	ln -sfn $(SOFILE) $@

$(STAGE)/libioeng.so: $(STAGE)/$(SONAME)
	ln -sfn $(SONAME) $@

$(STAGE)/libioeng.a: $(RUSTA)
	@mkdir -p $(STAGE)
	cp -f $< $@

# Builds the C example and benchmark, runs the example, then a short benchmark of both
# backends (side by side with fio when it is installed) on scratch files; prints a table.
demo: lib
	$(MAKE) -C examples_c all demo
	bash examples_c/compare_fio.sh --quick --no-build

# Every test: the header is current and the library exports only ioeng_* at their versions,
# the man pages match the exported functions and lint clean, the
# declared minimum Rust version is consistent, Rust unit + integration tests, C tests on
# both backends (with reliability, valgrind, ASan), then install into a temporary DESTDIR
# and build/run consumers against it (pkg-config, CMake, static, C++ wrapper, TSan).
test: check-header check-man check-msrv check-layers test-rust test-c test-install

test-rust:
	$(CARGO) test

test-c: lib
	$(MAKE) -C c_tests check

test-install: lib
	bash pkg/tests/run.sh

# Fails when include/ioeng.h differs from what cbindgen generates from src/ffi.rs; when the
# shared library exports anything but the functions include/ioeng.h declares, or not each
# at its version (those of the frozen 1.0 header c_tests/abi-1.0/ioeng.h at IOENG_1.0, the
# others at IOENG_1.1: pkg/check_symbols.sh); lacks its soname; or the links are not
# libioeng.so -> libioeng.so.1 -> libioeng.so.1.1.0.
check-header:
	IOENG_CHECK_HEADER=1 $(CARGO) build --release
	@$(MAKE) --no-print-directory lib >/dev/null
	@so=$(STAGE)/$(SOFILE); \
	syms=$$(bash pkg/check_symbols.sh $$so include/ioeng.h c_tests/abi-1.0/ioeng.h) || { echo "$$syms"; exit 1; }; \
	readelf -d $$so | grep -q 'SONAME.*\[$(SONAME)\]' || { echo "$$so lacks soname $(SONAME)"; exit 1; }; \
	[ "$$(readlink $(STAGE)/$(SONAME))" = $(SOFILE) ] && [ "$$(readlink $(STAGE)/libioeng.so)" = $(SONAME) ] \
	  || { echo "$(STAGE): links are not libioeng.so -> $(SONAME) -> $(SOFILE)"; exit 1; }; \
	echo "check-header: include/ioeng.h current; $(SOFILE) exports $$syms; soname $(SONAME)"

# One man page per exported function, `mandoc -T lint` clean (pkg/check_man.sh).
check-man: lib
	@bash pkg/check_man.sh man $(STAGE)/$(SOFILE)

# No module of src/ uses one of a higher layer (docs/ARCHITECTURE.md, "Layers").
check-layers:
	bash pkg/check_layers.sh

# The minimum Rust version: see pkg/check_msrv.sh for what this does and does not prove.
check-msrv:
	bash pkg/check_msrv.sh

# The stripped copies `make install` installs (from whatever target/lib holds: `make
# install` does not rebuild a built tree, so `sudo make install` runs no cargo as root).
dist: $(if $(wildcard $(STAGE)/$(SOFILE)),,lib)
	@mkdir -p $(DIST)
	objcopy --only-keep-debug $(STAGE)/$(SOFILE) $(DIST)/$(SOFILE).debug
	strip --strip-unneeded -o $(DIST)/$(SOFILE) $(STAGE)/$(SOFILE)
	cd $(DIST) && objcopy --add-gnu-debuglink=$(SOFILE).debug $(SOFILE)
	cp -f $(STAGE)/libioeng.a $(DIST)/libioeng.a
	strip --strip-debug -R .llvmbc -R .llvmcmd $(DIST)/libioeng.a

install: dist
	install -d $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR) \
	  $(DESTDIR)$(CMAKEDIR) $(DESTDIR)$(DATADIR)/ioeng $(DESTDIR)$(MANDIR)/man3 $(DESTDIR)$(MANDIR)/man7
	install -m 644 include/ioeng.h include/ioeng.hpp $(DESTDIR)$(INCLUDEDIR)/
	install -m 755 $(DIST)/$(SOFILE) $(DESTDIR)$(LIBDIR)/$(SOFILE)
	ln -sfn $(SOFILE) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sfn $(SONAME) $(DESTDIR)$(LIBDIR)/libioeng.so
	install -m 644 $(DIST)/libioeng.a $(DESTDIR)$(LIBDIR)/libioeng.a
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' \
	  -e 's|@VERSION@|$(VERSION)|g' -e 's|@LIBS_PRIVATE@|$(LIBS_PRIVATE)|g' \
	  pkg/ioeng.pc.in >$(DESTDIR)$(PKGCONFIGDIR)/ioeng.pc
	@# The CMake package finds its files relative to itself, so it works from a DESTDIR too.
	sed -e 's|@VERSION@|$(VERSION)|g' -e 's|@SOFILE@|$(SOFILE)|g' -e 's|@SONAME@|$(SONAME)|g' \
	  -e "s|@CMAKE_TO_LIBDIR@|$$(realpath -m --relative-to=$(CMAKEDIR) $(LIBDIR))|g" \
	  -e "s|@CMAKE_TO_INCLUDEDIR@|$$(realpath -m --relative-to=$(CMAKEDIR) $(INCLUDEDIR))|g" \
	  pkg/ioengConfig.cmake.in >$(DESTDIR)$(CMAKEDIR)/ioengConfig.cmake
	sed -e 's|@VERSION@|$(VERSION)|g' -e 's|@MAJOR@|$(MAJOR)|g' \
	  pkg/ioengConfigVersion.cmake.in >$(DESTDIR)$(CMAKEDIR)/ioengConfigVersion.cmake
	install -m 644 pkg/tsan.supp $(DESTDIR)$(DATADIR)/ioeng/tsan.supp
	install -m 644 $(MAN3) $(DESTDIR)$(MANDIR)/man3/
	install -m 644 $(MAN7) $(DESTDIR)$(MANDIR)/man7/
	@echo "installed libioeng $(VERSION) into $(DESTDIR)$(PREFIX) (libdir $(LIBDIR)); debug info: make install-debug"

# The debug info of the installed libioeng.so, where gdb finds it through the debuglink.
install-debug: dist
	install -d $(DESTDIR)$(LIBDIR)/.debug
	install -m 644 $(DIST)/$(SOFILE).debug $(DESTDIR)$(LIBDIR)/.debug/$(SOFILE).debug

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/ioeng.h $(DESTDIR)$(LIBDIR)/$(SOFILE) $(DESTDIR)$(LIBDIR)/$(SONAME) \
	  $(DESTDIR)$(LIBDIR)/libioeng.so $(DESTDIR)$(LIBDIR)/libioeng.a $(DESTDIR)$(PKGCONFIGDIR)/ioeng.pc \
	  $(DESTDIR)$(CMAKEDIR)/ioengConfig.cmake $(DESTDIR)$(CMAKEDIR)/ioengConfigVersion.cmake \
	  $(DESTDIR)$(DATADIR)/ioeng/tsan.supp $(DESTDIR)$(INCLUDEDIR)/ioeng.hpp \
	  $(DESTDIR)$(LIBDIR)/.debug/$(SOFILE).debug \
	  $(addprefix $(DESTDIR)$(MANDIR)/man3/,$(notdir $(MAN3))) $(addprefix $(DESTDIR)$(MANDIR)/man7/,$(notdir $(MAN7)))
	-rmdir $(DESTDIR)$(CMAKEDIR) $(DESTDIR)$(DATADIR)/ioeng $(DESTDIR)$(LIBDIR)/.debug 2>/dev/null

clean:
	$(CARGO) clean
	$(MAKE) -C c_tests clean
	$(MAKE) -C examples_c clean

FORCE:
