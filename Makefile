# spindle: one binary embedding Lua 5.4 on a libuv reactor.
#
#   make          build build/spindle (installs Debian packages first as root)
#   make run      build and run the seed's Deferred examples
#   make test     tools self-test, busted suite under build/spindle, then
#                 under the ASan+UBSan build
#   make test-asan   the sanitizer run alone
#   make lint     clang-format (runtime/) and luacheck (.luacheckrc): any
#                 difference or warning fails; .ci/run runs it before test
#   make bench    every benchmark for spindle and each peer, 3 rounds:
#                 one table, bench/RESULTS.md and bench/results.png
#   make bench-quick the same, one short round (about a minute)
#   make bench-net   TCP echo and lines alone (bench/echo/run.sh)
#   make install     build/spindle, its man page and examples under
#                    $(DESTDIR)$(PREFIX) (PREFIX=/usr/local); make uninstall
#   make deb         a Debian package (debhelper) in build/
#   make doc         the API reference in doc/api/ (LDoc)

PKGS     := lua5.4 libuv libssl libcrypto libedit
# What building needs (make install installs only these), then the test
# peers and tools that make test adds.
BUILD_PKGS := build-essential pkg-config liblua5.4-dev libuv1-dev \
              libssl-dev libedit-dev
DEB_PKGS := $(BUILD_PKGS) lua5.4 lua-busted socat netcat-openbsd \
            python3 python3-twisted lua-luv valgrind openssl \
            lua-cjson lua-lpeg lua-check clang-format

CC      ?= cc
OPT     ?= -O2
CFLAGS  += -std=c11 $(OPT) -g -Wall -Wextra -Werror -D_GNU_SOURCE \
           $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -ldl -lpthread
LDFLAGS += -Wl,-E

