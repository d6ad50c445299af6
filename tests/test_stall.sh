#!/bin/sh
# SPDX-License-Identifier: MIT
# A stalled shared volume (issue 13): tests/stallfs.py, a FUSE passthrough whose calls block on
# demand, serves as shared_dir; tests/stall_helper runs the scenarios against it and prints
# "figure:" and "target:" lines. Starts and stops its own FUSE server in its own mktemp -d
# directory; skips (77) only where /dev/fuse is missing.
#   STALL_SCENARIOS="kernel outage outage_eio close open open_late kill retention doctor" (the default:
#   all; outage_eio is the outage with every call failing with EIO, as on a soft mount: failed
#   drains of superseded steps give up their local copies, so local disk stays bounded there
#   too; retention stalls the volume exactly where the drain's retention reads a MANIFEST;
#   open_late stalls it right after ckpt_open's probes, at the first lookup of the writer lease).
#   Outages: 8 s (make check), 15 s (make check-stall), 30 s (make torture).
#   tunables of the scenarios: see tests/stall_helper.c (STALL_OUTAGE, STALL_CLOSE_TIMEOUT, ...)
set -u
srcdir=${srcdir:-.}
HELPER=${STALL_HELPER:-./tests/stall_helper}
CKPT=${CKPT_TOOL:-./tools/ckpt}
SCENARIOS=${STALL_SCENARIOS:-kernel outage outage_eio close open open_late kill retention doctor}
OUTAGE=${STALL_OUTAGE:-8}
# The outage of close, open, open_late, kill, retention and doctor: longer than the bounds they measure
# (close_timeout 3 s; probe_timeout 5 s).
SHORT_OUTAGE=${STALL_SHORT_OUTAGE:-7}
export STALL_CLOSE_TIMEOUT=${STALL_CLOSE_TIMEOUT:-3} STALL_OPEN_BOUND=${STALL_OPEN_BOUND:-10}

if [ ! -c /dev/fuse ]; then
	echo "SKIP: /dev/fuse is missing: no FUSE, so no stalled-volume tests (issue 13)"
	exit 77
fi
PY=""
for p in /usr/bin/python3 python3; do
	if "$p" -c 'import fusepy' 2>/dev/null || "$p" -c 'import fuse; fuse.FUSE' 2>/dev/null; then
		PY=$p
		break
	fi
done
if [ -z "$PY" ]; then
	echo "FAIL: no python3 with fusepy: install Debian's python3-fusepy (scripts/setup.sh does)"
	exit 1
fi
command -v fusermount >/dev/null 2>&1 || command -v fusermount3 >/dev/null 2>&1 || {
	echo "FAIL: fusermount missing: install Debian's fuse3 (scripts/setup.sh does)"
	exit 1
}
FUSERMOUNT=$(command -v fusermount3 || command -v fusermount)

base=$(mktemp -d "${TMPDIR:-/tmp}/ckpt-stall-XXXXXX")
mnt=$base/mnt
ctl=$base/ctl
fspid="" hpid=""
passed=0 failed=0 failures=""

volume() { "$PY" "$srcdir/tests/stallfs.py" ctl "$ctl" "$@"; }

