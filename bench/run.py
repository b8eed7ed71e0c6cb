#!/usr/bin/python3
"""bench/run.py: every benchmark, for spindle and each peer, in one run.

    python3 bench/run.py [--quick] [--rounds N] [--only ROW,...]
    (make bench, make bench-quick)

Builds what it needs (build/spindle must exist: `make` first; the C peers
and the load generator are compiled into build/bench/), then runs ROUNDS
rounds (3; --quick: one short round, about a minute). Each round measures
every row for every system in turn, so what other processes take from the
shared cores falls on all of them alike. Prints one table (benchmark,
system, median, min, max, unit, and for each peer spindle's ratio to it,
oriented so that above 1.00 means spindle is better), and writes it with
the date, CPU model, core count, load average and peer versions to
bench/RESULTS.md, with a gnuplot chart, bench/results.png.

Servers run pinned to core 0 and load generators (bench/echo/loadgen.c,
wrk, openssl s_time) to core 1; every throughput is also given per second
of the server's CPU (utime + stime from /proc/PID/stat over the measured
window), the figure that holds when other processes share the cores.

The `workers` rows (TCP echo, 50 connections, `spindle --workers 1` and
`--workers 2` beside Node's cluster module at 1 and 2 workers) cannot be
pinned that way (two workers and the load generator on two cores), so
there every process runs unpinned, and per server CPU-second sums the
CPU time of every server process: the supervisor (Node: the primary) and
all its workers.

Systems: spindle; raw C on libuv; luv on Lua 5.4 (lua-luv); Node.js;
Twisted (python3-twisted); plain Lua (the Deferred floor); openssl s_server
(TLS). A system that is missing is reported as such, not skipped silently.
"""
import argparse
import json
import os
import platform
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
OUT = os.path.join(ROOT, "build", "bench")
SPINDLE = os.environ.get("SPINDLE", os.path.join(ROOT, "build", "spindle"))
PY = "/usr/bin/python3"
LUA = "lua5.4"
NODE = "node"
PEERS = ["raw", "luv", "node", "twisted", "plain", "openssl"]
LABEL = {"spindle": "spindle", "raw": "raw C (libuv)", "luv": "luv",
         "node": "Node.js", "twisted": "Twisted", "plain": "plain Lua",
         "openssl": "openssl s_server"}
NET = ["raw", "spindle", "luv", "node", "twisted"]

two_cores = (os.cpu_count() or 1) >= 2 and shutil.which("taskset")
PIN_SERVER = ["taskset", "-c", "0"] if two_cores else []
PIN_LOAD = ["taskset", "-c", "1"] if two_cores else []


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def run(cmd, timeout=120, **kw):
    """Run cmd, return stdout (text); raise on failure."""
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       **kw)
    if p.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (
            " ".join(cmd[:3]), p.returncode, (p.stderr or p.stdout)[-300:]))
    return p.stdout


def cc(src, out, libuv=True):
    flags = ["-O2", "-std=c11", "-Wall", "-Wextra", "-Werror",
             "-D_GNU_SOURCE", "-o", out, src]
    if libuv:
        flags += run(["pkg-config", "--cflags", "--libs", "libuv"]).split()
    run(["cc"] + flags)


def cpu_of(pid):
    """User + system CPU seconds of process pid and its threads."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tck


# ---------------------------------------------------------------------
# Servers

class Server:
    """A server process printing "NAME <port>" lines; pid is its own."""

    def __init__(self, name, cmd, want):
        self.name, self.ports, self.proc, self.down = name, {}, None, None
        try:
            self.proc = subprocess.Popen(PIN_SERVER + cmd,
                                         stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True,
                                         cwd=ROOT)
        except OSError as e:
            self.down = str(e)
            return
        deadline = time.time() + 10
        while len(self.ports) < want and time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.match(r"(\w+) (\d+)", line)
            if m:
                self.ports[m.group(1)] = int(m.group(2))
        if len(self.ports) < want:
            self.down = "did not start: " + self.proc.stderr.read(300) \
                if self.proc.poll() is not None else "did not print ports"
            self.stop()

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def net_servers():
    return {name: net_servers_one(name) for name in NET}


def free_port():
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def children(pid):
    """The pids whose parent is pid."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d))
        except (OSError, ValueError, IndexError):
            continue
    return out


