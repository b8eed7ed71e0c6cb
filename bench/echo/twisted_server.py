"""twisted_server.py: the Twisted peer of bench/echo, run with python3.

Listens on three ports of 127.0.0.1 picked by the kernel and prints them as
"ECHO <port>", "LINES <port>" and "HTTP <port>": an echo Protocol, a
LineReceiver answering each line with sendLine, and an HTTP-shaped Protocol
answering each request (up to "\\r\\n\\r\\n") with a fixed 200 response: the
same shapes as spindle_server.lua. Runs until SIGTERM or SIGINT.
"""
import sys

from twisted.internet import protocol, reactor
from twisted.protocols import basic

RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 13\r\n\r\nHello, world!")


class Echo(protocol.Protocol):
    def connectionMade(self):
        self.transport.setTcpNoDelay(True)

    def dataReceived(self, data):
        self.transport.write(data)


class Line(basic.LineReceiver):
    def connectionMade(self):
        self.transport.setTcpNoDelay(True)

    def lineReceived(self, line):
        self.sendLine(line)


class Http(protocol.Protocol):
    tail = b""

    def connectionMade(self):
        self.transport.setTcpNoDelay(True)

    def dataReceived(self, data):
        data = self.tail + data
        n = data.count(b"\r\n\r\n")
        last = data.rfind(b"\r\n\r\n")
        rest = data[last + 4:] if last >= 0 else data
        self.tail = rest[-3:]
        if n:
            self.transport.write(RESPONSE * n)


def listen(cls):
    f = protocol.Factory()
    f.protocol = cls
    return reactor.listenTCP(0, f, 1024, "127.0.0.1").getHost().port


print("ECHO %d" % listen(Echo))
print("LINES %d" % listen(Line))
print("HTTP %d" % listen(Http))
sys.stdout.flush()
reactor.run()
