#!/bin/sh
# SPDX-License-Identifier: MIT
# Operator tools: ckpt-restore after a wipe and onto a fresh node, one rank of a multi-rank step,
# every kind of damage and its exit code, SIGKILL during a restore, --json, --dry-run,
# --verify-only, ckpt ls (which directories are jobs, states, columns)/verify/gc, usage and help.
set -u
CKPT=${TOOLS:-./tools/ckpt}
HELPER=${TOOLS_HELPER:-./tests/tools_helper}
W=${MPI_WORKER:-./tests/mpi_worker}
MPIRUN=${MPIRUN:-mpirun}
SIZE=${TOOLS_SIZE:-3000000}        # bytes of the main region of each small step
BIG=${TOOLS_BIG:-134217728}        # the step a restore is killed in
# The environment of the caller must not leak into the runs (the tools read CKPT_*).
unset CKPT_SHARED_DIR CKPT_LOCAL_DIR CKPT_NAME CKPT_FAULT_KILL_AT CKPT_KEEP_LOCAL CKPT_KEEP_SHARED
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_rmaps_base_oversubscribe=1

passed=0 failed=0 rc=0
base=$(mktemp -d "${TMPDIR:-/tmp}/ckpt-tools-XXXXXX")
trap 'rm -rf "$base"' EXIT
S=$base/shared L=$base/local
mkdir -p "$S" "$L"
# ckpt-restore is the same program under another name: make links it next to ckpt in the build
# tree, as make install does in bindir.
RESTORE=${TOOLS_RESTORE:-$(dirname "$CKPT")/ckpt-restore}
HAVE_PY=0
command -v python3 >/dev/null 2>&1 && HAVE_PY=1

