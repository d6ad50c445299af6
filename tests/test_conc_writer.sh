#!/bin/sh
# SPDX-License-Identifier: MIT
# Issue 12, writer side, in make check: scenarios (a) and (d) of tests/test_conc.sh.
#   (a) a writer re-saves while another node loops ckpt_open/ckpt_close on the job: 0 confirmed
#       steps lost (the other node opens as a non-writer and deletes nothing; rule S)
#   (d) a second ckpt_open of a job rank in one process: CKPT_EBUSY; the lock survives its close
# Bounded: CONC_SECONDS (default here 30) per scenario loop. The rest of test_conc.sh runs with
# `make check-conc`.
CONC_SCENARIOS="a d" CONC_SECONDS=${CONC_SECONDS:-30} exec "${srcdir:-.}/tests/test_conc.sh"
