#!/bin/sh
# SPDX-License-Identifier: MIT
# `make install` / `make uninstall` of the Python package (Makefile.am's install-data-local and
# uninstall-local): copies bindings/python/ckpt into a site directory of the prefix and records
# the libdir there (ckpt/_install.py), so that the installed package loads the library installed
# with it, without LD_LIBRARY_PATH, ldconfig or CKPT_LIBRARY.
#
#   install.sh install|uninstall PACKAGE_SOURCE_DIR PREFIX LIBDIR
#
# From the environment: DESTDIR (staged installs); PYTHON, the interpreter whose site directory
# is used (default /usr/bin/python3, Debian's, else python3 from PATH); PYTHON_SITEDIR, to name
# the directory yourself. Default directory: the one of the interpreter's sys.path under PREFIX
# (Debian: /usr/local/lib/python3.11/dist-packages for /usr/local, so `import ckpt` works
# as is), else PREFIX/lib/python3.X/site-packages (then PYTHONPATH must name it).
set -eu
action=$1 src=$2 prefix=$3 libdir=$4
dest=${DESTDIR:-}
# The package's files; tests/test_install.py checks that this list is the package directory.
FILES="__init__.py _lib.py _objects.py _tree.py checkpointer.py errors.py torch_state.py py.typed"

py=${PYTHON:-}
if [ -z "$py" ]; then
	py=python3
	[ -x /usr/bin/python3 ] && py=/usr/bin/python3
fi
if ! command -v "$py" >/dev/null 2>&1; then
	echo "install.sh: no Python interpreter ($py): the Python package ckpt is not ${action}ed"
	exit 0
fi
site=${PYTHON_SITEDIR:-}
if [ -z "$site" ]; then
	site=$("$py" -c '
import sys, sysconfig
prefix = sys.argv[1].rstrip("/")
for p in sys.path:
    if p.startswith(prefix + "/lib/") and p.endswith("-packages"):
        print(p)
        break
else:
    print(sysconfig.get_path("purelib", "posix_prefix", vars={"base": prefix, "platbase": prefix}))
' "$prefix")
fi
pkg=$dest$site/ckpt

case $action in
install)
	mkdir -p "$pkg"
	for f in $FILES; do
		cp "$src/$f" "$pkg/$f.tmp"
		chmod 644 "$pkg/$f.tmp"
		mv -f "$pkg/$f.tmp" "$pkg/$f"
	done
	# The libdir as the installed system sees it (no DESTDIR), written as a Python literal.
	"$py" -c '
import sys
with open(sys.argv[1], "w") as f:
    f.write("# SPDX-License-Identifier: MIT\n"
            "# Written by make install: the directory libckpt was installed in.\n"
            "LIBDIR = %r\n" % sys.argv[2])
' "$pkg/_install.py" "$libdir"
	echo "install.sh: Python package ckpt installed in $site (for $py)"
	;;
uninstall)
	for f in $FILES _install.py; do
		rm -f "$pkg/$f"
	done
	rm -rf "$pkg/__pycache__"
	rmdir "$pkg" 2>/dev/null || :
	;;
*)
	echo "usage: install.sh install|uninstall PACKAGE_SOURCE_DIR PREFIX LIBDIR" >&2
	exit 64
	;;
esac
