#!/usr/bin/env bash
# `make check-msrv` (part of `make test`): the minimum supported Rust version (MSRV).
#
# Offline, this proves consistency, not that the MSRV compiler accepts the code:
#  - Cargo.toml's rust-version (as cargo reads it) is the one README.md states;
#  - it is at least 1.85, which edition 2024 needs;
#  - no resolved dependency (Cargo.lock, build dependencies included) declares a newer
#    rust-version than ours;
#  - no source silences clippy::incompatible_msrv, the lint that makes `cargo clippy`
#    (run with -D warnings by .ci/run) reject std APIs stabilized after rust-version.
# With MSRV_COMPILE=1 (what .ci/run sets) it also compiles every target with that exact
# toolchain: `rustup toolchain install <msrv> --profile minimal` and
# `cargo +<msrv> check --all-targets --locked`, which is the real proof.
set -euo pipefail
cd "$(dirname "$0")/.."

meta=$(cargo metadata --format-version 1 --locked)
read -r msrv bad < <(python3 -c '
import json, sys
m = json.loads(sys.stdin.read())
ver = lambda s: tuple(int(x) for x in s.split(".")) + (0,) * (3 - len(s.split(".")))
root = next(p for p in m["packages"] if p["id"] == m["resolve"]["root"])
ours = root.get("rust_version")
if not ours:
    print("none -"); sys.exit()
newer = ["%s-%s:%s" % (p["name"], p["version"], p["rust_version"]) for p in m["packages"]
         if p["id"] != root["id"] and p.get("rust_version") and ver(p["rust_version"]) > ver(ours)]
print(ours, ",".join(newer) or "-")
' <<<"$meta")

fail() { echo "check-msrv: $*" >&2; exit 1; }
[ "$msrv" != none ] || fail "Cargo.toml has no rust-version"
readme=$(sed -n 's/.*[Mm]inimum supported Rust version[^0-9]*\([0-9][0-9.]*[0-9]\).*/\1/p' README.md | head -n 1)
[ "$readme" = "$msrv" ] || fail "README.md states '${readme:-nothing}', Cargo.toml rust-version is $msrv"
python3 -c 'import sys; v = tuple(map(int, sys.argv[1].split("."))); sys.exit(v < (1, 85))' "$msrv" ||
    fail "rust-version $msrv is below 1.85, the first with edition 2024"
[ "$bad" = - ] || fail "dependencies need a newer Rust than $msrv: $bad"
if grep -rn 'incompatible_msrv' src tests build.rs Cargo.toml; then
    fail "clippy::incompatible_msrv must not be silenced"
fi
echo "check-msrv: rust-version $msrv in Cargo.toml and README.md; edition 2024 ok; no dependency needs newer"

if [ "${MSRV_COMPILE:-0}" = 1 ]; then
    # rust-version "1.88" means release 1.88.0.
    [[ $msrv == *.*.* ]] || msrv=$msrv.0
    # The toolchain comes from rustup's download server, not a package registry; a
    # machine that cannot reach it cannot run this proof, and says so loudly.
    if ! rustup toolchain install "$msrv" --profile minimal --no-self-update >/dev/null; then
        echo "*** check-msrv: WARNING: cannot install Rust $msrv with rustup (offline?):" \
            "the compile check with the minimum version did NOT run ***"
        exit 0
    fi
    CARGO_TARGET_DIR=target/msrv cargo "+$msrv" check --all-targets --locked
    echo "check-msrv: cargo +$msrv check --all-targets --locked passed"
fi
