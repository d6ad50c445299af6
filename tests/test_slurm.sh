#!/bin/bash
# SPDX-License-Identifier: MIT
# A real one-node Slurm cluster (munged, slurmctld, slurmd, started and stopped here) runs
# examples/slurm/train.sbatch: a reference job; a job whose rank 1 is killed; the node is replaced
# (its local directory wiped); the resubmitted job restores the newest committed step with
# ckpt-restore (one task per rank, --rank auto), resumes from it and ends with the reference job's
# checksum.
#
# Needs root (slurmd starts job steps as their owner), Debian's slurmd, slurmctld, slurm-client
# and munge (scripts/setup.sh installs them), and an MPI build. Exit 77 (skip) otherwise.
# Nothing outside a temporary directory is used: own munge key and socket, own slurm.conf
# (SLURM_CONF), own ports, state, spool and TmpFS directories, all removed at the end. Two of these
# tests may run at once on one machine (two make checks): every private cluster numbers its jobs
# from 1, so whatever Slurm, PMIx or Open MPI names after the job id must live in this test's own
# directories (TmpFS for PMIx's spmix_appdir_<uid>_<job>.<step>, TMPDIR for Open MPI's session
# directory, a backing directory of our own for its shared-memory segments).
set -u
B=$(pwd)
SRC=${srcdir:-.}
SRC=$(cd "$SRC" && pwd)
TRAIN_BIN=${TRAIN_BIN:-$B/examples/ckpt-mpi-train}
CKPT_BIN=${CKPT_BIN:-$B/tools/ckpt}
NP=4
# Small enough for two cores. Rank 1 dies at step 70 once step 60 is committed (--crash-at).
EVERY=20
ARGS="--params 262144 --steps 120 --every $EVERY"
CRASH_AT=70
WANT=$(((CRASH_AT - 1) / EVERY * EVERY)) # the step that must come back

skip() { echo "SKIP: $*"; exit 77; }
[ "${HAVE_MPI:-1}" = 1 ] || skip "libckpt built without MPI"
[ "$(id -u)" -eq 0 ] || skip "slurmd must run as root to start job steps"
for p in munged slurmctld slurmd sbatch srun sinfo scontrol scancel; do
	command -v "$p" >/dev/null 2>&1 ||
		skip "$p not found: apt-get install slurmd slurmctld slurm-client munge (scripts/setup.sh)"
done
if [ ! -x "$TRAIN_BIN" ] || [ ! -x "$CKPT_BIN" ]; then
	skip "build examples/ckpt-mpi-train and tools/ckpt first"
fi

base=$(mktemp -d "${TMPDIR:-/tmp}/ckpt-slurm-XXXXXX") || exit 1
chmod 755 "$base" # munged wants its socket's directories searchable by all
# Open MPI's shared-memory transport names its segment files after the job id and rank: in a
# directory of ours, on tmpfs when there is one.
shm=$(mktemp -d /dev/shm/ckpt-slurm-XXXXXX 2>/dev/null) || { shm=$base/shm && mkdir "$shm"; }
passed=0 failed=0
started=$(date +%s)

