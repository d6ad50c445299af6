#!/bin/sh
# SPDX-License-Identifier: MIT
# ckpt doctor, human and --json: filesystem types and persistence verdicts of real directories
# (ext4 or whatever $TMPDIR is, a tmpfs, an overlay where we may mount one), bandwidth numbers,
# io_uring and MPI facts, configuration origins (default / environment / config), exit statuses;
# and `ckpt restore --rank auto` from the launcher's environment.
set -u
CKPT=${TOOLS:-./tools/ckpt}
HELPER=${TOOLS_HELPER:-./tests/tools_helper}
# The environment of the caller must not leak into the runs.
for v in $(env | sed -n 's/^\(CKPT_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
unset SLURM_JOB_ID SLURM_JOBID KUBERNETES_SERVICE_HOST OMPI_COMM_WORLD_RANK OMPI_COMM_WORLD_SIZE \
	PMI_RANK PMI_SIZE MV2_COMM_WORLD_RANK MV2_COMM_WORLD_SIZE PMIX_RANK SLURM_PROCID SLURM_NTASKS

passed=0 failed=0 rc=0
base=$(mktemp -d "${TMPDIR:-/tmp}/ckpt-doctor-XXXXXX")
T= OVL= mounted=
cleanup() {
	[ -n "$OVL" ] && umount "$OVL" 2>/dev/null
	[ -n "$mounted" ] && umount "$mounted" 2>/dev/null
	rm -rf "$base"
}
trap cleanup EXIT
L=$base/local S=$base/shared
mkdir -p "$L" "$S" "$base/tmpfs"
if ! command -v python3 >/dev/null 2>&1; then
	echo "SKIP: python3 is needed to read the JSON reports"
	exit 77
fi

pass() { passed=$((passed + 1)); echo "PASS: $*"; }
fail() {
	failed=$((failed + 1))
	echo "FAIL: $* (exit $rc)"
	for f in "$base/out" "$base/err"; do [ -s "$f" ] && sed 's/^/    /' "$f" | tail -25; done
}
ok() { n=$1; shift; if "$@"; then pass "$n"; else fail "$n"; fi; }
D() { "$CKPT" doctor "$@" >"$base/out" 2>"$base/err"; rc=$?; }
is() { [ "$rc" -eq "$1" ]; }
# j EXPR: a Python expression over the JSON report in $base/out (as d); jis EXPR WANT
j() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($1)" "$base/out"; }
jis() { [ "$(j "$1" 2>/dev/null)" = "$2" ]; }
json_ok() { python3 -m json.tool "$base/out" >/dev/null; }
has() { grep -q -- "$1" "$base/out"; }

# A tmpfs: our own where we may mount (root), else /dev/shm when it is one.
if mount -t tmpfs -o size=64m ckpt-doctor "$base/tmpfs" 2>/dev/null; then
	mounted=$base/tmpfs T=$base/tmpfs/shared
elif [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] && [ -w /dev/shm ]; then
	T=$(mktemp -d /dev/shm/ckpt-doctor-XXXXXX)
	mounted=
	trap 'rm -rf "$base" "$T"' EXIT
fi
[ -n "$T" ] && mkdir -p "$T"
o=$base/ovl
mkdir -p "$o/lower" "$o/upper" "$o/work" "$o/merged"
if mount -t overlay overlay -o "lowerdir=$o/lower,upperdir=$o/upper,workdir=$o/work" \
	"$o/merged" 2>/dev/null; then
	OVL=$o/merged
fi
FSTYPE=$(findmnt -n -o FSTYPE --target "$L" 2>/dev/null || true)

echo "== usage"
D --help
ok "--help exits 0 and names the options" sh -c "[ $rc -eq 0 ] && grep -q -- '--bytes' '$base/out'"
D --bytes abc
ok "bad --bytes is a usage error" is 64
D --set nokey
ok "--set without = is a usage error" is 64
D --set no_such_key=1
ok "--set of an unknown key is a usage error" sh -c "[ $rc -eq 64 ] && grep -q no_such_key '$base/err'"
D --frobnicate
ok "an unknown option is a usage error" is 64
"$CKPT" help >"$base/out" 2>&1
ok "ckpt help lists doctor" has "doctor"

echo "== a tmpfs shared_dir: ephemeral"
if [ -n "$T" ]; then
	D --local-dir "$L" --shared-dir "$T" --bytes 4M --json
	ok "exit 1 (ckpt_open would warn)" is 1
	ok "--json parses (python3 -m json.tool)" json_ok
	ok "shared_dir fstype tmpfs, class memory" jis "d['tiers']['shared_dir']['fstype'] + ' ' + d['tiers']['shared_dir']['class']" "tmpfs memory"
	ok "shared_dir verdict ephemeral" jis "d['tiers']['shared_dir']['verdict']" "ephemeral"
	ok "the reason names tmpfs and memory" jis "'tmpfs' in d['tiers']['shared_dir']['reason'] and 'memory' in d['tiers']['shared_dir']['reason']" "True"
	ok "shared_dir is node-local" jis "d['tiers']['shared_dir']['node_local']" "True"
	ok "a warning says shared_dir is not persistent" jis "any('shared_dir is not persistent (ephemeral)' in w for w in d['warnings'])" "True"
	ok "status warning" jis "d['status'] + str(d['exit_code'])" "warning1"
	ok "bandwidth of both tiers measured, positive" jis "all(d['tiers'][t]['bandwidth']['measured'] and d['tiers'][t]['bandwidth']['write_mb_per_s'] > 0 and d['tiers'][t]['bandwidth']['read_mb_per_s'] > 0 for t in ('local_dir', 'shared_dir'))" "True"
	ok "--bytes 4M measured 4 MiB" jis "d['tiers']['shared_dir']['bandwidth']['bytes']" "4194304"
	ok "free and total space, free <= total" jis "0 < d['tiers']['shared_dir']['free_bytes'] <= d['tiers']['shared_dir']['total_bytes']" "True"
	if [ -n "$mounted" ]; then
		ok "our tmpfs: 64 MiB, mounted at its directory" jis "str(d['tiers']['shared_dir']['total_bytes']) + ' ' + d['tiers']['shared_dir']['mount_point']" "67108864 $base/tmpfs"
	fi
	if [ -n "$FSTYPE" ]; then
		ok "local_dir fstype is findmnt's ($FSTYPE)" jis "d['tiers']['local_dir']['fstype']" "$FSTYPE"
	fi
	ok "nothing left behind in either directory" sh -c "[ -z \"\$(ls -A '$L')\" ] && [ -z \"\$(ls -A '$T')\" ]"

	D --local-dir "$L" --shared-dir "$T" --bytes 4M
	ok "human: exit 1" is 1
	ok "human: verdict line" has "verdict      ephemeral: "
	ok "human: tmpfs named" has "filesystem   tmpfs"
	ok "human: positive write and read MB/s" sh -c \
		"grep -E '^  write +[0-9]+\.[0-9] MB/s' '$base/out' | grep -qv '^  write *0\.0 ' &&
		 grep -E '^  read +[0-9]+\.[0-9] MB/s' '$base/out' | grep -qv '^  read *0\.0 '"
	ok "human: WARNING line and result" sh -c "grep -q '^WARNING: shared_dir is not persistent' '$base/out' && grep -q '^result: warnings' '$base/out'"

	D --local-dir "$L" --shared-dir "$T" --bytes 0 --set require_persistent=1 --json
	ok "require_persistent=1: exit 2 (ckpt_open would fail)" is 2
	ok "require_persistent=1: the error names it" jis "any('require_persistent=1' in e for e in d['errors'])" "True"
	ok "--bytes 0 skips the measurement" jis "str(d['tiers']['local_dir']['bandwidth']['measured']) + d['tiers']['local_dir']['bandwidth']['skipped']" "False--bytes 0"
	D --local-dir "$L" --shared-dir "$T" --bytes 0 --quiet
	ok "--quiet prints nothing, keeps the status" sh -c "[ $rc -eq 1 ] && [ ! -s '$base/out' ]"
else
	echo "SKIP: no tmpfs here"
fi

echo "== both tiers on one filesystem: same-as-local"
D --local-dir "$L" --shared-dir "$S" --bytes 1M --json
case $(j "d['tiers']['shared_dir']['class']") in
block)
	ok "verdict same-as-local" jis "d['tiers']['shared_dir']['verdict']" "same-as-local"
	ok "exit 1" is 1 ;;
