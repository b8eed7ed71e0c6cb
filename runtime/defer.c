/*
** defer.c: Deferred and its iterative chain runner (spindle._defer;
** lua/spindle/defer.lua is the public face, spindle.defer).
** Follows twisted.internet.defer.Deferred.
**
** Length: a little over 1000 lines: the runner, the step encoding and the
** methods that append steps share struct Deferred and the slot layout
** below; splitting them would put that layout in a header.
**
** A Deferred is a userdata (struct Deferred) with eight user values: the
** current result, the slots table, the canceller, a debug table (where it
** was made and first fired, when defer.setDebugging(true)), a table of
** user fields, its unhandled-error sentinel, and its first two slots. No
** registry refs: the garbage collector sees every cycle.
**
** Steps live in slots, an array written from d->tail and read from
** d->head: slots 1 and 2 are user values (SLOTS_INLINE), the rest entries
** of the slots table, made when first needed, so that a Deferred given
** one or two plain callbacks (deferToThread's, most protocol code's)
** makes no table. A step is a header integer (kind, which of callback and
** errback it has, callback and errback argument counts) followed by the
** functions it has (a missing one passes the result through) and the
** bound arguments, nils kept:
**
**   [header][callback][errback][cb arg 1..ncb][eb arg 1..neb]
**
** The most common step, addCallback(f) without arguments, is stored as
** the bare callable in one slot (a callable is never an integer, so it
** cannot be taken for a header). A STEP_SHARED step (addBoth) stores
** one function and one argument list for both. A STEP_CONTINUE step
** ([header][outer Deferred]) is what an inner Deferred carries for an
** outer one waiting on it (Twisted's _continuation); a STEP_CHAIN step
** ([header][chained Deferred]) is what chainDeferred adds. Consumed slots are
** cleared when a run settles; an empty queue starts again at slot 1, so a
** Deferred allocates at most one table however many callbacks run
** through it.
**
** The runner (deferred_run, Twisted's _runCallbacks) is a loop with an
** explicit stack of chained Deferreds in a Lua table: a chain of any
** length costs heap, never C or Lua stack. That holds for chainDeferred
** too: its step hands the result over and the runner runs the chained
** Deferred next, where Twisted calls d2.callback nested.
**
** The Deferred metatable has no __gc: finalizers are costly, so the
** millions of Deferreds that succeed never get one. A Deferred that ends
** a run with a Failure as its result gets a sentinel instead (Twisted's
** DebugInfo): a new empty userdata with __gc, kept in a user value and
** pointing back at the Deferred, which logs "Unhandled error in
** Deferred:" if the Failure is still there when both are collected.
** Giving the Deferred itself a finalizer late would cost a walk over every
** object made after it (Lua finds an object's place in its list of all
** objects from the newest end); for the sentinel, made just now, that
** walk is one step. A Deferred keeps its sentinel once it has one; the
** `unhandled` flag arms and disarms it.
*/
#include <string.h>

#include "core.h"
#include "defer.h"
#include "failure.h"
#include "inspect.h"

#define DEFERRED_MT "spindle.Deferred"

enum {
  UV_RESULT = 1,
  UV_SLOTS,
  UV_CANCELLER,
  UV_DEBUG,
  UV_ATTRS,
  UV_SENTINEL,
  UV_INLINE /* slot 1; slot i is user value UV_INLINE - 1 + i */
};
/* How many of the first slots are user values instead of entries of the
** slots table: a Deferred given one or two bare callbacks (a
** deferToThread's addCallback) makes no table at all. */
#define SLOTS_INLINE 2
#define UV_COUNT (UV_INLINE + SLOTS_INLINE - 1)

enum { STEP_PLAIN = 0, STEP_SHARED = 1, STEP_CONTINUE = 2, STEP_CHAIN = 3 };
#define STEP_HASCB 4
#define STEP_HASEB 8
#define STEP_KIND(h) ((int)((h)&3))
#define STEP_NCB(h) ((int)(((h) >> 4) & 0x3fffffff))
#define STEP_NEB(h) ((int)((h) >> 34))

/* Where a step's parts are, from its header at slot h. */
typedef struct StepLayout {
  lua_Integer cb, eb; /* slots of the functions, 0: pass through */
  lua_Integer ca, ea; /* first slot of each argument list */
  int ncb, neb;       /* argument counts */
  lua_Integer size;   /* slots used, header included */
} StepLayout;

static void step_layout(lua_Integer h, lua_Integer hdr, StepLayout *s) {
  lua_Integer p = h + 1;
  int kind = STEP_KIND(hdr);
  s->cb = (hdr & STEP_HASCB) ? p++ : 0;
  s->ncb = STEP_NCB(hdr);
  if (kind == STEP_SHARED) {
    s->eb = s->cb;
    s->ca = s->ea = p;
    s->neb = s->ncb;
    p += s->ncb;
  } else {
    s->eb = (hdr & STEP_HASEB) ? p++ : 0;
    s->neb = STEP_NEB(hdr);
    s->ca = p;
    s->ea = p + s->ncb;
    p += s->ncb + s->neb;
  }
  s->size = p - h;
}

typedef struct Deferred {
  lua_Integer head;        /* slot of the next step's header */
  lua_Integer tail;        /* first free slot */
  lua_Integer clean;       /* slots below it and below head are nil */
  int paused;              /* pause() count (unpause() never below 0) */
  unsigned char called;    /* callback or errback happened */
  unsigned char running;   /* a callback of this Deferred is on the stack */
  unsigned char suppress;  /* cancelled without canceller: eat a late fire */
  unsigned char unhandled; /* ended a run with a Failure as result */
  unsigned char waiting;   /* the result is an inner Deferred we wait on */
  unsigned char guarded;   /* has its sentinel (UV_SENTINEL) */
  sp_where where;          /* where it was made (inspect.h), always */
} Deferred;

static const char mt_key = 'M';       /* registry: the Deferred metatable */
static const char sentinel_key = 'S'; /* registry: the sentinel metatable */
static int debugging = 0;             /* defer.setDebugging */

static void meta_init(lua_State *L);

