"""bench/timers/twisted.py N: the Twisted peer of timers/spindle.lua."""
import sys
import time

from twisted.internet import reactor

n = int(sys.argv[1]) if len(sys.argv) > 1 else 200000
state = {"fired": 0}


def tick():
    state["fired"] += 1
    if state["fired"] == n:
        reactor.stop()


def start():
    state["t0"] = time.monotonic()
    for i in range(1, n + 1):
        reactor.callLater((i % 100) / 1000, tick)


reactor.callWhenRunning(start)
reactor.run()
print("twisted %.3f" % (time.monotonic() - state["t0"]))