def established(port):
    """Socket inodes of the established TCP connections to local port."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    local, state, inode = fields[1], fields[3], fields[9]
                    if state == "01" and \
                            int(local.rsplit(":", 1)[1], 16) == port:
                        inodes.add(inode)
        except OSError:
            continue
    return inodes


def sockets_of(pid):
    """Socket inodes among the descriptors of process pid."""
    out = set()
    fds = "/proc/%d/fd" % pid
    for fd in os.listdir(fds):
        try:
            link = os.readlink(os.path.join(fds, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(link[8:-1])
    return out


class Workers:
    """`spindle --workers N` (bench/workers/spindle_echo.lua) or Node's
    cluster with N workers (bench/workers/node_cluster.js) on a free port,
    unpinned. Every worker prints "WORKER <id> <pid> ECHO <port>"; pid is
    the supervisor's (Node: the primary's), workers maps id to pid."""

    def __init__(self, name, n):
        self.name, self.n, self.port = name, n, free_port()
        self.workers, self.down, self.proc = {}, None, None
        self.err = tempfile.TemporaryFile("w+")
        if name == "spindle":
            cmd = [SPINDLE, "--workers", str(n), "--drain", "1",
                   os.path.join(BENCH, "workers/spindle_echo.lua"),
                   str(self.port)]
        else:
            cmd = [NODE, os.path.join(BENCH, "workers/node_cluster.js"),
                   str(n), str(self.port)]
        try:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                         stderr=self.err, cwd=ROOT)
        except OSError as e:
            self.down = str(e)
            return
        fd, buf = self.proc.stdout.fileno(), b""
        deadline = time.time() + 10
        while len(self.workers) < n and time.time() < deadline:
            if not select.select([fd], [], [], deadline - time.time())[0]:
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
            for m in re.finditer(rb"WORKER (\d+) (\d+) ECHO (\d+)\n", buf):
                self.workers[int(m.group(1))] = int(m.group(2))
        if len(self.workers) < n:
            self.stop()
            self.err.seek(0)
            self.down = "%d of %d workers started: %s" % (
                len(self.workers), n, self.err.read()[-200:])

    @property
    def pid(self):
        return self.proc.pid

    def pids(self):
        """The supervisor (primary) and all its children, which must be
        the workers it reported."""
        kids = children(self.pid)
        if sorted(kids) != sorted(self.workers.values()):
            raise RuntimeError("children %s are not the workers %s" % (
                kids, self.workers))
        return [self.pid] + kids

    def connections(self):
        """{worker id: established connections to the port it holds}."""
        conns = established(self.port)
        return {i: len(sockets_of(pid) & conns)
                for i, pid in sorted(self.workers.items())}

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------------
# Measurements: each returns {metric: value} or raises

def loadgen(server, port, mode, conns, warm, dur, size=None, depth=None):
    cmd = PIN_LOAD + [os.path.join(OUT, "loadgen"), "-p", str(port), "-m",
                      mode, "-c", str(conns), "-w", str(warm), "-d",
                      str(dur), "-P", str(server.pid)]
    if size:
        cmd += ["-s", str(size)]
    if depth:
        cmd += ["-k", str(depth)]
    out = run(cmd, timeout=warm + dur + 30)
    return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", out)}


def wrk(server, port, warm, dur, pipelined):
    url = "http://127.0.0.1:%d/" % port
    base = PIN_LOAD + ["wrk", "-t1", "-c50"]
    if pipelined:
        base += ["-s", os.path.join(BENCH, "echo/wrk_pipeline.lua")]
    run(base + ["-d", "1s", url], timeout=warm + 30)
    c0 = cpu_of(server.pid)
    out = run(base + ["-d", "%ds" % max(1, round(dur)), url],
              timeout=dur + 30)
    c1 = cpu_of(server.pid)
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if not m:
        raise RuntimeError("wrk: " + out[-200:])
    n = int(m.group(1))
    secs = float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)
    return {"rate": n / secs, "percpu": n / max(c1 - c0, 1e-3),
            "errors": 1 if "Non-2xx" in out or "Socket errors" in out else 0}


def timed(cmd, pin=True, timeout=300):
    """Run cmd under /usr/bin/time: (stdout, peak RSS bytes, wall s)."""
    t0 = time.time()
    with tempfile.NamedTemporaryFile("r") as tf:
        out = run(["/usr/bin/time", "-f", "%M", "-o", tf.name] +
                  (PIN_SERVER if pin else []) + cmd, timeout=timeout,
                  cwd=ROOT)
        rss = int(tf.read().split()[-1]) * 1024
    return out, rss, time.time() - t0


def last_number(out, index=1):
    return float(out.split()[index])


# ---------------------------------------------------------------------
# Rows: (key, title, unit, better, systems, measure(system) -> value)

class Bench:
    def __init__(self, quick):
        self.quick = quick
        self.warm, self.dur = (0.2, 0.6) if quick else (0.5, 2.0)
        self.servers = {}
        self.results = {}   # (row, system) -> [values]
        self.failed = {}    # (row, system) -> reason
        self.rows = []      # (key, title, unit, better, systems)
        self.spread = {}    # (system, workers) -> [(conns, srv, lg)]

    def add(self, key, title, unit, better, systems):
        self.rows.append((key, title, unit, better, systems))

    def record(self, key, system, value):
        self.results.setdefault((key, system), []).append(value)

    def fail(self, key, system, why):
        self.failed[(key, system)] = str(why)[:160]

    # -- network rows, against the long-running servers
    def net_round(self, only):
        modes = [
            ("echo1", "TCP echo, 1 connection", "echo", 1, None, None),
            ("echo50", "TCP echo, 50 connections", "echo", 50, None, None),
            ("bulk", "TCP bulk echo (4 conns, 64 KiB)", "echo", 4, 65536, 4),
            ("lines", "LineReceiver pipelined lines", "lines", 50, None,
             None),
        ]
        for key, title, mode, conns, size, depth in modes:
            if only and key not in only:
                continue
            for name in NET:
                srv = self.servers.get(name)
                rows = [key + "_rate", key + "_cpu"]
                if mode == "echo" and conns in (1, 50):
                    rows += [key + "_p50", key + "_p99"]
                if srv is None or srv.down:
                    for r in rows:
                        self.fail(r, name, srv.down if srv else "no server")
                    continue
                port = srv.ports.get("LINES" if mode == "lines" else "ECHO")
                try:
                    m = loadgen(srv, port, mode, conns, self.warm, self.dur,
                                size, depth)
                except Exception as e:  # noqa: BLE001 - reported per row
                    for r in rows:
                        self.fail(r, name, e)
                    continue
                scale = (size or 1) / 1e6 if key == "bulk" else 1
                self.record(key + "_rate", name, m["rate"] * scale)
                self.record(key + "_cpu", name,
                            m["msgs"] * scale / max(m["srv_cpu"], 1e-3))
                if key + "_p50" in rows and "p50_us" in m:
                    self.record(key + "_p50", name, m["p50_us"])
                    self.record(key + "_p99", name, m["p99_us"])
        for key, pipelined in (("http", False), ("httppipe", True)):
            if only and key not in only:
                continue
            for name in NET:
                srv = self.servers.get(name)
                if srv is None or srv.down:
                    self.fail(key + "_rate", name, "server down")
                    continue
                try:
                    m = wrk(srv, srv.ports["HTTP"], self.warm, self.dur,
                            pipelined)
                except Exception as e:  # noqa: BLE001
                    self.fail(key + "_rate", name, e)
                    self.fail(key + "_cpu", name, e)
                    continue
                self.record(key + "_rate", name, m["rate"])
                self.record(key + "_cpu", name, m["percpu"])

    def workers_round(self, only):
        """TCP echo, 50 connections, at 1 and 2 workers: spindle --workers
        N and Node's cluster, unpinned (see WORKERS_NOTE)."""
        if only and "workers" not in only:
            return
        warm, dur = (0.3, 1.0) if self.quick else (0.5, 2.0)
        conns = 50
        rate = {}
        for n in (1, 2):
            key = "workers%d" % n
            for name in ("spindle", "node"):
                srv = Workers(name, n)
                try:
                    if srv.down:
                        raise RuntimeError(srv.down)
                    lg = subprocess.Popen(
                        [os.path.join(OUT, "loadgen"), "-p", str(srv.port),
                         "-m", "echo", "-c", str(conns), "-w", str(warm),
                         "-d", str(dur), "-P",
                         ",".join(str(p) for p in srv.pids())],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        text=True)
                    # Every connection is open once the warm-up is half
                    # over; they stay open until loadgen exits.
                    time.sleep(warm / 2 + dur / 2)
                    spread = srv.connections()
                    out, err = lg.communicate(timeout=warm + dur + 30)
                    if lg.returncode != 0:
                        raise RuntimeError("loadgen: " + err[-200:])
                    m = {k: float(v)
                         for k, v in re.findall(r"(\w+)=([\d.]+)", out)}
                    got = "+".join(str(c) for c in spread.values())
                    self.spread.setdefault((name, n), []).append(
                        (got, m["srv_cpu"] / m["secs"],
                         m["lg_cpu"] / m["secs"]))
                    if min(spread.values()) == 0 or \
                            sum(spread.values()) != conns:
                        raise RuntimeError(
                            "connections per worker: %s of %d" % (got, conns))
                    self.record(key + "_rate", name, m["rate"])
                    self.record(key + "_cpu", name,
                                m["msgs"] / max(m["srv_cpu"], 1e-3))
                    rate[(name, n)] = m["rate"]
                except Exception as e:  # noqa: BLE001
                    self.fail(key + "_rate", name, e)
                    self.fail(key + "_cpu", name, e)
                finally:
                    srv.stop()
        for name in ("spindle", "node"):
            if (name, 1) in rate and (name, 2) in rate:
                self.record("workers_scale", name,
                            rate[(name, 2)] / rate[(name, 1)])
            else:
                self.fail("workers_scale", name, "a workers row failed")

    def idle_round(self, only):
        if only and "idle" not in only:
            return
        n = 10000
        for name in NET:
            srv = net_servers_one(name)
            if srv.down:
                self.fail("idle", name, srv.down)
                continue
            try:
                time.sleep(0.3)
                m = loadgen(srv, srv.ports["ECHO"], "idle", n, 1.5, 0)
                self.record("idle", name, m["per_conn"])
            except Exception as e:  # noqa: BLE001
                self.fail("idle", name, e)
            finally:
                srv.stop()

    def timers_round(self, only):
        sizes = [200000] if self.quick else [200000, 1000000]
        cmds = {
            "raw": [os.path.join(OUT, "timers_raw")],
            "spindle": [SPINDLE, os.path.join(BENCH, "timers/spindle.lua")],
            "luv": [LUA, os.path.join(BENCH, "timers/luv.lua")],
            "node": [NODE, os.path.join(BENCH, "timers/node.js")],
            "twisted": [PY, os.path.join(BENCH, "timers/twisted_peer.py")],
        }
        for n in sizes:
            key = "timers%dk" % (n // 1000)
            if only and key not in only:
                continue
            for name, cmd in cmds.items():
                try:
                    out, rss, _ = timed(cmd + [str(n)])
                    self.record(key + "_time", name, last_number(out))
                    self.record(key + "_rss", name, rss / 1e6)
                except Exception as e:  # noqa: BLE001
                    self.fail(key + "_time", name, e)
                    self.fail(key + "_rss", name, e)

    def deferred_round(self, only):
        if only and "deferred" not in only:
            return
        secs = "0.5" if self.quick else "1"
        cmds = {
            "spindle": [SPINDLE, os.path.join(BENCH, "deferred.lua"), secs],
            "plain": [SPINDLE, os.path.join(BENCH, "deferred_plain.lua"),
                      secs],
            "twisted": [PY, os.path.join(BENCH, "deferred_twisted.py"),
                        secs],
            "node": [NODE, os.path.join(BENCH, "deferred_node.js"), secs],
        }
        for name, cmd in cmds.items():
            try:
                out, _, _ = timed(cmd)
                self.record("deferred", name, last_number(out))
            except Exception as e:  # noqa: BLE001
                self.fail("deferred", name, e)

    def threads_round(self, only):
        if only and "threads" not in only:
            return
        secs = "0.5" if self.quick else "2"
        cmds = {
            "raw": [os.path.join(OUT, "threads_raw"), secs],
            "spindle": [SPINDLE, os.path.join(BENCH, "threads/spindle.lua"),
                        secs],
            "luv": [LUA, os.path.join(BENCH, "threads/luv.lua"), secs],
            "node": [NODE, os.path.join(BENCH, "threads/node.js"), secs],
            "twisted": [PY, os.path.join(BENCH, "threads/twisted_peer.py"),
                        secs],
        }
        for name, cmd in cmds.items():
            try:
                out, _, _ = timed(cmd, pin=False)
                self.record("threads", name, last_number(out))
            except Exception as e:  # noqa: BLE001
                self.fail("threads", name, e)

    def tls_round(self, only):
        if only and "tls" not in only:
            return
        key, cert = tls_cert()
        servers = {
            "spindle": lambda: Server("spindle", [
                SPINDLE, os.path.join(BENCH, "tls/spindle_server.lua"), key,
                cert], 1),
            "openssl": lambda: openssl_server(key, cert),
        }
        secs = 1 if self.quick else 3
        for name, start in servers.items():
            srv = start()
            if srv.down:
                self.fail("tls_cpu", name, srv.down)
                self.fail("tls_rate", name, srv.down)
                continue
            try:
                port = srv.ports["TLS"]
                clients = 3
                c0, t0 = cpu_of(srv.pid), time.time()
                procs = [subprocess.Popen(
                    PIN_LOAD + ["openssl", "s_time", "-connect",
                                "127.0.0.1:%d" % port, "-new", "-time",
                                str(secs)], stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL, text=True)
                    for _ in range(clients)]
                total = 0
                for p in procs:
                    out = p.communicate(timeout=secs + 30)[0]
                    m = re.search(r"(\d+) connections in [\d.]+s", out)
                    if not m:
                        raise RuntimeError("s_time: " + out[-200:])
                    total += int(m.group(1))
                c1, t1 = cpu_of(srv.pid), time.time()
                self.record("tls_rate", name, total / (t1 - t0))
                self.record("tls_cpu", name, total / max(c1 - c0, 1e-3))
            except Exception as e:  # noqa: BLE001
                self.fail("tls_cpu", name, e)
                self.fail("tls_rate", name, e)
            finally:
                srv.stop()

    def startup_round(self, only):
        if only and "startup" not in only:
            return
        cmds = {
            "raw": [os.path.join(OUT, "timers_raw"), "0"],
            "spindle": [SPINDLE, "-e",
                        "require('spindle.reactor').callLater(0, "
                        "require('spindle.reactor').stop) "
                        "require('spindle.reactor').run()"],
            "luv": [LUA, "-e", "local uv = require('luv') uv.run()"],
            "node": [NODE, "-e", "setTimeout(() => {}, 0)"],
            "twisted": [PY, "-c", "from twisted.internet import reactor; "
                        "reactor.callLater(0, reactor.stop); reactor.run()"],
        }
        n = 5 if self.quick else 15
        for name, cmd in cmds.items():
            try:
                walls = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    run(PIN_SERVER + cmd, cwd=ROOT)
                    walls.append(time.perf_counter() - t0)
                self.record("startup", name, statistics.median(walls) * 1e3)
            except Exception as e:  # noqa: BLE001
                self.fail("startup", name, e)


def net_servers_one(name):
    """A fresh server of bench/echo (for the idle-memory row)."""
    cmds = {
        "raw": [os.path.join(OUT, "raw_server")],
        "spindle": [SPINDLE, os.path.join(BENCH, "echo/spindle_server.lua")],
        "luv": [LUA, os.path.join(BENCH, "echo/luv_server.lua")],
        "node": [NODE, os.path.join(BENCH, "echo/node_server.js")],
        "twisted": [PY, os.path.join(BENCH, "echo/twisted_server.py")],
    }
    return Server(name, cmds[name], 3)


def tls_cert():
    key = os.path.join(OUT, "tls.key")
    cert = os.path.join(OUT, "tls.crt")
    if not os.path.exists(cert):
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
             "-out", cert, "-days", "30", "-subj", "/CN=localhost"])
    return key, cert