/* [-0, +1, m] Push the plain Deferred metatable, made on first use (C
** callers may make Deferreds before spindle.defer is required). */
static void meta_push(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &mt_key) == LUA_TTABLE) return;
  lua_pop(L, 1);
  meta_init(L);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &mt_key);
}

/* [-0, +0, -] The Deferred at idx, or NULL if it is something else. */
static Deferred *deferred_test(lua_State *L, int idx) {
  int ok;
  if (lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx))
    return NULL;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &mt_key);
  ok = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return ok ? (Deferred *)lua_touserdata(L, idx) : NULL;
}

/* [-0, +0, e] The Deferred at idx; raises a bad-argument error if not. */
static Deferred *deferred_check(lua_State *L, int idx) {
  Deferred *d = deferred_test(L, idx);
  if (d == NULL) luaL_typeerror(L, idx, "Deferred");
  return d;
}

/* [-0, +0, e] The Deferred at idx, checked against the metatable in
** upvalue up (the fast path of methods and metamethods: no registry
** lookup); raises a bad-argument error if it is something else. */
static Deferred *deferred_upcheck(lua_State *L, int idx, int up) {
  if (lua_type(L, idx) == LUA_TUSERDATA && lua_getmetatable(L, idx)) {
    if (lua_rawequal(L, -1, lua_upvalueindex(up))) {
      lua_pop(L, 1);
      return (Deferred *)lua_touserdata(L, idx);
    }
    lua_pop(L, 1);
  }
  luaL_typeerror(L, idx, "Deferred");
  return NULL;
}

/* [-0, +0, e] The Deferred at idx, for methods (the metatable in upvalue
** 1). */
#define deferred_self(L, idx) deferred_upcheck((L), (idx), 1)

/* [-0, +0, e] sp_checkcallable for argument idx of a Deferred method: the
** error names the method and counts as written (`d:addCallback(42)`:
** "bad argument #1 to 'addCallback'") even through pcall (sp_argerror). */
static void method_callable(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TFUNCTION) return;
  if (luaL_getmetafield(L, idx, "__call") != LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  sp_typeerror(L, idx, "callable", DEFERRED_MT);
}

/* [-0, +0, -] Is the value at idx a Failure? Non-tables are answered
** without touching the registry: this runs once per callback. */
static int is_failure(lua_State *L, int idx) {
  return lua_type(L, idx) == LUA_TTABLE && sp_failure_is(L, idx);
}

/* [-0, +0, m] Store a traceback of L under `field` in the Deferred at
** idx's debug table (made on demand). */
static void debug_record(lua_State *L, int idx, const char *field) {
  idx = lua_absindex(L, idx);
  if (lua_getiuservalue(L, idx, UV_DEBUG) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, idx, UV_DEBUG);
  }
  luaL_traceback(L, L, NULL, 1);
  lua_setfield(L, -2, field);
  lua_pop(L, 1);
}

/* [-0, +1, m] Push the debug text of the Deferred at idx in Twisted's
** format (" C: Deferred was created:\n C:..." and " I: First Invoker
** was:\n I:..."), or "" when nothing was recorded. */
static void debug_pushinfo(lua_State *L, int idx) {
  static const char *const fields[2][3] = {
      {"creator", " C: Deferred was created:\n C:", "\n C:"},
      {"invoker", " I: First Invoker was:\n I:", "\n I:"}};
  int n = 0, t, i;
  idx = lua_absindex(L, idx);
  lua_getiuservalue(L, idx, UV_DEBUG);
  t = lua_gettop(L);
  for (i = 0; i < 2 && lua_type(L, t) == LUA_TTABLE; i++) {
    if (lua_getfield(L, t, fields[i][0]) != LUA_TSTRING) {
      lua_pop(L, 1);
      continue;
    }
    lua_pushstring(L, fields[i][1]);
    luaL_gsub(L, lua_tostring(L, -2), "\n", fields[i][2]);
    lua_pushliteral(L, "\n");
    lua_remove(L, -4);
    n += 3;
  }
  lua_concat(L, n);
  lua_remove(L, t);
}

/* [-0, +1, m] Push a new unfired Deferred; canceller at idx (0: none);
** the Deferred metatable at mt (0: looked up in the registry). */
static Deferred *deferred_push(lua_State *L, int canceller, int mt) {
  Deferred *d = (Deferred *)lua_newuserdatauv(L, sizeof(Deferred), UV_COUNT);
  memset(d, 0, sizeof *d);
  d->head = d->tail = d->clean = 1;
  sp_inspect_where(L, &d->where);
  if (mt != 0)
    lua_pushvalue(L, mt);
  else
    meta_push(L);
  lua_setmetatable(L, -2);
  if (canceller) {
    lua_pushvalue(L, canceller);
    lua_setiuservalue(L, -2, UV_CANCELLER);
  }
  if (debugging) debug_record(L, -1, "creator");
  return d;
}

/* [-0, +1, m] Push the slots table of the Deferred at idx, made on
** demand. */
static void slots_push(lua_State *L, int idx) {
  if (lua_getiuservalue(L, idx, UV_SLOTS) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_createtable(L, 12, 0);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, idx, UV_SLOTS);
}

/* [-0, +1, -] Push slot i of the Deferred at cur (an absolute index),
** whose slots table is at stack index `slots` (run_steps keeps it
** loaded while a slot past the inline ones is in use). Returns the
** type. */
static int slot_get(lua_State *L, int cur, int slots, lua_Integer i) {
  if (i <= SLOTS_INLINE)
    return lua_getiuservalue(L, cur, UV_INLINE - 1 + (int)i);
  return lua_rawgeti(L, slots, i);
}

/* [-1, +0, -] Pop the value on top into slot i of the Deferred at cur
** (absolute), whose slots table (for i > SLOTS_INLINE) is at tab. */
static void slot_put(lua_State *L, int cur, int tab, lua_Integer i) {
  if (i <= SLOTS_INLINE)
    lua_setiuservalue(L, cur, UV_INLINE - 1 + (int)i);
  else
    lua_rawseti(L, tab, i);
}

