#!/usr/bin/env bash
# `make test-install` (part of `make test`): libioeng as an installed system library.
#
#  1. `make install` into a temporary DESTDIR (PREFIX=/usr/local), then checks the installed
#     files, the links libioeng.so -> libioeng.so.1 -> libioeng.so.$version, the soname
#     (readelf); that exactly the header's functions are exported, the 1.0 header's at
#     IOENG_1.0 and the others at IOENG_1.1 (pkg/check_symbols.sh); that the libraries are
#     stripped (the .so under 1 MiB, debug info in LIBDIR/.debug by make install-debug);
#     one man page per exported function, mandoc -T lint clean.
#  2. Builds consumers against the installed tree only (no source-tree include or library
#     path; checked) and runs them:
#       - gcc + pkg-config (PKG_CONFIG_LIBDIR/PKG_CONFIG_SYSROOT_DIR into the DESTDIR);
#       - CMake find_package(ioeng) (CMAKE_PREFIX_PATH into the DESTDIR): examples_c/example.cpp
#         (C++ RAII wrapper) on ioeng::ioeng, and consumer.c on ioeng::ioeng_static;
#       - a fully static program (gcc -static + pkg-config --static), and one with static
#         libioeng and dynamic libc (pkg-config --variable=static_libs);
#       - ioeng.hpp: c_tests/test_hpp.cpp as C++17 and C++20 under ASan and TSan, every
#         backend x mode;
#       - ioeng.hpp across shared objects: an engine from a -fvisibility=hidden library,
#         forked (hpp_hidden_lib.cpp);
#       - examples_c/wal_writer.cpp (README "First hour"), every backend x mode;
#       - ThreadSanitizer: tsan_callbacks.c (and tsan_features.c: deadlines, cancel,
#         submit_batch, both modes) built with gcc -fsanitize=thread must report no
#         race when correct, and must report the race of its deliberately racy variant.
#  3. `make uninstall` removes every installed file; a second install with LIBDIR=.../lib64
#     and another PREFIX is found by pkg-config and CMake there.
# Environment: IOENG_REQUIRE_URING=1 (io_uring unavailable -> FAIL instead of skipping the
# uring runs), KEEP=1 (keep the temporary directory).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# The version, from Cargo.toml like the Makefile: the real file is libioeng.so.$version.
version=$(sed -n 's/^version = "\([0-9.]*\)"/\1/p' "$root/Cargo.toml" | head -n 1)
sofile=libioeng.so.$version
work=$(mktemp -d /tmp/ioeng_install_test.XXXXXX)
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
npass=0
nfail=0
pass() { npass=$((npass + 1)); printf 'PASS  %s\n' "$*"; }
fail() { nfail=$((nfail + 1)); printf 'FAIL  %s\n' "$*"; }
# check NAME CMD...: runs CMD, PASS/FAIL with its output indented on failure.
check() {
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then
        pass "$name${out:+: $(printf '%s' "$out" | tail -n 1)}"
    else
        fail "$name"
        printf '%s\n' "$out" | tail -n 30 | sed 's/^/    | /'
    fi
}

dest=$work/dest
prefix=/usr/local
libdir=$dest$prefix/lib
incdir=$dest$prefix/include
mandir=$dest$prefix/share/man
make -s -C "$root" install install-debug DESTDIR="$dest" >"$work/install.log" 2>&1 ||
    { cat "$work/install.log"; echo "FAIL  make install install-debug"; exit 1; }
pass "make install install-debug DESTDIR=$dest"