def openssl_server(key, cert):
    """openssl s_server on a free port (found by binding port 0 first)."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    srv = Server.__new__(Server)
    srv.name, srv.ports, srv.down = "openssl", {"TLS": port}, None
    srv.proc = subprocess.Popen(
        PIN_SERVER + ["openssl", "s_server", "-accept", str(port), "-key",
                      key, "-cert", cert, "-naccept", "1000000", "-quiet"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    for _ in range(50):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return srv
        except OSError:
            time.sleep(0.1)
    srv.down = "openssl s_server did not listen"
    srv.stop()
    return srv


# ---------------------------------------------------------------------
# The table

ROWS = [
    # key, title, unit, better (hi/lo)
    ("echo1_rate", "TCP echo, 1 conn", "msgs/s", "hi"),
    ("echo1_cpu", "TCP echo, 1 conn, per server CPU-s", "msgs/CPU-s", "hi"),
    ("echo1_p50", "TCP echo, 1 conn, p50 round trip", "us", "lo"),
    ("echo1_p99", "TCP echo, 1 conn, p99 round trip", "us", "lo"),
    ("echo50_rate", "TCP echo, 50 conns", "msgs/s", "hi"),
    ("echo50_cpu", "TCP echo, 50 conns, per server CPU-s", "msgs/CPU-s",
     "hi"),
    ("echo50_p50", "TCP echo, 50 conns, p50 round trip", "us", "lo"),
    ("echo50_p99", "TCP echo, 50 conns, p99 round trip", "us", "lo"),
    ("bulk_rate", "TCP bulk echo", "MB/s", "hi"),
    ("bulk_cpu", "TCP bulk echo, per server CPU-s", "MB/CPU-s", "hi"),
    ("lines_rate", "pipelined lines (LineReceiver)", "lines/s", "hi"),
    ("lines_cpu", "pipelined lines, per server CPU-s", "lines/CPU-s", "hi"),
    ("http_rate", "HTTP-shaped keep-alive (wrk)", "req/s", "hi"),
    ("http_cpu", "HTTP-shaped keep-alive, per server CPU-s", "req/CPU-s",
     "hi"),
    ("httppipe_rate", "HTTP-shaped pipelined x16 (wrk)", "req/s", "hi"),
    ("httppipe_cpu", "HTTP-shaped pipelined, per server CPU-s", "req/CPU-s",
     "hi"),
    ("workers1_rate", "TCP echo, 50 conns, 1 worker (unpinned)", "msgs/s",
     "hi"),
    ("workers1_cpu", "TCP echo, 1 worker, per server CPU-s (all procs)",
     "msgs/CPU-s", "hi"),
    ("workers2_rate", "TCP echo, 50 conns, 2 workers (unpinned)", "msgs/s",
     "hi"),
    ("workers2_cpu", "TCP echo, 2 workers, per server CPU-s (all procs)",
     "msgs/CPU-s", "hi"),
    ("workers_scale", "TCP echo, 2 workers / 1 worker, msgs/s", "x", "hi"),
    ("idle", "memory per idle TCP connection (10,000)", "bytes", "lo"),
    ("timers200k_time", "200k timers, time", "s", "lo"),
    ("timers200k_rss", "200k timers, peak RSS", "MB", "lo"),
    ("timers1000k_time", "1M timers, time", "s", "lo"),
    ("timers1000k_rss", "1M timers, peak RSS", "MB", "lo"),
    ("deferred", "Deferred chains (10 callbacks)", "chains/s", "hi"),
    ("threads", "thread pool round trips", "calls/s", "hi"),
    ("tls_rate", "TLS handshakes (3 s_time clients)", "hs/s", "hi"),
    ("tls_cpu", "TLS handshakes per server CPU-s", "hs/CPU-s", "hi"),
    ("startup", "start-up, run an empty reactor", "ms", "lo"),
]
# What the table cannot say about a row group, written under it.
WORKERS_NOTE = (
    "workers rows (`spindle --workers N` beside Node's cluster module at N "
    "workers; 1-worker and 2-worker rows run alike): not pinned, since two "
    "workers and the load generator cannot have a core each on two cores: "
    "the server processes and the load generator (bench/echo/loadgen.c, "
    "one thread, 50 connections, 64-byte ping-pong) all share both cores, "
    "scheduled by the kernel. So these rows show what a second worker "
    "gives when the clients compete for the same two cores, not how "
    "either system scales with a core per worker; the CPU-seconds per "
    "second after this note say how busy the cores were. Per server CPU-s "
    "sums the user "
    "and system time (/proc/PID/stat over the measured window) of every "
    "server process: spindle's supervisor and its workers, Node's primary "
    "and its workers. spindle's workers each accept on their own "
    "SO_REUSEPORT socket (the kernel spreads connections by hash); Node's "
    "cluster uses its Linux default, round-robin: the primary accepts "
    "every connection and passes it to a worker. Each measurement counts "
    "the established connections each worker holds (/proc/net/tcp against "
    "its descriptors) and fails if a worker has none.")

SYSTEM_ORDER = ["spindle", "raw", "luv", "node", "twisted", "plain",
                "openssl"]


def spread_text(b):
    """The connections each worker held and the CPU used, per workers
    measurement: one clause per system and worker count."""
    def order(item):
        (name, n), _ = item
        return n, SYSTEM_ORDER.index(name)
    out = []
    for (name, n), runs in sorted(b.spread.items(), key=order):
        def span(vals):
            lo, hi = "%.2f" % min(vals), "%.2f" % max(vals)
            return lo if lo == hi else lo + "-" + hi
        out.append("%s, %d worker%s: %s connections; servers %s, load "
                   "generator %s CPU-s per s" % (
                       LABEL[name], n, "s" if n > 1 else "",
                       ", ".join(r[0] for r in runs),
                       span([r[1] for r in runs]),
                       span([r[2] for r in runs])))
    return "; ".join(out)


def fmt(v):
    if v >= 100:
        return "%.0f" % v
    if v >= 10:
        return "%.1f" % v
    return "%.2f" % v


def ratio(spv, v, better):
    if not spv or not v:
        return None
    return spv / v if better == "hi" else v / spv


def table(b):
    """Rows of the table, as lists of cells, and the chart's data."""
    lines, chart = [], []
    for key, title, unit, better in ROWS:
        systems = sorted({s for (k, s) in list(b.results) + list(b.failed)
                          if k == key}, key=SYSTEM_ORDER.index)
        if not systems:
            continue
        sp = b.results.get((key, "spindle"))
        spmed = statistics.median(sp) if sp else None
        for s in systems:
            vals = b.results.get((key, s))
            if not vals:
                lines.append([title, LABEL[s], "n/a", "", "", unit,
                              b.failed.get((key, s), "no result")])
                continue
            med = statistics.median(vals)
            r = ratio(spmed, med, better) if s != "spindle" else None
            lines.append([title, LABEL[s], fmt(med), fmt(min(vals)),
                          fmt(max(vals)), unit,
                          "%.2fx" % r if r is not None else ""])
            if r is not None:
                chart.append((title, s, r))
    return lines, chart