/* [-0, +0, m] Append a step to the Deferred at idx. cb and eb are stack
** indexes of the callback and errback (0: pass through); the callback's
** nca arguments start at stack index ca, the errback's nea at ea. A
** STEP_SHARED step has the callback and its arguments only. */
static void step_append(lua_State *L, int idx, int kind, int cb, int eb, int ca,
                        int nca, int ea, int nea) {
  Deferred *d = (Deferred *)lua_touserdata(L, idx);
  lua_Integer t = d->tail;
  int i, tab = 0;
  if (kind != STEP_PLAIN) eb = nea = 0;
  idx = lua_absindex(L, idx);
  if (t + 1 + (cb != 0) + (eb != 0) + nca + nea - 1 > SLOTS_INLINE) {
    slots_push(L, idx);
    tab = lua_gettop(L);
  }
  lua_pushinteger(L, (lua_Integer)kind | (cb ? STEP_HASCB : 0) |
                         (eb ? STEP_HASEB : 0) | ((lua_Integer)nca << 4) |
                         ((lua_Integer)nea << 34));
  slot_put(L, idx, tab, t++);
  if (cb) {
    lua_pushvalue(L, cb);
    slot_put(L, idx, tab, t++);
  }
  if (eb) {
    lua_pushvalue(L, eb);
    slot_put(L, idx, tab, t++);
  }
  for (i = 0; i < nca; i++) {
    lua_pushvalue(L, ca + i);
    slot_put(L, idx, tab, t++);
  }
  for (i = 0; i < nea; i++) {
    lua_pushvalue(L, ea + i);
    slot_put(L, idx, tab, t++);
  }
  if (tab) lua_pop(L, 1);
  d->tail = t;
}

/* [-0, +0, m] Make the Deferred at outer wait for the unfinished inner
** Deferred at inner (Twisted: pause, _chainedTo, _continuation). The wait
** is a flag of its own, not a pause: an unpause() from the user cannot
** end it (in Twisted it can, and the chain goes on with the inner
** Deferred as its result). */
static void deferred_wait(lua_State *L, int outer, int inner) {
  Deferred *d = (Deferred *)lua_touserdata(L, outer);
  outer = lua_absindex(L, outer);
  inner = lua_absindex(L, inner);
  lua_pushvalue(L, inner);
  lua_setiuservalue(L, outer, UV_RESULT);
  d->waiting = 1;
  step_append(L, inner, STEP_CONTINUE, outer, 0, 0, 0, 0, 0);
}

/* [-0, +0, -] Can the result of Deferred d be taken now (Twisted: it has
** a result that is not a Deferred, and is not paused)? */
static int deferred_ready(Deferred *d) {
  return d->called && !d->waiting && d->paused == 0;
}

/* [-1, +1, m] The value on top is a step's result. If it is a Deferred
** with a result, replace it by that result, which the inner Deferred
** gives up (Twisted steals it). */
static void result_steal(lua_State *L) {
  Deferred *inner = (Deferred *)lua_touserdata(L, -1);
  lua_getiuservalue(L, -1, UV_RESULT);
  lua_pushnil(L);
  lua_setiuservalue(L, -3, UV_RESULT);
  inner->unhandled = 0;
  lua_remove(L, -2);
}

/* [-0, +0, -] Set `n` slots of the Deferred at cur from h to nil; its
** slots table is loaded into stack slot `slots` (nil if it has none). */
static void slots_clear(lua_State *L, int cur, int slots, lua_Integer h,
                        lua_Integer n) {
  lua_Integer i = h;
  for (; i < h + n && i <= SLOTS_INLINE; i++) {
    lua_pushnil(L);
    lua_setiuservalue(L, cur, UV_INLINE - 1 + (int)i);
  }
  if (i >= h + n) return;
  lua_getiuservalue(L, cur, UV_SLOTS);
  lua_replace(L, slots);
  if (!lua_istable(L, slots)) return;
  for (; i < h + n; i++) {
    lua_pushnil(L);
    lua_rawseti(L, slots, i);
  }
}

/* [-0, +(0|1), m] Hand the result of the Deferred at cur to the outer
** Deferred of a STEP_CONTINUE step at h; push that outer Deferred. */
static void step_continue(lua_State *L, int cur, int slots, lua_Integer h) {
  Deferred *d = (Deferred *)lua_touserdata(L, cur), *outer;
  slot_get(L, cur, slots, h + 1);
  d->head = h + 2;
  outer = (Deferred *)lua_touserdata(L, -1);
  lua_getiuservalue(L, cur, UV_RESULT);
  lua_setiuservalue(L, -2, UV_RESULT);
  lua_pushnil(L);
  lua_setiuservalue(L, cur, UV_RESULT);
  d->unhandled = 0;
  outer->waiting = 0;
}

/* [-0, +1, e] Push an AlreadyCalledError for the Deferred at idx; with
** debugging on, its message names where it was made and first fired. */
static void push_already_called(lua_State *L, int idx) {
  if (debugging) {
    lua_pushliteral(L, "Deferred has already been called\n");
    debug_pushinfo(L, idx);
    lua_concat(L, 2);
  } else {
    lua_pushliteral(L,
                    "Deferred has already been called "
                    "(defer.setDebugging(true) tells where)");
  }
  sp_errortype_make(L, "defer.AlreadyCalledError", lua_tostring(L, -1));
  lua_remove(L, -2);
}

/* [-0, +(0|1), m] The chainDeferred step at h of the Deferred at cur: as
** d2:callback(result) or d2:errback(result) would, give d2 cur's result,
** which becomes nil for cur, and push d2 for the runner to run next
** (returns 1). If d2 has fired, cur's result becomes a Failure of
** AlreadyCalledError, as d2.callback would raise in Twisted (returns 0);
** the first late fire after a cancel() without canceller is eaten. */
static int step_chain(lua_State *L, int cur, int slots, lua_Integer h) {
  Deferred *d = (Deferred *)lua_touserdata(L, cur), *d2;
  slot_get(L, cur, slots, h + 1);
  d->head = h + 2;
  d2 = (Deferred *)lua_touserdata(L, -1);
  if (!d2->called) {
    if (debugging) debug_record(L, -1, "invoker");
    d2->called = 1;
    lua_getiuservalue(L, cur, UV_RESULT);
    lua_setiuservalue(L, -2, UV_RESULT);
    lua_pushnil(L);
    lua_setiuservalue(L, cur, UV_RESULT);
    return 1;
  }
  if (d2->suppress) {
    d2->suppress = 0;
    lua_pushnil(L);
  } else {
    push_already_called(L, -1);
    sp_failure_new(L, -1, L, 1);
    lua_remove(L, -2);
  }
  lua_setiuservalue(L, cur, UV_RESULT);
  lua_pop(L, 1);
  return 0;
}

