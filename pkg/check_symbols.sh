#!/usr/bin/env bash
# Usage: check_symbols.sh LIBIOENG_SO IOENG_H [ABI10_H]
# The dynamic symbols of a built libioeng.so against the headers (make check-header and
# pkg/tests/run.sh): it exports nothing but ioeng_* functions and its version nodes;
# every function of the frozen 1.0 header (ABI10_H, default c_tests/abi-1.0/ioeng.h) is
# at IOENG_1.0 and nothing else is; every other exported function is at IOENG_1.1; and
# the exported functions are exactly those IOENG_H declares (its static inline helpers
# are not declarations of the library). Prints the lists on failure.
set -euo pipefail
so=$1
header=$2
abi10=${3:-$(dirname "$0")/../c_tests/abi-1.0/ioeng.h}

# Declarations start in column 0 with their return type (mentions in comments do not;
# `static inline` helpers are compiled into the program, not exported).
declared() {
    grep -E '^[a-z].*[ *]ioeng_[a-z_0-9]*\(' "$1" | grep -v '^static ' |
        grep -oE 'ioeng_[a-z_0-9]*\(' | tr -d '(' | sort -u
}
dyn=$(objdump -T "$so")
# Defined dynamic symbols as "VERSION NAME" (the version node's own entry excluded).
exported=$(awk '/^[0-9a-f]+ / && $0 !~ /\*UND\*/ && $NF != $(NF-1) {print $(NF-1), $NF}' <<<"$dyn" | sort -k2)
fail=0
bad=$(awk '$2 !~ /^ioeng_/ || ($1 != "IOENG_1.0" && $1 != "IOENG_1.1")' <<<"$exported")
if [ -n "$bad" ]; then echo "$so exports outside ioeng_*@IOENG_1.0/IOENG_1.1:"; echo "$bad"; fail=1; fi
v10=$(awk '$1 == "IOENG_1.0" {print $2}' <<<"$exported" | sort)
want10=$(declared "$abi10")
if [ "$v10" != "$want10" ]; then
    echo "at IOENG_1.0:"; echo "$v10"; echo "functions of the 1.0 header $abi10:"; echo "$want10"; fail=1
fi
names=$(awk '{print $2}' <<<"$exported" | sort)
want=$(declared "$header")
if [ "$names" != "$want" ]; then
    echo "exported:"; echo "$names"; echo "declared in $header:"; echo "$want"; fail=1
fi
[ $fail -eq 0 ] || exit 1
n11=$(awk '$1 == "IOENG_1.1"' <<<"$exported" | wc -l)
echo "exactly the $(wc -l <<<"$names") functions of $(basename "$header"): $(wc -l <<<"$v10") (the 1.0 header's) at IOENG_1.0, $n11 at IOENG_1.1"