def versions():
    def first(cmd):
        try:
            return run(cmd).strip().splitlines()[0]
        except Exception:  # noqa: BLE001
            return "not available"
    return {
        "spindle": first([SPINDLE, "-v"]),
        "libuv (raw C)": first(["pkg-config", "--modversion", "libuv"]),
        "luv": first(["dpkg-query", "-W", "-f", "${Version}", "lua-luv"]) +
        " on " + first([LUA, "-v"]),
        "Node.js": first([NODE, "--version"]),
        "Twisted": first([PY, "-c", "import twisted, sys; print("
                          "twisted.__version__, 'on Python', "
                          "sys.version.split()[0])"]),
        "OpenSSL": first(["openssl", "version"]),
        "wrk": first(["dpkg-query", "-W", "-f", "${Version}", "wrk"]),
    }


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def chart_png(chart, path):
    """One bar per (row, peer): spindle's ratio to that peer, log scale."""
    if not shutil.which("gnuplot") or not chart:
        return False
    peers = [p for p in SYSTEM_ORDER[1:] if any(c[1] == p for c in chart)]
    titles = []
    for t, _, _ in chart:
        if t not in titles:
            titles.append(t)
    # One data file per peer: ratio, bar centre, half-height; the bars of
    # a row share its height among the peers that row has.
    rows = {t: [c for c in chart if c[0] == t] for t in titles}
    plots = []
    for p in peers:
        dat = os.path.join(OUT, "chart.%s.dat" % p)
        with open(dat, "w") as f:
            for y, t in enumerate(titles):
                present = [c[1] for c in rows[t]]
                if p not in present:
                    continue
                k, n = present.index(p), len(present)
                h = min(0.8 / n, 0.3)
                centre = y - h * n / 2 + h * (k + 0.5)
                ratio_ = [c[2] for c in rows[t] if c[1] == p][0]
                f.write("%.4f %.3f %.3f\n" % (ratio_, centre, h / 2))
        plots.append("'%s' using (1):2:(1):1:($2-$3):($2+$3) "
                     "with boxxyerror title '%s'" % (dat, LABEL[p]))
    script = """
set terminal pngcairo size 1400,%d font ",10" noenhanced
set output '%s'
set title "spindle relative to each peer (above 1 = spindle better; log scale)"
set style fill solid 0.8 border -1
set logscale x 2
set xrange [0.05:32]
set grid xtics
set key outside right top
set arrow from 1, graph 0 to 1, graph 1 nohead lw 2 lc rgb "black"
""" % (180 + 26 * len(titles), path)
    script += "set ytics (%s)\n" % ", ".join(
        '"%s" %d' % (t, i) for i, t in enumerate(titles))
    script += "set yrange [%f:-0.6] reverse\n" % (len(titles) - 0.4)
    script += "plot " + ", \\\n  ".join(plots) + "\n"
    with open(os.path.join(OUT, "chart.gp"), "w") as f:
        f.write(script)
    try:
        run(["gnuplot", os.path.join(OUT, "chart.gp")])
        return True
    except Exception as e:  # noqa: BLE001
        log("chart: " + str(e))
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--only", default="")
    ap.add_argument("--results", default=os.path.join(BENCH, "RESULTS.md"))
    a = ap.parse_args()
    rounds = a.rounds or (1 if a.quick else 3)
    only = set(x for x in a.only.split(",") if x)
    os.makedirs(OUT, exist_ok=True)
    if not os.access(SPINDLE, os.X_OK):
        sys.exit("bench: %s not built (run make)" % SPINDLE)
    cc(os.path.join(BENCH, "echo/loadgen.c"), os.path.join(OUT, "loadgen"),
       libuv=False)
    cc(os.path.join(BENCH, "echo/raw_server.c"),
       os.path.join(OUT, "raw_server"))
    cc(os.path.join(BENCH, "timers/raw.c"), os.path.join(OUT, "timers_raw"))
    cc(os.path.join(BENCH, "threads/raw.c"), os.path.join(OUT, "threads_raw"))

    b = Bench(a.quick)
    load0 = open("/proc/loadavg").read().split()[:3]
    started = time.time()
    net = not only or only & {"echo1", "echo50", "bulk", "lines", "http",
                              "httppipe"}
    if net:
        b.servers = net_servers()
    try:
        for r in range(rounds):
            log("bench: round %d of %d" % (r + 1, rounds))
            if net:
                b.net_round(only)
            b.workers_round(only)
            b.idle_round(only)
            b.threads_round(only)
            b.deferred_round(only)
            b.timers_round(only)
            b.tls_round(only)
            b.startup_round(only)
    finally:
        for s in b.servers.values():
            s.stop()
    load1 = open("/proc/loadavg").read().split()[:3]
    lines, chart = table(b)
    head = ["benchmark", "system", "median", "min", "max", "unit",
            "spindle vs it"]
    widths = [max(len(str(x[i])) for x in lines + [head])
              for i in range(len(head))]
    widths[6] = min(widths[6], 60)
    for row in [head] + lines:
        print("  ".join(str(c)[:widths[i]].ljust(widths[i])
                        for i, c in enumerate(row)).rstrip())
    if b.spread:
        print("\nworkers rows: " + spread_text(b))
    png = os.path.join(BENCH, "results.png")
    have_png = chart_png(chart, png)
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump({"%s|%s" % k: v for k, v in b.results.items()}, f)
    write_md(a.results, b, lines, rounds, load0, load1, started, have_png)
    print("\nwritten: %s%s (whole run %d s)" % (
        os.path.relpath(a.results, ROOT),
        " and bench/results.png" if have_png else "",
        time.time() - started))