/* [-0, +0, m] Store the value on top (a step's return value or error)
** as the result of the Deferred at cur. Returns 1 if it is an unfinished
** Deferred, which cur now waits on (the run of cur stops there). */
static inline int step_result(lua_State *L, int cur, int status) {
  Deferred *d = (Deferred *)lua_touserdata(L, cur), *inner;
  if (status != LUA_OK) {
    if (!sp_failure_is(L, -1)) {
      sp_failure_new(L, -1, NULL, 0);
      lua_remove(L, -2);
    }
  } else if ((inner = deferred_test(L, -1)) != NULL) {
    if (inner == d) {
      lua_pop(L, 1);
      lua_pushliteral(L, "callback returned the Deferred it was attached to");
      sp_failure_new(L, -1, NULL, 0);
      lua_remove(L, -2);
    } else if (!deferred_ready(inner)) {
      deferred_wait(L, cur, -1);
      lua_pop(L, 1);
      return 1;
    } else {
      result_steal(L);
    }
  }
  lua_setiuservalue(L, cur, UV_RESULT);
  return 0;
}

/* [-0, +(0|1), e] Run the steps of the Deferred at cur (its slots table
** is put at `slots`; eh is the message handler). Returns 1 with another
** Deferred pushed when a STEP_CONTINUE or STEP_CHAIN step hands it our
** result, else 0 (steps used up, or waiting on an inner Deferred). */
static int run_steps(lua_State *L, int cur, int slots, int eh) {
  Deferred *d = (Deferred *)lua_touserdata(L, cur);
  int loaded = lua_getiuservalue(L, cur, UV_SLOTS) == LUA_TTABLE;
  lua_replace(L, slots);
  /* Unlike Twisted, which checks `paused` only between Deferreds, a
  ** pause() inside a callback stops the run at once (API.md: while paused
  ** no callback runs). */
  while (d->head < d->tail && d->paused <= 0) {
    lua_Integer h = d->head, hdr, fn, arg;
    StepLayout st;
    int n, status, i;
    if (!loaded && d->tail > SLOTS_INLINE + 1) {
      /* A step run added slots past the inline ones: the table is new. */
      loaded = lua_getiuservalue(L, cur, UV_SLOTS) == LUA_TTABLE;
      lua_replace(L, slots);
    }
    lua_getiuservalue(L, cur, UV_RESULT);
    if (slot_get(L, cur, slots, h) != LUA_TNUMBER) { /* bare callback */
      d->head = h + 1;
      if (is_failure(L, -2)) {
        lua_pop(L, 2);
        continue;
      }
      lua_insert(L, -2);
      n = 0;
      goto call;
    }
    hdr = lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (STEP_KIND(hdr) == STEP_CONTINUE) {
      lua_pop(L, 1);
      step_continue(L, cur, slots, h);
      return 1;
    }
    if (STEP_KIND(hdr) == STEP_CHAIN) {
      lua_pop(L, 1);
      if (step_chain(L, cur, slots, h)) return 1;
      continue;
    }
    step_layout(h, hdr, &st);
    d->head = h + st.size;
    if (is_failure(L, -1))
      fn = st.eb, arg = st.ea, n = st.neb;
    else
      fn = st.cb, arg = st.ca, n = st.ncb;
    if (fn == 0) { /* pass through: the result stays */
      lua_pop(L, 1);
      continue;
    }
    slot_get(L, cur, slots, fn);
    lua_insert(L, -2);
    if (n > 0) {
      luaL_checkstack(L, n, "too many callback arguments");
      for (i = 0; i < n; i++) slot_get(L, cur, slots, arg + i);
    }
  call:
    d->running = 1;
    status = lua_pcall(L, 1 + n, 1, eh);
    d->running = 0;
    if (step_result(L, cur, status)) return 0;
  }
  return 0;
}

/* [-0, +0, m] Give the Deferred at idx its sentinel: a new empty
** userdata whose user value is the Deferred and whose metatable has the
** __gc (sentinel_gc) that reports an unhandled Failure. The metatable is
** set right after the userdata is made, while it is the newest object:
** that keeps lua_setmetatable's search for it one step long. */
static void sentinel_new(lua_State *L, int idx) {
  Deferred *d = (Deferred *)lua_touserdata(L, idx);
  idx = lua_absindex(L, idx);
  lua_newuserdatauv(L, 0, 1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &sentinel_key);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, idx);
  lua_setiuservalue(L, -2, 1);
  lua_setiuservalue(L, idx, UV_SENTINEL);
  d->guarded = 1;
}

/* [-0, +0, m] A run of the Deferred at cur is over for now: note whether
** it holds an unhandled Failure (arming its sentinel, made on first
** need), and start the slots again at 1 if no step is left. */
static inline void deferred_settle(lua_State *L, int cur, int slots) {
  Deferred *d = (Deferred *)lua_touserdata(L, cur);
  lua_getiuservalue(L, cur, UV_RESULT);
  d->unhandled = (unsigned char)is_failure(L, -1);
  lua_pop(L, 1);
  if (d->unhandled && !d->guarded) sentinel_new(L, cur);
  if (d->head == d->tail && d->tail > 1) {
    /* All used: a big table goes to the collector, a small one is kept. */
    if (d->tail > 25) {
      lua_pushnil(L);
      lua_setiuservalue(L, cur, UV_SLOTS);
      slots_clear(L, cur, slots, d->clean, SLOTS_INLINE + 1 - d->clean);
    } else {
      slots_clear(L, cur, slots, d->clean, d->tail - d->clean);
    }
    d->head = d->tail = d->clean = 1;
  } else if (d->clean < d->head) {
    slots_clear(L, cur, slots, d->clean, d->head - d->clean);
    d->clean = d->head;
  }
}