pass() { passed=$((passed + 1)); echo "PASS: $*"; }
fail() {
	failed=$((failed + 1))
	echo "FAIL: $* (exit $rc)"
	for f in "$base/out" "$base/err"; do [ -s "$f" ] && sed 's/^/    /' "$f" | tail -15; done
}
# ok NAME COMMAND...: PASS when COMMAND succeeds
ok() { n=$1; shift; if "$@"; then pass "$n"; else fail "$n"; fi; }
# R ARGS: ckpt-restore; C ARGS: ckpt; the status lands in $rc, output in $base/out and err
R() { "$RESTORE" "$@" >"$base/out" 2>"$base/err"; rc=$?; }
C() { "$CKPT" "$@" >"$base/out" 2>"$base/err"; rc=$?; }
is() { [ "$rc" -eq "$1" ]; }
# j EXPR: evaluate a Python expression over the JSON document in $base/out (as d)
j() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($1)" "$base/out"; }
jis() { [ "$HAVE_PY" = 0 ] || [ "$(j "$1" 2>/dev/null)" = "$2" ]; }
json_ok() { [ "$HAVE_PY" = 0 ] || python3 -c 'import json,sys; json.load(sys.stdin)' <"$base/out"; }
stepdir() { printf '%s/step-%020d' "$1" "$2"; }
ckl() { printf '%s/rank-%06d.ckl' "$(stepdir "$1" "$2")" "$3"; }
nckl() { find "$1" -name 'rank-*.ckl' 2>/dev/null | wc -l | tr -d ' '; }
ntmp() { find "$1" -name '.tmp.*' 2>/dev/null | wc -l | tr -d ' '; }
# flip FILE OFFSET: invert the low bit of one byte
flip() {
	b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
	printf "$(printf '\\%03o' $((b ^ 1)))" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null
}
ckz() { ls "$(stepdir "$1" "$2")"/rank-"$(printf %06d "$3")"-*.ckz; }
# flip_chunk FILE REGION CHUNK: flip one bit in the middle of the stored bytes of chunk CHUNK
# (negative: from the end) of region REGION of a .ckz, found through its index (docs/FORMAT.md
# 3.4, 3.5); chunks are stored in the order they finished, so a file offset says nothing of it
flip_chunk() {
	python3 - "$@" <<'PY'
import struct, sys
path, region, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(path, "r+b") as f:
    data = f.read()
    ioff, isize = struct.unpack_from("<QQ", data, len(data) - 64 + 8)
    p = ioff
    while p < ioff + isize:
        nlen, xf, _, nch, _, _, _ = struct.unpack_from("<HBBIQQQ", data, p)
        name = data[p + 40:p + 40 + nlen].decode()
        p += 40 + nlen
        e = 32 if xf else 24
        if name == region:
            off, size = struct.unpack_from("<QQ", data, p + e * (chunk % nch))
            f.seek(off + size // 2)
            f.write(bytes([data[off + size // 2] ^ 1]))
            sys.exit(0)
        p += e * nch
sys.exit("no region " + region)
PY
}
# load STEP [SHARED LOCAL NAME SIZE]: the program loads the step and compares it bit for bit
load() { "$HELPER" check "${2:-$S}" "${3:-$L}" "${4:-job}" "$1" "${5:-$SIZE}" >"$base/out" 2>"$base/err"; rc=$?; [ $rc -eq 0 ]; }
# load_local STEP: the same with the shared copy out of reach, so that only the local one counts
load_local() {
	mv "$S/job" "$S/job.away" && load "$@"
	r=$rc
	rm -rf "$S/job" && mv "$S/job.away" "$S/job"
	rc=$r
	[ $rc -eq 0 ]
}

echo "== ckpt-restore in the build tree"
"$RESTORE" --version >"$base/out" 2>"$base/err"
rc=$?
ok "ckpt-restore is next to ckpt and runs as ckpt restore" sh -c \
	"[ $rc -eq 0 ] && grep -q '^ckpt-restore (libckpt) ' '$base/out'"

# The tool links no MPI code: a restore starts without loading an MPI library (12 ms of a cold
# start here) and runs in an init container that has none.
if command -v readelf >/dev/null 2>&1 && [ -x "$CKPT" ] && head -c 4 "$CKPT" | grep -q ELF; then
	readelf -d "$CKPT" >"$base/out" 2>"$base/err"
	rc=$?
	ok "ckpt needs libzstd but no MPI library (its NEEDED entries)" sh -c \
		"[ $rc -eq 0 ] && grep -q 'NEEDED.*libzstd' '$base/out' && ! grep -qi 'NEEDED.*mpi' '$base/out'"
fi

echo "== setup: steps 1..3 of job 'job', saved and committed by the library"
"$HELPER" save "$S" "$L" job 1 3 "$SIZE" >"$base/out" 2>"$base/err"
rc=$?
ok "helper saved and committed steps 1-3" is 0

echo "== ls"
C ls --shared-dir "$S" --local-dir "$L"
ok "ls lists 3 committed steps with local copies" sh -c \
	"[ \$(grep -c ' committed ' '$base/out') -eq 3 ]"
C ls --shared-dir "$S" --local-dir "$L" --json
ok "ls --json parses" json_ok
ok "ls --json: step 3 committed, 1 rank, ratio, local rank 0" \
	jis "[s['state'] + str(s['nranks']) + str(s['ratio'] > 1) + str(s['local_ranks']) for s in d['jobs'][0]['steps'] if s['step'] == 3][0]" "committed1True[0]"
# Directories that are no libckpt job (a shared volume holds other things too), and a job that
# has only opened so far (its rank lock, no step yet).
mkdir -p "$S/other-data/files" "$S/lost+found" "$L/scratch" "$L/fresh"
: >"$S/other-data/MANIFEST.txt"
: >"$L/fresh/.lock-rank-000000"
C ls --shared-dir "$S" --local-dir "$L" --json
ok "ls lists only directories that look like jobs (steps or rank locks)" \
	jis "[j['name'] for j in d['jobs']]" "['fresh', 'job']"
rm -rf "$S/other-data" "$S/lost+found" "$L/scratch" "$L/fresh"
C ls --local-dir "$L" --name job --json
ok "ls --local-dir alone: steps are 'local' (shared state unknown), never 'local only'" \
	jis "sorted(set(s['state'] for s in d['jobs'][0]['steps']))" "['local']"
C ls --local-dir "$L" --name job
ok "ls --local-dir alone, text: 'local'" sh -c "grep -q '  local  ' '$base/out' && ! grep -q 'local only' '$base/out'"
# all zeros: a ratio in the thousands (12122.27 overflowed its 6 columns)
TOOLS_ZERO=1 TOOLS_CHUNK=4M "$HELPER" save "$S" "$L" zeros 1 1 67108864 >"$base/out" 2>"$base/err"
rc=$?
ok "helper saved a step of zeros" is 0
ratio_fits() {
	awk 'NR == 1 { c = index($0, "COMMITTED") }
	     $1 == "zeros" { r = $7; d = index($0, $8) }
	     END { exit !(c > 0 && length(r) >= 1 && length(r) <= 6 && d == c) }' "$base/out"
}
C ls --shared-dir "$S" --name zeros
ok "ls: a ratio in the thousands fits its column; COMMITTED stays aligned" ratio_fits
C ls --shared-dir "$S" --name zeros --json
ok "ls --json: the ratio itself, unrounded" jis "d['jobs'][0]['steps'][0]['ratio'] > 1000" "True"

echo "== chunk transforms in ls and verify (issue 15)"
# job: half of every 16-bit element zero, grouped by 2; zeros: plain; noise: raw; none: plain
# zstd frames (chunk_transform none, as files written before transforms)
TOOLS_RANDOM=1 "$HELPER" save "$S" "$L" noise 1 1 1048576 >"$base/out" 2>"$base/err"
rc=$?
ok "helper saved a step of noise" is 0
CKPT_CHUNK_TRANSFORM=none "$HELPER" save "$S" "$L" none 1 1 1048576 >"$base/out" 2>"$base/err"
rc=$?
ok "helper saved a step without transforms" is 0
C ls --shared-dir "$S" --json
ok "ls --json: step 3 of job: transforms count every chunk (w2 here), bytes match the step" \
	jis "[(t['chunks'] == t['plain'] + t['w2'] + t['w4'] + t['w8'] + t['raw'] + t['zstd'], t['w2'] > 0, t['raw_bytes'] == s['raw_bytes'], t['ratio'] > 1) for s in d['jobs'][[x['name'] for x in d['jobs']].index('job')]['steps'] for t in [s['transforms']] if s['step'] == 3][0]" "(True, True, True, True)"
ok "ls --json: per region: weights grouped by 2, the empty region without chunks" \
	jis "[(r['name'], r['w2'] == r['chunks'] > 0) for x in d['jobs'] if x['name'] == 'job' for r in x['steps'][0]['transforms']['regions']]" "[('weights', True), ('meta', True), ('empty', False)]"
ok "ls --json: zeros stored plain, noise raw, without transforms zstd" \
	jis "[(x['name'], [k for k in ('plain', 'w2', 'w4', 'w8', 'raw', 'zstd') if x['steps'][0]['transforms'][k]]) for x in d['jobs'] if x['name'] != 'job']" "[('noise', ['raw']), ('none', ['zstd']), ('zeros', ['plain'])]"
ok "ls --json: noise is stored at a ratio below 1 (raw chunks and their heads)" \
	jis "[x['steps'][0]['transforms']['ratio'] < 1 for x in d['jobs'] if x['name'] == 'noise'][0]" "True"
C ls --shared-dir "$S"
ok "ls text: how the chunks of each committed step are stored" sh -c \
	"grep -q 'stored as 13 chunks: w2 13; data ' '$base/out' && grep -q 'stored as 5 chunks: raw 5; data 1.00x' '$base/out' && grep -q 'chunks: zstd ' '$base/out'"
C ls --local-dir "$L" --name job --json
ok "ls --json: no transforms where only the local tier is read" jis "d['jobs'][0]['steps'][0]['transforms']" "None"
C verify --shared-dir "$S" --name noise
ok "verify text: the transforms of each region" sh -c \
	"[ $rc -eq 0 ] && grep -q \"^  region 'weights': 4 chunks: raw 4; data 1.00x\" '$base/out' && grep -q \"^  region 'meta': 1 chunk: raw 1\" '$base/out'"
C verify --shared-dir "$S" --name job --step 2 --json
ok "verify --json: the step's transforms and its regions" \
	jis "(d['steps'][0]['status'], d['steps'][0]['transforms']['w2'], [r['name'] for r in d['steps'][0]['transforms']['regions']])" "('ok', 13, ['weights', 'meta', 'empty'])"
rm -rf "$S/zeros" "$L/zeros" "$S/noise" "$L/noise" "$S/none" "$L/none"

echo "== restore after the local directory is wiped"
cp "$(ckl "$L/job" 3 0)" "$base/orig3.ckl"
rm -rf "$L/job"
rc=0
CKPT_SHARED_DIR=$S CKPT_LOCAL_DIR=$L CKPT_NAME=job "$RESTORE" >"$base/out" 2>"$base/err" || rc=$?
ok "ckpt-restore from CKPT_* variables exits 0" is 0
ok "it restored the newest step (3)" test -f "$(ckl "$L/job" 3 0)"
ok "the restored shard is byte-identical to what ckpt_save wrote" cmp -s "$(ckl "$L/job" 3 0)" "$base/orig3.ckl"
ok "the program loads step 3 bit-exact from the local copy alone" load_local 3
ino=$(ls -i "$(ckl "$L/job" 3 0)" | awk '{print $1}')
R --shared-dir "$S" --local-dir "$L" --name job --json
ok "rerun exits 0" is 0
ok "--json output parses" json_ok
ok "rerun: the verified local copy is not rewritten" sh -c \
	"[ \"\$(ls -i '$(ckl "$L/job" 3 0)' | awk '{print \$1}')\" = '$ino' ]"
ok "rerun --json: status ok, step 3, rank 0 present" \
	jis "d['status'] + str(d['step']) + d['ranks'][0]['action'] + str(d['exit_code'])" "ok3present0"
R --shared-dir "$S" --local-dir "$L" --name job
ok "rerun, text: 'nothing to write', no rate of nothing ('0 B/s')" sh -c \
	"[ $rc -eq 0 ] && grep -q '(0 written, 1 already present).*nothing to write' '$base/out' && ! grep -q 'B/s' '$base/out'"
flip "$(ckl "$L/job" 3 0)" 5000
R --shared-dir "$S" --local-dir "$L" --name job --json
ok "a damaged local copy is replaced" jis "d['ranks'][0]['action'] + str(d['ranks'][0]['replaced'])" "restoredTrue"
ok "and then loads bit-exact" load_local 3
R --shared-dir "$S" --local-dir "$L" --name job --step 1 --quiet
ok "--step 1 restores step 1 (quiet: no output)" sh -c "[ $rc -eq 0 ] && [ ! -s '$base/out' ] && [ -f '$(ckl "$L/job" 1 0)' ]"
ok "the program loads step 1 bit-exact" load_local 1

echo "== --dry-run and --verify-only write nothing"
rm -rf "$L/job"
R --shared-dir "$S" --local-dir "$L" --name job --dry-run
ok "--dry-run exits 0 and says what it would do" sh -c "[ $rc -eq 0 ] && grep -q 'would restore' '$base/out'"
ok "--dry-run wrote nothing" test "$(nckl "$L")" -eq 0
R --shared-dir "$S" --local-dir "$L" --name job --dry-run --json
ok "--dry-run --json: rank 0 would_restore" jis "d['ranks'][0]['action']" "would_restore"
R --shared-dir "$S" --local-dir "$L" --name job --verify-only
ok "--verify-only exits 0 on an intact step" is 0
ok "--verify-only wrote nothing" test "$(nckl "$L")" -eq 0
C verify --shared-dir "$S" --name job --all --json
ok "ckpt verify --all: exit 0, --json parses" sh -c "[ $rc -eq 0 ]" && ok "ckpt verify --json parses" json_ok

echo "== damage: each kind gives its exit code, and the restore falls back to the newest intact step"
kinds="flip truncate delete manifest"
[ "$HAVE_PY" = 1 ] && kinds="$kinds late"
for kind in $kinds; do
	S2=$base/s-$kind L2=$base/l-$kind
	rm -rf "$S2" "$L2"
	cp -r "$S" "$S2"
	mkdir -p "$L2"
	f=$(ckz "$S2/job" 3 0)
	case $kind in
	flip) flip "$f" 5000; what="a flipped bit in a .ckz data chunk" ;;
	truncate) truncate -s $(($(wc -c <"$f") - 100)) "$f"; what="a truncated .ckz" ;;
	delete) rm -f "$f"; what="a missing .ckz" ;;
	manifest) flip "$(stepdir "$S2/job" 3)/MANIFEST" 20; what="a corrupt MANIFEST" ;;
	late) flip_chunk "$f" meta 0 && flip_chunk "$f" weights -1
	      what="flipped bits in the last chunks of two regions" ;;
	esac
	R --shared-dir "$S2" --local-dir "$L2" --name job --json
	ok "$what: restore exits 0 with the newest intact step" is 0
	ok "$what: --json says step 2, fallback, step 3 damaged" \
		jis "str(d['step']) + str(d['fallback']) + str([x['step'] for x in d['damaged']])" "2True[3]"
	ok "$what: stderr says step 3 is damaged" grep -q "step 3 is damaged" "$base/err"
	ok "$what: nothing of step 3 on the local tier" test ! -e "$(ckl "$L2/job" 3 0)"
	ok "$what: the program loads step 2 bit-exact" load 2 "$S2" "$L2"
	R --shared-dir "$S2" --local-dir "$L2" --name job --step 3
	ok "$what: --step 3 exits 2 (damaged)" is 2
	R --shared-dir "$S2" --name job --step 3 --verify-only
	ok "$what: --verify-only --step 3 exits 2" is 2
	C verify --shared-dir "$S2" --name job --step 3
	ok "$what: ckpt verify --step 3 exits 2" is 2
	if [ $kind != flip ] && [ $kind != late ]; then # ls reads indexes, not data
		C ls --shared-dir "$S2" --name job --json
		ok "$what: ls shows step 3 damaged" jis "[s['state'] for s in d['jobs'][0]['steps'] if s['step'] == 3][0]" "damaged"
	fi
