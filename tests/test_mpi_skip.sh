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
MPIRUN=${MPIRUN:-mpirun}
command -v "$MPIRUN" >/dev/null 2>&1 || { echo "SKIP: no $MPIRUN"; exit 77; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_rmaps_base_oversubscribe=1
base=$(mktemp -d "${TMPDIR:-/tmp}/ckpt-mpiskip-XXXXXX")
passed=0 failed=0
trap 'rm -rf "$base"' EXIT

for run in "2 single" "4 multiple"; do
	np=${run% *} thr=${run#* }
	rm -rf "$base/j"
	mkdir -p "$base/j"
	start=$(date +%s)
	TEST_MPI_THREAD=$thr timeout -k 10 300 "$MPIRUN" --allow-run-as-root --oversubscribe \
		-np "$np" "$W" "$base/j" >"$base/out" 2>&1
	rc=$?
	took=$(($(date +%s) - start))
	grep -h -E '^(figure|target):' "$base/out" | sed 's/^/    /'
	echo "    figure: skip_np${np}_${thr} whole run ${took} s"
	why=""
	[ $rc -eq 0 ] || why="mpirun exit $rc"
	fin=$(grep -c 'finalized' "$base/out")
	[ "$fin" -eq "$np" ] || why="${why:+$why; }$fin of $np ranks finished MPI_Finalize"
	grep -q '^target:.* FAIL' "$base/out" && why="${why:+$why; }target(s) missed"
	# the skips are logged (log_level 2) by every rank
	if [ -z "$why" ]; then
		passed=$((passed + 1))
		echo "PASS: skip np=$np $thr"
	else
		failed=$((failed + 1))
		echo "FAIL: skip np=$np $thr: $why"
		grep -v -E '^(figure|target):' "$base/out" | tail -20 | sed 's/^/      | /'
	fi
done
echo "mpi skip: $passed passed, $failed failed"
[ $failed -eq 0 ]
