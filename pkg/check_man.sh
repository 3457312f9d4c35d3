#!/usr/bin/env bash
# Usage: check_man.sh MANDIR LIBIOENG_SO   (make check-man, pkg/tests/run.sh)
# The man pages under MANDIR (man3/, man7/) against a built libioeng.so:
#  - one section-3 page per exported function, named after it, and no other page
#    (the static inline builders of ioeng.h are documented in ioeng_submit(3));
#  - `mandoc -T lint` prints nothing, except its "referenced manual not found" notes:
#    those depend on which pages the machine's mandoc.db holds (containers often have
#    none), so instead every .Xr to a libioeng page is checked here to exist in MANDIR;
#  - libioeng(7) exists.
set -euo pipefail
mandir=$1
so=$2
command -v mandoc >/dev/null || { echo "mandoc not installed (apt-get install mandoc)"; exit 1; }
fail=0
pages=$(find "$mandir/man3" -name '*.3' -printf '%f\n' | sed 's/\.3$//' | sort)
exported=$(objdump -T "$so" | awk '/^[0-9a-f]+ / && $0 !~ /\*UND\*/ && $NF ~ /^ioeng_/ {print $NF}' | sort)
if [ "$pages" != "$exported" ]; then
    echo "section-3 pages and exported functions differ (< pages only, > exported only):"
    diff <(printf '%s\n' "$pages") <(printf '%s\n' "$exported") | grep '^[<>]' || true
    fail=1
fi
[ -f "$mandir/man7/libioeng.7" ] || { echo "missing $mandir/man7/libioeng.7"; fail=1; }
# stdout (the lint messages) and stderr (e.g. a stale mandoc.db) are read one after the
# other: through one pipe, a stderr line can land inside a buffered stdout line.
errs=$(mktemp)
lint=$({ mandoc -T lint "$mandir"/man3/*.3 "$mandir"/man7/*.7 2>"$errs"; cat "$errs"; } |
    grep -v 'STYLE: referenced manual not found\|mandoc\.db' || true)
rm -f "$errs"
[ -z "$lint" ] || { echo "mandoc -T lint:"; echo "$lint"; fail=1; }
missing=$(grep -h '^\.Xr \(ioeng_[a-z_0-9]*\|libioeng\) [0-9]' "$mandir"/man3/*.3 "$mandir"/man7/*.7 |
    awk '{print $2 "." $3}' | sort -u | while read -r ref; do
        [ -f "$mandir/man${ref##*.}/$ref" ] || echo "$ref"
    done)
[ -z "$missing" ] || { echo "cross references to missing pages: $missing"; fail=1; }
[ $fail -eq 0 ] || exit 1
echo "$(wc -l <<<"$pages") section-3 pages = the exported functions, libioeng(7); mandoc -T lint clean; cross references resolve"
