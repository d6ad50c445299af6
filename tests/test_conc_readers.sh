#!/bin/sh
# SPDX-License-Identifier: MIT
# Issue 12, the readers' side in make check: scenarios (b) a reader on another node during
# re-saves and retention, (c) ckpt-restore and ckpt verify during retention, (e) world size
# 4 -> 2 -> 4 under mpirun, of tests/test_conc.sh, each bounded by CONC_SECONDS (default 12 here,
# about 40 s in all on 2 cores). `make check-conc` runs every scenario at full length.
CONC_SCENARIOS="b c e"
CONC_SECONDS=${CONC_SECONDS:-12}
export CONC_SCENARIOS CONC_SECONDS
exec "${srcdir:-$(dirname "$0")/..}/tests/test_conc.sh"