def targets(b):
    """The issue's targets, checked against this run's medians."""
    def med(k, s):
        v = b.results.get((k, s))
        return statistics.median(v) if v else None
    out = []
    sp, luv = med("threads", "spindle"), med("threads", "luv")
    if sp and luv:
        out.append(("thread round trips at least luv's", "%.2fx luv" % (
            sp / luv), sp >= luv))
    sp, raw = med("idle", "spindle"), med("idle", "raw")
    if sp and raw:
        out.append(("idle connection memory at most 2x raw C",
                    "%.2fx raw C (%.0f vs %.0f bytes)" % (sp / raw, sp, raw),
                    sp <= 2 * raw))
    sp, raw = med("lines_cpu", "spindle"), med("lines_cpu", "raw")
    if sp and raw:
        out.append(("LineReceiver pipelined at least 0.6x raw C per CPU-s",
                    "%.2fx raw C" % (sp / raw), sp >= 0.6 * raw))
    return out


def write_md(path, b, lines, rounds, load0, load1, started, have_png):
    v = versions()
    md = ["# Benchmark results", "",
          "Written by `make bench` (bench/run.py); do not edit by hand: "
          "run it again.", "",
          "- date: %s" % time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
          "- CPU: %s, %d cores" % (cpu_model(), os.cpu_count() or 0),
          "- rounds: %d%s; whole run %d s" % (
              rounds, " (quick)" if b.quick else "", time.time() - started),
          "- load average before: %s, after: %s (other processes share "
          "the cores; read per-CPU-second figures and ratios, not absolute "
          "rates)" % (" ".join(load0), " ".join(load1)),
          "- pinning: servers %s, load generators %s (workers rows: "
          "unpinned)" % (" ".join(PIN_SERVER) or "unpinned",
                         " ".join(PIN_LOAD) or "unpinned"),
          "- versions: " + "; ".join("%s %s" % kv for kv in v.items()),
          "", "The last column is spindle's ratio to that system's median, "
          "oriented so that above 1.00x means spindle is better (faster, "
          "less memory, lower latency).", ""]
    if have_png:
        md += ["![spindle relative to each peer](results.png)", ""]
    md += ["## Targets", ""]
    for what, got, ok in targets(b):
        md.append("- %s: %s: **%s**" % (what, got, "met" if ok else
                                         "missed"))
    md += ["", "## All rows", "",
           "| benchmark | system | median | min | max | unit | spindle vs "
           "it |", "|---|---|---:|---:|---:|---|---:|"]
    for row in lines:
        md.append("| " + " | ".join(str(c).replace("|", "/")
                                      for c in row) + " |")
    if any(k.startswith("workers") for k, _ in list(b.results) +
           list(b.failed)):
        md += ["", "Note on the " + WORKERS_NOTE, ""]
        md += ["Connections per worker (each round), and the CPU-seconds "
               "per second used by all server processes and by the load "
               "generator, in this run: " + spread_text(b) + "."] \
            if b.spread else []
    notes = os.path.join(BENCH, "NOTES.md")
    if os.path.exists(notes):
        md += ["", open(notes).read().rstrip()]
    with open(path, "w") as f:
        f.write("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
