#!/bin/sh
# tools/luatests.sh BINARY TESTES: run the Lua 5.4 authors' own test suite
# (the testes/ folder of Lua 5.4.4, kept outside this repository) under
# BINARY, as `lua` runs it: all.lua in user mode, then main.lua (the
# stand-alone interpreter's tests, with BINARY as the interpreter).
# Fetch it with:
#   curl -LO https://www.lua.org/tests/lua-5.4.4-tests.tar.gz
#   tar xzf lua-5.4.4-tests.tar.gz     # gives lua-5.4.4-tests/
# or `git archive v5.4.4 testes` in a clone of github.com/lua/lua.
set -e
bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
cd "$2"
"$bin" -e "_U=true" all.lua | tail -n 3
"$bin" main.lua | tail -n 1
