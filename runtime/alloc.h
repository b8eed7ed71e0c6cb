/*
** alloc.h: the allocator of every Lua state spindle makes (alloc.c), with
** a test mode that fails one chosen allocation, as Lua's own test suite
** does (ltests.c's alloccount), to prove the memory-error paths.
*/
#ifndef SP_ALLOC_H
#define SP_ALLOC_H

#include <stddef.h>

#include <lua.h>

/* The lua_Alloc of spindle's states: realloc and free (lauxlib's l_alloc),
** counting each request that allocates or grows a block. In the test
** mode (sp_alloc_setup) the Nth such request returns NULL, once, so Lua
** raises a memory error there; frees and shrinks never fail. Any thread:
** the count is atomic, so pool threads share it with the main thread.
** ud is unused. */
void *sp_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

/* A new Lua state on sp_alloc, as luaL_newstate makes one (its panic and
** warning functions); NULL when out of memory. The few blocks
** luaL_newstate allocates before the allocator is switched are not
** counted. Any thread. */
lua_State *sp_alloc_newstate(void);

/* Read the test mode from the environment, once, on the main thread
** before any state is made: SPINDLE_FAIL_ALLOC=N (N >= 1) fails the Nth
** counted allocation; SPINDLE_FAIL_ALLOC=0 fails none and prints the
** count on stderr at exit ("spindle: N allocations"), so a driver knows
** how many to try (tools/allocfail.sh). Unset: count only. */
void sp_alloc_setup(void);

/* Fail the nth counted allocation from now (0: none) and restart the
** count; for the fuzz harnesses, which set it themselves. Returns how
** many were counted before. */
unsigned long sp_alloc_failat(unsigned long n);

#endif
