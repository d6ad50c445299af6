#!/bin/bash
# SPDX-License-Identifier: MIT
# Builds libckpt out of tree under $TMPDIR with a sanitizer and runs its tests there:
#
#   scripts/sanitize.sh asan       AddressSanitizer + UndefinedBehaviorSanitizer (+ LeakSanitizer),
#                                  then make check
#   scripts/sanitize.sh tsan       ThreadSanitizer (drain threads, MPI progress thread), make check
#   scripts/sanitize.sh valgrind   a normal build; every CUnit program tests/test_* under memcheck
#
# Three tests run only in the normal build (make check): the Python bindings' (loading a sanitized
# library into python3 through ctypes needs the sanitizer runtime preloaded, and LSan then reports
# the interpreter's own allocations), the Kubernetes manifest check (no libckpt code runs) and the
# install check (it links a plain program against the installed, here sanitized, library).
# Leaks and races inside Open MPI are suppressed by fuzz/lsan.supp and fuzz/tsan.supp, never
# those of libckpt. Environment: CC, CXX (asan, tsan: default clang, clang++), TMPDIR, SAN_JOBS
# (parallel jobs, default nproc), CONFIGURE_FLAGS (extra ./configure arguments), SAN_SKIP_TESTS
# (tests left out, default "bindings/python/run_tests.sh tests/test_k8s.sh tests/test_install.sh"),
# SAN_KEEP (keep the
# build directory, $TMPDIR/ckpt-san-<mode>-XXXXXX, also when every test passed).
# Exit status: 0 when every test passed clean, 1 otherwise, 64 for bad usage.
# shellcheck disable=SC2016,SC2086,SC2012  # sh -c scripts in single quotes; word lists split
set -euo pipefail
mode=${1:-}
srcdir=$(cd "$(dirname "$0")/.." && pwd)
jobs=${SAN_JOBS:-$(nproc 2>/dev/null || echo 2)}
case $mode in
asan | tsan | valgrind) ;;
*) echo "usage: $0 asan|tsan|valgrind" >&2; exit 64 ;;
esac
# A directory of this run (two runs on one machine never share one): removed when every test
# passed, kept for its logs and reports otherwise (or always with SAN_KEEP=1).
work=$(mktemp -d "${TMPDIR:-/tmp}/ckpt-san-$mode-XXXXXX")
start=$(date +%s)
log() { echo "sanitize[$mode]: $*"; }
finish() {
	local rc=$?
	if [ $rc -eq 0 ] && [ -z "${SAN_KEEP:-}" ]; then
		rm -rf "$work"
	else
		echo "sanitize[$mode]: build, logs and reports kept in $work"
	fi
	return $rc
}
trap finish EXIT

mkdir -p "$work/build"
# configure refuses an out-of-tree build from a source tree that is configured in place (what
# scripts/setup.sh does). Then build from a clean export of the working tree instead (tracked and
# untracked, not ignored, files), bootstrapped there: the source tree itself is never written.
src=$srcdir
if [ -f "$srcdir/config.status" ] || [ ! -x "$srcdir/configure" ]; then
	if ! git -C "$srcdir" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		echo "sanitize: $srcdir is configured in place (or not bootstrapped) and is not a git" \
			"checkout: run 'make distclean' there, or autoreconf -fi" >&2
		exit 1
	fi
	src=$work/src
	mkdir -p "$src"
	# Programs an in-place make left behind must not come along (.gitignore may not list a new
	# one): in a VPATH build, make and the test driver would take them for up to date.
	(cd "$srcdir" && git ls-files -z -co --exclude-standard |
		while IFS= read -r -d '' f; do
			[ -f "$f" ] || continue
			[ "$(head -c 4 "$f" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ] && continue
			head -n 3 "$f" 2>/dev/null | grep -q 'temporary wrapper script' && continue
			printf '%s\0' "$f"
		done |
		tar --null -T - -cf -) | tar -C "$src" -xf -
	# the tests read real trained weights from ../shared/data next to the source tree
	[ -e "$srcdir/../shared" ] && ln -s "$srcdir/../shared" "$work/shared"
	(cd "$src" && autoreconf -fi >"$work/autoreconf.log" 2>&1) ||
		{ cat "$work/autoreconf.log"; exit 1; }
	log "building from an export of the working tree ($src): $srcdir is configured in place"
fi

cd "$work/build"
# Every sanitized process writes its reports to a file of its own under $reports (log_path): a
# report is a failure even when it comes from a process whose exit status a test expected to be
# non-zero, or whose stderr a test swallowed.
reports=$work/reports
mkdir -p "$reports"
case $mode in
asan)
	CC=${CC:-clang} CXX=${CXX:-clang++}
	san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
	cflags="-g -O1 $san"
	# fast_unwind_on_malloc=0: complete allocation stacks through Open MPI (built without frame
	# pointers), which fuzz/lsan.supp needs to tell its leaks from ours.
	# allocator_may_return_null=1: tests ask for forged, huge sizes on purpose; malloc then
	# returns NULL as it does in production, and the library must cope (the fuzzers keep the
	# default and stop at such a request).
	export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:detect_stack_use_after_return=1"
	ASAN_OPTIONS="$ASAN_OPTIONS:check_initialization_order=1:strict_string_checks=1"
	ASAN_OPTIONS="$ASAN_OPTIONS:fast_unwind_on_malloc=0:allocator_may_return_null=1"
	ASAN_OPTIONS="$ASAN_OPTIONS:log_path=$reports/asan"
	export LSAN_OPTIONS="suppressions=$srcdir/fuzz/lsan.supp:print_suppressions=0"
	export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$reports/asan"
	;;
