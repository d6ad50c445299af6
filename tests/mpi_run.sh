# SPDX-License-Identifier: MIT
# Sourced by the test scripts that run one MPI test program under a real mpirun, case after
# case (test_mpi_skip.sh, test_mpi_bound.sh): Open MPI's settings for root, oversubscription and
# shared memory, a mktemp directory, and one function per case that runs the program and judges
# it: mpirun's exit status, 'finalized' from every rank, no 'target: ... FAIL' line.
#   mpi_run_init TAG            skip (77) without mpirun; sets $base (removed at exit)
#   mpi_case NAME NP PROGRAM... runs PROGRAM... $base/j on NP ranks (bounded by 300 s; the
#                               environment passes through), counts $passed and $failed
#   mpi_run_done SUMMARY        prints the counts; the script's exit status
MPIRUN=${MPIRUN:-mpirun}

mpi_run_init() {
	command -v "$MPIRUN" >/dev/null 2>&1 || { echo "SKIP: no $MPIRUN"; exit 77; }
	export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
	export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
	export OMPI_MCA_rmaps_base_oversubscribe=1
	base=$(mktemp -d "${TMPDIR:-/tmp}/ckpt-$1-XXXXXX")
	passed=0 failed=0
	trap 'rm -rf "$base"' EXIT
}

mpi_case() {
	_name=$1 _np=$2
	shift 2
	rm -rf "$base/j"
	mkdir -p "$base/j"
	_start=$(date +%s)
	timeout -k 10 300 "$MPIRUN" --allow-run-as-root --oversubscribe -np "$_np" "$@" \
		"$base/j" >"$base/out" 2>&1
	_rc=$?
	_took=$(($(date +%s) - _start))
	grep -h -E '^(figure|target):' "$base/out" | sed 's/^/    /'
	echo "    figure: $(echo "$_name" | tr ' =' '__') whole run ${_took} s"
	_why=""
	[ $_rc -eq 0 ] || _why="mpirun exit $_rc"
	_fin=$(grep -c 'finalized' "$base/out")
	[ "$_fin" -eq "$_np" ] || _why="${_why:+$_why; }$_fin of $_np ranks finished MPI_Finalize"
	grep -q '^target:.* FAIL' "$base/out" && _why="${_why:+$_why; }target(s) missed"
	if [ -z "$_why" ]; then
		passed=$((passed + 1))
		echo "PASS: $_name"
	else
		failed=$((failed + 1))
		echo "FAIL: $_name: $_why"
		grep -v -E '^(figure|target):' "$base/out" | tail -20 | sed 's/^/      | /'
	fi
}

mpi_run_done() {
	echo "$1: $passed passed, $failed failed"
	[ $failed -eq 0 ]
}
