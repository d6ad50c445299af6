#!/bin/sh
# SPDX-License-Identifier: MIT
# Public headers compile alone (C99 and C++, -pedantic -Werror), and the library exports exactly
# the functions they declare: no internal symbol leaks, no declared function is missing.
set -u
srcdir=${srcdir:-.}
CC=${CC:-cc}
passed=0 failed=0
ok() { passed=$((passed + 1)); echo "PASS: $1"; }
ko() { failed=$((failed + 1)); echo "FAIL: $1"; }
t=$(mktemp -d "${TMPDIR:-/tmp}/ckpt-hdr-XXXXXX")
trap 'rm -rf "$t"' EXIT

printf '#include <ckpt.h>\nint main(void) { return ckpt_strerror(0) == 0; }\n' >"$t/c.c"
if $CC -std=c99 -Wall -Wextra -pedantic -Werror -I"$srcdir/include" -c "$t/c.c" -o "$t/c.o"; then
	ok "ckpt.h compiles alone as C99 with -pedantic -Werror"
else ko "ckpt.h as C99"; fi
if command -v c++ >/dev/null; then
	printf '#include <ckpt.h>\nint main() { return ckpt_strerror(0) == nullptr; }\n' >"$t/cc.cc"
	if c++ -std=c++11 -Wall -Wextra -pedantic -Werror -I"$srcdir/include" -c "$t/cc.cc" -o "$t/cc.o"; then
		ok "ckpt.h compiles alone as C++11"
	else ko "ckpt.h as C++11"; fi
fi
if [ -n "${MPI_CFLAGS+x}" ] && [ "${HAVE_MPI:-0}" = 1 ]; then
	printf '#include <ckpt_mpi.h>\nint main(void) { return 0; }\n' >"$t/m.c"
	if $CC -std=c99 -Wall -Wextra -Werror $MPI_CFLAGS -I"$srcdir/include" -c "$t/m.c" -o "$t/m.o"; then
		ok "ckpt_mpi.h compiles alone"
	else ko "ckpt_mpi.h compiles alone"; fi
fi
if grep -q 'static inline\|^static ' "$srcdir"/include/*.h; then
	ko "no static (inline) functions in public headers: ctypes cannot call them"
else ok "no static (inline) functions in public headers"; fi

lib=src/.libs/libckpt.so
if [ -f "$lib" ]; then
	nm -D --defined-only "$lib" | awk '$2 == "T" { sub(/@.*/, "", $3); print $3 }' | sort -u >"$t/exported"
	# every function declared in the installed headers: "int ckpt_x(" / "const char *ckpt_x("
	cat "$srcdir"/include/ckpt.h $( [ "${HAVE_MPI:-0}" = 1 ] && echo "$srcdir/include/ckpt_mpi.h") |
		grep -E '^(int|void|const char) ' | grep -oE '\bckpt_[a-z0-9_]+\(' | tr -d '(' |
		sort -u >"$t/declared"
	if cmp -s "$t/exported" "$t/declared"; then
		ok "exported symbols == declared functions ($(wc -l <"$t/declared"))"
	else
		ko "exported symbols differ from declared functions:"
		diff "$t/declared" "$t/exported" | sed 's/^/    /'
	fi
	if grep -q '__' "$t/exported"; then ko "an internal ckpt_<module>__ symbol is exported"
	else ok "no internal symbol exported"; fi
else
	ko "$lib not built"
fi
echo "headers: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