stop_fs() {
	[ -n "$fspid" ] || return 0
	# blocked callers go on first, so that nothing holds the mount busy
	timeout 10 "$PY" "$srcdir/tests/stallfs.py" ctl "$ctl" resume >/dev/null 2>&1
	"$FUSERMOUNT" -u "$mnt" 2>/dev/null || "$FUSERMOUNT" -u -z "$mnt" 2>/dev/null
	# the server leaves its loop once unmounted; one that does not is ended (this also aborts
	# the FUSE connection: any call still waiting fails with ENOTCONN)
	i=0
	while kill -0 "$fspid" 2>/dev/null && [ $i -lt 50 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	kill -9 "$fspid" 2>/dev/null
	wait "$fspid" 2>/dev/null
	fspid=""
}

cleanup() {
	# timeout(1) passes TERM on to the helper, whose calls on the volume are killable
	[ -z "$hpid" ] || { kill "$hpid" 2>/dev/null; wait "$hpid" 2>/dev/null; }
	stop_fs
	if grep -q " $mnt " /proc/mounts 2>/dev/null; then
		echo "test_stall: $mnt is still mounted; leaving $base"
	else
		rm -rf "$base"
	fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

start_fs() {
	mkdir -p "$base/backing" "$mnt"
	rm -f "$base/ready"
	mkfifo "$base/ready"
	"$PY" "$srcdir/tests/stallfs.py" serve "$base/backing" "$mnt" "$ctl" "$base/ready" \
		2>"$base/stallfs.log" &
	fspid=$!
	# the server writes one line into the FIFO once the kernel has initialised the mount
	ready=$(timeout 30 head -n 1 "$base/ready")
	if [ "$ready" != ready ]; then
		echo "FAIL: stallfs did not start: ${ready:-no answer in 30 s}"
		sed 's/^/    /' "$base/stallfs.log"
		exit 1
	fi
	echo "stallfs: mounted $mnt (backing $base/backing, pid $fspid)"
}

result() { # NAME RC
	if [ "$2" -eq 0 ]; then
		passed=$((passed + 1))
		echo "PASS: $1"
	else
		failed=$((failed + 1))
		failures="$failures $1"
		echo "FAIL: $1 (exit $2)"
	fi
}

fig() { echo "figure: $*" | tee -a "$base/figures.out"; }

# A call on the stalled volume really waits in the kernel, as on a hard NFS mount: the process is
# asleep in fuse's request_wait_answer (S; D once a signal came and the kernel waits for our answer
# to its INTERRUPT), and goes on after resume.
scenario_kernel() {
	echo probe >"$mnt/probe"
	volume stall >/dev/null || return 1
	cat "$mnt/probe" >"$base/probe.out" &
	cpid=$!
	volume wait-blocked 1 10 || { volume resume; wait $cpid; return 1; }
	state=$(awk '{print $3}' "/proc/$cpid/stat" 2>/dev/null)
	wchan=$(cat "/proc/$cpid/wchan" 2>/dev/null)
	stack=$(head -3 "/proc/$cpid/stack" 2>/dev/null | tr '\n' ' ')
	fig "kernel_blocked_state=$state wchan=$wchan stack=[$stack]"
	rc=0
	case "$state" in S | D) ;; *) rc=1 ;; esac
	case "$wchan $stack" in *fuse* | *request_wait_answer*) ;; *) rc=1 ;; esac
	# killable, as on a hard NFS mount: SIGKILL ends a second blocked reader while stalled
	cat "$mnt/probe" >/dev/null &
	kpid=$!
	volume wait-blocked 2 10 >/dev/null || rc=1
	kill -9 $kpid
	wait $kpid 2>/dev/null
	krc=$?
	fig "kernel_sigkill_while_stalled=exit $krc, $(volume status)"
	[ $krc -eq 137 ] || rc=1
	volume resume >/dev/null
	wait $cpid || rc=1
	[ "$(cat "$base/probe.out")" = probe ] || rc=1
	fig "kernel_probe_after_resume=$(cat "$base/probe.out" 2>/dev/null)"
	return $rc
}

run_helper() { # SCENARIO OUTAGE LIMIT [MODE]
	sc=$1 hsc=${1%_eio}
	rm -rf "$base/local-$sc" "$mnt/$sc"
	mkdir -p "$base/local-$sc" "$mnt/$sc"
	# in the background: a signal to this script then runs its trap at once (which ends the
	# helper) instead of after the helper's own end
	STALL_MODE=${4:-stall} STALL_OUTAGE=$2 timeout -k 5 "$3" "$HELPER" "$hsc" \
		"$base/local-$sc" "$mnt/$sc" "$ctl" >"$base/$sc.out" 2>&1 &
	hpid=$!
	wait $hpid
	rc=$?
	hpid=""
	cat "$base/$sc.out"
	[ $rc -eq 124 ] || [ $rc -eq 137 ] && echo "test_stall: $sc hung: killed after $3 s"
	volume resume >/dev/null # whatever the helper left
	return $rc
}

