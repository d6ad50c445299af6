#!/bin/sh
# SPDX-License-Identifier: MIT
# Issue 12: many processes, many nodes, one job, and world-size changes (`make check-conc`).
#   (a) writer re-saves + another node loops ckpt_open/ckpt_close: 0 confirmed steps lost
#   (b) reader on another node during re-saves and retention: 0 false errors, 0 mixed saves
#   (c) ckpt-restore and ckpt verify during retention (keep_shared=1): 0 false exit 1/2
#   (d) second ckpt_open of a job rank in one process: CKPT_EBUSY; the lock survives its close
#   (e) world size 4 -> 2 -> 4 under mpirun: latest, a loud refusal, resharding, no rollback
# Each scenario runs under `timeout`, prints its figures ("figures: ...") and its promises, and
# fails on a broken one. CONC_SCENARIOS="a c" picks some; CONC_SECONDS bounds each scenario's own
# loop (default 60; the timeout is that plus 120 s); CONC_STEPS, CONC_RESAVES, CONC_TOOL_RUNS,
# CONC_PAIRS, CONC_SIZE tune the iterations (tests/conc_helper.c).
set -u
H=${CONC_HELPER:-./tests/conc_helper}
M=${CONC_MPI:-./tests/conc_mpi}
TOOL=${CKPT_TOOL:-./tools/ckpt}
MPIRUN=${MPIRUN:-mpirun}
SCEN=${CONC_SCENARIOS:-a b c d e}
SECS=${CONC_SECONDS:-60}
export CONC_SECONDS=$SECS
LIMIT=$((SECS + 120))
base=$(mktemp -d "${TMPDIR:-/tmp}/ckpt-conc-XXXXXX") || exit 99
trap 'rm -rf "$base"' EXIT
passed=0 failed=0 skipped=0 failed_names=

result() { # result NAME RC
	case $2 in
	0) passed=$((passed + 1)); echo "PASS: $1" ;;
	77) skipped=$((skipped + 1)); echo "SKIP: $1" ;;
	124) failed=$((failed + 1)); failed_names="$failed_names ${1%%)*})"; echo "FAIL: $1 (timed out after ${LIMIT}s)" ;;
	*) failed=$((failed + 1)); failed_names="$failed_names ${1%%)*})"; echo "FAIL: $1 (exit $2)" ;;
	esac
}

# helper NAME SCENARIO [ARGS...]: one conc_helper scenario in a fresh directory; its stderr is
# shown (at most 20 lines) only when it fails.
helper() {
	name=$1 scen=$2
	shift 2
	d="$base/$scen"
	rm -rf "$d" && mkdir -p "$d"
	echo "== $name"
	timeout "$LIMIT" "$H" "$scen" "$d" "$@" 2>"$base/$scen.err"
	rc=$?
	if [ $rc -ne 0 ]; then
		echo "  stderr (first 20 lines):"
		head -20 "$base/$scen.err" | sed 's/^/    /'
	fi
	result "$name" $rc
}

for s in $SCEN; do
	case $s in
	a) helper "(a) re-saves while another node opens the job: no confirmed step lost" resave ;;
	b) helper "(b) a reader on another node: no false error, no mixed save" reader ;;
	c) helper "(c) ckpt-restore and ckpt verify during retention: no false exit" tools "$TOOL" ;;
	d) helper "(d) in-process duplicate open: CKPT_EBUSY, the lock survives" dupopen ;;
	e)
		name="(e) world size 4 -> 2 -> 4: latest, loud refusal, reshard, no rollback"
		echo "== $name"
		if [ "${HAVE_MPI:-1}" = 0 ] || [ ! -x "$M" ] || ! command -v "$MPIRUN" >/dev/null; then
			echo "  no MPI in this build"
			result "$name" 77
			continue
		fi
		export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
		export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
		export OMPI_MCA_rmaps_base_oversubscribe=1
		d="$base/mpi"
		rm -rf "$d" && mkdir -p "$d"
		rc=0
		# Each phase runs even when an earlier one broke a promise: all figures, every time.
		for phase in "4 save4" "1 latest1" "2 resume2" "4 resume4"; do
			np=${phase%% *} mode=${phase#* }
			echo "  -- $mode ($np process$([ "$np" = 1 ] || echo es))"
			if [ "$mode" = latest1 ]; then
				# the same shared tier opened without MPI, from a node of its own
				timeout "$LIMIT" "$H" latest1 "$d" 2 2>>"$base/mpi.err"
			else
				timeout "$LIMIT" "$MPIRUN" --allow-run-as-root --oversubscribe -np "$np" \
					"$M" "$d" "$mode" 2>>"$base/mpi.err"
			fi
			prc=$?
			[ $prc -eq 0 ] || rc=$prc
			[ $prc -eq 124 ] && break
		done
		if [ $rc -ne 0 ]; then
			echo "  stderr (first 20 lines):"
			head -20 "$base/mpi.err" | sed 's/^/    /'
		fi
		result "$name" $rc
		;;
	*) echo "unknown scenario $s"; result "$s" 64 ;;
	esac
done
echo "conc: $passed passed, $failed failed, $skipped skipped${failed_names:+ (failed:$failed_names)}"
[ $failed -eq 0 ]
