#!/usr/bin/env bash
# PyTorch interop (SPEC.md §9.5): tools/torch_trace.py runs FastV and Reroute on transformers'
# own decoder layers for both tiny models; each trace must agree with the Swift golden of the
# same policy under `reroute diff`'s default tolerances, and satisfy the trace laws of
# `reroute conform --trace`; the same policies in float32, bfloat16 and float16 must be accepted
# by the preset `reroute diff` chooses from their /@dtype.
#
#   tools/torch_interop.sh [PYTHON]     (default: python3 with tools/requirements.txt and ./python installed)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-python3}
reroute=${REROUTE:-.build/debug/reroute}  # REROUTE: another build of reroute
[ -x "$reroute" ] || swift build --product reroute
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
for m in tiny-llama tiny-qwen2; do
    "$py" tools/torch_trace.py --model "golden/models/$m" --inputs "golden/traces/$m/dense.h5" --all --out-dir "$out/$m"
    for f in "$out/$m"/*.h5; do
        p=$(basename "$f")
        if [ -f "golden/traces/$m/$p" ]; then
            if "$reroute" diff "golden/traces/$m/$p" "$f" > "$out/diff.txt"; then
                echo "  same   $m/$p (torch vs golden)"
            else
                echo "  DIFFERS $m/$p (torch vs golden):"; cat "$out/diff.txt"; status=1
            fi
        fi
    done
    "$reroute" conform --trace "$out/$m"/*.h5 | tail -n 1 || status=1
    # Lower precisions, as research code runs models: each trace records /@dtype, and `reroute
    # diff` with no flags must pick the matching preset and accept it (near-ties included).
    for dt in float32 bfloat16 float16; do
        "$py" tools/torch_trace.py --model "golden/models/$m" --inputs "golden/traces/$m/dense.h5" --all --dtype "$dt" \
            --out-dir "$out/$m-$dt" > /dev/null
        for f in "$out/$m-$dt"/*.h5; do
            p=$(basename "$f")
            [ -f "golden/traces/$m/$p" ] || continue
            if "$reroute" diff "golden/traces/$m/$p" "$f" > "$out/diff.txt"; then
                echo "  same   $m/$p ($dt torch vs golden, $(grep -o 'preset:   [a-z0-9]*' "$out/diff.txt" | tr -s ' '), $(tail -n 1 "$out/diff.txt" | grep -o '[0-9]* accepted'))"
            else
                echo "  DIFFERS $m/$p ($dt torch vs golden):"; cat "$out/diff.txt"; status=1
            fi
        done
    done
done
exit $status
