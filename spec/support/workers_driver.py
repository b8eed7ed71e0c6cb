"""spec/support/workers_driver.py: drives spindle processes for
spec/workers_spec.lua, from outside, as an operator and a client would:
start them, send requests over loopback, signal them, watch their logs.

    python3 workers_driver.py SCENARIO SPINDLE APP

APP is spec/support/workers_app.lua. Each scenario prints `key=value`
lines that the spec checks, and the log of the processes after `log:`.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

SPINDLE, APP = sys.argv[2], sys.argv[3]
TMP = tempfile.mkdtemp(prefix="spindle-workers-")
LOGS = []
PROCS = []  # killed at the end if still running (a failed scenario)


def out(key, value):
    print("%s=%s" % (key, value), flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Proc:
    """A process whose stderr (and stdout) go to a log file."""

    def __init__(self, args, name, **popen):
        self.path = os.path.join(TMP, name + ".log")
        self.log = open(self.path, "wb")
        LOGS.append(self.path)
        PROCS.append(self)
        self.p = subprocess.Popen(args, stdout=self.log, stderr=self.log,
                                  stdin=subprocess.DEVNULL, **popen)

    def text(self):
        with open(self.path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_for(self, pattern, count=1, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = re.findall(pattern, self.text())
            if len(found) >= count:
                return found
            if self.p.poll() is not None:
                break
            time.sleep(0.02)
        raise SystemExit("never saw %r x%d in:\n%s" % (pattern, count,
                                                       self.text()))

    def signal(self, signum):
        self.p.send_signal(signum)

    def wait(self, timeout=20):
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            return "timeout"


def request(port, line="hi", timeout=10):
    """One request: connect, send a line, read the answer to EOF."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(line.encode() + b"\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    m = re.match(rb"pid (\d+) worker (\S+)\n$", data)
    if not m:
        raise IOError("bad answer %r" % data)
    return int(m.group(1))


def supervisor(port, *extra):
    args = [SPINDLE, "--workers", "2"] + list(extra) + [APP, str(port)]
    return Proc(args, "supervisor")


def ready_pids(sup, count):
    found = sup.wait_for(r"worker (\d) ready \(pid (\d+)", count)
    return [int(pid) for _, pid in found]


def scenario_spread():
    port = free_port()
    sup = supervisor(port)
    ready_pids(sup, 2)
    pids = set(request(port) for _ in range(40))
    out("distinct_pids", len(pids))
    sup.signal(signal.SIGTERM)
    out("status", sup.wait())


def scenario_replace():
    port = free_port()
    sup = supervisor(port)
    pids = ready_pids(sup, 2)
    victim = pids[0]
    os.kill(victim, signal.SIGKILL)
    sup.wait_for(r"pid %d\) was killed by signal 9; restarting" % victim)
    now = ready_pids(sup, 3)
    answers = set(request(port) for _ in range(40))
    out("victim_answered", victim in answers)
    out("replacement_answered", now[2] in answers)
    out("distinct_pids", len(answers))
    sup.signal(signal.SIGTERM)
    out("status", sup.wait())


def gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] in ("Z", "X")
    except OSError:
        return True


def scenario_orphan():
    port = free_port()
    sup = supervisor(port)
    pids = ready_pids(sup, 2)
    sup.p.kill()
    sup.wait()
    deadline = time.time() + 5
    while time.time() < deadline and not all(gone(p) for p in pids):
        time.sleep(0.05)
    out("workers_gone", all(gone(p) for p in pids))


def scenario_late():
    port = free_port()
    sup = Proc([SPINDLE, "--workers", "2", APP, "late:%d" % port],
               "supervisor")
    sup.wait_for("late listening", 2)
    pids = set(request(port) for _ in range(40))
    out("distinct_pids", len(pids))
    sup.signal(signal.SIGTERM)
    out("status", sup.wait())


def hello(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"hi\n")
    data = s.makefile("rb").read()
    s.close()
    m = re.match(rb"hello from worker (\d) \(pid (\d+)\)\r?\n$", data)
    if not m:
        raise IOError("bad answer %r" % data)
    return int(m.group(2))


def scenario_readme():
    """The README's first example: scripts/hello_server.lua under
    --workers 2, a reload, a drain."""
    port = free_port()
    hello_app = os.path.join(os.path.dirname(APP), "..", "..", "scripts",
                             "hello_server.lua")
    sup = Proc([SPINDLE, "--workers", "2", hello_app,
                "tcp:%d:interface=127.0.0.1" % port], "supervisor")
    sup.wait_for(r"worker \d \(pid \d+\) listening on tcp:", 2)
    out("distinct_pids", len(set(hello(port) for _ in range(40))))
    sup.signal(signal.SIGHUP)
    sup.wait_for(r"generation 1\) exited with status 0", 2)
    out("reloaded_pids", len(set(hello(port) for _ in range(40))))
    sup.signal(signal.SIGTERM)
    out("status", sup.wait())
    out("drained", len(re.findall(r"listening on", sup.text())) == 4 and
        len(re.findall(r"\) draining", sup.text())) == 4)


