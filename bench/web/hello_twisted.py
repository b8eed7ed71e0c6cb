# bench/web/hello_twisted.py: Twisted web's hello world for
# bench/web/run.sh (epoll reactor).
#   python3 bench/web/hello_twisted.py PORT
import sys
from twisted.internet import epollreactor
epollreactor.install()
from twisted.internet import reactor  # noqa: E402
from twisted.web import resource, server  # noqa: E402


class Hello(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"hello world"


site = server.Site(Hello())
site.displayTracebacks = False
reactor.listenTCP(int(sys.argv[1]), site, backlog=1024, interface="127.0.0.1")
print("listening", flush=True)
reactor.run()