/* [-0, +0, m] deferred_run's short way for the usual Deferred: one bare
** callback (slot 1, the only step), a result that is not a Failure, not
** paused or waiting; idx is absolute. The callback runs as run_steps
** would run it, then, if it left nothing to do, the Deferred settles
** here and 1 is returned. 0: not that case, or the callback added steps,
** paused d or gave it a Deferred to wait on; deferred_run's loop goes on
** from where d is, as it would after this step. */
static int run_one(lua_State *L, int idx) {
  Deferred *d = (Deferred *)lua_touserdata(L, idx);
  int status;
  if (d->paused > 0 || d->waiting) return 0;
  lua_pushcfunction(L, sp_errhandler);
  if (slot_get(L, idx, 0, 1) == LUA_TNUMBER) { /* a step header */
    lua_pop(L, 2);
    return 0;
  }
  lua_getiuservalue(L, idx, UV_RESULT);
  if (is_failure(L, -1)) { /* the callback is passed over */
    lua_pop(L, 3);
    return 0;
  }
  d->head = 2;
  d->running = 1;
  status = lua_pcall(L, 1, 1, -3);
  d->running = 0;
  if (status == LUA_OK && lua_type(L, -1) != LUA_TTABLE &&
      lua_type(L, -1) != LUA_TUSERDATA && d->head == 2 && d->tail == 2 &&
      d->clean == 1 && d->paused <= 0) {
    /* Neither a Failure nor a Deferred, and nothing left: step_result
    ** and deferred_settle in short. */
    lua_setiuservalue(L, idx, UV_RESULT);
    lua_pushnil(L);
    lua_setiuservalue(L, idx, UV_INLINE);
    d->unhandled = 0;
    d->head = d->tail = d->clean = 1;
    lua_pop(L, 1);
    return 1;
  }
  if (step_result(L, idx, status) || d->head != d->tail || d->tail != 2 ||
      d->paused > 0) {
    lua_pop(L, 1);
    return 0;
  }
  lua_pop(L, 1);
  deferred_settle(L, idx, 0);
  return 1;
}

/* [-0, +0, m] Run the callbacks of the fired Deferred at idx as far as
** they can go. Follows Twisted's Deferred._runCallbacks: an outer
** Deferred that an inner one hands its result to is pushed on `chain`
** and run next; when it is done we go back to the inner one. Unlike
** Twisted, a paused Deferred met in the chain is skipped, not the end of
** the whole run, so the Deferred that handed it the result still runs
** its own remaining steps. */
static void deferred_run(lua_State *L, int idx) {
  Deferred *d = (Deferred *)lua_touserdata(L, idx);
  int base = lua_gettop(L), eh, cur, slots, chain;
  lua_Integer depth = 0;
  if (d->running) return; /* the run below us on the stack goes on */
  luaL_checkstack(L, 8, NULL);
  idx = lua_absindex(L, idx);
  if (d->head == 1 && d->tail == 2 && run_one(L, idx)) return;
  lua_pushcfunction(L, sp_errhandler);
  lua_pushvalue(L, idx);
  lua_pushnil(L);
  lua_pushnil(L);
  eh = base + 1, cur = base + 2, slots = base + 3, chain = base + 4;
  for (;;) {
    d = (Deferred *)lua_touserdata(L, cur);
    if (d->paused <= 0 && !d->waiting && !d->running &&
        run_steps(L, cur, slots, eh)) {
      if (lua_isnil(L, chain)) {
        lua_newtable(L);
        lua_replace(L, chain);
      }
      lua_pushvalue(L, cur);
      lua_rawseti(L, chain, ++depth);
      lua_replace(L, cur);
      continue;
    }
    deferred_settle(L, cur, slots);
    if (depth == 0) break;
    lua_rawgeti(L, chain, depth);
    lua_replace(L, cur);
    lua_pushnil(L);
    lua_rawseti(L, chain, depth--);
  }
  lua_settop(L, base);
}

/* [-0, +0, e] Raise AlreadyCalledError for the Deferred at idx. */
static int raise_already_called(lua_State *L, int idx) {
  push_already_called(L, idx);
  return lua_error(L);
}

/* [-0, +0, e] Fire the Deferred at idx with the value at v (Twisted's
** _startRunCallbacks). */
static void deferred_start(lua_State *L, int idx, int v) {
  Deferred *d = (Deferred *)lua_touserdata(L, idx);
  idx = lua_absindex(L, idx);
  if (d->called) {
    if (d->suppress) {
      d->suppress = 0;
      return;
    }
    raise_already_called(L, idx);
  }
  if (debugging) debug_record(L, idx, "invoker");
  d->called = 1;
  lua_pushvalue(L, v);
  lua_setiuservalue(L, idx, UV_RESULT);
  deferred_run(L, idx);
}

/* [-0, +0, e] Replace the value at idx with a Failure wrapping it (its
** traceback taken here), unless it is one. */
static void to_failure(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (sp_failure_is(L, idx)) return;
  sp_failure_new(L, idx, L, 1);
  lua_replace(L, idx);
}

/* defer.Deferred([canceller]) -> Deferred
** A new unfired Deferred. canceller(d), if given, is called by d:cancel()
** to stop the work d stands for. twisted.internet.defer.Deferred. */
static int deferred_new(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) sp_checkcallable(L, 1);
  deferred_push(L, lua_isnoneornil(L, 1) ? 0 : 1, 0);
  return 1;
}

/* [-0, +0, e] Append a step and run it at once if d has fired. */
static int add_step(lua_State *L, int kind, int cb, int eb, int ca, int nca,
                    int ea, int nea) {
  Deferred *d = (Deferred *)lua_touserdata(L, 1);
  step_append(L, 1, kind, cb, eb, ca, nca, ea, nea);
  if (d->called) deferred_run(L, 1);
  lua_pushvalue(L, 1);
  return 1;
}

