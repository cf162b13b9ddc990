#!/usr/bin/env bash
# PyTorch interop (SPEC.md §9.5): tools/torch_trace.py runs FastV and Reroute on transformers'
# own decoder layers for both tiny models; each trace must agree with the Swift golden of the
# same policy under `reroute diff`'s default tolerances, and satisfy the trace laws of
# `reroute conform --trace`.
#
#   tools/torch_interop.sh [PYTHON]     (default: python3 with tools/requirements.txt installed)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-python3}
reroute=.build/debug/reroute
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
done
exit $status
