# spindle: one binary embedding Lua 5.4 on a libuv reactor.
#
#   make          build build/spindle (installs Debian packages first as root)
#   make run      build and run the seed's Deferred examples
#   make test     tools self-test, busted suite under build/spindle, then
#                 under the ASan+UBSan build
#   make test-asan   the sanitizer run alone
#   make lint     clang-format (runtime/), luacheck (.luacheckrc) and no two
#                 runtime files depending on each other: any
#                 difference or warning fails; .ci/run runs it before test
#   make bench    every benchmark for spindle and each peer, 3 rounds:
#                 one table, bench/RESULTS.md and bench/results.png
#   make bench-quick the same, one short round (about a minute)
#   make bench-net   TCP echo and lines alone (bench/echo/run.sh)
#   make bench-web   HTTP hello world with wrk: spindle.web vs raw C on
#                    libuv, Node's http, Twisted web (bench/web/run.sh)
#   make test-tls-scan  testssl.sh against a default listenSSL server
#                    (installs the testssl.sh package, about 3 MB plus
#                    dnsutils, so it is not in DEB_PKGS)
#   make install     build/spindle, its man page and examples under
#                    $(DESTDIR)$(PREFIX) (PREFIX=/usr/local); make uninstall
#   make deb         a Debian package (debhelper) in build/
#   make doc         the API reference in doc/api/ (LDoc)
#   make fuzz        each libFuzzer harness in fuzz/ for FUZZ_SECONDS
#                    (60) from its corpus in fuzz/corpus/ (installs clang)
#   make test-tsan   the suite under ThreadSanitizer (installs clang)
#   make allocfail   fail each allocation of fuzz/allocfail/*.lua in turn
#   make soak        echo, TLS echo and thread-pool load for SOAK_SECONDS
#                    (600) against one process, then check what it left

PKGS     := lua5.4 libuv libssl libcrypto libedit
# What building needs (make install installs only these), then the test
# peers and tools that make test adds.
BUILD_PKGS := build-essential pkg-config liblua5.4-dev libuv1-dev \
              libssl-dev libedit-dev node-llhttp
DEB_PKGS := $(BUILD_PKGS) lua5.4 lua-busted socat netcat-openbsd \
            python3 python3-twisted lua-luv valgrind openssl \
            lua-cjson lua-lpeg lua-check clang-format haproxy tmux curl

CC      ?= cc
OPT     ?= -O2
CFLAGS  += -std=c11 $(OPT) -g -Wall -Wextra -Werror -D_GNU_SOURCE \
           $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -ldl -lpthread
LDFLAGS += -Wl,-E

