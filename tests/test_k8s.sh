#!/bin/bash
# SPDX-License-Identifier: MIT
# Validates examples/kubernetes/*.yaml against the Kubernetes API schemas and libckpt's invariants
# (examples/kubernetes/check-manifests.mjs), and shows that the validator fails on broken copies.
#
# The validator's npm packages (pinned below) are installed on first use into a cache directory,
# never into the source tree: CKPT_K8S_MODULES, default ${XDG_CACHE_HOME:-~/.cache}/libckpt/k8s-validator.
# Without node and npm, or without the registry, the test is skipped (exit 77), except under CI.
set -u
SRC=$(cd "${srcdir:-.}" && pwd)
K8S="$SRC/examples/kubernetes"
PKGS="kubernetes-models@4.5.1 kubernetes-types@1.30.0 typescript@5.9.3 yaml@2.9.1"
MOD=${CKPT_K8S_MODULES:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/libckpt/k8s-validator}
SHARED_VOLUME=shared-volume # the name the example PVC binds to

unavailable() { # CI must validate: there a missing tool fails the test
	if [ -n "${CI:-}" ]; then
		echo "FAIL: $*"
		echo "k8s: 0 passed, 1 failed"
		exit 1
	fi
	echo "SKIP: $*"
	exit 77
}
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	unavailable "node and npm are needed to validate the manifests (apt-get install nodejs npm)"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ckpt-k8s-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
pass() { passed=$((passed + 1)); echo "PASS: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }

# ---- the validator: installed once per version set (a stamp names the set). The cache is shared
# by every run of this test on the machine (two make checks at once): a lock file beside it,
# exclusive to install, shared while validating, so that no run replaces the modules under another.
# shellcheck disable=SC2086 # PKGS is a list of words
install_validator() {
	t=$(date +%s)
	mkdir -p "$(dirname "$MOD")" && rm -rf "$MOD.new.$$" && mkdir -p "$MOD.new.$$" &&
		(cd "$MOD.new.$$" && npm install --prefix . --no-audit --no-fund --loglevel=error \
			$PKGS >"$tmp/npm.log" 2>&1) &&
		echo "$PKGS" >"$MOD.new.$$/.ckpt-packages" &&
		rm -rf "$MOD" && mv "$MOD.new.$$" "$MOD"
	rc=$?
	rm -rf "$MOD.new.$$"
	if [ $rc -ne 0 ]; then
		sed 's/^/    /' "$tmp/npm.log" | tail -20
		unavailable "npm install $PKGS failed (no registry?)"
	fi
	echo "validator installed into $MOD in $(($(date +%s) - t)) s"
}
stamped() { [ "$(cat "$MOD/.ckpt-packages" 2>/dev/null)" = "$PKGS" ]; }
mkdir -p "$(dirname "$MOD")" || unavailable "cannot create $(dirname "$MOD")"
if command -v flock >/dev/null 2>&1 && exec 9>"$MOD.lock"; then
	flock -s 9
	if ! stamped; then
		flock -x 9 # (a conversion: another run may install first; then the stamp is there)
		stamped || install_validator
		flock -s 9
	fi
else
	stamped || install_validator
fi
validate() { node "$K8S/check-manifests.mjs" --modules "$MOD" --shared-volume "$SHARED_VOLUME" "$@"; }

# ---- the examples as shipped
manifests=("$K8S/shared-volume-pvc.yaml" "$K8S/train-job.yaml")
if validate "${manifests[@]}" >"$tmp/out" 2>&1; then
	pass "examples/kubernetes: $(tail -1 "$tmp/out" | sed 's/^check-manifests: //')"
	sed 's/^/    /' "$tmp/out"
else
	fail "examples/kubernetes do not validate"
	sed 's/^/    /' "$tmp/out"
fi

# ---- broken copies: each must fail, with the message that names the mistake. All are checked in
# one run of the validator (a set per copy), then each set's output is read.
cases=0 sets=()
names=() wants=()
broken() { # broken NAME FILE SED-SCRIPT EXPECTED-MESSAGE
	local d="$tmp/b$cases"
	mkdir -p "$d" && cp "${manifests[@]}" "$d/"
	sed -i -e "$3" "$d/$2"
	if cmp -s "$K8S/$2" "$d/$2"; then
		fail "$1: the edit did not apply to $2 (the example changed?)"
		return
	fi
	cases=$((cases + 1))
	names+=("$1")
	wants+=("$4")
	sets+=(-- "$d/shared-volume-pvc.yaml" "$d/train-job.yaml")
}
# the Kubernetes API schema
broken "schema: a string where the API wants an integer" train-job.yaml \
	's/^  backoffLimit: 20/  backoffLimit: twenty/' 'schema: /spec/backoffLimit must be integer'
broken "schema: a value outside an enum" train-job.yaml \
	's/restartPolicy: Never/restartPolicy: Sometimes/' \
	'schema: /spec/template/spec/restartPolicy must be equal to one of the allowed values'
broken "schema: an unquoted number as an env value" train-job.yaml \
	's/^              value: none/              value: 0/' 'must be string'
broken "schema: a required field missing (container name)" train-job.yaml \
	's/^        - name: train$/        - tty: false/' "must have required property name"
broken "schema: an apiVersion the kind does not exist in" train-job.yaml \
	's|^apiVersion: batch/v1$|apiVersion: batch/v2|' 'no Kubernetes API kind Job in apiVersion batch/v2'
broken "fields: a misspelt field (volumeMount)" train-job.yaml \
	'0,/^          volumeMounts:/s//          volumeMount:/' "'\"volumeMount\"' does not exist in type 'Container'"
broken "fields: a field at the wrong level (claimName beside the PVC)" train-job.yaml \
	's/^            claimName: shared-volume/            claim: shared-volume/' "'\"claim\"' does not exist"
# libckpt's invariants
broken "libckpt: PVC bound to another volume" shared-volume-pvc.yaml \
	's/^  volumeName: shared-volume/  volumeName: other-volume/' 'spec.volumeName is "other-volume"'
broken "libckpt: PVC without storageClassName \"\"" shared-volume-pvc.yaml \
	'/^  storageClassName:/d' 'spec.storageClassName must be ""'
broken "libckpt: PVC not ReadWriteMany" shared-volume-pvc.yaml \
	's/- ReadWriteMany/- ReadWriteOnce/' 'accessModes must include ReadWriteMany'
broken "libckpt: shared_dir under /home" train-job.yaml \
	's|CKPT_SHARED_DIR: /mnt/shared/ckpt|CKPT_SHARED_DIR: /home/ckpt|' 'is under /home'
broken "libckpt: local_dir in the container's own filesystem" train-job.yaml \
	's|CKPT_LOCAL_DIR: /mnt/local-nvme/ckpt|CKPT_LOCAL_DIR: /scratch/ckpt|' \
	'CKPT_LOCAL_DIR /scratch/ckpt is not on a node-local volume'
broken "libckpt: the initContainer restores another job name" train-job.yaml \
	'/^        - name: ckpt-restore$/a\          env:\n            - name: CKPT_NAME\n              value: other-run' \
	'CKPT_NAME differs between initContainer ckpt-restore ("other-run") and container train'
broken "libckpt: CKPT_REQUIRE_PERSISTENT missing" train-job.yaml \
	'/CKPT_REQUIRE_PERSISTENT: "1"/d' 'CKPT_REQUIRE_PERSISTENT is not "1"'
broken "libckpt: no initContainer runs ckpt-restore" train-job.yaml \
	's/^              ckpt-restore --threads/              true --threads/' 'no initContainer runs ckpt-restore'
broken "libckpt: the restore mounts the shared volume elsewhere" train-job.yaml \
	'0,/mountPath: \/mnt\/shared$/s//mountPath: \/mnt\/other/' \
	'CKPT_SHARED_DIR /mnt/shared/ckpt is not on a PersistentVolumeClaim mount'

validate "${manifests[@]}" "${sets[@]}" >"$tmp/out" 2>&1
for i in $(seq "$cases"); do
	grep "^set $((i + 1)): " "$tmp/out" | sed "s/^set $((i + 1)): //; s|$tmp/b[0-9]*/||" >"$tmp/set"
	name=${names[$((i - 1))]} want=${wants[$((i - 1))]}
	if grep -q ' [1-9][0-9]* problems' "$tmp/set" && grep -qF -- "$want" "$tmp/set"; then
		pass "$name: rejected ($(grep -F -m1 -- "$want" "$tmp/set" | sed 's/^FAIL //'))"
	else
		fail "$name: expected a problem saying: $want"
		sed 's/^/    /' "$tmp/set"
	fi
done

# ---- the image (examples/kubernetes/Containerfile; building it needs a container engine, which
# the test does not assume): the programs the Job runs are in its final stage
cf="$K8S/Containerfile"
final=$(awk '/^FROM /{n++} n == 2' "$cf")
if grep -q '^FROM debian:12 AS build' "$cf" && grep -q 'make install' "$cf" &&
	grep -q -- '-o /usr/local/bin/mpi_train examples/mpi_train.c' "$cf" &&
	grep -q 'COPY --from=build /usr/local /usr/local' <<<"$final" &&
	grep -q 'openmpi-bin' <<<"$final" && grep -q 'ckpt-restore --help' <<<"$final" &&
	grep -q 'image: ckpt-train:latest' "$K8S/train-job.yaml"; then
	pass "Containerfile: a Debian 12 build stage installs libckpt, ckpt-restore and mpi_train; the runtime stage has them and mpirun"
else
	fail "Containerfile does not provide ckpt-restore, mpi_train and mpirun as train-job.yaml expects"
fi

echo "k8s: $passed passed, $failed failed"
[ $failed -eq 0 ]
