"""bench/deferred_twisted.py: chains per second of Twisted's Deferred.

A chain is: make a Deferred, add ten callbacks, fire it (as in
bench/deferred.lua). Run with the system python3 (python3-twisted).
Usage: /usr/bin/python3 bench/deferred_twisted.py [seconds]
Prints "twisted <chains/second>".
"""
import sys
import time

from twisted.internet.defer import Deferred


def inc(x):
    return x + 1


def chain():
    d = Deferred()
    d.addCallback(inc); d.addCallback(inc); d.addCallback(inc)
    d.addCallback(inc); d.addCallback(inc); d.addCallback(inc)
    d.addCallback(inc); d.addCallback(inc); d.addCallback(inc)
    d.addCallback(inc)
    d.callback(0)
    return d


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    assert chain().result == 10
    n, batch, start = 0, 10000, time.process_time()
    while True:
        for _ in range(batch):
            chain()
        n += batch
        if time.process_time() - start >= seconds:
            break
    print("twisted %.0f" % (n / (time.process_time() - start)))


if __name__ == "__main__":
    main()
