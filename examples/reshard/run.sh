#!/bin/sh
# SPDX-License-Identifier: MIT
# examples/reshard: train on 4 ranks, resume on 2, then on 4 again; every resume reads the
# newest committed step whatever number of ranks saved it, and the end is bit-exact with a run
# that never stopped. Run by make check; skipped (77) without MPI.
set -u
P=${RESHARD:-./examples/reshard/reshard}
MPIRUN=${MPIRUN:-mpirun}
if [ "${HAVE_MPI:-1}" = 0 ] || [ ! -x "$P" ] || ! command -v "$MPIRUN" >/dev/null; then
	echo "no MPI in this build: skipped"
	exit 77
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_rmaps_base_oversubscribe=1
dir=$(mktemp -d "${TMPDIR:-/tmp}/ckpt-reshard-XXXXXX") || exit 99
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/node0" "$dir/node1" "$dir/shared"
# ranks, last step, the step each run must resume from
for run in "4 5 0" "2 9 5" "4 12 9"; do
	set -- $run
	np=$1 steps=$2
	timeout 120 "$MPIRUN" --allow-run-as-root --oversubscribe -np "$np" "$P" "$dir" "$steps" "$3" ||
		{ echo "FAIL: $np ranks to step $steps"; exit 1; }
done
echo "PASS: 4 -> 2 -> 4 ranks, bit-exact"
