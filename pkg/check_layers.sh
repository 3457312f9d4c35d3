#!/usr/bin/env bash
# The layers of src/ (docs/ARCHITECTURE.md, "Layers"), bottom first: a module may use only
# modules of a lower layer (same-layer modules do not use each other). Checks the `use`
# lines and `super::x` / `crate::x` paths of each file's non-test code (comments left
# out); prints every
# upward or sideways import and fails on any.
set -euo pipefail
cd "$(dirname "$0")/.."

layers=(
    "abi error tsan race_hooks sys"
    "config locks tasks token_bucket histogram"
    "common slot stuck registered idle aio_stream"
    "classes"
    "waiting cancel flight stats class_stats wakeup"
    "context"
    "driver round aio_helper aio_timer"
    "aio uring shared steps"
    "worker polled"
    "engine"
    "scheduler"
    "ffi"
    "lib"
)
declare -A rank
for i in "${!layers[@]}"; do
    for m in ${layers[$i]}; do rank[$m]=$i; done
done

bad=0
checked=0
for f in src/*.rs src/scheduler/*.rs; do
    base=$(basename "$f" .rs)
    case $f in
    src/scheduler/mod.rs) me=scheduler ;;
    src/scheduler/*_tests.rs) continue ;;
    *) me=$base ;;
    esac
    [[ -n ${rank[$me]+x} ]] || { echo "check_layers: $f: module '$me' has no layer (add it to $0)"; bad=1; continue; }
    # Non-test code only: up to the first #[cfg(test)] line.
    deps=$(awk '/^#\[cfg\(test\)\]/ { exit } !/^[[:space:]]*\/\// { print }' "$f" |
        grep -oE '(super|crate::scheduler|crate)::[a-z_]+' |
        sed -E 's/^(super|crate::scheduler|crate):://' | sort -u || true)
    for d in $deps; do
        [[ -n ${rank[$d]+x} ]] || continue # an item, not a module (crate::Ioeng, super::Slot, ...)
        [[ $d == "$me" ]] && continue
        if ((rank[$d] >= rank[$me])); then
            echo "check_layers: $f (layer ${rank[$me]}) uses $d (layer ${rank[$d]}): not a lower layer"
            bad=1
        fi
    done
    checked=$((checked + 1))
done
if ((bad)); then exit 1; fi
echo "check_layers: $checked modules of src/ use only lower layers (${#layers[@]} layers)"
