#!/usr/bin/env bash
# The tests: install what is missing, then `swift test` (unit, golden, malformed-input and CLI tests).
# Extra arguments go to `swift test` (e.g. --filter TransformersParityTests).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/bootstrap.sh
exec swift test "$@"