# A daemon that exited is a zombie until init reaps it, which some containers' init does slowly.
alive() { [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status"; }
stop_all() {
	export SLURM_CONF="$base/slurm.conf"
	scancel --quiet --full "--user=$(id -un)" >/dev/null 2>&1
	# Each daemon by the id in its own pid file: never by name, other Slurms may be running.
	for f in "$base/slurmd.pid" "$base/slurmctld.pid" "$base/munge/munged.pid"; do
		[ -s "$f" ] || continue
		pid=$(cat "$f")
		kill "$pid" 2>/dev/null || continue
		for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
		alive "$pid" && kill -9 "$pid" 2>/dev/null
	done
	rm -rf "$base" "$shm"
}
trap stop_all EXIT
trap 'exit 1' INT TERM

pass() { passed=$((passed + 1)); echo "PASS: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }
check() { # check NAME COMMAND...: PASS when the command succeeds
	name=$1
	shift
	if "$@"; then pass "$name"; else fail "$name"; fi
}
show_logs() {
	for f in "$@" "$base"/log/*.log; do
		[ -f "$f" ] && { echo "---- $f"; tail -n 25 "$f" | sed 's/^/    /'; }
	done
}

# ---- a one-node cluster. The node claims 4 CPUs on however many cores the machine has
# (SlurmdParameters=config_overrides) so that 4 ranks fit. proctrack/linuxproc and task/none:
# no cgroups, which containers often lack and which a test does not need.
host=$(hostname -s)
port=$((20000 + $$ % 20000 / 2 * 2))
free_ports() { # the next pair of free ports from $port on
	while ss -ltn 2>/dev/null | grep -qE ":($port|$((port + 1)))\b"; do port=$((port + 2)); done
}
mkdir -p "$base/munge" "$base/run" "$base/state" "$base/spool" "$base/log" "$base/bin" "$base/shared" \
	"$base/tmp"
chmod 700 "$base/munge"
head -c 1024 /dev/urandom >"$base/munge/munge.key"
chmod 400 "$base/munge/munge.key"
write_conf() {
	cat >"$base/slurm.conf" <<EOF
ClusterName=ckpttest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$base/run/munge.socket
StateSaveLocation=$base/state
SlurmdSpoolDir=$base/spool
TmpFS=$base/tmp
SlurmctldPidFile=$base/slurmctld.pid
SlurmdPidFile=$base/slurmd.pid
SlurmctldLogFile=$base/log/slurmctld.log
SlurmdLogFile=$base/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=5
NodeName=$host NodeAddr=127.0.0.1 CPUs=$NP RealMemory=1000 State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=30 State=UP
EOF
	# PMIx's client directories (spmix_appdir_<uid>_<job>.<step>) under our TmpFS, said twice: the
	# plugin takes SLURM_PMIX_TMPDIR, then mpi.conf's PMIxCliTmpDirBase, then TmpFS (/tmp).
	echo "PMIxCliTmpDirBase=$base/tmp" >"$base/mpi.conf"
}
export SLURM_CONF="$base/slurm.conf"
# listening PID PORT: process PID (from a pid file) is alive and listens on TCP port PORT
listening() { alive "$1" && ss -ltnpH "sport = :$2" 2>/dev/null | grep -q "pid=$1,"; }

t=$(date +%s)
munged --force --socket="$base/run/munge.socket" --key-file="$base/munge/munge.key" \
	--pid-file="$base/munge/munged.pid" --seed-file="$base/munge/seed" \
	--log-file="$base/log/munged.log"
rc=$?
# Another Slurm test on this machine may take the ports between the check and slurmctld's bind:
# sinfo and sbatch would then talk to that cluster. So slurmctld must be seen listening on our
# port, by the pid in our pid file, before slurmd starts; else it is stopped and the next free
# pair of ports is tried.
ours=
for attempt in 1 2 3 4 5; do
	[ $rc -eq 0 ] || break
	free_ports
	write_conf
	rm -f "$base/slurmctld.pid"
	slurmctld -f "$SLURM_CONF" || { rc=$?; break; }
	pid=
	for _ in $(seq 100); do
		pid=$(cat "$base/slurmctld.pid" 2>/dev/null)
		[ -n "$pid" ] && listening "$pid" "$port" && { ours=1; break; }
		sleep 0.1
	done
	[ -n "$ours" ] && break
	echo "slurmctld is not listening on port $port (attempt $attempt): trying other ports"
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && sleep 1
	port=$((port + 2))
done
[ -n "$ours" ] || rc=1
[ $rc -eq 0 ] && { slurmd -f "$SLURM_CONF" -N "$host"; rc=$?; }
state=
for _ in $(seq 150); do
	[ $rc -eq 0 ] || break
	state=$(sinfo -h -n "$host" -o %T 2>/dev/null)
	[ "$state" = idle ] && break
	sleep 0.2
done
if [ "$state" = idle ]; then
	pass "munged, slurmctld and slurmd started; node $host idle ($(($(date +%s) - t)) s)"
else
	fail "the cluster did not come up (node state '${state:-none}')"
	show_logs
	echo "slurm: $passed passed, $failed failed"
	exit 1
fi
if srun --mpi=list 2>&1 | grep -qw pmix; then
	pass "srun offers --mpi=pmix (Slurm's PMIx plugin, Open MPI's ext3x component)"
else
	fail "srun --mpi=list has no pmix"
fi
# While a PMIx step runs, its client directory exists: it must be in this cluster's TmpFS (with
# /tmp, a second cluster's job 1 would share it, and the first step to end would remove it).
appdir=$(srun --mpi=pmix -n1 sh -c "ls -d '$base'/tmp/spmix_appdir_*" 2>&1)
case $appdir in
"$base"/tmp/spmix_appdir_*) pass "PMIx's client directory is private to this cluster: $appdir" ;;
*) fail "no PMIx client directory under $base/tmp while a step runs: ${appdir:-nothing}" ;;
esac

# ---- the job's environment: sbatch exports it to the batch script, srun to every rank
# The job script's default programs, ckpt-restore and ckpt-mpi-train, found in PATH as after
# make install: this build's.
ln -s "$CKPT_BIN" "$base/bin/ckpt-restore" # the same program, chosen by argv[0]
ln -s "$TRAIN_BIN" "$base/bin/ckpt-mpi-train"
export PATH="$base/bin:$PATH"
unset TRAIN CKPT_RESTORE
export CKPT_SHARED_DIR="$base/shared" CKPT_LOCAL_DIR="$base/nvme"
# Both directories are on this machine's disk: libckpt warns that shared_dir is not persistent,
# and the job script's default CKPT_REQUIRE_PERSISTENT=1 would refuse it. A test cluster of one
# node has no shared volume to offer; on a real cluster $HOME (NFS) passes.
export CKPT_REQUIRE_PERSISTENT=0
# Loopback only: no warnings about missing high-speed networks. Root may run mpirun (test 5).
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Open MPI's session directories and shared-memory segments: ours (see the top of this file).
export TMPDIR="$base/tmp" OMPI_MCA_btl_vader_backing_directory="$shm"
# The batch script runs in the submit directory (output file paths are relative to it).
cd "$base" || exit 1

job_state() { # the state slurmctld holds for job NAME's last submission
	scontrol show job "$(cat "$base/$1.jobid")" 2>/dev/null |
		sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'
}
submit() { # submit NAME TRAIN_ARGS: runs the job to its end; prints 0 if it COMPLETED, else its state
	CKPT_NAME=$1 TRAIN_ARGS=$2 sbatch --parsable --job-name="$1" --nodes=1 \
		--ntasks-per-node=$NP --time=5 --output="$base/$1.out" \
		"$SRC/examples/slurm/train.sbatch" >"$base/$1.jobid" 2>"$base/sbatch.err" ||
		{ echo "not-submitted"; return; }
	# (sbatch --wait polls every few seconds; polling here keeps the test short)
	for _ in $(seq 1500); do
		case $(job_state "$1") in
		COMPLETED) echo 0; return ;;
		PENDING | RUNNING | CONFIGURING | COMPLETING | "") sleep 0.2 ;;
		*) job_state "$1"; return ;;
		esac
	done
	scancel "$(cat "$base/$1.jobid")"
	echo "TIMEOUT(test)"
}
checksum() { sed -n 's/^done: .*checksum \([0-9a-f]*\)$/\1/p' "$1"; }

# 1. the reference: an uninterrupted job
t=$(date +%s)
rc=$(submit ref "$ARGS")
ref=$(checksum "$base/ref.out")
if [ "$rc" = 0 ] && [ -n "$ref" ] && grep -q '^restore: no committed checkpoint yet' "$base/ref.out" &&
	grep -q '^training: srun --kill-on-bad-exit=1 --mpi=pmix ckpt-mpi-train ' "$base/ref.out"; then
	pass "reference job: sbatch, restore step (nothing yet), srun --mpi=pmix, $NP ranks," \
		"checksum $ref ($(($(date +%s) - t)) s)"
else
	fail "reference job (state $rc)"
	show_logs "$base/sbatch.err" "$base/ref.out"
fi

# 2. the same training, rank 1 killed at step $CRASH_AT: the step, and so the job, fails
t=$(date +%s)
rc=$(submit run "$ARGS --crash-at $CRASH_AT")
if [ "$rc" = FAILED ] && grep -q "rank 1 killed at step $CRASH_AT" "$base/run.out"; then
	pass "rank 1 killed at step $CRASH_AT: the job fails (state $rc) ($(($(date +%s) - t)) s)"
else
	fail "crashing job: state $rc"
	show_logs "$base/sbatch.err" "$base/run.out"
fi

# 3. the node is replaced: its NVMe comes back empty. The newest committed step is what must come
# back (steps saved after it were never committed and are lost with the node).
rm -rf "$CKPT_LOCAL_DIR"
committed=$(env -u CKPT_LOCAL_DIR "$CKPT_BIN" ls --shared-dir "$CKPT_SHARED_DIR" --name run 2>/dev/null |
	awk '$1 == "run" && $3 == "committed" { s = $2 } END { print s }')
if [ "$committed" = "$WANT" ]; then
	pass "node replaced (local directory wiped); newest committed step on the shared directory: $committed"
else
	fail "the newest committed step on the shared directory is '${committed}', not $WANT"
	"$CKPT_BIN" ls --shared-dir "$CKPT_SHARED_DIR" 2>&1 | sed 's/^/    /'
fi

# 4. resubmitted: ckpt-restore once per node puts step $committed back on the new NVMe, the
# training resumes from it and finishes exactly as the reference did
t=$(date +%s)
rc=$(submit run "$ARGS")
if [ "$rc" = 0 ]; then
	pass "resubmitted job completes ($(($(date +%s) - t)) s)"
else
	fail "resubmitted job (state $rc)"
	show_logs "$base/sbatch.err" "$base/run.out"
fi
check "restore step: each of the $NP tasks (--rank auto) restored its rank's shard of step $committed" \
	test "$(grep -cE "^$host task [0-9]+: restored step ${committed:-x} of job 'run' .*\(1 written, 0 already present\)" \
		"$base/run.out")" = $NP
check "training resumed from the committed step $committed" \
	grep -q "^resumed from step ${committed:-x}\$" "$base/run.out"
got=$(checksum "$base/run.out")
check "final checksum equals the uninterrupted job's (${got:-none} = ${ref:-none})" \
	test -n "$got" -a "$got" = "$ref"

# 5. resubmitted on a node that still holds the newest step: the restore step only verifies it.
# The ranks start with mpirun this time, the launcher the README names as the alternative.
intact() {
	out="$base/run.out"
	[ "$1" = 0 ] &&
		[ "$(grep -cE "^$host task [0-9]+: restored step 120 .*\(0 written, 1 already present\)" "$out")" = $NP ] &&
		grep -q '^training: mpirun ' "$out" && grep -q "^libckpt .*: $NP ranks" "$out" &&
		grep -q '^resumed from step 120$' "$out"
}
rc=$(LAUNCH=mpirun submit run "$ARGS")
check "restore on an intact node: nothing rewritten; mpirun in the allocation resumes at 120" \
	intact "$rc"

[ $failed -eq 0 ] || show_logs "$base/run.out"
echo "slurm: $(($(date +%s) - started)) s in all"
echo "slurm: $passed passed, $failed failed"
[ $failed -eq 0 ]
