#!/usr/bin/env bash
# Runs every command of the README's quickstart block, as a user would (from the repository
# root), and fails if any fails. With a Python that has tools/requirements.txt (first
# argument), the PyTorch steps run too; without one they are skipped, and this says so.
#
#   tools/readme_check.sh [PYTHON]
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-}
block=$(awk '/<!-- quickstart/ {on=1; next} on && /^```sh/ {inside=1; next} inside && /^```/ {exit} inside {print}' README.md)
[ -n "$block" ] || { echo "readme_check: no quickstart block in README.md" >&2; exit 2; }
if [ -n "$py" ]; then
    block=${block//python3 /\"$py\" }
else
    echo "NOTE: no Python with tools/requirements.txt given; skipping the quickstart's PyTorch steps"
    block=$(printf '%s\n' "$block" | awk '/torch_trace.py|torch-bf16/ {skip=1} skip && !/\\$/ {skip=0; next} skip {next} {print}')
fi
script=$(mktemp)
trap 'rm -f "$script" "$script.out"' EXIT
printf 'set -euo pipefail\n%s\n' "$block" > "$script"
bash "$script" > "$script.out" 2>&1 || { cat "$script.out"; echo "readme_check: a quickstart command failed" >&2; exit 1; }
echo "readme_check: every quickstart command ran ($(printf '%s\n' "$block" | grep -c '^[a-z]') commands)"