SRC     := $(wildcard runtime/*.c)
HDR     := $(wildcard runtime/*.h)
LUASRC  := $(wildcard lua/spindle/*.lua)

BUILD   ?= build
OBJ     := $(SRC:runtime/%.c=$(BUILD)/obj/%.o) \
           $(BUILD)/obj/gen_luafiles.o $(BUILD)/obj/gen_modules.o

ASAN_FLAGS := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer \
              -fno-sanitize-recover=undefined

BUSTED_ARGS ?= spec

PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  := $(DESTDIR)$(PREFIX)/bin
MANDIR  := $(DESTDIR)$(PREFIX)/share/man/man1
EXDIR   := $(DESTDIR)$(PREFIX)/share/doc/spindle/examples
VERSION := $(shell sed -n 's/^\#define SPINDLE_VERSION "\(.*\)"/\1/p' runtime/main.c)
DEB_TOOLS := debhelper dpkg-dev fakeroot lintian

.PHONY: all deps run test test-plain test-asan test-tools lint asan bench \
        bench-quick bench-net clean install uninstall deb check-install doc

all: deps $(BUILD)/spindle

# Install what is missing, as root, with apt-get; print what to install otherwise.
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends $$missing) >/dev/null \
	      || { echo "apt-get install failed:$$missing"; exit 1; }; \
	  else echo "missing Debian packages (run as root or install):$$missing"; \
	    exit 1; fi; fi

$(BUILD)/spindle: $(OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(OBJ) $(LDLIBS)

$(BUILD)/obj/%.o: runtime/%.c $(HDR) | $(BUILD)/obj
	$(CC) $(CPPFLAGS) $(CFLAGS) -Iruntime -c -o $@ $<

$(BUILD)/obj/gen_%.o: $(BUILD)/gen/%.c | $(BUILD)/obj
	$(CC) $(CPPFLAGS) $(CFLAGS) -Iruntime -c -o $@ $<

# The Lua files under lua/ are compiled into the binary.
$(BUILD)/gen/luafiles.c: $(LUASRC) tools/embed.sh | $(BUILD)/gen
	sh tools/embed.sh luafiles $(LUASRC) > $@

# Every luaopen_spindle_* function in runtime/ becomes a preloaded module.
$(BUILD)/gen/modules.c: $(SRC) tools/embed.sh | $(BUILD)/gen
	sh tools/embed.sh modules $(SRC) > $@

$(BUILD)/obj $(BUILD)/gen:
	mkdir -p $@

# The main job: every program of the seed tutorial, as its Lua twin.
run: all
	@sh tools/run.sh $(BUILD)/spindle

test: all
	$(MAKE) test-tools
	$(MAKE) test-plain
	$(MAKE) test-asan

# The test tooling's own checks: tools/busted.sh fails on busted's exit status.
test-tools:
	sh tools/test/busted_sh_test.sh

# C formatting (.clang-format) and Lua warnings (.luacheckrc); both must be
# clean. .ci/run runs this before `make test`.
LUACHECK_DIRS := lua spec scripts bench

lint: deps
	clang-format --dry-run --Werror $(SRC) $(HDR)
	luacheck -q $(LUACHECK_DIRS)

test-plain: all
	sh tools/busted.sh $(BUILD)/spindle $(BUSTED_ARGS)

asan: deps
	$(MAKE) BUILD=build-asan OPT="$(ASAN_FLAGS)" LDFLAGS="-Wl,-E -fsanitize=address,undefined" build-asan/spindle

test-asan: asan
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  sh tools/busted.sh build-asan/spindle $(BUSTED_ARGS)

# Every benchmark, spindle beside raw C on libuv, luv, Node.js, Twisted and
# openssl s_server (bench/run.py); needs gnuplot-nox for the chart. Not
# part of make test.
bench: all
	@$(MAKE) --no-print-directory deps DEB_PKGS="nodejs wrk gnuplot-nox"
	/usr/bin/python3 bench/run.py

bench-quick: all
	@$(MAKE) --no-print-directory deps DEB_PKGS="nodejs wrk gnuplot-nox"
	/usr/bin/python3 bench/run.py --quick

# TCP echo and pipelined lines: spindle vs raw libuv C vs luv (bench/echo).
bench-net: all
	sh bench/echo/run.sh

.PHONY: bench-deferred
bench-deferred: all
	sh bench/deferred.sh

# Install without building as root: `make && sudo make install` works.
install:
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(BUILD_PKGS)"
	@$(MAKE) --no-print-directory $(BUILD)/spindle
	install -d $(BINDIR) $(MANDIR) $(EXDIR) $(EXDIR)/ssl
	install -m 755 $(BUILD)/spindle $(BINDIR)/spindle
	install -m 644 doc/spindle.1 $(MANDIR)/spindle.1
	install -m 644 scripts/*.lua $(EXDIR)/
	install -m 755 scripts/ssl/*.sh $(EXDIR)/ssl/ 2>/dev/null || true

uninstall:
	rm -f $(BINDIR)/spindle $(MANDIR)/spindle.1
	rm -rf $(DESTDIR)$(PREFIX)/share/doc/spindle

# A binary Debian package, build/spindle_$(VERSION)_<arch>.deb, built with
# debhelper from debian/ (dpkg-buildpackage writes into the parent folder,
# from where the package is moved), then checked with lintian.
deb:
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(BUILD_PKGS) $(DEB_TOOLS)"
	dpkg-buildpackage -us -uc -b
	mkdir -p build
	mv ../spindle_$(VERSION)_*.deb build/
	rm -f ../spindle_$(VERSION)_*.buildinfo ../spindle_$(VERSION)_*.changes \
	  ../spindle-dbgsym_$(VERSION)_*.deb
	lintian --fail-on error build/spindle_$(VERSION)_*.deb

# The API reference, doc/api/index.html: every public function's doc
# comment gathered by tools/apidoc.lua (which fails, naming them, when one
# has none), rendered by LDoc one page per module.
doc: all
	@$(MAKE) --no-print-directory deps DEB_PKGS="lua-ldoc"
	rm -rf $(BUILD)/apidoc doc/api
	SPINDLE_LUA_PATH='lua/?.lua' $(BUILD)/spindle tools/apidoc.lua $(BUILD)/apidoc
	ldoc -q -d doc/api -p spindle -t "spindle API reference" -f markdown \
	  $(BUILD)/apidoc

# make install and make deb in fresh Debian 12 chroots (root, network).
check-install:
	sh tools/check_install.sh

clean:
	rm -rf build build-asan
