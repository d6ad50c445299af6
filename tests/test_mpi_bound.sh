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
MPIRUN=${MPIRUN:-mpirun}
command -v "$MPIRUN" >/dev/null 2>&1 || { echo "SKIP: no $MPIRUN"; exit 77; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_rmaps_base_oversubscribe=1
base=$(mktemp -d "${TMPDIR:-/tmp}/ckpt-mpibound-XXXXXX")
passed=0 failed=0
trap 'rm -rf "$base"' EXIT

for run in "2 single 1" "4 multiple 0" "4 single 0" "2 multiple 1"; do
	set -- $run
	np=$1 thr=$2 wait=$3
	rm -rf "$base/j"
	mkdir -p "$base/j"
	start=$(date +%s)
	TEST_MPI_THREAD=$thr BOUND_WAIT=$wait timeout -k 10 300 "$MPIRUN" --allow-run-as-root \
		--oversubscribe -np "$np" "$W" "$base/j" >"$base/out" 2>&1
	rc=$?
	took=$(($(date +%s) - start))
	grep -h -E '^(figure|target):' "$base/out" | sed 's/^/    /'
	echo "    figure: bound_np${np}_${thr}_wait${wait} whole run ${took} s"
	why=""
	[ $rc -eq 0 ] || why="mpirun exit $rc"
	fin=$(grep -c 'finalized' "$base/out")
	[ "$fin" -eq "$np" ] || why="${why:+$why; }$fin of $np ranks finished MPI_Finalize"
	grep -q '^target:.* FAIL' "$base/out" && why="${why:+$why; }target(s) missed"
	if [ -z "$why" ]; then
		passed=$((passed + 1))
		echo "PASS: bound np=$np $thr wait=$wait"
	else
		failed=$((failed + 1))
		echo "FAIL: bound np=$np $thr wait=$wait: $why"
		grep -v -E '^(figure|target):' "$base/out" | tail -20 | sed 's/^/      | /'
	fi
done
echo "mpi bound: $passed passed, $failed failed"
[ $failed -eq 0 ]