def scenario_tls():
    """listenSSL (an ssl: endpoint) under --workers: the certificate and
    key come in $CERT and $KEY."""
    import ssl
    port = free_port()
    where = "ssl:%d:interface=127.0.0.1:privateKey=%s:certKey=%s" % (
        port, os.environ["KEY"], os.environ["CERT"])
    sup = Proc([SPINDLE, "--workers", "2", APP, where], "supervisor")
    ready_pids(sup, 2)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    pids = set()
    for _ in range(30):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            with ctx.wrap_socket(s) as t:
                t.sendall(b"hi\n")
                data = t.makefile("rb").read()
        pids.add(re.match(rb"pid (\d+)", data).group(1))
    out("distinct_pids", len(pids))
    sup.signal(signal.SIGTERM)
    out("status", sup.wait())


def slow_request(port, result):
    try:
        result["pid"] = request(port, "slow 1")
    except Exception as e:  # noqa: BLE001 - reported to the spec
        result["error"] = repr(e)


def scenario_drain():
    port = free_port()
    sup = supervisor(port, "--drain", "5")
    ready_pids(sup, 2)
    result = {}
    t = threading.Thread(target=slow_request, args=(port, result))
    t.start()
    time.sleep(0.3)
    start = time.time()
    sup.signal(signal.SIGTERM)
    sup.wait_for(r"SIGTERM: stopping the workers")
    time.sleep(0.2)
    try:
        request(port, timeout=2)
        out("refused", False)
    except OSError:
        out("refused", True)
    t.join(10)
    out("slow_answered", "pid" in result)
    status = sup.wait()
    out("status", status)
    out("within_drain", time.time() - start < 5)


def scenario_single():
    port = free_port()
    app = Proc([SPINDLE, "--drain", "5", APP, str(port)], "single")
    app.wait_for("listening")
    result = {}
    t = threading.Thread(target=slow_request, args=(port, result))
    t.start()
    time.sleep(0.3)
    app.signal(signal.SIGTERM)
    app.wait_for("Draining: stopped accepting on 1 port")
    try:
        request(port, timeout=2)
        out("refused", False)
    except OSError:
        out("refused", True)
    t.join(10)
    out("slow_answered", "pid" in result)
    out("status", app.wait())
    # A second signal during the drain forces the exit.
    app = Proc([SPINDLE, APP, str(port)], "second")
    app.wait_for("listening")
    t = threading.Thread(target=slow_request, args=(port, {}))
    t.start()
    time.sleep(0.3)
    app.signal(signal.SIGTERM)
    app.wait_for("Draining")
    app.signal(signal.SIGTERM)
    out("forced_status", app.wait())
    t.join(10)


def hammer(port, state):
    while not state["stop"]:
        try:
            pid = request(port)
            state["pids"].add(pid)
            state["ok"] += 1
        except Exception as e:  # noqa: BLE001 - counted for the spec
            state["failed"] += 1
            state["errors"].append(repr(e))


def vmrss(pid):
    """Resident memory of pid, in KiB."""
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def scenario_reload():
    port = free_port()
    sup = supervisor(port)
    ready_pids(sup, 2)
    state = {"stop": False, "ok": 0, "failed": 0, "pids": set(),
             "errors": []}
    t = threading.Thread(target=hammer, args=(port, state))
    t.start()
    while state["ok"] < 300 and t.is_alive():
        time.sleep(0.01)
    sup.signal(signal.SIGHUP)
    sup.wait_for(r"generation 2 ready; draining generation 1")
    sup.wait_for(r"generation 1\) exited with status 0", 2)
    before = state["ok"]
    while state["ok"] < max(2000, before + 300) and t.is_alive():
        time.sleep(0.01)
    state["stop"] = True
    t.join(10)
    out("requests", state["ok"] + state["failed"])
    out("failed", state["failed"])
    out("errors", state["errors"][:3])
    out("distinct_pids", len(state["pids"]))
    # 20 more reloads, each waited for to the end (both workers of the
    # old generation exited): the supervisor's descriptors and resident
    # memory (KiB) before and after, for the spec to compare.
    out("fds_before", len(os.listdir("/proc/%d/fd" % sup.p.pid)))
    out("rss_before", vmrss(sup.p.pid))
    for gen in range(3, 23):
        sup.signal(signal.SIGHUP)
        sup.wait_for(r"generation %d\) exited with status 0" % (gen - 1), 2)
    out("reloads", sup.text().count("draining generation") - 1)
    out("fds_after", len(os.listdir("/proc/%d/fd" % sup.p.pid)))
    out("rss_after", vmrss(sup.p.pid))
    sup.signal(signal.SIGTERM)
    out("status", sup.wait())