network)
	ok "verdict persistent-shared" jis "d['tiers']['shared_dir']['verdict']" "persistent-shared" ;;
*)
	ok "verdict not persistent" jis "d['tiers']['shared_dir']['verdict'] in ('ephemeral', 'same-as-local', 'unknown')" "True" ;;
esac
ok "the local tier reports no verdict of its own" jis "'verdict' in d['tiers']['local_dir']" "False"

echo "== an overlay shared_dir: ephemeral"
if [ -n "$OVL" ]; then
	D --local-dir "$L" --shared-dir "$OVL" --bytes 1M --json
	ok "overlay: fstype, class, verdict" jis "d['tiers']['shared_dir']['fstype'] + ' ' + d['tiers']['shared_dir']['class'] + ' ' + d['tiers']['shared_dir']['verdict']" "overlay overlay ephemeral"
	ok "overlay: the reason asks whether the volume is mounted" jis "'is the volume mounted' in d['tiers']['shared_dir']['reason']" "True"
else
	echo "SKIP: cannot mount an overlay here"
fi

echo "== /proc is no place for data"
D --local-dir "$L" --shared-dir /proc --bytes 0 --json
# (root may write there as far as access(2) knows: then the verdict speaks)
ok "/proc: not writable (exit 2), or a pseudo-filesystem (ephemeral)" sh -c \
	"{ [ $rc -eq 2 ] && grep -q 'not writable' '$base/out'; } ||
	 { [ $rc -eq 1 ] && grep -q '\"verdict\":\"ephemeral\",\"reason\":\"/proc is on proc, a kernel pseudo-filesystem' '$base/out'; }"

