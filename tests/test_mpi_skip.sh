#!/bin/sh
# SPDX-License-Identifier: MIT
# MPI ranks skip the same superseded steps when the drain falls behind (issue 13): tests/mpi_skip
# saves 8 steps back to back with a drain that cannot keep up (compress_level 19, one drain
# thread, max_pending 2, stall_wait 0.05 s) under a real mpirun, 2 ranks (MPI_THREAD_SINGLE) and
# 4 ranks (MPI_THREAD_MULTIPLE, oversubscribed); every rank must report the same committed and
# skipped steps, no save may wait for a drain, and the newest step must commit and load.
#   SKIP_STEPS, SKIP_BYTES, SKIP_SAVE_LIMIT
set -u
W=${MPI_SKIP:-./tests/mpi_skip}
. "${srcdir:-$(dirname "$0")/..}/tests/mpi_run.sh"
mpi_run_init mpiskip
# (the skips are logged, log_level 2, by every rank)
export TEST_MPI_THREAD=single
mpi_case "skip np=2 single" 2 "$W"
export TEST_MPI_THREAD=multiple
mpi_case "skip np=4 multiple" 4 "$W"
mpi_run_done "mpi skip"
