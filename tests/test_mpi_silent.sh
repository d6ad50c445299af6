#!/bin/sh
# SPDX-License-Identifier: MIT
# A silent MPI rank (issue 13): with mpi_timeout=3 the last rank goes silent for 12 s before
# ckpt_save, ckpt_latest or ckpt_close (or never calls ckpt_save); the other ranks must return
# within mpi_timeout (+2 s) with an error naming it (ckpt_close: its warning), the context must
# stay usable (step 3 commits on every rank afterwards), and MPI_Finalize must be clean. Real
# mpirun, 2 and 4 ranks (oversubscribed), both progress modes; every run is bounded by timeout(1).
#   SILENT_MODES="save latest close never", SILENT_RUNS="2:single 4:multiple 4:single" (ranks and
#   thread level), SILENT_ROOT_MODES=save, SILENT_SECONDS, SILENT_TIMEOUT, SILENT_MARGIN
set -u
W=${MPI_SILENT:-./tests/mpi_silent}
MPIRUN=${MPIRUN:-mpirun}
MODES=${SILENT_MODES:-save latest close never}
export SILENT_SECONDS=${SILENT_SECONDS:-12} SILENT_TIMEOUT=${SILENT_TIMEOUT:-3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_rmaps_base_oversubscribe=1
# a hang is cut at four silences (and a minute of start-up slack)
LIMIT=$((SILENT_SECONDS * 4 + 60))
base=$(mktemp -d "${TMPDIR:-/tmp}/ckpt-silent-XXXXXX")
passed=0 failed=0 failures=""
trap 'rm -rf "$base"' EXIT

# every mode with the last rank silent, 2 and 4 ranks, both thread levels; then rank 0 silent in
# SILENT_ROOT_MODES (ckpt_save): the others wait for its verdict up to 1 s past mpi_timeout
for mode in $MODES; do
	for run in ${SILENT_RUNS:-2:single 4:multiple 4:single}; do
		echo "$mode ${run%:*} ${run#*:} -"
	done
done >"$base/runs"
for mode in ${SILENT_ROOT_MODES-save}; do echo "$mode 4 single 0"; done >>"$base/runs"
while read -r mode np thr victim; do
	root=""
	[ "$victim" = 0 ] && root=0
	name="$mode np=$np $thr${root:+ rank 0 silent}"
	rm -rf "$base/j"
	mkdir -p "$base/j"
	start=$(date +%s)
	# TERM first: mpirun then ends its ranks; KILL 10 s later if it does not
	# (stdin: mpirun would read the list of runs)
	SILENT_RANK=${root:-$((np - 1))} TEST_MPI_THREAD=$thr timeout -k 10 "$LIMIT" "$MPIRUN" \
		--allow-run-as-root --oversubscribe -np "$np" "$W" "$base/j" "$mode" \
		</dev/null >"$base/out" 2>&1
	rc=$?
	took=$(($(date +%s) - start))
	grep -h '^figure:' "$base/out" | sed 's/^/    /' | tee -a "$base/figures"
	grep -h '^target:' "$base/out" | sed 's/^/    /'
	why=""
	{ [ $rc -eq 124 ] || [ $rc -eq 137 ]; } && why="hung: killed after $LIMIT s"
	grep -q -i -E 'segmentation|signal 11|SIGSEGV|core dumped' "$base/out" &&
		why="${why:+$why; }MPI_Finalize or close crashed (segfault)"
	fin=$(grep -c 'finalized' "$base/out")
	[ "$fin" -eq "$np" ] || why="${why:+$why; }$fin of $np ranks finished MPI_Finalize"
	[ $rc -eq 0 ] || why="${why:+$why; }mpirun exit $rc"
	if [ "$mode" = close ] && [ -z "$root" ]; then
		# ckpt_close frees its message with the context: its warning names the rank
		named=$(grep -c "ckpt_close: rank $((np - 1)) did not answer within mpi_timeout" \
			"$base/out")
		[ "$named" -ge $((np - 1)) ] ||
			why="${why:+$why; }$named of $((np - 1)) ckpt_close warnings name rank $((np - 1))"
	fi
	missed=$(grep -c '^target:.* FAIL' "$base/out")
	[ "$missed" -eq 0 ] || why="${why:+$why; }$missed target(s) missed"
	echo "    figure: silent_${mode}${root:+_rank0}_np${np}_${thr} whole run ${took} s"
	if [ -z "$why" ]; then
		passed=$((passed + 1))
		echo "PASS: $name"
	else
		failed=$((failed + 1))
		failures="$failures [$name]"
		echo "FAIL: $name: $why"
		grep -v -E '^(figure|target):' "$base/out" | tail -15 | sed 's/^/      | /'
	fi
done <"$base/runs"
echo "mpi silent: $passed passed, $failed failed${failures:+ (failed:$failures)}"
[ $failed -eq 0 ]