echo "== problems ckpt_open would refuse"
D --local-dir "$L" --shared-dir "$base/missing" --bytes 0 --json
ok "a missing shared_dir: exit 2, the mount hint" sh -c "[ $rc -eq 2 ] && grep -q 'is the volume mounted' '$base/out'"
ok "... and the local tier is still reported" jis "d['tiers']['local_dir']['usable']" "True"
D --shared-dir "$S" --bytes 0 --json
ok "an unset local_dir: exit 2, named" sh -c "[ $rc -eq 2 ] && grep -q 'local_dir is not set' '$base/out'"
mkdir -p "$L/inner"
D --local-dir "$L" --shared-dir "$L/inner" --bytes 0 --json
ok "shared_dir inside local_dir: exit 2" sh -c "[ $rc -eq 2 ] && grep -q 'inside local_dir' '$base/out'"
rmdir "$L/inner"
CKPT_COMPRESS_LEVEL=99 D --local-dir "$L" --shared-dir "$S" --bytes 0 --json
ok "a bad CKPT_* variable: exit 2" is 2
ok "... named in the errors, origin bad-environment" jis "any('CKPT_COMPRESS_LEVEL' in e for e in d['errors']) and [c['origin'] for c in d['config'] if c['key'] == 'compress_level'][0] == 'bad-environment'" "True"

echo "== configuration origins: default, environment, config"
CKPT_COMPRESS_LEVEL=7 CKPT_LOCAL_DIR=$L D --shared-dir "$S" --set keep_local=5 --bytes 0 --json
ok "--json parses" json_ok
ok "compress_level 7 from the environment (CKPT_COMPRESS_LEVEL)" jis "[c['value'] + ' ' + c['origin'] + ' ' + c['variable'] for c in d['config'] if c['key'] == 'compress_level'][0]" "7 environment CKPT_COMPRESS_LEVEL"
ok "local_dir from the environment" jis "[c['origin'] for c in d['config'] if c['key'] == 'local_dir'][0]" "environment"
ok "shared_dir from config (--shared-dir)" jis "[c['origin'] + ' ' + str(c['variable']) for c in d['config'] if c['key'] == 'shared_dir'][0]" "config None"
ok "keep_local 5 from config (--set)" jis "[c['value'] + ' ' + c['origin'] for c in d['config'] if c['key'] == 'keep_local'][0]" "5 config"
ok "keep_shared 3 by default" jis "[c['value'] + ' ' + c['origin'] for c in d['config'] if c['key'] == 'keep_shared'][0]" "3 default"
ok "every key is listed once" jis "len(d['config']) == len(set(c['key'] for c in d['config'])) and {'require_persistent', 'cluster', 'log_level'} <= set(c['key'] for c in d['config'])" "True"
ok "--set overrides the environment" sh -c "CKPT_COMPRESS_LEVEL=7 '$CKPT' doctor --local-dir '$L' --shared-dir '$S' --bytes 0 --set compress_level=3 | grep -Eq '^  compress_level +3 +config'"
CKPT_COMPRESS_LEVEL=7 CKPT_LOCAL_DIR=$L D --shared-dir "$S" --set keep_local=5 --bytes 0
ok "human: compress_level line with its variable" sh -c "grep -Eq '^  compress_level +7 +environment \(CKPT_COMPRESS_LEVEL\)' '$base/out'"
ok "human: keep_local line from config" sh -c "grep -Eq '^  keep_local +5 +config' '$base/out'"
ok "human: name line by default" sh -c "grep -Eq '^  name +default +default' '$base/out'"

echo "== facts: io_uring, MPI"
D --local-dir "$L" --shared-dir "$S" --bytes 0 --json
ok "io_uring: usable is a boolean with a detail" jis "type(d['io_uring']['usable']) is bool and len(d['io_uring']['detail']) > 0" "True"
if [ "$(j "d['io_uring']['usable']")" = False ]; then
	ok "io_uring unusable: a note says auto uses POSIX" jis "any('io_backend=auto uses POSIX' in n for n in d['notes'])" "True"