tsan)
	CC=${CC:-clang} CXX=${CXX:-clang++}
	san="-fsanitize=thread -fno-omit-frame-pointer"
	cflags="-g -O1 $san"
	export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$srcdir/fuzz/tsan.supp"
	TSAN_OPTIONS="$TSAN_OPTIONS log_path=$reports/tsan"
	;;
valgrind)
	CC=${CC:-cc} CXX=${CXX:-c++}
	san=""
	cflags="-g -O2"
	command -v valgrind >/dev/null || { echo "sanitize: valgrind not installed" >&2; exit 1; }
	;;
esac
command -v "$CC" >/dev/null || { echo "sanitize: $CC not found" >&2; exit 1; }
t0=$(date +%s)
"$src/configure" -q CC="$CC" CXX="$CXX" CFLAGS="$cflags" CXXFLAGS="$cflags" LDFLAGS="$san" \
	${CONFIGURE_FLAGS:-} \
	>"$work/configure.log" 2>&1 || { tail -30 "$work/configure.log" config.log; exit 1; }
make -j"$jobs" >"$work/build.log" 2>&1 || { grep -E 'error|Error' "$work/build.log" | head -30; exit 1; }
make -j"$jobs" check TESTS= >>"$work/build.log" 2>&1 || { tail -30 "$work/build.log"; exit 1; }
log "configured and built with $CC $cflags in $(( $(date +%s) - t0 )) s"

t0=$(date +%s)
rc=0
if [ "$mode" = valgrind ]; then
	# Every CUnit program (tests/test_*, not the shell scripts). The MPI test runs mpirun, whose
	# Open MPI internals valgrind reports by the hundred: it is left to the sanitizer builds.
	vg="valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite"
	vg="$vg --show-leak-kinds=definite --track-origins=yes --num-callers=30"
	progs=$(find tests -maxdepth 1 -type f -name 'test_*' -perm -u+x ! -name '*.sh' | sort)
	# what make check's AM_TESTS_ENVIRONMENT gives the tests
	export srcdir=$src vg work CKPT_TEST_DATA=$src/../shared/data
	# $jobs at a time: each is single-threaded under valgrind, which serializes threads
	printf '%s\n' $progs | xargs -P "$jobs" -I{} sh -c '
		name=$(basename {}); s=$(date +%s)
		if $vg --log-file="$work/reports/$name.vg.%p" {} >"$work/$name.log" 2>&1; then r=PASS; else r=FAIL; fi
		echo "$r: {} ($(( $(date +%s) - s )) s)"' | tee "$work/results"
	passed=$(grep -c '^PASS' "$work/results" || true)
	failed=$(grep -c '^FAIL' "$work/results" || true)
	sed -n 's/^FAIL: \([^ ]*\).*/\1/p' "$work/results" | while read -r f; do
		echo "=== $f"
		tail -20 "$work/$(basename "$f").log"
	done
	[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ] || rc=1
	# valgrind -q writes nothing but errors: the logs of forked children are empty when clean
	find "$reports" -type f -empty -delete
else
	# make check without SAN_SKIP_TESTS (see the top of this file)
	skip=" ${SAN_SKIP_TESTS-bindings/python/run_tests.sh tests/test_k8s.sh tests/test_install.sh} "
	tests=""
	for t in $(make -s --no-print-directory --eval='print-tests: ; @echo $(TESTS)' print-tests); do
		case $skip in *" $t "*) log "skipped: $t" ;; *) tests="$tests $t" ;; esac
	done
	# The randomized reliability tests with shorter runs than make check's (a sanitizer slows
	# every process several times; what it looks for shows in short runs too), unless set.
	TORTURE_DURATION=${TORTURE_DURATION:-15} FAULTS_ROUNDS=${FAULTS_ROUNDS:-15} \
		CORRUPT_STRIDE=${CORRUPT_STRIDE:-101} \
		make -j"$jobs" check TESTS="$tests" >"$work/check.log" 2>&1 || rc=1
	grep -E '^(PASS|FAIL|ERROR|SKIP|XFAIL|XPASS):' "$work/check.log" || true
	if [ $rc -ne 0 ]; then
		find tests examples -name '*.trs' -print0 2>/dev/null |
			while IFS= read -r -d '' trs; do
				grep -qE '^:test-result: (FAIL|ERROR)' "$trs" || continue
				echo "=== ${trs%.trs}.log"
				tail -40 "${trs%.trs}.log"
			done
	fi
	passed=$(grep -c '^PASS:' "$work/check.log" || true)
	failed=$(grep -cE '^(FAIL|ERROR|XPASS):' "$work/check.log" || true)
fi
# An empty report names no error: a process that the tests themselves SIGKILL (the torture, the
# crash tests) while its sanitizer runtime had just opened its log at exit leaves one.
find "$reports" -type f -empty -delete
nreports=$(ls "$reports" | wc -l)
if [ "$nreports" -gt 0 ]; then
	for f in $(ls "$reports" | head -10); do
		echo "=== $reports/$f"
		head -60 "$reports/$f"
	done
	rc=1
fi
log "tests took $(( $(date +%s) - t0 )) s; total $(( $(date +%s) - start )) s"
echo "sanitize[$mode]: $passed passed, $failed failed, $nreports process(es) with error reports"
exit $rc
