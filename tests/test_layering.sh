#!/bin/sh
# SPDX-License-Identifier: MIT
# The layering of src/internal.h and docs/ARCHITECTURE.md, checked in the #includes: every file of
# src/ includes only headers of its own module or of modules below it, so no two modules can call
# each other through their headers. A file that belongs to no module fails: place it in the table.
set -u
srcdir=${srcdir:-.}

# The module of a file of src/ and its height (higher calls lower), from its name.
layer() {
	case $1 in
	api.* | api_*) echo "14 api" ;;
	context.* | stage.*) echo "13 context" ;; # stage.c: snapshot saves, the local save's other half
	drain.* | drain_*) echo "12 drain" ;;
	commit.* | commit_*) echo "11 commit" ;;
	retention.*) echo "10 retention" ;;
	internal.h) echo "9 ctx" ;; # the context struct that every module from retention up shares
	step.*) echo "8 step" ;;
	shard.* | shard_*) echo "7 shard" ;;
	storage.* | storage_*) echo "6 storage" ;;
	store.* | store_*) echo "5 store" ;;
	codec.* | xform.*) echo "4 codec" ;;
	io.* | io_*) echo "3 io" ;;
	fmt.*) echo "2 fmt" ;;
	config.* | config_*) echo "1 config" ;;
	error.*) echo "0 error" ;;
	*) echo "" ;;
	esac
}

files=0 edges=0 bad=0
for f in "$srcdir"/src/*.c "$srcdir"/src/*.h; do
	b=$(basename "$f")
	l=$(layer "$b")
	files=$((files + 1))
	if [ -z "$l" ]; then
		echo "FAIL: src/$b belongs to no module of the layering (tests/test_layering.sh)"
		bad=$((bad + 1))
		continue
	fi
	for h in $(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f"); do
		case $h in ckpt.h | ckpt_mpi.h | build_config.h) continue ;; esac # public, or configure's
		m=$(layer "$h")
		edges=$((edges + 1))
		if [ -z "$m" ]; then
			echo "FAIL: src/$b includes $h, which belongs to no module"
			bad=$((bad + 1))
		elif [ "${m%% *}" -gt "${l%% *}" ]; then
			echo "FAIL: src/$b (${l#* }) includes $h of ${m#* }, a module above it"
			bad=$((bad + 1))
		fi
	done
done
echo "layering: $files files, $edges includes, $bad against the layering"
[ "$files" -gt 0 ] && [ "$bad" -eq 0 ]