done
S2=$base/s-all
rm -rf "$S2" "$base/l-all"
cp -r "$S" "$S2"
mkdir -p "$base/l-all"
for s in 1 2 3; do flip "$(stepdir "$S2/job" $s)/MANIFEST" 20; done
R --shared-dir "$S2" --local-dir "$base/l-all" --name job --json
ok "every step damaged: exit 2" is 2
ok "every step damaged: --json lists steps 3, 2, 1" jis "d['status'] + str([x['step'] for x in d['damaged']])" "damaged[3, 2, 1]"

echo "== nothing to restore, bad usage, I/O errors"
mkdir -p "$base/empty"
R --shared-dir "$base/empty" --local-dir "$L" --name job
ok "no such job: exit 1" is 1
R --shared-dir "$S" --local-dir "$L" --name job --step 7
ok "--step of an uncommitted step: exit 1" is 1
R --shared-dir "$S" --local-dir "$L" --name job --bogus
ok "unknown option: exit 64" is 64
R --local-dir "$L" --name job
ok "no shared dir: exit 64" is 64
R --shared-dir "$S" --local-dir "$L" --name ../etc
ok "bad job name: exit 64" is 64
R --shared-dir "$S" --local-dir "$L" --name job --rank 3
ok "a rank the step does not have: exit 64" is 64
R --shared-dir "$S" --local-dir "$base" --name job
ok "shared dir inside local dir: exit 64" is 64
C frobnicate
ok "ckpt: unknown command: exit 64" is 64
C help
ok "ckpt help documents the exit codes" sh -c "[ $rc -eq 0 ] && grep -q '64 bad usage' '$base/out'"
C
ok "ckpt without a command is bad usage: usage on stderr only, exit 64" sh -c \
	"[ $rc -eq 64 ] && [ ! -s '$base/out' ] && grep -q '^usage: ckpt COMMAND' '$base/err'"
