#!/bin/sh
# SPDX-License-Identifier: MIT
# Sets up a fresh Debian 12 machine for libckpt and builds it in the source tree:
# installs the Debian packages it needs (apt-get; root or sudo), then autoreconf, configure, make.
# Extra arguments go to ./configure (e.g. --without-mpi).
set -eu
cd "$(dirname "$0")/.."

PKGS="build-essential autoconf automake libtool pkg-config make gcc
libzstd-dev libxxhash-dev liburing-dev libopenmpi-dev openmpi-bin libcunit1-dev
zstd fiu-utils python3 python3-pytest python3-numpy python3-torch python3-mpi4py python3-fusepy fuse3
python3-pip python3-venv python3-setuptools python3-wheel
clang libclang-rt-14-dev llvm valgrind git
slurmd slurmctld slurm-client munge"
# Node.js and npm check the Kubernetes manifests (tests/test_k8s.sh). A Node.js from elsewhere
# (NodeSource) bundles npm and conflicts with Debian's npm package: install them only if missing.
command -v npm >/dev/null 2>&1 || PKGS="$PKGS nodejs npm"

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
if [ -n "$missing" ]; then
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO=sudo
	echo "setup: installing$missing"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

[ -x configure ] || autoreconf -fi
[ -f Makefile ] || ./configure "$@"
make -j"$(nproc)"
