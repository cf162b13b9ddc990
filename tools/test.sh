#!/usr/bin/env bash
# The tests: install what is missing, then `swift test` (unit, golden, malformed-input and CLI tests).
# Extra arguments go to `swift test` (e.g. --filter TransformersParityTests).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/bootstrap.sh
# The test process's one process-wide setting, as `reroute` sets it at start: the fast decoder
# splits its products over its own workers and expects single-threaded OpenBLAS.
export OPENBLAS_NUM_THREADS=1
exec swift test "$@"