C --help
ok "ckpt --help: usage on stdout only, exit 0" sh -c \
	"[ $rc -eq 0 ] && [ ! -s '$base/err' ] && grep -q '^usage: ckpt COMMAND' '$base/out'"
ok "ckpt --help shows --name as optional (it defaults to CKPT_NAME, then 'default')" sh -c \
	"grep -q -- '--name NAME' '$base/out' && ! grep -Eq -- '(^|[^[])--name NAME' '$base/out'"
for c in ls verify gc doctor restore; do
	C $c --help
	ok "ckpt $c --help prints the usage of $c alone, exit 0" sh -c \
		"[ $rc -eq 0 ] && grep -q '^usage: ckpt $c ' '$base/out' && ! grep -q 'COMMAND' '$base/out'"
done
ok "ckpt restore --help names restore's own options" grep -q -- '--verify-only' "$base/out"
C help gc
ok "ckpt help gc is ckpt gc --help" sh -c "[ $rc -eq 0 ] && grep -q '^usage: ckpt gc ' '$base/out'"
R --help
ok "ckpt-restore --help: its own usage under its name" sh -c \
	"[ $rc -eq 0 ] && grep -q '^usage: ckpt-restore ' '$base/out' && grep -q 'ckpt-restore(1)' '$base/out'"