SRC     := $(wildcard runtime/*.c)
HDR     := $(wildcard runtime/*.h)
LUASRC  := $(wildcard lua/spindle/*.lua)

# llhttp (HTTP/1.1 parsing for spindle.web) is compiled from the C sources
# Debian's node-llhttp package ships, not from a copy in this tree.
LLHTTP_SRC := /usr/share/llhttp
LLHTTP_INC := /usr/share/include/llhttp

BUILD   ?= build
OBJ     := $(SRC:runtime/%.c=$(BUILD)/obj/%.o) \
           $(BUILD)/obj/gen_luafiles.o $(BUILD)/obj/gen_modules.o \
           $(BUILD)/llhttp/api.o $(BUILD)/llhttp/http.o \
           $(BUILD)/llhttp/llhttp.o

ASAN_FLAGS := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer \
              -fno-sanitize-recover=undefined

BUSTED_ARGS ?= spec

# Fuzzing and ThreadSanitizer: clang, its runtimes (libFuzzer, TSan) and
# llvm-symbolizer, installed by make fuzz / make test-tsan only.
FUZZ_PKGS    := clang libclang-rt-14-dev llvm
FUZZ_SECONDS ?= 60
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_FLAGS   := -O1 -fno-omit-frame-pointer $(FUZZ_SAN) \
                -fsanitize=fuzzer-no-link
FUZZERS      := $(filter-out harness replay,$(patsubst fuzz/%.c,%,\
                  $(wildcard fuzz/*.c)))
# Harnesses whose input is a program for a generator (fuzz/marshal_copy.lua)
# rather than bytes the C code parses: comparison tracing
# (-fsanitize-coverage=trace-cmp) finds them nothing and costs 15% of their
# speed, so they link objects built without it, in build-fuzz-nocmp.
FUZZ_NOCMP   := marshal_copy
FUZZ_BINS    := $(foreach n,$(FUZZERS),$(if $(filter $(n),$(FUZZ_NOCMP)),\
                  build-fuzz-nocmp,build-fuzz)/fuzz/$(n))
# The harnesses link the runtime without main.o; FUZZ_MAIN is libFuzzer
# (build-fuzz) or fuzz/replay.c, which runs corpus files (build-asan).
FUZZ_OBJ      = $(filter-out $(BUILD)/obj/main.o,$(OBJ))
FUZZ_MAIN    ?= fuzz/replay.c
# The unmarshaller trusts the bytecode it carries, as lua_load does: the
# raw-bytes harness checks it loads, then swaps in a harmless function.
FUZZ_LDFLAGS_marshal_bytes := -Wl,--wrap=lua_load
TSAN_FLAGS   := -O1 -fno-omit-frame-pointer -fsanitize=thread
# The specs test-tsan runs: all but the REPL's (libedit on a pty).
TSAN_SPECS   ?= $(filter-out spec/repl_spec.lua,$(wildcard spec/*_spec.lua))
SOAK_SECONDS ?= 600

PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  := $(DESTDIR)$(PREFIX)/bin
MANDIR  := $(DESTDIR)$(PREFIX)/share/man/man1
EXDIR   := $(DESTDIR)$(PREFIX)/share/doc/spindle/examples
VERSION := $(shell sed -n 's/^\#define SPINDLE_VERSION "\(.*\)"/\1/p' runtime/main.c)
DEB_TOOLS := debhelper dpkg-dev fakeroot lintian

.PHONY: all deps run test test-plain test-asan test-tools lint asan bench \
        bench-quick bench-net bench-web clean install uninstall deb \
        check-install doc fuzz-deps fuzz fuzz-build test-replay tsan \
        test-tsan allocfail soak

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
	$(CC) $(CPPFLAGS) $(CFLAGS) -Iruntime -I$(LLHTTP_INC) -c -o $@ $<

# The package's generated C is not ours to warn about; its objects live
# apart from runtime's (tools/check_deps.py checks runtime's layering).
$(BUILD)/llhttp/%.o: $(LLHTTP_SRC)/%.c | $(BUILD)/llhttp
	$(CC) $(CPPFLAGS) $(CFLAGS) -w -I$(LLHTTP_INC) -c -o $@ $<

$(BUILD)/obj/gen_%.o: $(BUILD)/gen/%.c | $(BUILD)/obj
	$(CC) $(CPPFLAGS) $(CFLAGS) -Iruntime -c -o $@ $<

# The Lua files under lua/ are compiled into the binary.
$(BUILD)/gen/luafiles.c: $(LUASRC) tools/embed.sh | $(BUILD)/gen
	sh tools/embed.sh luafiles $(LUASRC) > $@

# Every luaopen_spindle_* function in runtime/ becomes a preloaded module.
$(BUILD)/gen/modules.c: $(SRC) tools/embed.sh | $(BUILD)/gen
	sh tools/embed.sh modules $(SRC) > $@

$(BUILD)/obj $(BUILD)/gen $(BUILD)/llhttp:
	mkdir -p $@

# The main job: every program of the seed tutorial, as its Lua twin.
run: all
	@sh tools/run.sh $(BUILD)/spindle

test: all
	$(MAKE) test-tools
	$(MAKE) test-plain
	$(MAKE) test-asan
	$(MAKE) test-replay

# The test tooling's own checks: tools/busted.sh fails on busted's exit status.
test-tools:
	sh tools/test/busted_sh_test.sh

# C formatting (.clang-format) and Lua warnings (.luacheckrc); both must be
# clean. .ci/run runs this before `make test`.
LUACHECK_DIRS := lua spec scripts bench fuzz tools/soak

lint: all
	clang-format --dry-run --Werror $(SRC) $(HDR)
	luacheck -q $(LUACHECK_DIRS)
	python3 tools/check_deps.py $(BUILD)/obj

test-plain: all
	sh tools/busted.sh $(BUILD)/spindle $(BUSTED_ARGS)

asan: deps
	$(MAKE) BUILD=build-asan OPT="$(ASAN_FLAGS)" LDFLAGS="-Wl,-E -fsanitize=address,undefined" build-asan/spindle

test-asan: asan
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  sh tools/busted.sh build-asan/spindle $(BUSTED_ARGS)

# Every input in fuzz/corpus/ (seeds and former crashes) through its
# harness, built with gcc against the ASan+UBSan objects: no clang needed.
test-replay: asan
	$(MAKE) BUILD=build-asan OPT="$(ASAN_FLAGS)" \
	  LDFLAGS="-fsanitize=address,undefined" $(FUZZERS:%=build-asan/fuzz/%)
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  sh tools/fuzz.sh replay $(FUZZERS:%=build-asan/fuzz/%)

$(BUILD)/fuzz/%: fuzz/%.c fuzz/harness.c fuzz/harness.h $(FUZZ_OBJ) \
                 $(FUZZ_MAIN:-%=) | $(BUILD)/fuzz
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -Iruntime -Ifuzz -o $@ fuzz/$*.c \
	  fuzz/harness.c $(FUZZ_MAIN) $(FUZZ_OBJ) $(LDLIBS) $(FUZZ_LDFLAGS_$*)

$(BUILD)/fuzz:
	mkdir -p $@

fuzz-deps:
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(FUZZ_PKGS)"

fuzz-build: fuzz-deps
	$(MAKE) BUILD=build-fuzz CC=clang OPT="$(FUZZ_FLAGS)" \
	  LDFLAGS="$(FUZZ_SAN)" FUZZ_MAIN=-fsanitize=fuzzer \
	  $(filter build-fuzz/%,$(FUZZ_BINS))
	$(MAKE) BUILD=build-fuzz-nocmp CC=clang \
	  OPT="$(FUZZ_FLAGS) -fno-sanitize-coverage=trace-cmp" \
	  LDFLAGS="$(FUZZ_SAN)" FUZZ_MAIN=-fsanitize=fuzzer \
	  $(filter build-fuzz-nocmp/%,$(FUZZ_BINS))

# Each harness for FUZZ_SECONDS from fuzz/corpus/NAME (new inputs go to
# build-fuzz/corpus/NAME; crashes to build-fuzz/crash/), in FUZZ_JOBS
# processes (default: one per core): prints the executions per harness,
# fails on a crash. FUZZ_RUNS=N (environment or make variable) ends each
# after N executions instead, in one process.
fuzz: fuzz-build
	FUZZ_RUNS=$(FUZZ_RUNS) FUZZ_JOBS=$(FUZZ_JOBS) \
	  sh tools/fuzz.sh run build-fuzz $(FUZZ_SECONDS) $(FUZZ_BINS)

tsan: fuzz-deps
	$(MAKE) BUILD=build-tsan CC=clang OPT="$(TSAN_FLAGS)" \
	  LDFLAGS="-Wl,-E -fsanitize=thread" build-tsan/spindle

# TSan delivers a signal only when the thread next enters libc, so a Lua
# loop that never does is not interrupted by SIGINT/SIGTERM: those specs
# are left out here (they run in make test), and so is the one that
# measures RSS staying flat (TSan's shadow memory grows).
# (busted --lua passes its arguments through a shell unquoted: the
# patterns have no spaces.)
TSAN_FILTER := --filter-out=interrupts.a.callback.that.never.returns \
               --filter-out=SIGINT.while.a.chunk.runs.outside.the.reactor \
               --filter-out=lets.SIGINT.interrupt.a.coroutine \
               --filter-out=leave.its.descriptors.and.memory.flat
test-tsan: tsan
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 \
	  suppressions=$(CURDIR)/tools/tsan.supp" \
	  sh tools/busted.sh build-tsan/spindle $(TSAN_FILTER) $(TSAN_SPECS)

# Fail each allocation of each fuzz/allocfail script in turn, under ASan.
allocfail: asan
	sh tools/allocfail.sh build-asan/spindle fuzz/allocfail/*.lua

soak: all
	sh tools/soak.sh $(BUILD)/spindle $(SOAK_SECONDS)

# Every benchmark, spindle beside raw C on libuv, luv, Node.js, Twisted and
# openssl s_server (bench/run.py); needs gnuplot-nox for the chart. Not
# part of make test.
bench: all
	@$(MAKE) --no-print-directory deps DEB_PKGS="nodejs wrk gnuplot-nox"
	/usr/bin/python3 bench/run.py
	@$(MAKE) --no-print-directory bench-web

bench-quick: all
	@$(MAKE) --no-print-directory deps DEB_PKGS="nodejs wrk gnuplot-nox"
	/usr/bin/python3 bench/run.py --quick

# TCP echo and pipelined lines: spindle vs raw libuv C vs luv (bench/echo).
bench-net: all
	sh bench/echo/run.sh

# HTTP hello world under wrk (keep-alive, pipelined x16, 50 connections):
# spindle.web vs raw C on libuv with llhttp, Node's http, Twisted web.
bench-web: all
	@$(MAKE) --no-print-directory deps DEB_PKGS="wrk nodejs python3-twisted"
	sh bench/web/run.sh

# testssl.sh (Debian package) against a default listenSSL server: no
# protocol below TLS 1.2, no CBC, nothing flagged (tools/tls_scan.sh).
.PHONY: test-tls-scan
test-tls-scan: all
	@$(MAKE) --no-print-directory deps DEB_PKGS="testssl.sh"
	sh tools/tls_scan.sh $(BUILD)/spindle

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
	@$(MAKE) --no-print-directory deps DEB_PKGS="lua-ldoc lua-markdown"
	rm -rf $(BUILD)/apidoc doc/api
	SPINDLE_LUA_PATH='lua/?.lua' $(BUILD)/spindle tools/apidoc.lua $(BUILD)/apidoc
	ldoc -q -d doc/api -p spindle -t "spindle API reference" -f markdown \
	  $(BUILD)/apidoc

# make install and make deb in fresh Debian 12 chroots (root, network).
check-install:
	sh tools/check_install.sh

clean:
	rm -rf build build-asan build-fuzz build-fuzz-nocmp build-tsan doc/api
