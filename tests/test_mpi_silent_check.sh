#!/bin/sh
# SPDX-License-Identifier: MIT
# make check's part of tests/test_mpi_silent.sh (issue 13): one rank silent for 5 s (mpi_timeout 3)
# before ckpt_save, ckpt_latest, ckpt_close, or never calling ckpt_save, then rank 0 silent in
# ckpt_save; 4 ranks with MPI_THREAD_MULTIPLE (the progress thread) and 2 with MPI_THREAD_SINGLE.
# The others return within mpi_timeout + 2 s with an error naming the silent rank, the context
# stays usable, and every rank's MPI_Finalize is clean. `make check-stall` runs every mode at both
# thread levels with 2 and 4 ranks and a 12 s silence.
srcdir=${srcdir:-.}
SILENT_MODES=${SILENT_MODES:-save latest close never} SILENT_SECONDS=${SILENT_SECONDS:-5} \
	SILENT_RUNS=${SILENT_RUNS:-4:multiple 2:single} exec "$srcdir/tests/test_mpi_silent.sh"