C ls --bogus
ok "a usage error names the command's help" sh -c "[ $rc -eq 64 ] && grep -q \"Try 'ckpt ls --help'\" '$base/err'"
C ls --shared-dir "$S" --quiet
ok "ls --quiet prints nothing (as documented), exit 0" sh -c "[ $rc -eq 0 ] && [ ! -s '$base/out' ]"
# A fresh node: the local tier is ephemeral, its directory is created; the shared one is not.
F=$base/fresh-node/nvme/ckpt
R --shared-dir "$S" --local-dir "$F" --name job
ok "a missing local dir and its parents are created: exit 0, step 3 restored" sh -c \
	"[ $rc -eq 0 ] && [ -f '$(ckl "$F/job" 3 0)' ]"
ok "the program loads step 3 bit-exact there" load 3 "$S" "$F"
R --shared-dir "$S" --local-dir "$base/fresh-2/ckpt" --name job --dry-run --json
ok "--dry-run to a missing local dir: exit 0, rank 0 would_restore, nothing created" sh -c \
	"[ $rc -eq 0 ] && [ ! -e '$base/fresh-2' ]" && ok "--dry-run: would_restore" jis "d['ranks'][0]['action']" "would_restore"
: >"$base/a-file"
R --shared-dir "$S" --local-dir "$base/a-file" --name job
ok "a local dir that is a file: exit 3" is 3
R --shared-dir "$S" --local-dir "$base/a-file/ckpt" --name job --json
ok "a local dir that cannot be created: exit 3, io_error, the reason" sh -c "[ $rc -eq 3 ] && grep -q 'a-file' '$base/err'" && \
	ok "... io_error in JSON" jis "d['status']" "io_error"
R --shared-dir "$base/no-such-mount" --local-dir "$L" --name job
ok "a missing shared dir is an error (exit 3, is the volume mounted?), never created" sh -c \
	"[ $rc -eq 3 ] && grep -q 'is the volume mounted' '$base/err' && [ ! -e '$base/no-such-mount' ]"
