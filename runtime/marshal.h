/*
** marshal.h: copying Lua values between Lua states by value (marshal.c),
** for the thread pool: one flat malloc'd buffer per message, owned by
** whoever holds it; any thread may hold, pass or free one.
*/
#ifndef SP_MARSHAL_H
#define SP_MARSHAL_H

#include <stddef.h>

#include <lua.h>

/* A packed message: `n` values in `len` bytes at `data` (malloc'd). */
typedef struct sp_packed {
  char *data;
  size_t len;
  int n;
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

/* [-0, +n, e] Push the values packed in p into L (any state, on the thread
** that owns it); returns how many. p is left as it is. Raises if a module
** the values name cannot be required in L, or on memory errors. */
int sp_marshal_unpack(lua_State *L, const sp_packed *p);

/* Free p's buffer (any thread; p itself is the caller's). */
void sp_marshal_free(sp_packed *p);

#endif
