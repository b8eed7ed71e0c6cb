#!/usr/bin/env python3
"""tools/check_deps.py OBJDIR: fail when two runtime files depend on each
other in both directions (DESIGN.md: a lower file takes a callback, never
calls back up). A depends on B when A's object file uses a symbol B's
defines (nm), which covers both calls and data; generated files count.
Prints each file's dependencies with -v."""
import glob
import os
import subprocess
import sys


def symbols(path):
    defined, used = set(), set()
    out = subprocess.run(["nm", path], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TDBR":
            defined.add(parts[2])
        elif len(parts) == 2 and parts[0] == "U":
            used.add(parts[1])
    return defined, used


def main():
    objdir = sys.argv[1]
    files = {}
    for path in sorted(glob.glob(os.path.join(objdir, "*.o"))):
        files[os.path.basename(path)[:-2]] = symbols(path)
    deps = {name: set() for name in files}
    for a, (_, used) in files.items():
        for b, (defined, _) in files.items():
            if a != b and used & defined:
                deps[a].add(b)
    if "-v" in sys.argv:
        for a in sorted(deps):
            print(f"{a}: {' '.join(sorted(deps[a]))}")
    cycles = sorted((a, b) for a in deps for b in deps[a]
                    if a < b and a in deps[b])
    for a, b in cycles:
        print(f"check_deps: {a}.c and {b}.c depend on each other")
    if not files:
        print(f"check_deps: no object files in {objdir}")
        return 1
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())