mkdir -p "$base/l-io/job"
: >"$(stepdir "$base/l-io/job" 3)"   # a file where the step directory must go
R --shared-dir "$S" --local-dir "$base/l-io" --name job --json
ok "local tier unwritable: exit 3, io_error in JSON" sh -c "[ $rc -eq 3 ]" && \
	ok "local tier unwritable: --json parses" jis "d['status']" "io_error"

echo "== SIGKILL during a restore; the rerun finishes the job"
for point in save.written save.synced; do
	rm -rf "$L/job"
	rc=0
	CKPT_FAULT_KILL_AT=$point "$RESTORE" --shared-dir "$S" --local-dir "$L" --name job \
		>"$base/out" 2>"$base/err" || rc=$?
	ok "killed at $point (SIGKILL, status $rc)" is 137
	ok "killed at $point: no rank file looks valid, a temporary file remains" sh -c \
		"[ ! -e '$(ckl "$L/job" 3 0)' ] && [ $(ntmp "$L") -ge 1 ]"
	R --shared-dir "$S" --local-dir "$L" --name job
	ok "killed at $point: rerun exits 0 and removes the temporary file" sh -c "[ $rc -eq 0 ] && [ $(ntmp "$L") -eq 0 ]"
	ok "killed at $point: the program loads step 3 bit-exact" load_local 3
done
echo "== a cache copy that a power loss cut short (restore without --durable)"
# The default restore leaves its copy to the kernel's writeback: a power loss before it may leave
# the file empty or with zeroed blocks under its final name (docs/RELIABILITY.md C6). Both are
# made by hand here; the library must read the shared copy instead, and the next restore must
# rewrite the copy, after which it is good on its own.
T=$base/pl-node
for cut in empty zeroed; do
	rm -rf "$T"
	R --shared-dir "$S" --local-dir "$T" --name job --json
	ok "$cut: restore exits 0, not durable" sh -c "[ $rc -eq 0 ] && { [ $HAVE_PY = 0 ] || [ \"\$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"durable\"])' '$base/out')\" = False ]; }"
	f=$(ckl "$T/job" 3 0)
	if [ $cut = empty ]; then
		: >"$f"
	else
		dd if=/dev/zero of="$f" bs=4096 seek=2 count=16 conv=notrunc 2>/dev/null
	fi
	ok "$cut: the library reads step 3 bit-exact (from the shared copy)" load 3 "$S" "$T"
	ok "$cut: and says the local copy was unusable" grep -q "local copy unusable" "$base/err"
	R --shared-dir "$S" --local-dir "$T" --name job
	ok "$cut: the next restore exits 0 and replaces the copy" sh -c \
		"[ $rc -eq 0 ] && grep -q 'replacing it' '$base/err' && grep -q '1 written' '$base/out'"
	ok "$cut: the rewritten copy alone gives step 3 bit-exact" load_local 3 "$S" "$T"
done
rm -rf "$T"
R --shared-dir "$S" --local-dir "$T" --name job --durable --json
ok "--durable: exit 0, the JSON says durable" sh -c "[ $rc -eq 0 ] && { [ $HAVE_PY = 0 ] || [ \"\$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"durable\"])' '$base/out')\" = True ]; }"
ok "--durable: the copy alone gives step 3 bit-exact" load_local 3 "$S" "$T"
rm -rf "$T"
# A real kill -9 at an arbitrary moment of a big restore: as soon as the local write has begun.
TOOLS_CHUNK=1M "$HELPER" save "$S" "$L" big 1 1 "$BIG" >"$base/out" 2>"$base/err"
rc=$?
ok "helper saved a big step ($BIG bytes)" is 0
rm -rf "$L/big"
"$RESTORE" --shared-dir "$S" --local-dir "$L" --name big --threads 2 >/dev/null 2>&1 &
pid=$!
i=0 seen=0
while [ $i -lt 3000 ]; do
	if [ "$(ntmp "$L/big")" -gt 0 ]; then seen=1; break; fi
	kill -0 $pid 2>/dev/null || break
	sleep 0.01 2>/dev/null || sleep 1
	i=$((i + 1))
done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
if [ $seen = 1 ]; then
	ok "kill -9 mid-write: no valid-looking partial shard" sh -c \
		"[ ! -e '$(ckl "$L/big" 1 0)' ] || '$HELPER' check '$S' '$L' big 1 $BIG >/dev/null 2>&1"
else
	echo "NOTE: the restore finished before the kill could land; checking the rerun only"
