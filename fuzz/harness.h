/*
** fuzz/harness.h: what the libFuzzer harnesses in fuzz/ share (harness.c).
** Each harness defines LLVMFuzzerTestOneInput; it is linked either with
** libFuzzer (make fuzz, build-fuzz/fuzz/NAME) or with fuzz/replay.c, which
** runs the files of fuzz/corpus/NAME once each (make test-replay).
** A harness aborts (fz_fail) when it sees a wrong answer, so both report it.
*/
#ifndef FZ_HARNESS_H
#define FZ_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

/* The libFuzzer entry point every harness defines. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A new Lua state on runtime/alloc.c's allocator, refusing any block over
** 64 MiB (a memory error, not a report from the fuzzer's malloc limit),
** with the standard libraries; with `spindle` set, also spindle's module
** searchers (runtime/core.c's sp_openlibs), so require("spindle.basic")
** works. Aborts if the state cannot be made. */
lua_State *fz_newstate(int spindle);

/* [-0, +0, -] Run the Lua source `code` in L (a harness's own Lua half);
** abort with its error if it fails. */
void fz_dostring(lua_State *L, const char *code, const char *name);

/* The whole of a harness whose check is in Lua: call the global
** check(bytes) that the Lua file `path` (from the repository's top
** folder) defines, in one state made on the first call (with spindle's
** modules, and ./?.lua on package.path for spec/support); abort with its
** error if it raises. */
void fz_check_lua(const char *path, const uint8_t *data, size_t size);

/* Print what went wrong (printf-style) and abort, so libFuzzer keeps the
** input as a crash and replay fails. */
void fz_fail(const char *fmt, ...);

#endif
