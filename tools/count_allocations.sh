#!/usr/bin/env bash
# Heap allocations per fast-decoder prefill, counted by valgrind (instructions, not seconds,
# so the count does not depend on the machine's load): `reroute time` with 1 and with 3
# timed prefills of each policy; the difference / 2 is the allocations of one prefill.
# Usage: tools/count_allocations.sh [POLICY ...]   (default: dense reroute-fastv-192)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .build/release/reroute ] || { echo "build first: swift build -c release --product reroute" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 2; }
# valgrind cannot read the debug info Swift emits; count on a stripped copy.
exe=$(mktemp)
trap 'rm -f "$exe"' EXIT
strip -o "$exe" .build/release/reroute
for p in ${@:-dense reroute-fastv-192 pdrop}; do
    count() {
        valgrind --tool=memcheck --leak-check=no "$exe" time --model golden/models/tiny-llama \
            --case golden/traces/tiny-llama/dense.h5 --policy "$p" --repeats "$1" --threads 1 2>&1 >/dev/null |
            sed -n 's/.*total heap usage: \([0-9,]*\) allocs.*/\1/p' | tr -d ,
    }
    one=$(count 1); three=$(count 3)
    echo "$p: $(( (three - one) / 2 )) allocations per prefill (tiny-llama, 108 tokens, 8 layers; valgrind totals $one / $three)"
done
