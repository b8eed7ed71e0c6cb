"""bench/threads/twisted.py [seconds]: the Twisted peer of
threads/spindle.lua: threads.deferToThread of a tiny function (x + 1), its
Deferred's callback sending the next; WINDOW calls in flight."""
import sys
import time

from twisted.internet import reactor, threads

secs = float(sys.argv[1]) if len(sys.argv) > 1 else 2
WINDOW = 64
state = {"done": 0, "sent": 0}


def inc(x):
    return x + 1


def back(r):
    state["done"] += 1
    if time.monotonic() - state["t0"] >= secs:
        if state["done"] == state["sent"]:
            reactor.stop()
        return r
    send()
    return r


def send():
    state["sent"] += 1
    threads.deferToThread(inc, state["sent"]).addCallback(back)


def start():
    state["t0"] = time.monotonic()
    for _ in range(WINDOW):
        send()


reactor.callWhenRunning(start)
reactor.run()
el = time.monotonic() - state["t0"]
print("twisted %.0f %d" % (state["done"] / el, state["done"]))