/* d:addCallback(f, ...) -> d
** Append a step that calls f(result, ...) on success and passes failures
** through. Bound arguments keep nils. Deferred.addCallback. */
static int deferred_addCallback(lua_State *L) {
  int n = lua_gettop(L);
  Deferred *d = deferred_self(L, 1);
  method_callable(L, 2);
  if (n > 2) return add_step(L, STEP_PLAIN, 2, 0, 3, n - 2, 0, 0);
  /* The common case: a bare callable in one slot. */
  if (d->tail <= SLOTS_INLINE) {
    lua_pushvalue(L, 2);
    lua_setiuservalue(L, 1, UV_INLINE - 1 + (int)d->tail++);
  } else {
    slots_push(L, 1);
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, d->tail++);
  }
  if (d->called) deferred_run(L, 1);
  lua_pushvalue(L, 1);
  return 1;
}

/* d:addErrback(f, ...) -> d
** Append a step that calls f(failure, ...) on failure and passes success
** through. Deferred.addErrback. */
static int deferred_addErrback(lua_State *L) {
  int n = lua_gettop(L);
  deferred_self(L, 1);
  method_callable(L, 2);
  return add_step(L, STEP_PLAIN, 0, 2, 0, 0, 3, n - 2);
}

/* d:addBoth(f, ...) -> d
** Append a step that calls f(result or failure, ...). Deferred.addBoth. */
static int deferred_addBoth(lua_State *L) {
  int n = lua_gettop(L);
  deferred_self(L, 1);
  method_callable(L, 2);
  return add_step(L, STEP_SHARED, 2, 2, 3, n - 2, 0, 0);
}

/* [-0, +n, e] Push the elements of the argument table at idx (nil: none);
** its length is t.n when set, else #t. Returns how many. */
static int args_unpack(lua_State *L, int idx) {
  lua_Integer n, i;
  if (lua_isnoneornil(L, idx)) return 0;
  if (!lua_istable(L, idx)) sp_typeerror(L, idx, "table", DEFERRED_MT);
  if (lua_getfield(L, idx, "n") == LUA_TNUMBER)
    n = lua_tointeger(L, -1);
  else
    n = luaL_len(L, idx);
  lua_pop(L, 1);
  luaL_argcheck(L, n >= 0 && n < 10000, idx, "bad argument count");
  luaL_checkstack(L, (int)n, "too many callback arguments");
  for (i = 1; i <= n; i++) lua_geti(L, idx, i);
  return (int)n;
}

/* d:addCallbacks(callback, errback, callbackArgs, errbackArgs) -> d
** Append one step with both functions; errback nil passes failures
** through; the argument tables (table.pack-style or lists) may be nil.
** Deferred.addCallbacks. */
static int deferred_addCallbacks(lua_State *L) {
  int nca, nea;
  deferred_self(L, 1);
  method_callable(L, 2);
  if (!lua_isnoneornil(L, 3)) method_callable(L, 3);
  lua_settop(L, 5);
  nca = args_unpack(L, 4);
  nea = args_unpack(L, 5);
  return add_step(L, STEP_PLAIN, 2, lua_isnil(L, 3) ? 0 : 3, 6, nca, 6 + nca,
                  nea);
}

/* d:chainDeferred(d2) -> d
** d's result (success or failure) fires d2, which then has nil as d's
** result; d's later steps run once d2's chain has run. One way: firing d2
** does not touch d. If d2 has fired by then, d's result becomes a Failure
** of AlreadyCalledError. A chain of any length costs heap, not C stack
** (Twisted's recurses). Deferred.chainDeferred. */
static int deferred_chainDeferred(lua_State *L) {
  deferred_self(L, 1);
  deferred_self(L, 2);
  lua_settop(L, 2);
  return add_step(L, STEP_CHAIN, 2, 0, 0, 0, 0, 0);
}

/* d:callback(result)
** Fire the success chain with result (nil if absent). Raises
** AlreadyCalledError if d has fired (except the first late fire after a
** cancel() without canceller, which is ignored); a Deferred as result is
** a bad argument. Deferred.callback. */
static int deferred_callback(lua_State *L) {
  deferred_self(L, 1);
  lua_settop(L, 2);
  if (deferred_test(L, 2) != NULL)
    return sp_argerror(L, 2,
                       "a Deferred cannot be a result (return it "
                       "from a callback to chain it)",
                       DEFERRED_MT);
  deferred_start(L, 1, 2);
  return 0;
}

/* d:errback([fail])
** Fire the failure chain. fail is a Failure or any error value (wrapped in
** a Failure whose traceback is taken here); without it, a Failure with the
** message "errback() called without a failure". Deferred.errback. */
static int deferred_errback(lua_State *L) {
  deferred_self(L, 1);
  lua_settop(L, 2);
  if (lua_isnil(L, 2)) {
    lua_pushliteral(L, "errback() called without a failure");
    lua_replace(L, 2);
  }
  to_failure(L, 2);
  deferred_start(L, 1, 2);
  return 0;
}

/* d:pause(): no callback runs until a matching unpause(). Counted.
** Deferred.pause. */
static int deferred_pause(lua_State *L) {
  Deferred *d = deferred_self(L, 1);
  d->paused++;
  return 0;
}

/* d:unpause(): undo one pause(); at zero, run the callbacks added
** meanwhile if d has fired and is not waiting on an inner Deferred.
** Extra unpauses are ignored, so one while d waits (d.paused is 1) leaves
** the wait alone: d goes on when the inner Deferred fires.
** Deferred.unpause. */
static int deferred_unpause(lua_State *L) {
  Deferred *d = deferred_self(L, 1);
  if (d->paused <= 0) return 0;
  if (--d->paused == 0 && d->called) deferred_run(L, 1);
  return 0;
}

/* d:cancel()
** Unfired: call the canceller (errors it raises propagate), then errback
** with CancelledError if still unfired. Waiting on an inner Deferred:
** cancel that one (followed iteratively down a chain of waits). Fired:
** nothing. Deferred.cancel. */
static int deferred_cancel(lua_State *L) {
  Deferred *d = deferred_self(L, 1);
  lua_settop(L, 1);
  while (d->called && d->waiting) {
    lua_getiuservalue(L, 1, UV_RESULT);
    lua_replace(L, 1);
    d = (Deferred *)lua_touserdata(L, 1);
  }
  if (d->called) return 0;
  if (lua_getiuservalue(L, 1, UV_CANCELLER) != LUA_TNIL) {
    lua_pushvalue(L, 1);
    lua_call(L, 1, 0);
  } else {
    lua_pop(L, 1);
    d->suppress = 1;
  }
  if (!d->called) {
    sp_errortype_make(L, "defer.CancelledError", "Deferred was cancelled");
    to_failure(L, -1);
    deferred_start(L, 1, -1);
  }
  return 0;
}

