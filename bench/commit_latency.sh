#!/bin/sh
# SPDX-License-Identifier: MIT
# MPI commit latency at 2, 4, 8 and 16 ranks (oversubscribed on small machines): from the last
# rank's shard published to the MANIFEST visible. Usage: bench/commit_latency.sh [REPS] [BYTES]
set -eu
B=${COMMIT_BENCH:-./bench/commit_latency}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
echo "libckpt MPI commit latency on $(nproc) CPUs; each line: $B under mpirun -np N"
for mode in multiple single; do
	for np in ${RANKS:-2 4 8 16}; do
		d=$(mktemp -d "${TMPDIR:-/tmp}/ckpt-commit-XXXXXX")
		COMMIT_BENCH_THREAD=$mode mpirun -np "$np" --oversubscribe \
			-x COMMIT_BENCH_THREAD "$B" "$d/run" "${1:-7}" "${2:-1048576}"
		rm -rf "$d"
	done
done