fi
R --shared-dir "$S" --local-dir "$L" --name big --threads 2 --json
ok "rerun after kill -9 exits 0" is 0
ok "rerun after kill -9: nothing temporary is left" test "$(ntmp "$L/big")" -eq 0
# The restore decodes into a ring of a few chunks (tools/tool_read.c), not into a copy of the
# whole shard: its peak memory does not grow with the step (it was above 128 MiB here).
if [ "$HAVE_PY" = 1 ]; then
	rss=$(python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)' "$RESTORE" \
		--shared-dir "$S" --local-dir "$base/rss-node" --name big --threads 2 2>"$base/err")
	ok "a restore of $BIG bytes in 1 MiB chunks peaks below 64 MiB of memory (${rss:-?} MiB)" \
		[ "${rss:-999}" -lt 64 ]
	rm -rf "$base/rss-node"
fi
mv "$S/big" "$S/big.away"
ok "rerun after kill -9: the program loads the big step bit-exact from local" \
	load 1 "$S" "$L" big "$BIG"
# Damage in the big step's last chunk: decoding and writing overlap, so by the time that chunk is
# decoded most of the shard is on its way to the local tier; the restore must still say damaged
# and leave neither the rank file nor a temporary file.
if [ "$HAVE_PY" = 1 ]; then
	mv "$S/big.away" "$S/big"
	rm -rf "$L/big"
	flip_chunk "$(ckz "$S/big" 1 0)" weights -1
	R --shared-dir "$S" --local-dir "$L" --name big --step 1 --threads 2 --json
	ok "a damaged last chunk of a 128 MiB region: exit 2 (damaged), as before" is 2
	ok "a damaged last chunk: --json says damaged, naming the region" \
		jis "d['status'] + str(\"region 'weights'\" in d['error'])" "damagedTrue"
	ok "a damaged last chunk: no rank file, no temporary file, no step directory" sh -c \
		"[ ! -e '$(ckl "$L/big" 1 0)' ] && [ $(ntmp "$L") -eq 0 ] && [ ! -e '$(stepdir "$L/big" 1)' ]"
fi
rm -rf "$S/big" "$L/big" "$S/big.away"

echo "== multi-rank: restore one rank of a 4-rank step (MPI job)"
if [ -x "$W" ] && command -v "$MPIRUN" >/dev/null 2>&1; then
	M=$base/m
	mkdir -p "$M"
	timeout 300 "$MPIRUN" -np 4 --oversubscribe "$W" "$M" save 2 >"$base/out" 2>&1
	rc=$?
	ok "mpi_worker saved 2 steps at 4 ranks" is 0
	C ls --shared-dir "$M/shared" --name mpijob --json
	ok "ls: step 2 of mpijob committed with 4 ranks" jis "[str(s['nranks']) + s['state'] for s in d['jobs'][0]['steps'] if s['step'] == 2][0]" "4committed"
	mkdir -p "$base/r1"
	R --shared-dir "$M/shared" --local-dir "$base/r1" --name mpijob --rank 1 --json
	ok "restore --rank 1 exits 0" is 0
	ok "only rank 1 was written" sh -c "[ $(nckl "$base/r1") -eq 1 ] && [ -f '$(ckl "$base/r1/mpijob" 2 1)' ]"
	ok "rank 1 is byte-identical to the shard the job saved" cmp -s "$(ckl "$base/r1/mpijob" 2 1)" "$(ckl "$M/node0/mpijob" 2 1)"
	rc=0
	CKPT_FAULT_KILL_AT=save.written "$RESTORE" --shared-dir "$M/shared" --local-dir "$base/r1" \
		--name mpijob >"$base/out" 2>"$base/err" || rc=$?
	ok "restore of every rank killed while writing rank 0" is 137
	R --shared-dir "$M/shared" --local-dir "$base/r1" --name mpijob --json
	ok "rerun: exit 0, rank 1 kept as present, ranks 0, 2, 3 restored" \
		jis "str(d['exit_code']) + ' '.join(r['action'] for r in d['ranks'])" "0restored present restored restored"
	same=1
	for r in 0 1 2 3; do
		cmp -s "$(ckl "$base/r1/mpijob" 2 $r)" "$(ckl "$M/node$((r / 2))/mpijob" 2 $r)" || same=0
	done
	ok "all 4 restored shards are byte-identical to the saved ones" test $same = 1
	# Node 1 (ranks 2 and 3) is recreated; its ranks are restored, and the job runs on.
	rm -rf "$M/node1"
	mkdir -p "$M/node1"
	R --shared-dir "$M/shared" --local-dir "$M/node1" --name mpijob --rank 2,3
	ok "node 1 wiped: restore --rank 2,3 exits 0" sh -c "[ $rc -eq 0 ] && [ $(nckl "$M/node1") -eq 2 ]"
	timeout 300 "$MPIRUN" -np 4 --oversubscribe "$W" "$M" verify 2 2 >"$base/out" 2>&1
	rc=$?
	ok "the 4-rank job loads step 2 bit-exact after the restore" is 0