# ---- 1. installed files, links, soname, symbol versions -------------------------------
installed_files() {
    for f in "$incdir/ioeng.h" "$incdir/ioeng.hpp" "$libdir/$sofile" "$libdir/libioeng.a" \
        "$libdir/pkgconfig/ioeng.pc" "$libdir/cmake/ioeng/ioengConfig.cmake" \
        "$libdir/cmake/ioeng/ioengConfigVersion.cmake" "$dest$prefix/share/ioeng/tsan.supp" \
        "$mandir/man7/libioeng.7"; do
        [ -f "$f" ] && [ ! -L "$f" ] || { echo "missing (or a link): $f"; return 1; }
    done
    [ "$(readlink "$libdir/libioeng.so.1")" = "$sofile" ] || { echo "libioeng.so.1 -> $(readlink "$libdir/libioeng.so.1")"; return 1; }
    [ "$(readlink "$libdir/libioeng.so")" = libioeng.so.1 ] || { echo "libioeng.so -> $(readlink "$libdir/libioeng.so")"; return 1; }
    echo "headers ioeng.h + ioeng.hpp, $sofile + links libioeng.so.1 and libioeng.so, libioeng.a, ioeng.pc, CMake package, tsan.supp, man pages"
}
check "installed files and links" installed_files

soname() {
    local s
    s=$(readelf -d "$libdir/$sofile" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
    [ "$s" = libioeng.so.1 ] || { echo "soname '$s'"; return 1; }
    echo "readelf: SONAME libioeng.so.1"
}
check "soname" soname

symbol_versions() {
    bash "$root/pkg/check_symbols.sh" "$libdir/$sofile" "$incdir/ioeng.h" "$root/c_tests/abi-1.0/ioeng.h"
}
check "symbol versions" symbol_versions

# Installed libraries are stripped; the shared one is under 1 MB and points to its debug
# info (make install-debug), which gdb finds in LIBDIR/.debug.
stripped() {
    local so=$libdir/$sofile size sections link
    size=$(stat -c %s "$so")
    [ "$size" -lt 1048576 ] || { echo "$sofile is $size bytes (limit 1 MiB)"; return 1; }
    sections=$(readelf -SW "$so")
    if grep -q '\.debug_info\|\.symtab' <<<"$sections"; then echo "$sofile not stripped"; return 1; fi
    link=$(readelf -p .gnu_debuglink "$so" 2>/dev/null | sed -n 's/.*\] *\([^ ]*\.debug\)$/\1/p')
    [ "$link" = "$sofile.debug" ] || { echo "debuglink '$link'"; return 1; }
    readelf -SW "$libdir/.debug/$sofile.debug" | grep -q '\.debug_info' || { echo "no debug info in .debug/$sofile.debug"; return 1; }
    if readelf -SW "$libdir/libioeng.a" 2>/dev/null | grep -q '\.debug_info\|\.llvmbc'; then
        echo "libioeng.a keeps debug info or bitcode"; return 1
    fi
    echo "$sofile $((size / 1024)) KiB stripped, debuglink -> .debug/$sofile.debug; libioeng.a $(( $(stat -c %s "$libdir/libioeng.a") / 1024 )) KiB without debug info"
}
check "stripped libraries, separate debug info" stripped

# One man page per exported function (section 3), libioeng(7); mandoc -T lint says nothing.
man_pages() {
    bash "$root/pkg/check_man.sh" "$mandir" "$libdir/$sofile"
}
check "installed man pages" man_pages

# Nothing from the source tree may appear on a consumer's include or library path.
no_source_paths() {
    case "$*" in *"$root"*) echo "source tree on a consumer's path: $*"; return 1 ;; esac
}

# ---- 2a. gcc + pkg-config -------------------------------------------------------------
export PKG_CONFIG_PATH=
export PKG_CONFIG_LIBDIR=$libdir/pkgconfig
export PKG_CONFIG_SYSROOT_DIR=$dest
pc_flags=$(pkg-config --cflags --libs ioeng)
pc_version=$(pkg-config --modversion ioeng)
CFLAGS_STRICT=(-std=c11 -Wall -Wextra -Werror -O2 -g -pthread)

