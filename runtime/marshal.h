/*
** marshal.h: copying Lua values between Lua states by value (marshal.c),
** for the thread pool: one flat malloc'd buffer per message, owned by
** whoever holds it; any thread may hold, pass or free one.
*/
#ifndef SP_MARSHAL_H
#define SP_MARSHAL_H

#include <stddef.h>

#include <lua.h>

/* A packed message: `n` values in `len` bytes at `data` (malloc'd);
** `refs` says whether a value refers back to an earlier one (shared
** tables, cycles, shared upvalues), so that unpacking keeps a table of
** them only then. */
typedef struct sp_packed {
  char *data;
  size_t len;
  int n;
  int refs;
} sp_packed;

/* [-0, +0, e] Pack the n values from idx of L into *out (which the caller
** then owns and releases with sp_marshal_free). `what` names the values in
** errors ("arg", "result") and `first` is the number of the first one: a
** value that cannot be copied raises threads.TransferError
** "cannot copy <type> to another thread: arg #2 .conn". Nothing is
** allocated outside Lua's memory until it succeeds. The calling thread's
** state only. */
void sp_marshal_pack(lua_State *L, int idx, int n, const char *what, int first,
                     sp_packed *out);

/* [-0, +0, e] sp_marshal_pack, with `room` zeroed bytes (a multiple of
** the alignment malloc gives: a struct's size) before the message in
** the same block, which it returns: out->data points past the room. The
** block is `reuse` (a block of *cap bytes from an earlier call, or
** NULL) if that is big enough, else a new malloc'd one, whose size goes
** in *cap (cap may be NULL without reuse). The caller frees the block
** with free(), never out with sp_marshal_free. For a header (a queued
** call) and its message in one allocation, reused. */
void *sp_marshal_pack_room(lua_State *L, int idx, int n, const char *what,
                           int first, sp_packed *out, size_t room, void *reuse,
                           size_t *cap);

/* [-0, +0, -] Write the value at idx as a message of one value into buf
** (SP_MARSHAL_SCALAR bytes), as pack writes it, if it is nil, a boolean
** or a number; returns its length, or 0 for any other value. */
#define SP_MARSHAL_SCALAR 16
size_t sp_marshal_scalar(lua_State *L, int idx, char *buf);

/* [-0, +0, -] sp_marshal_pack of the one value at idx if it is nil, a
** boolean or a number, written as pack writes it: returns 1. Never
** raises (no protected call needed); returns 0, *out untouched, for any
** other value or if out of memory (then use sp_marshal_pack). */
int sp_marshal_pack_scalar(lua_State *L, int idx, sp_packed *out);

/* [-0, +n, e] Push the values packed in p into L (any state, on the thread
** that owns it); returns how many. p is left as it is. Raises if a module
** the values name cannot be required in L, or on memory errors. */
int sp_marshal_unpack(lua_State *L, const sp_packed *p);

/* [-0, +n, e] sp_marshal_unpack for a call's message in a pool thread's
** state: the first value (the function to call) and the functions it
** closes over come from a per-state cache of loaded prototypes when one
** was loaded before (matched by a hash and the bytecode), with their
** upvalues set afresh from p, so a function sent again is not loaded
** again. `cache` is the stack index of the cache: a table the caller
** keeps for the state (empty at first) and passes to each call. A
** closure such a function made in an earlier call and left in the state
** shares its upvalues with the next call's. */
int sp_marshal_unpack_call(lua_State *L, const sp_packed *p, int cache);

/* [-0, +(0|1), -] If p is one nil, boolean or number, push it and
** return 1 (nothing allocated, nothing raised: no protected call
** needed); else push nothing and return 0 (use sp_marshal_unpack). */
int sp_marshal_unpack_scalar(lua_State *L, const sp_packed *p);

/* Free p's buffer (any thread; p itself is the caller's). */
void sp_marshal_free(sp_packed *p);

#endif
