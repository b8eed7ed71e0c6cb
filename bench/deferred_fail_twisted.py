"""bench/deferred_fail_twisted.py: bench/deferred_fail.lua for Twisted.

Run with the system python3 (python3-twisted).
Usage: /usr/bin/python3 bench/deferred_fail_twisted.py heap|reverse <n>
Prints "<mode> <n> <seconds>".
"""
import sys
import time

from twisted.internet.defer import Deferred


def handled(_):
    return None


def main():
    mode, n = sys.argv[1], int(sys.argv[2])
    assert mode in ("heap", "reverse")
    count = 1000 if mode == "heap" else n
    ds = [Deferred() for _ in range(count)]
    newer = [{} for _ in range(n)] if mode == "heap" else []
    err = Exception("failed")
    start = time.process_time()
    for d in reversed(ds):
        d.errback(err)
    elapsed = time.process_time() - start
    for d in ds:
        d.addErrback(handled)
    assert len(newer) == (n if mode == "heap" else 0)
    print("%s %d %.4f" % (mode, n, elapsed))


if __name__ == "__main__":
    main()