build_pkgconfig() {
    no_source_paths "$pc_flags" || return 1
    [ "$pc_version" = "$version" ] || { echo "pkg-config --modversion: $pc_version"; return 1; }
    case "$pc_flags" in *"-I$incdir"*"-L$libdir"*) ;; *) echo "flags not into DESTDIR: $pc_flags"; return 1 ;; esac
    # shellcheck disable=SC2086
    gcc "${CFLAGS_STRICT[@]}" "$here/consumer.c" -o "$work/consumer_pc" $pc_flags -Wl,-rpath,"$libdir" &&
        echo "gcc consumer.c \$(pkg-config --cflags --libs ioeng) -> $pc_flags"
}
check "build with pkg-config" build_pkgconfig
run_pkgconfig() {
    # (Outputs are captured first: `cmd | grep -q` fails under pipefail when cmd gets SIGPIPE.)
    local deps syms
    deps=$(ldd "$work/consumer_pc") && syms=$(objdump -T "$work/consumer_pc") || return 1
    grep -q "libioeng.so.1 => $libdir/libioeng.so.1 " <<<"$deps" || { echo "$deps"; return 1; }
    grep -q '(IOENG_1.0) *ioeng_open$' <<<"$syms" ||
        { echo "consumer does not reference ioeng_open@IOENG_1.0"; return 1; }
    "$work/consumer_pc"
}
check "run pkg-config consumer (loads the installed libioeng.so.1)" run_pkgconfig

# ---- 2b. static links ------------------------------------------------------------------
# Fully static: gcc -static with pkg-config --static (there -lioeng is libioeng.a).
build_static() {
    local libs
    libs=$(pkg-config --static --libs ioeng)
    no_source_paths "$libs" || return 1
    case "$libs" in *gcc_s*) echo "pkg-config --static: $libs (-lgcc_s breaks gcc -static)"; return 1 ;; esac
    # shellcheck disable=SC2086
    gcc -static "${CFLAGS_STRICT[@]}" "$here/consumer.c" -o "$work/consumer_static" $(pkg-config --cflags ioeng) $libs 2>"$work/static.log" ||
        { cat "$work/static.log"; return 1; }
    echo "gcc -static consumer.c \$(pkg-config --cflags --static --libs ioeng) -> $libs"
}
check "build fully static (gcc -static, pkg-config --static)" build_static
run_static() {
    local dyn syms
    dyn=$(readelf -dW "$work/consumer_static") && syms=$(nm "$work/consumer_static") || return 1
    if grep -q NEEDED <<<"$dyn"; then echo "not static:"; echo "$dyn"; return 1; fi
    grep -q ' T ioeng_open$' <<<"$syms" || { echo "ioeng_open not linked in"; return 1; }
    "$work/consumer_static"
}
check "run fully static consumer" run_static
# Static libioeng, dynamic libc: the static_libs variable (libioeng.a by path + Libs.private).
build_mixed() {
    local libs
    libs=$(pkg-config --variable=static_libs ioeng)
    no_source_paths "$libs" || return 1
    case "$libs" in "$libdir/libioeng.a "*) ;; *) echo "static_libs: $libs"; return 1 ;; esac
    # shellcheck disable=SC2086
    gcc "${CFLAGS_STRICT[@]}" "$here/consumer.c" -o "$work/consumer_mixed" $(pkg-config --cflags ioeng) $libs &&
        echo "gcc consumer.c \$(pkg-config --cflags ioeng) \$(pkg-config --variable=static_libs ioeng)"
}
check "build with static libioeng, dynamic libc (static_libs)" build_mixed
run_mixed() {
    local deps syms
    deps=$(ldd "$work/consumer_mixed") && syms=$(nm "$work/consumer_mixed") || return 1
    if grep -q libioeng <<<"$deps"; then echo "$deps"; return 1; fi
    grep -q ' T ioeng_open$' <<<"$syms" || { echo "ioeng_open not linked in"; return 1; }
    "$work/consumer_mixed"
}
check "run static-libioeng consumer (no libioeng.so needed)" run_mixed

