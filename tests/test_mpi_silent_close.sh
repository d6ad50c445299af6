#!/bin/sh
# SPDX-License-Identifier: MIT
# make check's part of tests/test_mpi_silent.sh (issue 13): one rank silent for 6 s before
# ckpt_close, mpi_timeout 3: the others' ckpt_close returns CKPT_ETIMEDOUT within mpi_timeout + 2 s
# and every rank's MPI_Finalize is clean. The silent ranks in ckpt_save and ckpt_latest run in
# `make check-stall`.
srcdir=${srcdir:-.}
SILENT_MODES=${SILENT_MODES:-close} SILENT_SECONDS=${SILENT_SECONDS:-6} \
	exec "$srcdir/tests/test_mpi_silent.sh"
