#!/usr/bin/env bash
# Installs the system libraries the package links (HDF5, OpenBLAS, pkg-config, h5dump)
# when pkg-config cannot find them. Idempotent; needs root or sudo on a fresh machine.
set -euo pipefail
need=(libhdf5-dev libopenblas-dev pkg-config hdf5-tools)
if command -v pkg-config >/dev/null && pkg-config --exists hdf5 openblas && command -v h5dump >/dev/null; then
    exit 0
fi
echo "bootstrap: installing ${need[*]}" >&2
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
pkg-config --exists hdf5 openblas || { echo "bootstrap: pkg-config still cannot find hdf5/openblas" >&2; exit 2; }