# ---- 2c. CMake find_package ------------------------------------------------------------
cmake_build() {
    local b=$work/cmake-build
    cmake -S "$here/cmake" -B "$b" -DCMAKE_PREFIX_PATH="$dest$prefix" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_EXPORT_COMPILE_COMMANDS=ON -DIOENG_EXAMPLE_CPP="$root/examples_c/example.cpp" \
        -DIOENG_CONSUMER_C="$here/consumer.c" >"$work/cmake.log" 2>&1 || { cat "$work/cmake.log"; return 1; }
    grep -q "ioeng $version from $libdir/cmake/ioeng" "$work/cmake.log" || { cat "$work/cmake.log"; return 1; }
    cmake --build "$b" -- VERBOSE=1 >"$work/cmake-build.log" 2>&1 || { tail -n 40 "$work/cmake-build.log"; return 1; }
    # Compile and link lines: include and library paths only into the DESTDIR.
    local paths
    paths=$(grep -oE -- '(-I|-isystem |-L|-Wl,-rpath,)[^ ]*|[^ ]*libioeng[^ ]*' "$b/compile_commands.json" \
        "$b/CMakeFiles/example_cpp.dir/link.txt" "$b/CMakeFiles/consumer_static.dir/link.txt" | sort -u)
    no_source_paths "$paths" || return 1
    grep -q "$libdir/$sofile" "$b/CMakeFiles/example_cpp.dir/link.txt" &&
        grep -q "$libdir/libioeng.a" "$b/CMakeFiles/consumer_static.dir/link.txt" ||
        { echo "link lines:"; cat "$b"/CMakeFiles/*/link.txt; return 1; }
    echo "find_package(ioeng 1.0) from $libdir/cmake/ioeng: example_cpp (ioeng::ioeng), consumer_static (ioeng::ioeng_static)"
}
check "CMake find_package(ioeng) build" cmake_build

uring_reason=$(LIBDIR=$libdir python3 - <<'PY'
import ctypes, os
lib = ctypes.CDLL(os.path.join(os.environ["LIBDIR"], "libioeng.so"))
lib.ioeng_uring_unavailable_reason.restype = ctypes.c_char_p
r = lib.ioeng_uring_unavailable_reason()
print(r.decode() if r else "")
PY
)
backends="aio uring"
if [ -n "$uring_reason" ]; then
    if [ "${IOENG_REQUIRE_URING:-0}" = 1 ]; then
        fail "io_uring required but unavailable: $uring_reason"
    else
        echo "*** SKIP  uring runs: io_uring unavailable: $uring_reason ***"
    fi
    backends=aio
fi

for b in $backends; do
    check "run example_cpp --backend $b (C++ RAII wrapper, CMake, shared)" "$work/cmake-build/example_cpp" --backend "$b"
done
check "run consumer_static (CMake, ioeng::ioeng_static)" "$work/cmake-build/consumer_static"

# ---- 2d. ThreadSanitizer ----------------------------------------------------------------
# TSan needs a memory layout it knows; kernels with high mmap randomization break that in
# older runtimes ("unexpected memory mapping"), which setarch -R avoids.
tsan_run() {
    local out rc
    out=$("$@" 2>&1); rc=$?
    if grep -q 'unexpected memory mapping' <<<"$out"; then
        out=$(setarch "$(uname -m)" -R "$@" 2>&1); rc=$?
    fi
    printf '%s\n' "$out"
    return $rc
}
tsan_build() { # NAME EXTRA_FLAGS...
    local name=$1
    shift
    # shellcheck disable=SC2086
    gcc -std=c11 -Wall -Wextra -Werror -O1 -g -fsanitize=thread -pthread "$@" "$here/tsan_callbacks.c" \
        -o "$work/$name" $pc_flags -Wl,-rpath,"$libdir"
}
tsan_clean() { # BACKEND BINARY [env...]: correct program, no report, exit 0
    local b=$1 bin=$2 out
    shift 2
    out=$(tsan_run env IOENG_TEST_BACKEND="$b" "$@" "$work/$bin" correct) || { printf '%s\n' "$out"; return 1; }
    if grep -q 'ThreadSanitizer' <<<"$out"; then printf '%s\n' "$out"; return 1; fi
    printf '%s\n' "$out" | tail -n 1
}
tsan_racy() { # BACKEND: the racy control must be reported
    local out rc
    out=$(tsan_run env IOENG_TEST_BACKEND="$1" "$work/tsan" racy); rc=$?
    if [ $rc -eq 66 ] && grep -q 'WARNING: ThreadSanitizer: data race' <<<"$out" &&
        grep -q 'on_done' <<<"$out"; then
        echo "data race reported in on_done (exit 66), as it must be"
        return 0
    fi
    printf '%s\n' "$out" | tail -n 30
    echo "racy control: exit $rc, expected a data race report (exit 66)"
    return 1
}
tsan_features() { # BACKEND MODE: deadlines, cancel, submit_batch; no report, exit 0
    local out
    out=$(tsan_run env IOENG_TEST_BACKEND="$1" IOENG_TEST_MODE="$2" "$work/tsan_features") ||
        { printf '%s\n' "$out" | tail -n 60; return 1; }
    if grep -q 'ThreadSanitizer' <<<"$out"; then printf '%s\n' "$out" | head -n 60; return 1; fi
    printf '%s\n' "$out" | tail -n 1
}
if tsan_build tsan; then
    for b in $backends; do
        check "TSan: correct program, no race reported [$b]" tsan_clean "$b" tsan
        check "TSan: racy control is reported [$b]" tsan_racy "$b"
    done
    # shellcheck disable=SC2086
    if gcc -std=c11 -Wall -Wextra -Werror -O1 -g -fsanitize=thread -pthread "$here/tsan_features.c" \
        -o "$work/tsan_features" $pc_flags -Wl,-rpath,"$libdir"; then
        for b in $backends; do
            for m in threads polled; do
                check "TSan: deadlines, cancel, cancel_all, submit_batch, callbacks that submit, FALLOCATE/SYNC_FILE_RANGE, IO classes and the 1.1 queries: no race [$b $m]" \
                    tsan_features "$b" "$m"
            done
        done
    else
        fail "build pkg/tests/tsan_features.c with -fsanitize=thread"
    fi
    # gcc -static-libtsan does not export the TSan interface, so libioeng's dlsym cannot
    # find it: export the two functions, or fall back to the installed suppression file.
    if tsan_build tsan_static_exp -static-libtsan \
        -Wl,--export-dynamic-symbol=__tsan_acquire -Wl,--export-dynamic-symbol=__tsan_release \
        -Wl,--export-dynamic-symbol=__tsan_ignore_thread_begin \
        -Wl,--export-dynamic-symbol=__tsan_ignore_thread_end &&
        tsan_build tsan_static -static-libtsan; then
        check "TSan -static-libtsan with the four __tsan_* functions exported, no race [aio]" tsan_clean aio tsan_static_exp
        check "TSan -static-libtsan with share/ioeng/tsan.supp, no race [aio]" tsan_clean aio tsan_static \
            TSAN_OPTIONS="suppressions=$dest$prefix/share/ioeng/tsan.supp"
    else
        fail "build TSan programs with -static-libtsan"
    fi
else
    fail "build TSan program (gcc -fsanitize=thread; needs libtsan)"
fi

# What the header tells users to check: a shared TSan runtime shows in ldd; a static one
# exports the four functions only when linked with the --export-dynamic-symbol flags.
tsan_header_checks() {
    local deps exp plain
    deps=$(ldd "$work/tsan") && exp=$(nm -D --defined-only "$work/tsan_static_exp") &&
        plain=$(nm -D --defined-only "$work/tsan_static") || return 1
    grep -q 'libtsan\.so' <<<"$deps" || { echo "ldd tsan: no libtsan.so"; echo "$deps"; return 1; }
    [ "$(grep -c ' __tsan_\(acquire\|release\|ignore_thread_begin\|ignore_thread_end\)$' <<<"$exp")" = 4 ] ||
        { echo "nm -D tsan_static_exp:"; grep __tsan_ <<<"$exp"; return 1; }
    if grep -q __tsan_ <<<"$plain"; then echo "nm -D tsan_static lists __tsan_*"; return 1; fi
    echo "ldd lists libtsan.so; nm -D finds the 4 exported functions, and none without the flags"
}
if [ -x "$work/tsan" ] && [ -x "$work/tsan_static_exp" ] && [ -x "$work/tsan_static" ]; then
    check "TSan checks the header recommends give what it says" tsan_header_checks
fi

# ---- 2e. ioeng.hpp: C++17 and C++20 under ASan and TSan ---------------------------------
hpp_run() { # BINARY BACKEND MODE: no sanitizer report, exit 0 (77 = io_uring unavailable)
    local out
    out=$(tsan_run env IOENG_TEST_BACKEND="$2" IOENG_TEST_MODE="$3" "$work/$1") ||
        { printf '%s\n' "$out" | tail -n 60; return 1; }
    if grep -q 'Sanitizer' <<<"$out"; then printf '%s\n' "$out" | head -n 60; return 1; fi
    printf '%s\n' "$out" | tail -n 1
}
for std in c++17 c++20; do
    for san in address thread; do
        bin=test_hpp_${std#c++}_$san
        # shellcheck disable=SC2086
        if g++ -std=$std -Wall -Wextra -Werror -pedantic -O1 -g -fsanitize=$san -pthread \
            "$root/c_tests/test_hpp.cpp" -o "$work/$bin" $pc_flags -Wl,-rpath,"$libdir" 2>"$work/$bin.log"; then
            for b in $backends; do
                for m in threads polled; do
                    check "ioeng.hpp $std -fsanitize=$san [$b $m]" hpp_run "$bin" "$b" "$m"
                done
            done
        else
            fail "build c_tests/test_hpp.cpp -std=$std -fsanitize=$san against the installed ioeng.hpp"
            tail -n 20 "$work/$bin.log" | sed 's/^/    | /'
        fi
    done
done

# ---- 2e'. ioeng.hpp across shared objects: an engine made in a -fvisibility=hidden library
# and used by a program that forks (each object has its own copy of the header's inline
# variables: the fork check must use the maker's).
# shellcheck disable=SC2086
if g++ -std=c++17 -Wall -Wextra -Werror -pedantic -O2 -fPIC -shared -fvisibility=hidden \
        -DHPP_LIB "$here/hpp_hidden_lib.cpp" -o "$work/libhpphidden.so" $pc_flags -pthread \
        2>"$work/hpp_hidden.log" &&
    g++ -std=c++17 -Wall -Wextra -Werror -pedantic -O2 "$here/hpp_hidden_lib.cpp" \
        -o "$work/hpp_hidden" -L"$work" -lhpphidden $pc_flags -pthread \
        -Wl,-rpath,"$work:$libdir" 2>>"$work/hpp_hidden.log"; then
    for b in $backends; do
        check "ioeng.hpp: fork with an engine from a hidden-visibility library ($b)" \
            "$work/hpp_hidden" "$b"
    done
else
    fail "build pkg/tests/hpp_hidden_lib.cpp"
    tail -n 20 "$work/hpp_hidden.log" | sed 's/^/    | /'
fi

# ---- 2f. README's "First hour": examples_c/wal_writer.cpp from the installed tree ------
# Also with a file size limit (SIGXFSZ ignored): the WAL write fails (-EFBIG or short), its
# callback throws, and the example must report that, exit 1, in both modes (in THREADS
# mode it used to wait for ever for the group's acknowledgement).
wal_write_error() { # BACKEND [--polled]
    local out rc
    out=$( (trap '' XFSZ; ulimit -f 1; exec timeout 20 "$work/wal_writer" --backend "$@" /tmp) 2>&1 )
    rc=$?
    if [ "$rc" != 1 ] || ! grep -q '^wal_writer: WAL write' <<<"$out"; then
        echo "exit $rc (124: hung, killed by timeout)"; printf '%s\n' "$out"; return 1
    fi
    printf '%s\n' "$out"
}
# shellcheck disable=SC2086
if g++ -std=c++17 -Wall -Wextra -Werror -pedantic -O2 -g -pthread "$root/examples_c/wal_writer.cpp" \
    -o "$work/wal_writer" $pc_flags -Wl,-rpath,"$libdir" 2>"$work/wal_writer.log"; then
    for b in $backends; do
        for m in "" --polled; do
            check "README First hour: wal_writer --backend $b $m (ext4 /tmp)" "$work/wal_writer" --backend "$b" $m /tmp
            check "wal_writer --backend $b $m reports a failed WAL write (RLIMIT_FSIZE)" wal_write_error "$b" $m
        done
    done
else
    fail "build examples_c/wal_writer.cpp against the installed ioeng.hpp"
    tail -n 20 "$work/wal_writer.log" | sed 's/^/    | /'
fi

# ---- 3. uninstall; a second layout (PREFIX=/opt/ioeng LIBDIR=/opt/ioeng/lib64) ---------
uninstall() {
    make -s -C "$root" uninstall DESTDIR="$dest" >/dev/null || return 1
    local left
    left=$(find "$dest" ! -type d)
    [ -z "$left" ] || { echo "left after uninstall:"; echo "$left"; return 1; }
    echo "no file left in the DESTDIR"
}
check "make uninstall" uninstall

other_layout() {
    local d=$work/dest2 l=/opt/ioeng/lib64
    make -s -C "$root" install DESTDIR="$d" PREFIX=/opt/ioeng LIBDIR=$l >/dev/null || return 1
    [ -f "$d$l/$sofile" ] && [ -f "$d/opt/ioeng/include/ioeng.h" ] || { find "$d"; return 1; }
    local flags
    flags=$(PKG_CONFIG_LIBDIR=$d$l/pkgconfig PKG_CONFIG_SYSROOT_DIR=$d pkg-config --cflags --libs ioeng)
    flags=$(echo $flags) # pkg-config ends with a space
    [ "$flags" = "-I$d/opt/ioeng/include -L$d$l -lioeng" ] || { echo "pkg-config: $flags"; return 1; }
    mkdir -p "$work/cm2"
    printf 'cmake_minimum_required(VERSION 3.13)\nproject(p C)\nfind_package(ioeng 1 REQUIRED)\nget_target_property(i ioeng::ioeng INTERFACE_INCLUDE_DIRECTORIES)\nget_target_property(s ioeng::ioeng_static IMPORTED_LOCATION)\nmessage(STATUS "INC=${i} STATIC=${s}")\nfind_package(ioeng 2 QUIET)\nif(ioeng_FOUND)\n  message(FATAL_ERROR "version 2 accepted")\nendif()\n' >"$work/cm2/CMakeLists.txt"
    # (Debian's CMake does not search lib64 by itself, hence ioeng_DIR.)
    cmake -S "$work/cm2" -B "$work/cm2/b" -Dioeng_DIR="$d$l/cmake/ioeng" >"$work/cm2.log" 2>&1 || { cat "$work/cm2.log"; return 1; }
    grep -q "INC=$d/opt/ioeng/include STATIC=$d$l/libioeng.a" "$work/cm2.log" || { cat "$work/cm2.log"; return 1; }
    echo "pkg-config and CMake find lib64 layout; find_package(ioeng 2) rejects $version"
}
check "install PREFIX=/opt/ioeng LIBDIR=/opt/ioeng/lib64" other_layout

echo "install tests: $npass passed, $nfail failed"
[ $nfail -eq 0 ]
