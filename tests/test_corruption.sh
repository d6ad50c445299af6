#!/bin/sh
# SPDX-License-Identifier: MIT
# Corruption: bit flips, truncations, extensions, deleted and swapped files in both tiers and in
# the MANIFEST (tests/corrupt_helper.c: every checksummed byte, 100% detected, nothing damaged
# returned as good, fallback to the intact copy announced); then the tools: ckpt verify, ls and
# ckpt-restore on swapped and damaged steps fall back to the newest intact step and say so.
# CORRUPT_STRIDE (default 37) flips every n-th data byte; 1 flips them all (the long run).
set -u
CH=${CORRUPT_HELPER:-./tests/corrupt_helper}
CKPT=${TOOLS:-./tools/ckpt}
TH=${TOOLS_HELPER:-./tests/tools_helper}
STRIDE=${CORRUPT_STRIDE:-37}
unset CKPT_SHARED_DIR CKPT_LOCAL_DIR CKPT_NAME CKPT_FAULT_KILL_AT CKPT_KEEP_LOCAL CKPT_KEEP_SHARED
base=$(mktemp -d "${TMPDIR:-/tmp}/ckpt-corrupt-XXXXXX")
trap 'rm -rf "$base"' EXIT
passed=0 failed=0 rc=0
ok() { n=$1; shift; if "$@"; then passed=$((passed + 1)); echo "PASS: $n"; else failed=$((failed + 1)); echo "FAIL: $n (exit $rc)"; sed 's/^/    /' "$base/err" 2>/dev/null | tail -5; fi; }

echo "== library: every byte of step 2's files, both tiers"
mkdir -p "$base/lib"
"$CH" "$base/lib" "$CKPT" "$STRIDE" >"$base/out" 2>&1
rc=$?
sed 's/^/  /' "$base/out"
ok "corruption campaign through the library" [ $rc -eq 0 ]

echo "== tools: damaged and swapped steps"
S=$base/shared L=$base/local
mkdir -p "$S" "$L"
"$TH" save "$S" "$L" job 1 3 1500000 >"$base/err" 2>&1
rc=$?
ok "three committed steps" [ $rc -eq 0 ]
stepdir() { printf '%s/job/step-%020d' "$1" "$2"; }
ckz() { ls "$(stepdir "$1" "$2")"/rank-000000-*.ckz; }
flip() {
	b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
	printf "$(printf '\\%03o' $((b ^ 4)))" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null
}
swap() { mv "$1" "$1.x" && mv "$2" "$1" && mv "$1.x" "$2"; }
size() { wc -c <"$1" | tr -d ' '; }
# damage NAME EXPECTED_STEP: apply $damage to a copy of the shared tier, then restore
for case in header:2 index:2 trailer:2 chunk:2 manifest-swap:1 shard-swap:1 dir-swap:1 \
	tier-mixup:2 manifest-truncated:2 stray-shard:3; do
	name=${case%%:*} want=${case#*:}
	S2=$base/s-$name L2=$base/l-$name
	rm -rf "$S2" "$L2"
	cp -r "$S" "$S2"
	mkdir -p "$L2"
	f=$(ckz "$S2" 3)
	case $name in
	header) flip "$f" 20 ;;                                   # the step number
	index) flip "$f" $(($(size "$f") - 64 - 10)) ;;           # the end of the index
	trailer) flip "$f" $(($(size "$f") - 30)) ;;              # raw_total
	chunk) flip "$f" 200 ;;                                   # compressed data
	manifest-swap) swap "$(stepdir "$S2" 3)/MANIFEST" "$(stepdir "$S2" 2)/MANIFEST" ;;
	shard-swap) g=$(ckz "$S2" 2); cp "$f" "$base/t" && cp "$g" "$f" && cp "$base/t" "$g" ;;
	dir-swap) swap "$(stepdir "$S2" 3)" "$(stepdir "$S2" 2)" ;;
	tier-mixup) cp "$(stepdir "$L" 3)/rank-000000.ckl" "$f" ;;
	manifest-truncated) truncate -s 87 "$(stepdir "$S2" 3)/MANIFEST" ;;
	stray-shard) cp "$f" "$(stepdir "$S2" 3)/rank-000000-0123456789abcdef.ckz" ;; # harmless
	esac
	rc=0
	"$CKPT" restore --shared-dir "$S2" --local-dir "$L2" --name job --json >"$base/out" \
		2>"$base/err" || rc=$?
	ok "$name: ckpt-restore exits 0" [ $rc -eq 0 ]
	ok "$name: it restored step $want" grep -q "\"step\":$want," "$base/out"
	if [ "$want" != 3 ]; then
		ok "$name: it says it fell back (JSON and stderr)" \
			sh -c "grep -q '\"fallback\":true' '$base/out' && grep -q 'step 3 is damaged' '$base/err'"
		rc=0
		"$CKPT" verify --shared-dir "$S2" --name job --step 3 >"$base/out" 2>"$base/err" || rc=$?
		ok "$name: ckpt verify --step 3 exits 2 (damaged)" [ $rc -eq 2 ]
		if [ $name != chunk ]; then # ls checks structure; data checksums are verify's job
			rc=0
			"$CKPT" ls --shared-dir "$S2" --name job --json >"$base/out" 2>"$base/err" || rc=$?
			ok "$name: ckpt ls marks step 3 damaged" grep -q '"step":3,[^}]*"damaged"' "$base/out"
		fi
	fi
	rc=0
	"$TH" check "$S2" "$L2" job "$want" 1500000 >"$base/out" 2>"$base/err" || rc=$?
	ok "$name: the program loads step $want bit-exact" [ $rc -eq 0 ]
	if [ "$want" = 1 ]; then
		ok "$name: nothing of the damaged steps 2 and 3 reached the local tier" \
			[ ! -e "$(stepdir "$L2" 3)" ] && [ ! -e "$(stepdir "$L2" 2)" ]
	fi
done

echo "corruption: $passed passed, $failed failed"
[ $failed -eq 0 ]
