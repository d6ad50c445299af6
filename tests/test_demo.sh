#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs the demo at a small size: it exits non-zero unless the restored run is bit-identical.
set -u
d=$(mktemp -d "${TMPDIR:-/tmp}/ckpt-demo-XXXXXX")
trap 'rm -rf "$d"' EXIT
./examples/train_demo "$d" 262144 40