/* [-0, +1, m] Push a Lua-style repr of the value at idx: strings quoted
** as Twisted's repr does, the rest as tostring. */
static void repr_push(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TSTRING)
    lua_pushfstring(L, "'%s'", lua_tostring(L, idx));
  else
    luaL_tolstring(L, idx, NULL);
}

/* tostring(d) -> "<Deferred at 0x...>", with " current result: 4" once
** fired, or " waiting on Deferred at 0x..." while it waits on another.
** Upvalue 1: the Deferred metatable. Deferred.__str__. */
static int deferred_tostring(lua_State *L) {
  Deferred *d = deferred_upcheck(L, 1, 1);
  lua_getiuservalue(L, 1, UV_RESULT);
  if (!d->called) {
    lua_pushfstring(L, "<Deferred at %p>", (void *)d);
  } else if (d->waiting) {
    lua_pushfstring(L, "<Deferred at %p waiting on Deferred at %p>", (void *)d,
                    lua_touserdata(L, -1));
  } else {
    repr_push(L, -1);
    lua_pushfstring(L, "<Deferred at %p current result: %s>", (void *)d,
                    lua_tostring(L, -1));
  }
  return 1;
}

/* __index: methods, then the read-only fields called (boolean), paused
** (the pause() count, plus one while waiting on an inner Deferred, as in
** Twisted) and result, then fields a user set. Upvalue 1: methods; 2: the
** Deferred metatable. A method is found without touching d (the hot path:
** every d:addCallback); d is checked before anything else. Not core.c's
** sp_class_newx: a Deferred also keeps fields its user sets (Python code
** sets attributes on Deferreds), which that class builder does not. */
static int deferred_index(lua_State *L) {
  Deferred *d;
  const char *k;
  lua_settop(L, 2);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  d = deferred_upcheck(L, 1, 2);
  if (lua_type(L, 2) == LUA_TSTRING) {
    k = lua_tostring(L, 2);
    if (strcmp(k, "called") == 0) {
      lua_pushboolean(L, d->called);
      return 1;
    } else if (strcmp(k, "paused") == 0) {
      lua_pushinteger(L, (lua_Integer)d->paused + d->waiting);
      return 1;
    } else if (strcmp(k, "result") == 0) {
      lua_getiuservalue(L, 1, UV_RESULT);
      return 1;
    }
  }
  if (lua_getiuservalue(L, 1, UV_ATTRS) != LUA_TTABLE) return 1;
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  return 1;
}

/* __newindex: methods and called/paused/result are read-only; other
** fields are kept for the user (Python code sets attributes on
** Deferreds). Upvalue 1: methods; 2: the Deferred metatable. */
static int deferred_newindex(lua_State *L) {
  deferred_upcheck(L, 1, 2);
  lua_settop(L, 3);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL ||
      (lua_type(L, 2) == LUA_TSTRING &&
       (strcmp(lua_tostring(L, 2), "called") == 0 ||
        strcmp(lua_tostring(L, 2), "paused") == 0 ||
        strcmp(lua_tostring(L, 2), "result") == 0)))
    return luaL_error(L, "Deferred field '%s' is read-only",
                      luaL_tolstring(L, 2, NULL));
  if (lua_getiuservalue(L, 1, UV_ATTRS) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, UV_ATTRS);
  }
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_rawset(L, -3);
  return 0;
}

/* __gc of a Deferred's sentinel, collected with its Deferred (each holds
** the other): if the Deferred still has the Failure it ended a run with,
** log "Unhandled error in Deferred:" with its traceback, once (Twisted's
** DebugInfo.__del__). Also runs at lua_close for live Deferreds. */
static int sentinel_gc(lua_State *L) {
  Deferred *d;
  lua_settop(L, 1);
  if (!lua_getmetatable(L, 1)) return 0; /* called by hand (debug.*) */
  lua_rawgetp(L, LUA_REGISTRYINDEX, &sentinel_key);
  if (!lua_rawequal(L, -1, -2)) return 0;
  lua_settop(L, 1);
  lua_getiuservalue(L, 1, 1);
  d = deferred_test(L, 2);
  if (d == NULL || !d->unhandled) return 0;
  d->unhandled = 0;
  lua_getiuservalue(L, 2, UV_RESULT);
  if (!sp_failure_is(L, -1)) return 0;
  lua_pushliteral(L, "Unhandled error in Deferred:");
  debug_pushinfo(L, 2);
  if (lua_rawlen(L, -1) > 0) {
    lua_pushliteral(L, "\n(debug:\n");
    lua_insert(L, -2);
    lua_pushliteral(L, ")");
    lua_concat(L, 4);
  } else {
    lua_pop(L, 1);
  }
  sp_log_failure(L, 3, lua_tostring(L, -1));
  return 0;
}

/* defer.setDebugging(on): record where each new Deferred is made and
** first fired, for AlreadyCalledError and unhandled-error reports.
** twisted.internet.defer.setDebugging. */
static int defer_setDebugging(lua_State *L) {
  debugging = lua_toboolean(L, 1);
  return 0;
}

/* defer.getDebugging() -> boolean. twisted...defer.getDebugging. */
static int defer_getDebugging(lua_State *L) {
  lua_pushboolean(L, debugging);
  return 1;
}

/* _defer.info(d) -> where, age, called, paused, waiting: where d was
** made ("file:line", the first frame outside lua/spindle/, or "?"), how
** many seconds ago, whether it has fired, its pause count, and whether
** it waits on the inner Deferred that d.result then is. For
** spindle.inspect; nil for a non-Deferred. */
static int defer_info(lua_State *L) {
  Deferred *d = deferred_test(L, 1);
  if (d == NULL) return 0;
  sp_inspect_pushwhere(L, &d->where);
  lua_pushboolean(L, d->called);
  lua_pushinteger(L, d->paused);
  lua_pushboolean(L, d->waiting);
  return 5;
}

