#!/bin/sh
# SPDX-License-Identifier: MIT
# Faults: ENOSPC on either tier (small tmpfs mounts), EIO and short writes (libfiu's fiu-run on
# the POSIX backend), the shared directory vanishing, unmounted or turning read-only in the
# middle of a drain, a very slow shared volume; and the tools under the same faults. Each must
# give a clear error, keep the newest committed step and the uncommitted local copies, and
# recover by itself once the fault is gone. Scenarios live in tests/faults_helper.c.
# FAULTS_ROUNDS (default 40) and FAULTS_P (0.03) size the random-fault run.
set -u
H=${FAULTS_HELPER:-./tests/faults_helper}
CKPT=${TOOLS:-./tools/ckpt}
TH=${TOOLS_HELPER:-./tests/tools_helper}
ROUNDS=${FAULTS_ROUNDS:-40}
P=${FAULTS_P:-0.03}
unset CKPT_SHARED_DIR CKPT_LOCAL_DIR CKPT_NAME CKPT_FAULT_KILL_AT CKPT_KEEP_LOCAL CKPT_KEEP_SHARED
base=$(mktemp -d "${TMPDIR:-/tmp}/ckpt-faults-XXXXXX")
cleanup() {
	# whatever a failed scenario left mounted, innermost first
	grep " $base" /proc/mounts | awk '{print $2}' | sort -r | while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
	done
	rm -rf "$base"
}
trap cleanup EXIT
passed=0 failed=0 skipped=0
case $CKPT in /*) ;; *) CKPT=$(pwd)/$CKPT ;; esac

FIU=
if command -v fiu-run >/dev/null 2>&1; then
	FIU="fiu-run -x -f $base/fiu-ctrl"
else
	echo "NOTE: fiu-run (Debian package fiu-utils) not found: EIO and short-write scenarios skipped"
fi

# scenario NAME [fiu] [extra args]: run one scenario of the helper in a fresh directory
scenario() {
	name=$1
	shift
	pre=
	if [ "${1:-}" = fiu ]; then
		shift
		if [ -z "$FIU" ]; then
			skipped=$((skipped + 1))
			echo "SKIP: $name (no fiu-run)"
			return
		fi
		pre=$FIU
	fi
	d=$base/$name
	rm -rf "$d" && mkdir -p "$d"
	echo "== $name"
	# shellcheck disable=SC2086
	timeout 600 $pre "$H" "$name" "$d" "$CKPT" "$@" >"$base/out" 2>&1
	rc=$?
	sed 's/^/  /' "$base/out"
	case $rc in
	0) passed=$((passed + 1)); echo "PASS: $name" ;;
	77) skipped=$((skipped + 1)); echo "SKIP: $name" ;;
	*) failed=$((failed + 1)); echo "FAIL: $name (exit $rc)" ;;
	esac
	cleanup_mounts "$d"
}
cleanup_mounts() {
	grep " $1" /proc/mounts | awk '{print $2}' | sort -r | while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
	done
}

scenario enospc-local
scenario enospc-shared
scenario vanish
scenario unmount
scenario readonly
scenario slow
scenario eio fiu
scenario shortwrite fiu
scenario random-io fiu "$ROUNDS" "$P"

# ---- the tools under faults ----
echo "== tools"
ok() { n=$1; shift; if "$@"; then passed=$((passed + 1)); echo "PASS: $n"; else failed=$((failed + 1)); echo "FAIL: $n (exit $rc)"; sed 's/^/    /' "$base/err" | tail -5; fi; }
S=$base/t-shared L=$base/t-local
mkdir -p "$S" "$L"
"$TH" save "$S" "$L" job 1 2 2000000 >"$base/err" 2>&1
rc=$?
ok "tools: two committed steps to work on" [ $rc -eq 0 ]
stepdir() { printf '%s/step-%020d' "$1" "$2"; }
if [ -n "$FIU" ]; then
	rc=0
	$FIU -c 'enable name=posix/io/rw/pread,failinfo=5' "$CKPT" verify --shared-dir "$S" \
		--name job --step 2 >"$base/out" 2>"$base/err" || rc=$?
	ok "ckpt verify with every read failing (EIO): exit 3, an I/O error, not damage" [ $rc -eq 3 ]
	ok "ckpt verify says so: Input/output error" grep -q "Input/output error" "$base/err"
	rm -rf "$base/t-node"
	mkdir -p "$base/t-node"
	rc=0
	$FIU -c 'enable name=posix/io/rw/pread,failinfo=5' "$CKPT" restore --shared-dir "$S" \
		--local-dir "$base/t-node" --name job >"$base/out" 2>"$base/err" || rc=$?
	ok "ckpt restore with every read failing (EIO): exit 3" [ $rc -eq 3 ]
	ok "ckpt restore under EIO: nothing of step 2 on the local tier, no temporary file" \
		[ -z "$(find "$base/t-node" -name '*.ckl' -o -name '.tmp.*')" ]
	rc=0
	$FIU -c 'enable name=posix/io/rw/pwrite,failinfo=5' "$CKPT" restore --shared-dir "$S" \
		--local-dir "$base/t-node" --name job >"$base/out" 2>"$base/err" || rc=$?
	ok "ckpt restore with every write failing (EIO): exit 3, nothing published" \
		[ $rc -eq 3 ] && [ -z "$(find "$base/t-node" -name '*.ckl' -o -name '.tmp.*')" ]
	ok "ckpt restore says which file and what: Input/output error" \
		grep -q "\.tmp\..*rank-000000\.ckl.*Input/output error" "$base/err"
	rc=0
	$FIU -c 'enable name=posix/io/sync/fdatasync,failinfo=5' "$CKPT" restore --shared-dir "$S" \
		--local-dir "$base/t-node" --name job --durable >"$base/out" 2>"$base/err" || rc=$?
	ok "ckpt restore --durable with fdatasync failing (EIO): exit 3, nothing published" \
		[ $rc -eq 3 ] && [ -z "$(find "$base/t-node" -name '*.ckl' -o -name '.tmp.*')" ]
	# Without --durable the copy is left to the kernel's writeback: no fdatasync is called,
	# so the same fault changes nothing (the copy is complete and verified below).
	rc=0
	$FIU -c 'enable name=posix/io/sync/fdatasync,failinfo=5' "$CKPT" restore --shared-dir "$S" \
		--local-dir "$base/t-node" --name job >"$base/out" 2>"$base/err" || rc=$?
	ok "ckpt restore (a cache copy) does not call fdatasync: exit 0 under its fault" [ $rc -eq 0 ]
	rc=0
	"$TH" check "$S" "$base/t-node" job 2 2000000 >"$base/out" 2>"$base/err" || rc=$?
	ok "the cache copy restored under the fdatasync fault holds step 2, bit-exact" [ $rc -eq 0 ]
	# --durable makes a present copy (left to the writeback by the restore above) durable too:
	# it calls fdatasync on it, so the same fault now fails it; without the fault it passes.
	rc=0
	$FIU -c 'enable name=posix/io/sync/fdatasync,failinfo=5' "$CKPT" restore --shared-dir "$S" \
		--local-dir "$base/t-node" --name job --durable >"$base/out" 2>"$base/err" || rc=$?
	ok "ckpt restore --durable fdatasyncs a copy already present: exit 3 under the fault" \
		sh -c "[ $rc -eq 3 ] && grep -q 'fdatasync .*rank-000000.ckl' '$base/err'"
	rc=0
	"$CKPT" restore --shared-dir "$S" --local-dir "$base/t-node" --name job --durable \
		>"$base/out" 2>"$base/err" || rc=$?
	ok "ckpt restore --durable over a present copy, no fault: exit 0, nothing rewritten" \
		sh -c "[ $rc -eq 0 ] && grep -q '0 written, 1 already present' '$base/out'"
	rm -rf "$base/t-node"
	mkdir -p "$base/t-node"
	rc=0
	"$CKPT" restore --shared-dir "$S" --local-dir "$base/t-node" --name job \
		>"$base/out" 2>"$base/err" || rc=$?
	ok "without the fault the same restore exits 0" [ $rc -eq 0 ]
	rc=0
	"$TH" check "$S" "$base/t-node" job 2 2000000 >"$base/out" 2>"$base/err" || rc=$?
	ok "and the program loads step 2 bit-exact" [ $rc -eq 0 ]
fi
rc=0
"$CKPT" restore --shared-dir "$base/not-mounted" --local-dir "$L" --name job >"$base/out" \
	2>"$base/err" || rc=$?
ok "ckpt restore from a missing shared dir: exit 3" [ $rc -eq 3 ]
ok "and it asks whether the volume is mounted" grep -q "is the volume mounted" "$base/err"
rc=0
"$CKPT" ls --shared-dir "$base/not-mounted" --name job >"$base/out" 2>"$base/err" || rc=$?
ok "ckpt ls of a missing shared dir: exit 3" [ $rc -eq 3 ]

echo "faults: $passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
