#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs the Python bindings' pytest suite against the library of this build tree (make check).
# Exits 77 (skipped) when no Python with pytest is found.
set -u
here=$(cd "$(dirname "$0")" && pwd)
py=
# Debian's python3-numpy/-torch/-pytest install for /usr/bin/python3; another python3 first on
# PATH (pyenv) may not see them, so /usr/bin/python3 comes first.
for cand in ${PYTHON:-} /usr/bin/python3 python3; do
	if "$cand" -c 'import pytest' >/dev/null 2>&1; then
		py=$cand
		break
	fi
done
if [ -z "$py" ]; then
	# Under CI a missing pytest is a failure, never a silent skip.
	if [ -n "${CI:-}" ]; then
		echo "no python3 with pytest (install python3-pytest: scripts/setup.sh does)"
		exit 1
	fi
	echo "no python3 with pytest: skipping the Python binding tests"
	exit 77
fi
# make check runs tests from the build directory; the source tree may be read-only (distcheck).
CKPT_BUILD_DIR=${CKPT_BUILD_DIR:-$(pwd)}
PYTHONDONTWRITEBYTECODE=1
export CKPT_BUILD_DIR PYTHONDONTWRITEBYTECODE
cd "$here" && exec "$py" -m pytest -q -p no:cacheprovider tests "$@"