def scenario_crash():
    sup = Proc([SPINDLE, "--workers", "2", APP, "crash"], "supervisor")
    out("status", sup.wait(20))
    out("gave_up", "giving up" in sup.text())


def scenario_unix():
    path = os.path.join(TMP, "app.sock")
    sup = Proc([SPINDLE, "--workers", "2", APP, "unix:" + path],
               "supervisor")
    ready_pids(sup, 2)
    pids, answered = set(), 0
    for _ in range(40):
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.sendall(b"hi\n")
        data = b""
        while True:
            chunk = s.recv(100)
            if not chunk:
                break
            data += chunk
        s.close()
        if re.match(rb"pid \d+ worker [12]\n$", data):
            pids.add(data)
            answered += 1
    # One socket that both workers accept on: which one wins each
    # connection is up to the kernel, so only the answers are counted.
    out("answered", answered)
    sup.signal(signal.SIGTERM)
    out("status", sup.wait())
    out("path_removed", not os.path.exists(path))


def socket_activate(port, args):
    """What systemd does for a .socket unit: listen, then start the
    service with the socket as fd 3, LISTEN_FDS=1 and LISTEN_PID its pid
    (systemd-socket-activate when installed, else the same by hand)."""
    if shutil.which("systemd-socket-activate") and \
            not os.environ.get("SPINDLE_NO_SSA"):
        app = Proc(["systemd-socket-activate", "-l", "127.0.0.1:%d" % port]
                   + args, "systemd")
        app.wait_for("Listening on")
        return app
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(16)
    app = Proc(["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"']
               + args, "systemd", pass_fds=(3,),
               preexec_fn=lambda: os.dup2(sock.fileno(), 3))
    sock.close()
    return app


def scenario_systemd():
    port = free_port()
    app = socket_activate(port, [SPINDLE, APP, "systemd:domain=INET:index=0"])
    # systemd-socket-activate starts the program on the first connection,
    # which waits in the socket's queue meanwhile.
    out("answered", request(port) == app.p.pid)
    app.signal(signal.SIGTERM)
    out("status", app.wait())


def haproxy_config(front, p1, p2):
    """The README's configuration (the block after its haproxy-config
    marker), on these ports instead of 8080, 8081 and 8082."""
    readme = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          "..", "..", "README.md")
    with open(readme) as f:
        text = f.read()
    block = text.split("<!-- haproxy-config:", 1)[1].split("```\n", 2)[1]
    for old, new in (("8080", front), ("8081", p1), ("8082", p2)):
        block = block.replace(":" + old, ":%d" % new)
    return block


def scenario_haproxy():
    front, p1, p2 = free_port(), free_port(), free_port()
    cfg = os.path.join(TMP, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write(haproxy_config(front, p1, p2))
    s1 = Proc([SPINDLE, APP, str(p1)], "s1")
    s2 = Proc([SPINDLE, APP, str(p2)], "s2")
    s1.wait_for("listening")
    s2.wait_for("listening")
    hap = Proc(["haproxy", "-db", "-f", cfg], "haproxy")
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            request(front)
            break
        except OSError:
            time.sleep(0.05)
    state = {"stop": False, "ok": 0, "failed": 0, "pids": set(),
             "errors": []}
    t = threading.Thread(target=hammer, args=(front, state))
    t.start()
    while state["ok"] < 300 and t.is_alive():
        time.sleep(0.01)
    out("both_served", len(state["pids"]) == 2)
    s1.signal(signal.SIGTERM)
    out("s1_status", s1.wait())
    after = state["ok"]
    state["pids"] = set()
    while state["ok"] < after + 300 and t.is_alive():
        time.sleep(0.01)
    state["stop"] = True
    t.join(10)
    out("after_stop_pids", sorted(state["pids"]) == [s2.p.pid])
    out("requests", state["ok"] + state["failed"])
    out("failed", state["failed"])
    out("errors", state["errors"][:3])
    hap.signal(signal.SIGTERM)
    hap.wait()
    s2.signal(signal.SIGTERM)
    out("s2_status", s2.wait())


def main():
    try:
        globals()["scenario_" + sys.argv[1]]()
    finally:
        for proc in PROCS:
            if proc.p.poll() is None:
                proc.p.kill()
                proc.p.wait()
        print("log:")
        for path in LOGS:
            with open(path, "rb") as f:
                sys.stdout.write("== %s\n%s" % (os.path.basename(path),
                                 f.read().decode("utf-8", "replace")))
        shutil.rmtree(TMP, ignore_errors=True)


main()