fi
if [ -n "${HAVE_MPI:-}" ]; then
	want=False
	[ "$HAVE_MPI" = 1 ] && want=True
	ok "MPI build reported as built=$want" jis "d['mpi']['built']" "$want"
	[ "$HAVE_MPI" = 1 ] && ok "MPI library named" jis "len(d['mpi']['library'] or '') > 0" "True"
fi
D --local-dir "$L" --shared-dir "$S" --bytes 0 --set io_backend=posix --json
ok "io_backend=posix is reported as config" jis "[c['value'] + ' ' + c['origin'] for c in d['config'] if c['key'] == 'io_backend'][0]" "posix config"

echo "== cluster type and launcher"
D --local-dir "$L" --shared-dir "$S" --bytes 0 --json
ok "no cluster, no launcher" jis "d['cluster']['type'] + ' ' + str(d['launcher'])" "none None"
KUBERNETES_SERVICE_HOST=10.96.0.1 D --local-dir "$L" --shared-dir "$S" --bytes 0 --json
ok "Kubernetes from KUBERNETES_SERVICE_HOST, PVC advice" jis "d['cluster']['type'] + ' ' + d['cluster']['evidence'] + ' ' + str('PersistentVolumeClaim' in d['cluster']['advice'])" "kubernetes KUBERNETES_SERVICE_HOST True"
SLURM_JOB_ID=7 KUBERNETES_SERVICE_HOST=10.96.0.1 D --local-dir "$L" --shared-dir "$S" --bytes 0 --json
ok "Slurm wins over Kubernetes" jis "d['cluster']['type'] + ' ' + d['cluster']['evidence']" "slurm SLURM_JOB_ID"
SLURM_JOB_ID=7 D --local-dir "$L" --shared-dir "$S" --bytes 0 --set cluster=none --json
ok "the cluster key overrides the environment" jis "d['cluster']['type'] + ' ' + d['cluster']['evidence']" "none config key cluster"
SLURM_PROCID=3 SLURM_NTASKS=8 D --local-dir "$L" --shared-dir "$S" --bytes 0 --json
ok "Slurm launcher: rank 3 of 8" jis "'%d %d %s' % (d['launcher']['rank'], d['launcher']['size'], d['launcher']['source'])" "3 8 SLURM_PROCID"
SLURM_PROCID=0 OMPI_COMM_WORLD_RANK=2 OMPI_COMM_WORLD_SIZE=4 D --local-dir "$L" --shared-dir "$S" --bytes 0
ok "human: Open MPI launcher wins over SLURM_PROCID" has "rank 2 of 4 (OMPI_COMM_WORLD_RANK)"

echo "== Kubernetes /home, where /home is writable (root)"
if [ -w /home ] && H=$(mktemp -d /home/ckpt-doctor-XXXXXX 2>/dev/null); then
	KUBERNETES_SERVICE_HOST=10.96.0.1 D --local-dir "$L" --shared-dir "$H" --bytes 0 --json
	if [ "$(j "d['tiers']['shared_dir']['class']")" != network ]; then
		ok "shared_dir under /home on Kubernetes: ephemeral, the rule named" jis "d['tiers']['shared_dir']['verdict'] + ' ' + str('on Kubernetes /home is node-local and ephemeral' in d['tiers']['shared_dir']['reason'])" "ephemeral True"
		ok "... with the PVC advice in the warning" jis "any('mount a PersistentVolumeClaim' in w for w in d['warnings'])" "True"
	fi
	rmdir "$H"
else
	echo "SKIP: /home is not writable"
fi

echo "== ckpt restore --rank auto"
"$HELPER" save "$S" "$L" job 1 1 100000 >"$base/out" 2>"$base/err"
rc=$?
ok "helper saved step 1" is 0
"$CKPT" restore --shared-dir "$S" --local-dir "$L" --name job --rank auto --dry-run --json \
	>"$base/out" 2>"$base/err"
rc=$?
ok "--rank auto without a launcher: usage error naming the variables" sh -c "[ $rc -eq 64 ] && grep -q SLURM_PROCID '$base/err'"
SLURM_PROCID=0 "$CKPT" restore --shared-dir "$S" --local-dir "$L" --name job --rank auto \
	--dry-run --json >"$base/out" 2>"$base/err"
rc=$?
ok "--rank auto with SLURM_PROCID=0: rank 0" sh -c "[ $rc -eq 0 ]" && ok "... planned rank 0 only" jis "[r['rank'] for r in d['ranks']]" "[0]"
OMPI_COMM_WORLD_RANK=1 OMPI_COMM_WORLD_SIZE=2 "$CKPT" restore --shared-dir "$S" --local-dir "$L" \
	--name job --rank auto --dry-run >"$base/out" 2>"$base/err"
rc=$?
ok "--rank auto with rank 1 of a 1-rank step: usage error" is 64

echo "passed $passed, failed $failed"
[ "$failed" -eq 0 ]