else
	echo "SKIP: no MPI worker or mpirun: multi-rank restore not tested"
fi

echo "== ckpt ls states and ckpt gc"
R --shared-dir "$S" --local-dir "$L" --name job --step 1 && R --shared-dir "$S" --local-dir "$L" --name job --step 2
ok "steps 1 and 2 restored too" sh -c "[ $rc -eq 0 ] && [ $(nckl "$L/job") -eq 3 ]"
rc=0
CKPT_FAULT_KILL_AT=commit.before "$HELPER" save "$S" "$L" job 4 4 "$SIZE" >/dev/null 2>&1 || rc=$?
ok "step 4 saved, its process killed before the commit" is 137
C ls --shared-dir "$S" --local-dir "$L" --name job --json
ok "ls: step 4 is local only" jis "[s['state'] for s in d['jobs'][0]['steps'] if s['step'] == 4][0]" "local only"
rm -rf "$(stepdir "$L/job" 4)"
"$HELPER" save "$S" "$L" job 5 5 "$SIZE" >/dev/null 2>&1
C ls --shared-dir "$S" --local-dir "$L" --name job --json
ok "ls: step 4 incomplete, step 5 committed" jis "' '.join(s['state'] for s in d['jobs'][0]['steps'] if s['step'] >= 4)" "incomplete committed"
C gc --shared-dir "$S" --local-dir "$L" --name job
ok "gc leaves a recent incomplete step alone (--min-age 60)" sh -c "[ $rc -eq 0 ] && [ -d '$(stepdir "$S/job" 4)' ]"
C gc --shared-dir "$S" --local-dir "$L" --name job --min-age 0 --dry-run --json
ok "gc --dry-run names the abandoned step 4 and keeps it" sh -c \
	"[ $rc -eq 0 ] && [ -d '$(stepdir "$S/job" 4)' ] && grep -q incomplete '$base/out'"
ok "gc --json parses" json_ok
# copies the library's retention renamed away but had not deleted (a killed process, any host)
mkdir -p "$S/job/.tmp.otherhost.1.0badf00d.retired" && echo x >"$S/job/.tmp.otherhost.1.0badf00d.retired/MANIFEST"
echo x >"$L/job/.tmp.otherhost.2.0badf00d.retired"
C gc --shared-dir "$S" --local-dir "$L" --name job --min-age 0
ok "gc --min-age 0 removes the abandoned step 4" sh -c "[ $rc -eq 0 ] && [ ! -e '$(stepdir "$S/job" 4)' ]"
ok "gc removes retired copies on both tiers" sh -c \
	"[ ! -e '$S/job/.tmp.otherhost.1.0badf00d.retired' ] && [ ! -e '$L/job/.tmp.otherhost.2.0badf00d.retired' ]"
ok "gc kept every committed step" sh -c "for s in 1 2 3 5; do [ -f \"\$(printf '%s/step-%020d/MANIFEST' '$S/job' \$s)\" ] || exit 1; done"
# The newest committed step is damaged (truncated shard): retention keeps it and the newest
# intact one (3), and removes the rest.
f=$(ckz "$S/job" 5 0)
truncate -s $(($(wc -c <"$f") - 100)) "$f"
C gc --shared-dir "$S" --name job --keep-shared 1
ok "gc --keep-shared 1 keeps the newest committed step (5, damaged) and the newest intact (3)" \
	sh -c "[ $rc -eq 0 ] && [ -d '$(stepdir "$S/job" 5)' ] && [ -d '$(stepdir "$S/job" 3)' ] && [ ! -e '$(stepdir "$S/job" 2)' ] && [ ! -e '$(stepdir "$S/job" 1)' ]"
mkdir -p "$base/l-gc"
R --shared-dir "$S" --local-dir "$base/l-gc" --name job --json
ok "after gc, restore falls back from the damaged step 5 to step 3" jis "str(d['step']) + str(d['fallback'])" "3True"
C gc --shared-dir "$S" --local-dir "$L" --name job --keep-local 1
ok "gc --keep-local 1 removes local step 3 (committed) but keeps 1 and 2 (their only copy now)" \
	sh -c "[ $rc -eq 0 ] && [ ! -e '$(ckl "$L/job" 3 0)' ] && [ -f '$(ckl "$L/job" 1 0)' ] && [ -f '$(ckl "$L/job" 2 0)' ] && [ -f '$(ckl "$L/job" 5 0)' ]"

echo "tools: $passed passed, $failed failed"
[ $failed -eq 0 ]
