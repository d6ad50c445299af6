#!/bin/sh
# SPDX-License-Identifier: MIT
# Crash torture, short run (make check): random SIGKILLs of a saving process, of one or every
# rank of a 4-rank MPI job and of ckpt-restore, each followed by a bit-exact check against the
# workload's journal; then --sabotage proves the checker catches lost and stale steps.
# `make torture` runs the long version (TORTURE_DURATION seconds, default 600).
set -u
T=${TORTURE:-./tests/torture}
TOOL=${TOOLS:-./tools/ckpt}
MW=${TORTURE_MPI:-./tests/torture_mpi}
DURATION=${TORTURE_DURATION:-35}
unset CKPT_SHARED_DIR CKPT_LOCAL_DIR CKPT_NAME CKPT_FAULT_KILL_AT
mpi=
if [ "${HAVE_MPI:-1}" != 0 ] && [ -x "$MW" ] && command -v "${MPIRUN:-mpirun}" >/dev/null 2>&1; then
	mpi="--mpi-worker $MW --mpirun ${MPIRUN:-mpirun}"
else
	echo "NOTE: no MPI worker or mpirun: MPI rounds skipped"
fi
rc=0
# shellcheck disable=SC2086
"$T" --duration "$DURATION" --tool "$TOOL" $mpi ${TORTURE_SEED:+--seed "$TORTURE_SEED"} || rc=1
"$T" --iterations 8 --sabotage ${TORTURE_SEED:+--seed "$TORTURE_SEED"} || rc=1
exit $rc