# ckpt doctor on a stalled volume: it must come back (with a verdict) within a bound
scenario_doctor() {
	mkdir -p "$base/local-doctor" "$mnt/doctor"
	volume stall >/dev/null || return 1
	t0=$(date +%s.%N)
	timeout -s KILL $((SHORT_OUTAGE + 20)) "$CKPT" doctor --local-dir "$base/local-doctor" \
		--shared-dir "$mnt/doctor" --name doc --bytes 1M >"$base/doctor.out" 2>&1 &
	dpid=$!
	# the doctor either finishes or is blocked on the volume; the outage ends after SHORT_OUTAGE
	(sleep "$SHORT_OUTAGE"; volume resume >/dev/null) &
	rpid=$!
	wait $dpid
	drc=$?
	t1=$(date +%s.%N)
	wait $rpid
	took=$(echo "$t1 - $t0" | bc 2>/dev/null || awk "BEGIN{print $t1 - $t0}")
	sed 's/^/    /' "$base/doctor.out" | head -20
	fig "doctor_during_outage_s=$took (exit $drc; the volume came back after ${SHORT_OUTAGE} s)"
	bound=$((STALL_OPEN_BOUND + 1))
	rc=0
	awk "BEGIN{exit !($took <= $bound)}" || rc=1
	grep -q "not responding" "$base/doctor.out" || rc=1
	echo "target: doctor_bounded $([ $rc -eq 0 ] && echo PASS || echo FAIL) (took $took s, bound $bound s, must say \"not responding\")"
	return $rc
}

start_fs
for sc in $SCENARIOS; do
	echo "== $sc"
	case $sc in
	kernel) scenario_kernel; result "kernel: a call on the stalled volume blocks in the kernel" $? ;;
	outage) run_helper outage "$OUTAGE" $((OUTAGE * 4 + 60)); result "outage of ${OUTAGE} s while saving" $? ;;
	outage_eio) run_helper outage_eio "$OUTAGE" $((OUTAGE * 4 + 60)) eio
		result "outage of ${OUTAGE} s as EIO (soft mount) while saving" $? ;;
	close) run_helper close "$SHORT_OUTAGE" $((SHORT_OUTAGE * 3 + 60)); result "ckpt_close during an outage" $? ;;
	open) run_helper open "$SHORT_OUTAGE" $((SHORT_OUTAGE * 3 + 60)); result "ckpt_open during an outage" $? ;;
	open_late) run_helper open_late "$SHORT_OUTAGE" $((SHORT_OUTAGE * 3 + 60))
		result "ckpt_open on a volume that stalls right after the probes" $? ;;
	kill) run_helper kill "$SHORT_OUTAGE" $((SHORT_OUTAGE * 3 + 60)); result "kill -9 during an outage, restart" $? ;;
	retention) run_helper retention "$SHORT_OUTAGE" $((SHORT_OUTAGE * 3 + 60))
		result "ckpt_save while the drain's retention is stuck on the volume" $? ;;
	doctor) scenario_doctor; result "ckpt doctor during an outage" $? ;;
	*) echo "unknown scenario $sc"; result "$sc" 1 ;;
	esac
done
stop_fs

echo "== figures"
for f in "$base"/*.out; do
	grep '^figure:' "$f" | sed "s/^figure: /    [$(basename "$f" .out)] /"
done
echo "stall: $passed passed, $failed failed${failures:+ (failed:$failures)}"
[ $failed -eq 0 ]
