#!/bin/sh
# SPDX-License-Identifier: MIT
# MPI: local disk stays within keep_local + max_pending steps while every drain fails, and every
# rank releases the same failed steps (issue 13). tests/mpi_bound under a real mpirun: each
# step's shared directory is a regular file, so every drain fails at its mkdir (as a soft mount's
# EIO); 2 ranks (MPI_THREAD_SINGLE, each save waits for its step's failure) and 4 ranks
# (MPI_THREAD_MULTIPLE, oversubscribed, saves back to back). Every rank must stay within the
# bound, keep its newest step, report the same released and failed steps, and after the repair a
# new open must commit the newest step.
#   BOUND_STEPS, BOUND_VERBOSE
set -u
W=${MPI_BOUND:-./tests/mpi_bound}
. "${srcdir:-$(dirname "$0")/..}/tests/mpi_run.sh"
mpi_run_init mpibound
for run in "2 single 1" "4 multiple 0" "4 single 0" "2 multiple 1"; do
	set -- $run
	export TEST_MPI_THREAD=$2 BOUND_WAIT=$3
	mpi_case "bound np=$1 $2 wait=$3" "$1" "$W"
done
mpi_run_done "mpi bound"