/* _defer.isDeferred(v) -> boolean: for spindle's own Lua code. */
static int defer_isDeferred(lua_State *L) {
  lua_pushboolean(L, deferred_test(L, 1) != NULL);
  return 1;
}

/* _defer.adopt(d, inner): fire the unfired d with inner's result, as if
** a callback of d had returned inner (rule 3): d waits for inner if inner
** has no result yet. inlineCallbacks' cancellation uses it, as Twisted's
** _cancellableInlineCallbacks makes its Deferred wait on a fresh one. */
static int defer_adopt(lua_State *L) {
  Deferred *d = deferred_check(L, 1), *inner = deferred_check(L, 2);
  lua_settop(L, 2);
  luaL_argcheck(L, d != inner, 2, "a Deferred cannot wait on itself");
  if (d->called) raise_already_called(L, 1);
  if (deferred_ready(inner)) {
    result_steal(L);
    deferred_start(L, 1, 2);
    return 0;
  }
  d->called = 1;
  deferred_wait(L, 1, 2);
  return 0;
}

/* _defer.toFailure(value, traceback) -> Failure: wrap any error value,
** nil included (a coroutine that raised error() or error(nil)), with the
** traceback string given (nil: none); a Failure is returned as it is.
** failure.Failure rejects nil; this is for spindle's own Lua code. */
static int defer_toFailure(lua_State *L) {
  lua_settop(L, 2);
  if (!lua_isnil(L, 2)) luaL_checktype(L, 2, LUA_TSTRING);
  sp_failure_new(L, 1, NULL, 0);
  if (!sp_failure_is(L, 1) && !lua_isnil(L, 2)) {
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, "_tb");
  }
  return 1;
}

static const luaL_Reg deferred_methods[] = {
    {"addCallback", deferred_addCallback},
    {"addErrback", deferred_addErrback},
    {"addBoth", deferred_addBoth},
    {"addCallbacks", deferred_addCallbacks},
    {"chainDeferred", deferred_chainDeferred},
    {"callback", deferred_callback},
    {"errback", deferred_errback},
    {"pause", deferred_pause},
    {"unpause", deferred_unpause},
    {"cancel", deferred_cancel},
    {NULL, NULL}};

/* [-0, +0, m] Make the Deferred metatable, whose methods table and
** metamethods hold it as an upvalue (users see "spindle.Deferred" as its
** name), and the sentinels' metatable. */
static void meta_init(lua_State *L) {
  int mt, methods;
  luaL_newmetatable(L, DEFERRED_MT);
  mt = lua_gettop(L);
  lua_newtable(L);
  methods = mt + 1;
  lua_pushvalue(L, mt);
  luaL_setfuncs(L, deferred_methods, 1);
  lua_pushvalue(L, methods);
  lua_pushvalue(L, mt);
  lua_pushcclosure(L, deferred_index, 2);
  lua_setfield(L, mt, "__index");
  lua_pushvalue(L, methods);
  lua_pushvalue(L, mt);
  lua_pushcclosure(L, deferred_newindex, 2);
  lua_setfield(L, mt, "__newindex");
  lua_pushvalue(L, mt);
  lua_pushcclosure(L, deferred_tostring, 1);
  lua_setfield(L, mt, "__tostring");
  lua_pushliteral(L, "Deferred");
  lua_setfield(L, mt, "__metatable");
  lua_pushvalue(L, mt);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &mt_key);
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, sentinel_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushliteral(L, "Deferred sentinel");
  lua_setfield(L, -2, "__metatable");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &sentinel_key);
  lua_pop(L, 2);
}

void sp_deferred_new(lua_State *L) {
  deferred_push(L, 0, 0);
}

void sp_deferred_meta(lua_State *L) {
  meta_push(L);
}

void sp_deferred_new_meta(lua_State *L, int mt) {
  deferred_push(L, 0, lua_absindex(L, mt));
}

int sp_deferred_is(lua_State *L, int idx) {
  return deferred_test(L, idx) != NULL;
}

void sp_deferred_callback(lua_State *L, int d, int v) {
  d = lua_absindex(L, d);
  v = lua_absindex(L, v);
  deferred_check(L, d);
  if (deferred_test(L, v) != NULL)
    luaL_error(L, "a Deferred cannot be a Deferred's result");
  deferred_start(L, d, v);
}

void sp_deferred_callback_known(lua_State *L, int d, int v) {
  d = lua_absindex(L, d);
  v = lua_absindex(L, v);
  if (deferred_test(L, v) != NULL)
    luaL_error(L, "a Deferred cannot be a Deferred's result");
  deferred_start(L, d, v);
}

void sp_deferred_errback(lua_State *L, int d, int f) {
  d = lua_absindex(L, d);
  f = lua_absindex(L, f);
  deferred_check(L, d);
  if (sp_failure_is(L, f)) {
    deferred_start(L, d, f);
  } else {
    sp_failure_new(L, f, NULL, 0);
    deferred_start(L, d, -1);
    lua_pop(L, 1);
  }
}

static const luaL_Reg defer_funcs[] = {{"Deferred", deferred_new},
                                       {"setDebugging", defer_setDebugging},
                                       {"getDebugging", defer_getDebugging},
                                       {"isDeferred", defer_isDeferred},
                                       {"info", defer_info},
                                       {"adopt", defer_adopt},
                                       {"toFailure", defer_toFailure},
                                       {NULL, NULL}};

/* spindle._defer: the C half of spindle.defer. Its `methods` field is the
** Deferred methods table, so that defer.lua can add addTimeout. */
int luaopen_spindle__defer(lua_State *L) {
  luaL_newlib(L, defer_funcs);
  meta_push(L);
  lua_getfield(L, -1, "__index");
  lua_getupvalue(L, -1, 1);
  lua_setfield(L, -4, "methods");
  lua_pop(L, 2);
  lua_pushcfunction(L, sp_errhandler);
  lua_setfield(L, -2, "errhandler");
  return 1;
}
