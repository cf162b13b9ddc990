#!/usr/bin/env bash
# The main job: install what is missing, build, and run `reroute verify` over the shipped goldens.
# Extra arguments go to `reroute verify` (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/bootstrap.sh
swift build --product reroute
exec .build/debug/reroute verify "$@"
