/*
** pool.c: the thread pool: reactor.callInThread, suggestThreadPoolSize,
** getThreadPool (spindle._pool, a reactor part) and deferToThread,
** blockingCallFromThread (spindle._threads, behind spindle.threads).
** Follows twisted.python.threadpool.ThreadPool and
** twisted.internet.threads. Two openers, because the reactor takes every
** field of its parts and the threads functions are not the reactor's.
**
** Work crosses threads by value (marshal.c): the main thread packs the
** function and its arguments into one buffer, queues it, and a worker
** unpacks it into its own lua_State, which it keeps for its life, runs
** it, and packs the outcome into a reply that it posts to the loop's
** inbox (sp_loop_post); the loop thread unpacks it and fires the
** Deferred, logs the error, or runs the function (callFromThread from a
** worker). blockingCallFromThread posts the same way and then waits on
** a condition for the answer.
**
** Wake-ups are batched both ways, steered by how long calls have been taking
** (pool.avg, a moving average; long until measured, and again after a call
** blocked or ran past HOLD_NS). While calls are short (under SHORT_NS), an
** awake worker takes up to BATCH_MAX of them per lock and the main thread wakes
** a sleeping worker only when the queue holds more than 4 * BATCH_MAX calls per
** awake worker; while they are long, a worker takes one and a sleeping worker
** is woken for every call the awake, idle workers will not take (as before:
** long calls run side by side). A worker whose call ran past HOLD_NS puts the
** rest of its batch back and wakes or starts others, so the calls batched
** behind a long call among short ones wait for that one call (the price of
** batching, paid once per switch from short calls to long ones). A worker holds
** its results back and posts them as one message (one inbox lock, one uv_async)
** after its batch or when the oldest has waited HOLD_NS; the loop thread
** delivers them under one protected call. Whatever else it posts
** (callFromThread, log lines, blockingCallFromThread) goes at once, after the
** results held before it, so the loop thread sees one worker's messages in the
** order it sent them. A worker about to block in blockingCallFromThread first
** puts the calls of its batch it has not started back at the head of the queue.
**
** Threads start lazily, one when work is queued and no worker is idle (while
** calls are short: one per 4 * BATCH_MAX queued calls beyond the running
** workers), up to `max` (10 by default, Twisted's), from the main thread or
** from a worker giving its batch back; joined by the main thread only. A worker
** beyond a lowered max ends when it next looks for work. Workers live until the
** pool stops (Twisted's ThreadPool keeps them too); min is 0.
**
** What a deferToThread round trip allocates is reused: a call and its
** message are one block, a result's reply carries that block back to the
** main thread (`spares`), and reply blocks go out again with later calls;
** the Deferred's registry slot comes from slots results gave back. A
** result that is one nil, boolean or number travels inside its reply and
** needs no protected call on either side.
**
** LOCKING RULE: one mutex, pool.lock, guards every field of `pool`, the
** queue, every worker's fields and every bcall's fields, but a worker's
** own batch, held replies and noted function (rest, held, heldtail,
** since, noted: touched only by that worker's thread), its `running`
** text (its own runlock, taken after pool.lock when both are), stop_seen
** (an atomic copy of pool.stopping, read between the calls of a batch),
** and the main thread's spares and spare registry slots (main thread
** only). It is held only
** to move pointers and counters and to wait on or signal a condition:
** never while running Lua, packing or unpacking, joining a thread or
** posting to the inbox (sp_loop_post takes the inbox's own lock, so the
** order pool.lock -> inbox lock never happens). The main Lua state is
** touched only on the loop thread; a worker's state only by its worker.
**
** Length: about 1400 lines, on purpose: the queue, the workers'
** batching and the replies share the one lock and its rule, so they stay
** in the file that states it.
*/
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "defer.h"
#include "failure.h"
#include "loop.h"
#include "marshal.h"
#include "pool.h"
#include "worker.h"

#define DEFAULT_MAX 10
#define BATCH_MAX 16
#define HOLD_NS 1000000 /* how long a worker may hold a result back */
#define SHORT_NS 50000  /* calls shorter than this are batched */
#define BCALL_MT "spindle.BlockingCall"

typedef enum { W_CALL, W_DEFER } work_kind;

struct reply;

/* A queued call: callInThread or deferToThread. */
typedef struct work {
  struct work *next;
  work_kind kind;
  int ref;        /* W_DEFER: the Deferred, main registry ref */
  sp_packed call; /* the function, then its arguments, in the job's own
                  ** block (sp_marshal_pack_room) */
  size_t cap;     /* the block's size */
  /* W_DEFER: a reply block for the result (uninitialized), or NULL. */
  struct reply *spare;
} work;

/* A blockingCallFromThread in flight: the worker waits on `cond` until
** the loop thread sets done (with ok and the packed outcome) or dropped
** (the reactor shut down first), or the pool stops. Freed by whichever
** of its two holders (the worker, the main side) lets go last. */
typedef struct bcall {
  uv_cond_t cond;
  int refs;
  int done, ok, dropped;
  sp_packed out;
} bcall;

typedef struct worker {
  struct worker *next;
  uv_thread_t tid;
  int exited;     /* the thread has left its loop: join it */
  bcall *waiting; /* its blockingCallFromThread, if any */
  int inbatch;    /* it is running a batch of calls */
  /* Where the function it runs (or last ran) was defined, "file:line";
  ** shown while inbatch. Guarded by runlock, which the worker takes
  ** only when the function changes, so that the inspector's view costs
  ** no lock per call. */
  uv_mutex_t runlock;
  char running[96];
  const void *noted; /* the function running names (worker's own) */
  /* The worker's own (no lock): the calls of its batch not started yet,
  ** and the replies it holds back, oldest first, since `since` (ns). */
  work *rest;
  struct reply *held, *heldtail;
  uint64_t since;
} worker;

static struct {
  uv_mutex_t lock;
  uv_cond_t cond; /* work queued, max lowered, or stopping */
  work *head, *tail;
  int queued, max, workers, busy;
  int sleeping, wakes; /* workers in cond_wait; signals not yet taken */
  int exited;          /* workers that have exited, not yet joined */
  uint64_t avg;        /* ns per call, a moving average over batches */
  uint64_t progress;   /* when a worker last took or ended a batch (ns) */
  int stopping, ready;
  worker *all;
} pool;

/* pool.stopping, for a worker between the calls of its batch without
** taking the lock: the calls not started are then dropped. */
static atomic_int stop_seen;

/* The worker a thread is (NULL on the others). */
static _Thread_local worker *self = NULL;

/* A message for the loop thread. */
typedef enum { R_RESULT, R_CALL, R_BCALL, R_LOG, R_ERR } reply_kind;
typedef struct reply {
  sp_loop_msg m;      /* first: the inbox links it */
  struct reply *more; /* the next one posted with it */
  reply_kind kind;
  int ref, ok; /* R_RESULT: the Deferred and how f ended */
  bcall *bc;   /* R_BCALL */
  sp_packed p; /* its data may be inl (a one-number result) */
  char inl[SP_MARSHAL_SCALAR];
  work *spare; /* R_RESULT: its job's block, given back for reuse */
} reply;

/* Free a job's block and its spare reply block. Any thread. */
static void work_free(work *job) {
  free(job->spare);
  free(job);
}

/* Blocks kept for reuse by the main thread (main thread only, no lock):
** a result's reply carries its job's block back, and the reply block
** itself goes out again with a later job for that job's result, so a
** steady stream of deferToThread calls allocates neither. At most
** FREE_MAX of each; freed when the pool stops. */
#define FREE_MAX 64
static struct {
  work *jobs;            /* linked by next */
  struct reply *replies; /* linked by more */
  int njobs, nreplies;
  int closed; /* the pool stopped: nothing more is kept */
} spares;

int sp_pool_inworker(void) {
  return self != NULL;
}

/* ---------------------------------------------------------------- */
/* bcall                                                               */

static void bcall_release(bcall *bc) {
  int last;
  uv_mutex_lock(&pool.lock);
  last = --bc->refs == 0;
  uv_mutex_unlock(&pool.lock);
  if (!last) return;
  uv_cond_destroy(&bc->cond);
  sp_marshal_free(&bc->out);
  free(bc);
}

/* The main side's answer (out is taken), or dropped when out is NULL;
** then the main side lets go. Any thread. */
static void bcall_answer(bcall *bc, int ok, sp_packed *out) {
  uv_mutex_lock(&pool.lock);
  if (out != NULL) {
    bc->done = 1;
    bc->ok = ok;
    bc->out = *out;
    out->data = NULL;
  } else {
    bc->dropped = 1;
  }
  uv_cond_signal(&bc->cond);
  uv_mutex_unlock(&pool.lock);
  bcall_release(bc);
}

/* ---------------------------------------------------------------- */
/* Packing outcomes                                                    */

static int pack_cf(lua_State *L) {
  sp_packed *out = lua_touserdata(L, 1);
  const char *what = lua_touserdata(L, 2);
  int n = lua_gettop(L) - 2;
  sp_marshal_pack(L, 3, n, what, 1, out);
  return 0;
}

/* [-0, +0, -] Pack n values from idx, catching errors: returns LUA_OK or
** leaves nothing and pushes the error as a Failure (a memory error as
** its bare message, since Lua runs no message handler for one). */
static int pack_protected(lua_State *L, int idx, int n, const char *what,
                          sp_packed *out) {
  idx = lua_absindex(L, idx);
  /* Nothing before the call may raise: a worker calls this outside any
  ** protected call. So the stack is grown with lua_checkstack and `what`
  ** goes as a light userdata (a string would be allocated). Lua keeps
  ** its memory error message interned: pushing it allocates nothing. */
  if (!lua_checkstack(L, n + 3)) {
    lua_pushliteral(L, "not enough memory");
    return LUA_ERRMEM;
  }
  lua_pushcfunction(L, pack_cf);
  lua_pushlightuserdata(L, out);
  lua_pushlightuserdata(L, (void *)what);
  for (int i = 0; i < n; i++) lua_pushvalue(L, idx + i);
  return sp_pcall(L, n + 2, 0);
}

typedef struct failpack {
  const char *why;
  sp_packed *out;
} failpack;

/* [-1, +0, e] pack_failure's body, protected: the error is at 2. */
static int pack_failure_cf(lua_State *L) {
  failpack *fp = lua_touserdata(L, 1);
  sp_failure_new(L, 2, NULL, 0); /* 3 */
  if (fp->why)
    lua_pushstring(L, fp->why);
  else
    lua_pushnil(L); /* 4 */
  if (pack_protected(L, 3, 2, "error", fp->out) != LUA_OK) {
    lua_settop(L, 4);
    lua_getfield(L, 3, "value");
    luaL_tolstring(L, -1, NULL);
    lua_getfield(L, 3, "_tb");
    lua_createtable(L, 0, 3);
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "value");
    lua_pushliteral(L, "string");
    lua_setfield(L, -2, "type");
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "_tb");
    luaL_setmetatable(L, SP_FAILURE_MT);
    lua_pushvalue(L, 4);
    if (pack_protected(L, -2, 2, "error", fp->out) != LUA_OK)
      return lua_error(L);
  }
  return 0;
}

/* [-0, +0, -] Pack a Failure for the error at idx, and `why` (may be
** NULL). An error value that cannot be copied goes as its text, with
** the same traceback. Never raises, even outside a protected call (a
** worker's): out of memory, out is left empty, which the loop thread
** reads as a memory error. */
static void pack_failure(lua_State *L, int idx, const char *why,
                         sp_packed *out) {
  failpack fp = {why, out};
  int top = lua_gettop(L);
  out->data = NULL;
  out->len = 0;
  out->n = 0;
  out->refs = 0;
  idx = lua_absindex(L, idx);
  if (!lua_checkstack(L, 3)) return;
  lua_pushcfunction(L, pack_failure_cf);
  lua_pushlightuserdata(L, &fp);
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    sp_marshal_free(out);
    out->n = 0;
    out->refs = 0;
    fprintf(stderr, "spindle: cannot pass an error between threads\n");
  }
  lua_settop(L, top);
}

/* [-0, +0, -] Pack the outcome of a call: its result at idx if ok, else
** the Failure at idx. A result that cannot be copied becomes a
** TransferError Failure. Returns whether it is a success. */
static int pack_outcome(lua_State *L, int ok, int idx, sp_packed *out) {
  if (ok && sp_marshal_pack_scalar(L, idx, out)) return 1;
  if (ok) {
    if (pack_protected(L, idx, 1, "result", out) == LUA_OK) return 1;
    pack_failure(L, -1, NULL, out);
    lua_pop(L, 1);
    return 0;
  }
  pack_failure(L, idx, NULL, out);
  return 0;
}

/* ---------------------------------------------------------------- */
/* Replies, on the loop thread                                         */

/* Registry slots (holding true) kept for deferToThread's Deferreds:
** one is taken before packing (packing raises: TransferError, memory;
** after it nothing may raise before the message is someone's, so no
** protected call is needed), and a delivered result gives its slot
** back, so that a steady stream of calls neither grows nor shrinks the
** registry. Main thread only. */
#define SPARE_REFS 64
static int spare_refs[SPARE_REFS], spare_n;

/* [-0, +0, -] Let go of registry slot ref: kept as a spare if there is
** room (setting an existing key allocates nothing), else freed. */
static void ref_release(lua_State *L, int ref) {
  if (spare_n < SPARE_REFS) {
    lua_pushboolean(L, 1);
    lua_rawseti(L, LUA_REGISTRYINDEX, ref);
    spare_refs[spare_n++] = ref;
  } else {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
  }
}

/* [-0, +n, e] Unpack a reply's values. */
static int unpack_cf(lua_State *L) {
  return sp_marshal_unpack(L, lua_touserdata(L, 1));
}

/* [-0, +1, -] Require module `name` and push its field `field`. */
static void push_modfield(lua_State *L, const char *name, const char *field) {
  lua_getglobal(L, "require");
  lua_pushstring(L, name);
  lua_call(L, 1, 1);
  lua_getfield(L, -1, field);
  lua_remove(L, -2);
}

static int bcall_handle_gc(lua_State *L);

/* Added to the Deferred a blockingCallFromThread's function returned
** (upvalue 1: the handle): answer the worker with its result. */
static int bcall_fired(lua_State *L) {
  bcall **h = lua_touserdata(L, lua_upvalueindex(1));
  sp_packed out;
  int ok;
  lua_settop(L, 1);
  if (*h == NULL) return 1;
  ok = pack_outcome(L, !sp_failure_is(L, 1), 1, &out);
  bcall_answer(*h, ok, &out);
  *h = NULL;
  if (sp_failure_is(L, 1)) return 0; /* handled: it went to the worker */
  return 1;
}

/* [-n, +0, e] Run a blockingCallFromThread's function (unpacked at the
** top, n values with the function first) and answer the worker, now or
** when the Deferred it returns fires. */
static void bcall_run(lua_State *L, reply *r, int n) {
  sp_packed out;
  int ok = sp_pcall(L, n - 1, 1) == LUA_OK;
  if (ok && sp_deferred_is(L, -1)) {
    bcall **h = lua_newuserdatauv(L, sizeof *h, 0);
    *h = r->bc;
    r->bc = NULL;
    if (luaL_newmetatable(L, BCALL_MT)) {
      lua_pushcfunction(L, bcall_handle_gc);
      lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    lua_getfield(L, -2, "addBoth");
    lua_pushvalue(L, -3);
    lua_pushvalue(L, -3);
    lua_pushcclosure(L, bcall_fired, 1);
    lua_call(L, 2, 0);
    lua_pop(L, 2);
    return;
  }
  ok = pack_outcome(L, ok, -1, &out);
  lua_pop(L, 1);
  bcall_answer(r->bc, ok, &out);
  r->bc = NULL;
}

/* A handle collected before its Deferred fired: the worker is told the
** call was dropped. */
static int bcall_handle_gc(lua_State *L) {
  bcall **h = lua_touserdata(L, 1);
  if (*h != NULL) bcall_answer(*h, 0, NULL);
  *h = NULL;
  return 0;
}

/* [-0, +0, e] Deliver reply r on the loop thread, inside
** reply_deliver_all's frame (whose stack it empties). */
static void reply_deliver(lua_State *L, reply *r) {
  int n, base;
  lua_settop(L, 0);
  if (r->kind == R_RESULT) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref); /* 1: the Deferred */
    ref_release(L, r->ref);
    r->ref = LUA_NOREF;
    if (!r->ok || !sp_marshal_unpack_scalar(L, &r->p)) {
      lua_pushcfunction(L, unpack_cf);
      lua_pushlightuserdata(L, &r->p);
      if (sp_pcall(L, 1, 1) != LUA_OK) r->ok = 0;
    }
    /* No outcome came: it could not be packed or run for lack of memory. */
    if (r->p.n == 0 && !r->ok) {
      lua_settop(L, 1);
      lua_pushliteral(L, "not enough memory");
    }
    if (r->ok)
      sp_deferred_callback_known(L, 1, 2); /* ours, from the registry */
    else
      sp_deferred_errback(L, 1, 2);
    return;
  }
  base = lua_gettop(L) + 1;
  n = sp_marshal_unpack(L, &r->p);
  switch (r->kind) {
    case R_CALL:
      if (sp_pcall(L, n - 1, 0) != LUA_OK) sp_log_failure(L, -1, NULL);
      break;
    case R_BCALL:
      bcall_run(L, r, n);
      break;
    case R_LOG:
      push_modfield(L, "spindle.log", "msg");
      lua_insert(L, base);
      lua_call(L, n, 0);
      break;
    case R_ERR:
      if (n == 0) lua_pushliteral(L, "not enough memory");
      sp_log_failure(L, base, n > 1 ? lua_tostring(L, base + 1) : NULL);
      break;
    default:
      break;
  }
}

/* Let go of reply r: a blockingCallFromThread not answered is dropped.
** With `keep` (the main thread), r's block and its job's go to `spares`
** while there is room. */
static void reply_free(reply *r, int keep) {
  if (r->bc != NULL) bcall_answer(r->bc, 0, NULL);
  if (r->p.data != r->inl) sp_marshal_free(&r->p);
  keep = keep && !spares.closed;
  if (r->spare != NULL) {
    if (keep && spares.njobs < FREE_MAX) {
      r->spare->next = spares.jobs;
      spares.jobs = r->spare;
      spares.njobs++;
    } else {
      work_free(r->spare);
    }
  }
  if (keep && spares.nreplies < FREE_MAX) {
    r->more = spares.replies;
    spares.replies = r;
    spares.nreplies++;
  } else {
    free(r);
  }
}

/* [-0, +0, e] Deliver the replies from *cur (lightuserdata at 1) on,
** freeing each, under one protected call for the batch; when one raises,
** *cur is that one, not freed. */
static int reply_deliver_all(lua_State *L) {
  reply **cur = lua_touserdata(L, 1);
  while (*cur != NULL) {
    reply *r = *cur;
    reply_deliver(L, r);
    *cur = r->more;
    reply_free(r, 1);
  }
  return 0;
}

/* The inbox runs it: r and the replies posted with it, in order, on the
** loop thread (L set), or just frees them (L NULL, at shutdown, maybe on
** the posting thread). An error in one is logged (or, for a
** blockingCallFromThread that could not even start, raised in the
** worker) and the rest are delivered. */
static void reply_run(lua_State *L, sp_loop_msg *m) {
  reply *cur = (reply *)m, *r;
  int top;
  if (L == NULL) {
    for (; cur != NULL; cur = r) {
      r = cur->more;
      reply_free(cur, 0);
    }
    return;
  }
  top = lua_gettop(L);
  while (cur != NULL) {
    lua_pushcfunction(L, reply_deliver_all);
    lua_pushlightuserdata(L, &cur);
    if (sp_pcall(L, 1, 0) == LUA_OK) break;
    r = cur;
    if (r->bc != NULL) {
      sp_packed out;
      pack_failure(L, -1, NULL, &out);
      bcall_answer(r->bc, 0, &out);
      r->bc = NULL;
    } else {
      sp_log_failure(L, -1, NULL);
    }
    lua_settop(L, top);
    cur = r->more;
    reply_free(r, 1);
  }
  lua_settop(L, top);
}

/* Post the replies the calling worker holds, as one message. */
static void held_flush(void) {
  if (self->held == NULL) return;
  sp_loop_post(&self->held->m);
  self->held = self->heldtail = NULL;
}

static void reply_hold(reply *r);

/* Fill r as a reply of `kind` carrying p (taken: p->data is cleared),
** for the Deferred at registry ref, with job's block given back (spare,
** may be NULL), and hold it (reply_hold). */
static void reply_fill(reply *r, reply_kind kind, sp_packed *p, int ref, int ok,
                       bcall *bc, work *spare) {
  r->m.run = reply_run;
  r->m.next = NULL;
  r->more = NULL;
  r->kind = kind;
  r->p = *p;
  r->ref = ref;
  r->ok = ok;
  r->bc = bc;
  r->spare = spare;
  p->data = NULL;
  reply_hold(r);
}

/* Post a reply of `kind` with packed values p (taken), after the ones
** held: R_RESULT is held (the worker loop flushes), the others go at
** once. 0 if out of memory (p is then freed). A pool thread. */
static int reply_post(reply_kind kind, sp_packed *p, int ref, int ok,
                      bcall *bc) {
  reply *r = malloc(sizeof *r);
  if (r == NULL) {
    sp_marshal_free(p);
    return 0;
  }
  reply_fill(r, kind, p, ref, ok, bc, NULL);
  return 1;
}

/* The reply block for job's result: its spare, or a new one (NULL if out
** of memory). Worker. */
static reply *reply_for(work *job) {
  reply *r = job->spare;
  job->spare = NULL;
  return r != NULL ? r : malloc(sizeof *r);
}

/* Post the outcome of job (a deferToThread's), packed in p (taken), with
** the job's block given back in the reply. 0 if out of memory (p is
** then freed; job is still the caller's). */
static int reply_post_result(work *job, sp_packed *p, int ok) {
  reply *r = reply_for(job);
  if (r == NULL) {
    sp_marshal_free(p);
    return 0;
  }
  reply_fill(r, R_RESULT, p, job->ref, ok, NULL, job);
  return 1;
}

/* reply_post_result of a success whose result is the len-byte message at
** m (sp_marshal_scalar's, copied into the reply). */
static int reply_post_scalar(work *job, const char *m, size_t len) {
  reply *r = reply_for(job);
  sp_packed p;
  if (r == NULL) return 0;
  memcpy(r->inl, m, len);
  p.data = r->inl;
  p.len = len;
  p.n = 1;
  p.refs = 0;
  reply_fill(r, R_RESULT, &p, job->ref, 1, NULL, job);
  return 1;
}

/* Add r to the replies the calling worker holds; all but a result are
** posted at once. */
static void reply_hold(reply *r) {
  if (self->held == NULL) {
    self->held = r;
    self->since = uv_hrtime();
  } else {
    self->heldtail->more = r;
  }
  self->heldtail = r;
  if (r->kind != R_RESULT) held_flush();
}

/* ---------------------------------------------------------------- */
/* The workers                                                         */

/* [-0, +0, e] Worker side: unpack and call the work (lightuserdata at
** 1), leaving its first result. */
/* Registry key in a worker's state: the function self->running names,
** kept so that its address cannot be reused by another while noted. */
static const char noted_key = 'F';

/* [-0, +0, e] Note where the function at 1 was defined, "file:line", in
** self->running for the inspector, unless it is the function noted last
** (a function sent again is the same one: marshal.c's cache). */
static void work_note(lua_State *L) {
  lua_Debug ar;
  char buf[sizeof self->running];
  const void *f = lua_topointer(L, 1);
  if (f == self->noted) return;
  self->noted = NULL;
  lua_pushvalue(L, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &noted_key);
  lua_pushvalue(L, 1);
  if (lua_type(L, 1) != LUA_TFUNCTION) {
    lua_pop(L, 1);
    snprintf(buf, sizeof buf, "?");
  } else if (lua_getinfo(L, ">S", &ar) && ar.linedefined > 0) {
    snprintf(buf, sizeof buf, "%s:%d", ar.short_src, ar.linedefined);
  } else {
    snprintf(buf, sizeof buf, "%s", ar.short_src);
  }
  uv_mutex_lock(&self->runlock);
  memcpy(self->running, buf, sizeof buf);
  uv_mutex_unlock(&self->runlock);
  self->noted = f;
}

/* [-2, +1, e] Worker side: unpack and call the work (lightuserdata at
** 1; the state's prototype cache at 2), leaving its first result. */
static int work_call(lua_State *L) {
  work *job = lua_touserdata(L, 1);
  int n;
  lua_replace(L, 1); /* the cache, at 1 */
  n = sp_marshal_unpack_call(L, &job->call, 1);
  lua_remove(L, 1);
  if (n > 0) work_note(L);
  lua_call(L, n - 1, 1);
  return 1;
}

/* Run one job in the worker's state (whose stack holds its prototype
** cache at 1, worker_state) and post its outcome. */
static void work_run(lua_State *L, work *job) {
  sp_packed out;
  char small[SP_MARSHAL_SCALAR];
  size_t len;
  int ok;
  lua_settop(L, 1);
  lua_pushcfunction(L, work_call);
  lua_pushlightuserdata(L, job);
  lua_pushvalue(L, 1);
  ok = sp_pcall(L, 2, 1) == LUA_OK;
  if (job->kind == W_DEFER) {
    /* The reply takes the job's block back to the main thread. */
    int posted;
    if (ok && (len = sp_marshal_scalar(L, -1, small)) > 0) {
      lua_settop(L, 1);
      posted = reply_post_scalar(job, small, len);
    } else {
      ok = pack_outcome(L, ok, -1, &out);
      lua_settop(L, 1);
      posted = reply_post_result(job, &out, ok);
    }
    if (posted) return;
    fprintf(stderr, "spindle: out of memory returning a thread result\n");
  } else if (!ok) {
    pack_failure(L, -1, NULL, &out);
    reply_post(R_ERR, &out, LUA_NOREF, 0, NULL);
  }
  lua_settop(L, 1);
  work_free(job);
}

static lua_State *worker_state(void);

/* With pool.lock held: take this worker's share of the queue (at least
** one call) into self->rest. */
static int batch_take(void) {
  int k = pool.avg < SHORT_NS ? BATCH_MAX : 1, n = 1;
  work *last;
  self->rest = last = pool.head;
  pool.queued--;
  while (n < k && last->next != NULL) {
    last = last->next;
    pool.queued--;
    n++;
  }
  pool.head = last->next;
  if (pool.head == NULL) pool.tail = NULL;
  last->next = NULL;
  return n;
}

static int batch_return(void);
static void worker_start(void);

/* Run the calls in self->rest, flushing the held results when the batch
** ends or the oldest has waited HOLD_NS; a call that ran past HOLD_NS
** sends the rest of the batch back to the queue. */
static void batch_run(lua_State *L) {
  work *job;
  while ((job = self->rest) != NULL) {
    uint64_t t0 = uv_hrtime();
    self->rest = job->next;
    if (atomic_load(&stop_seen)) { /* dropped, as queued work is */
      work_free(job);
      continue;
    }
    work_run(L, job);
    if (self->rest != NULL && uv_hrtime() - t0 >= HOLD_NS) {
      int start;
      uv_mutex_lock(&pool.lock);
      start = batch_return();
      uv_mutex_unlock(&pool.lock);
      while (start-- > 0) worker_start();
    }
    if (self->rest == NULL || uv_hrtime() - self->since >= HOLD_NS)
      held_flush();
  }
  held_flush();
}

static int pool_wanted(void);

/* With pool.lock held: put the calls of this worker's batch that it has
** not started back at the head of the queue and wake the others (a call
** ran long, or is about to block: calls count as long from now on).
** Returns how many workers to start. */
static int batch_return(void) {
  work *last = self->rest;
  int n = 1;
  if (pool.avg < HOLD_NS) pool.avg = HOLD_NS;
  if (last == NULL) return 0;
  while (last->next != NULL) {
    last = last->next;
    n++;
  }
  last->next = pool.head;
  pool.head = self->rest;
  if (pool.tail == NULL) pool.tail = last;
  pool.queued += n;
  self->rest = NULL;
  uv_cond_broadcast(&pool.cond);
  return pool.stopping ? 0 : pool_wanted();
}

/* Fail a job that no Lua state can run: its Deferred gets (or the log,
** for callInThread) a memory error. Worker thread, no lock held. */
static void work_fail(work *job) {
  sp_packed none = {NULL, 0, 0, 0};
  if (!reply_post(job->kind == W_DEFER ? R_RESULT : R_ERR, &none, job->ref, 0,
                  NULL))
    fprintf(stderr, "spindle: out of memory returning a thread result\n");
  held_flush();
  work_free(job);
}

static void worker_main(void *arg) {
  worker *w = arg;
  lua_State *L;
  self = w;
  L = worker_state();
  uv_mutex_lock(&pool.lock);
  while (L != NULL) {
    while (!pool.stopping && pool.head == NULL && pool.workers <= pool.max) {
      pool.sleeping++;
      uv_cond_wait(&pool.cond, &pool.lock);
      pool.sleeping--;
      if (pool.wakes > 0) pool.wakes--;
    }
    if (pool.stopping || pool.workers > pool.max) break;
    {
      int n = batch_take();
      uint64_t t0 = uv_hrtime(), per;
      pool.progress = t0;
      pool.busy++;
      w->inbatch = 1;
      uv_mutex_unlock(&pool.lock);
      batch_run(L);
      per = (uv_hrtime() - t0) / (uint64_t)n;
      uv_mutex_lock(&pool.lock);
      w->inbatch = 0;
      pool.busy--;
      pool.progress = uv_hrtime();
      pool.avg = (pool.avg * 7 + per) / 8;
    }
  }
  if (L == NULL) {
    /* The job this worker was started for would wait for a worker that
    ** never comes: it fails with a memory error instead. */
    work *job = pool.head;
    if (job != NULL && !pool.stopping) {
      pool.head = job->next;
      if (pool.head == NULL) pool.tail = NULL;
      pool.queued--;
    } else {
      job = NULL;
    }
    uv_mutex_unlock(&pool.lock);
    fprintf(stderr, "spindle: cannot make a Lua state for a pool thread\n");
    if (job != NULL) work_fail(job);
    uv_mutex_lock(&pool.lock);
  }
  pool.workers--;
  pool.exited++;
  w->exited = 1;
  uv_mutex_unlock(&pool.lock);
  if (L != NULL) lua_close(L);
  self = NULL;
}

/* Start one worker (pool.workers already counts it). */
static void worker_start(void) {
  worker *w = calloc(1, sizeof *w);
  int r = w == NULL ? UV_ENOMEM : 0;
  if (w != NULL && (r = uv_mutex_init(&w->runlock)) != 0) {
    free(w);
    w = NULL;
  }
  if (w != NULL) {
    uv_mutex_lock(&pool.lock);
    w->next = pool.all;
    pool.all = w;
    uv_mutex_unlock(&pool.lock);
    /* Workers inherit a mask blocking SIGINT and SIGTERM, so those always
    ** reach the loop thread, whose handler interrupts its Lua code. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    r = uv_thread_create(&w->tid, worker_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
  }
  if (r == 0) return;
  fprintf(stderr, "spindle: cannot start a pool thread: %s\n", uv_strerror(r));
  uv_mutex_lock(&pool.lock);
  pool.workers--;
  if (w != NULL) {
    worker **pp = &pool.all; /* never ran: unlink it, nothing to join */
    while (*pp != w) pp = &(*pp)->next;
    *pp = w->next;
  }
  uv_mutex_unlock(&pool.lock);
  if (w != NULL) uv_mutex_destroy(&w->runlock);
  free(w);
}

/* With pool.lock held: how many workers to start for the queue: one per
** call the idle workers will not take, or while calls are short, one per
** BATCH_MAX calls beyond what the running workers take. */
static int pool_wanted(void) {
  int n = 0;
  while ((pool.avg < SHORT_NS ? pool.queued > 4 * BATCH_MAX * pool.workers
                              : pool.queued > pool.workers - pool.busy) &&
         pool.workers < pool.max) {
    pool.workers++;
    n++;
  }
  return n;
}

/* Join and free the workers that have exited. Main thread. */
static void pool_reap(void) {
  worker *dead = NULL, **pp, *w;
  uv_mutex_lock(&pool.lock);
  for (pp = &pool.all; (w = *pp) != NULL;) {
    if (w->exited) {
      *pp = w->next;
      w->next = dead;
      dead = w;
    } else {
      pp = &w->next;
    }
  }
  pool.exited = 0;
  uv_mutex_unlock(&pool.lock);
  for (; dead != NULL; dead = w) {
    w = dead->next;
    uv_thread_join(&dead->tid);
    uv_mutex_destroy(&dead->runlock);
    free(dead);
  }
}

/* Queue job, start a worker if none is idle, and wake a sleeping one
** if the awake ones will not take it. Main thread. */
static void pool_submit(work *job) {
  int start, reap;
  job->next = NULL;
  uv_mutex_lock(&pool.lock);
  if (pool.tail != NULL)
    pool.tail->next = job;
  else
    pool.head = job;
  pool.tail = job;
  pool.queued++;
  /* Short calls, but every awake worker is busy and none has taken or
  ** ended a batch for HOLD_NS (a batch of short calls takes less): one is
  ** stuck in a long call, so calls count as long again and this one gets
  ** a thread of its own. */
  if (pool.avg < SHORT_NS && pool.busy > 0 &&
      pool.workers - pool.busy - pool.sleeping <= 0 &&
      uv_hrtime() - pool.progress >= HOLD_NS)
    pool.avg = HOLD_NS;
  start = pool_wanted();
  if (pool.sleeping > pool.wakes &&
      (pool.avg < SHORT_NS
           ? pool.queued >
                 4 * BATCH_MAX * (pool.workers - pool.sleeping + pool.wakes)
           : pool.queued >
                 pool.workers - pool.busy - pool.sleeping + pool.wakes)) {
    pool.wakes++;
    uv_cond_signal(&pool.cond);
  }
  reap = pool.exited > 0;
  uv_mutex_unlock(&pool.lock);
  if (reap) pool_reap();
  while (start-- > 0) worker_start();
}

void sp_pool_stop(void) {
  work *job, *next;
  worker *w;
  if (!pool.ready) return;
  uv_mutex_lock(&pool.lock);
  pool.stopping = 1;
  atomic_store(&stop_seen, 1);
  job = pool.head;
  pool.head = pool.tail = NULL;
  pool.queued = 0;
  uv_cond_broadcast(&pool.cond);
  for (w = pool.all; w != NULL; w = w->next)
    if (w->waiting != NULL) uv_cond_signal(&w->waiting->cond);
  uv_mutex_unlock(&pool.lock);
  /* Work not started is dropped, as Twisted's ThreadPool.stop does; its
  ** Deferreds never fire (the main state is closing). */
  for (; job != NULL; job = next) {
    next = job->next;
    work_free(job);
  }
  /* Running work ends first: every worker leaves its loop. */
  for (w = pool.all; w != NULL; w = w->next) uv_thread_join(&w->tid);
  for (w = pool.all; w != NULL; w = pool.all) {
    pool.all = w->next;
    uv_mutex_destroy(&w->runlock);
    free(w);
  }
  spares.closed = 1;
  while (spares.jobs != NULL) {
    job = spares.jobs;
    spares.jobs = job->next;
    work_free(job);
  }
  while (spares.replies != NULL) {
    reply *r = spares.replies;
    spares.replies = r->more;
    free(r);
  }
  spares.njobs = spares.nreplies = 0;
  sp_worker_release();
}

/* ---------------------------------------------------------------- */
/* What a worker's state (worker.c) calls to reach the loop thread      */

/* reactor.callFromThread(f, ...) in a pool thread: copy f and its
** arguments to the loop thread, where f(...) runs, FIFO with the other
** calls; never blocks. Raises threads.TransferError at the call.
** twisted IReactorThreads.callFromThread. */
static int worker_callFromThread(lua_State *L) {
  sp_packed p;
  sp_checkcallable(L, 1);
  sp_marshal_pack(L, 1, lua_gettop(L), "arg", 1, &p);
  if (!reply_post(R_CALL, &p, LUA_NOREF, 1, NULL))
    return luaL_error(L, "not enough memory");
  return 0;
}

/* threads.blockingCallFromThread(f, ...) -> result, in a pool thread:
** run f(...) on the loop thread and wait; if it returns a Deferred, wait
** for that to fire. Returns f's result (copied back) or raises its error
** value. Raises if the reactor shuts down first.
** twisted.internet.threads.blockingCallFromThread. */
static int worker_blockingCallFromThread(lua_State *L) {
  sp_packed p;
  bcall *bc;
  int done, ok, n;
  sp_checkcallable(L, 1);
  sp_marshal_pack(L, 1, lua_gettop(L), "arg", 1, &p);
  bc = calloc(1, sizeof *bc);
  if (bc == NULL || uv_cond_init(&bc->cond) != 0) {
    free(bc);
    sp_marshal_free(&p);
    return luaL_error(L, "not enough memory");
  }
  bc->refs = 2;
  /* The calls of this worker's batch not started go to the others. */
  uv_mutex_lock(&pool.lock);
  n = batch_return();
  uv_mutex_unlock(&pool.lock);
  while (n-- > 0) worker_start();
  if (!reply_post(R_BCALL, &p, LUA_NOREF, 1, bc)) {
    uv_cond_destroy(&bc->cond);
    free(bc);
    return luaL_error(L, "not enough memory");
  }
  uv_mutex_lock(&pool.lock);
  self->waiting = bc;
  while (!bc->done && !bc->dropped && !pool.stopping)
    uv_cond_wait(&bc->cond, &pool.lock);
  self->waiting = NULL;
  done = bc->done;
  ok = bc->ok;
  p = bc->out;
  bc->out.data = NULL;
  uv_mutex_unlock(&pool.lock);
  bcall_release(bc);
  if (!done)
    return luaL_error(L,
                      "blockingCallFromThread: the call was dropped "
                      "before it returned (the reactor shut down, or "
                      "the Deferred it returned was never fired)");
  /* Unpacking may raise: the buffer goes into a full userdata's care. */
  {
    sp_packed *held = lua_newuserdatauv(L, sizeof *held, 0);
    *held = p;
    lua_pushcfunction(L, unpack_cf);
    lua_pushlightuserdata(L, held);
    n = sp_pcall(L, 1, 1);
    sp_marshal_free(held);
    if (n != LUA_OK) return lua_error(L);
  }
  if (ok) return 1;
  if (sp_failure_is(L, -1)) lua_getfield(L, -1, "value");
  return lua_error(L);
}

/* log.msg(...) in a pool thread: its arguments, as text, go to the main
** thread's spindle.log.msg. twisted.python.log.msg. */
static int worker_log_msg(lua_State *L) {
  int n = lua_gettop(L);
  sp_packed p;
  for (int i = 1; i <= n; i++) luaL_tolstring(L, i, NULL);
  sp_marshal_pack(L, n + 1, n, "arg", 1, &p);
  if (!reply_post(R_LOG, &p, LUA_NOREF, 1, NULL))
    return luaL_error(L, "not enough memory");
  return 0;
}

/* log.err([failure[, why]]) in a pool thread: the error (a Failure or any
** error value, wrapped in a Failure with the traceback from here) goes to
** the main thread's spindle.log.err with `why`; a value that cannot be
** copied goes as its text. twisted.python.log.err. */
static int worker_log_err(lua_State *L) {
  sp_packed p;
  const char *why = luaL_optstring(L, 2, NULL);
  if (lua_isnoneornil(L, 1)) {
    lua_pushliteral(L, "log.err() called without an error");
    lua_replace(L, 1);
  }
  if (!sp_failure_is(L, 1)) {
    sp_failure_new(L, 1, L, 1);
    lua_replace(L, 1);
  }
  pack_failure(L, 1, why, &p);
  if (!reply_post(R_ERR, &p, LUA_NOREF, 0, NULL))
    return luaL_error(L, "not enough memory");
  return 0;
}

/* A new worker state (worker.c) with the functions above, or NULL. */
/* [-0, +1, m] A new table. */
static int newtable_cf(lua_State *L) {
  lua_newtable(L);
  return 1;
}

/* A new Lua state for this worker, with its prototype cache (a table
** for sp_marshal_unpack_call) at stack index 1 for its life; NULL if
** out of memory. */
static lua_State *worker_state(void) {
  static const sp_worker_funcs funcs = {worker_callFromThread,
                                        worker_blockingCallFromThread,
                                        worker_log_msg, worker_log_err};
  lua_State *L = sp_worker_newstate(&funcs);
  if (L == NULL) return NULL;
  lua_settop(L, 0);
  lua_pushcfunction(L, newtable_cf);
  if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
    lua_close(L);
    return NULL;
  }
  return L;
}

/* ---------------------------------------------------------------- */
/* The main thread's functions                                         */

static void pool_checkopen(lua_State *L) {
  if (pool.stopping) luaL_error(L, "the thread pool has stopped");
}

/* [-0, +0, e] A new job (zeroed but for its message): the n values from
** idx packed into a kept block if one is big enough, else a new one;
** `first` numbers the first value. Main thread. */
static work *job_pack(lua_State *L, int idx, int n, int first) {
  work *old = spares.jobs, *next = NULL, *job;
  size_t cap = 0;
  sp_packed p;
  if (old != NULL) {
    next = old->next; /* packing clears the header */
    cap = old->cap;
  }
  job =
      sp_marshal_pack_room(L, idx, n, "arg", first, &p, sizeof *job, old, &cap);
  if (old != NULL) { /* used, or too small: not kept either way */
    spares.jobs = next;
    spares.njobs--;
    if (job != old) free(old); /* its spare is NULL: never given one */
  }
  job->call = p;
  job->cap = cap;
  return job;
}

/* [-0, +0, e] Pack the n values from idx and queue them as `kind` work
** (ref: the Deferred, for W_DEFER); `first` numbers the first value. */
static void pool_queue(lua_State *L, int idx, int n, int first, work_kind kind,
                       int ref) {
  work *job;
  pool_checkopen(L);
  sp_worker_snapshot(L);
  job = job_pack(L, idx, n, first);
  job->kind = kind;
  job->ref = ref;
  pool_submit(job);
}

/* reactor.callInThread(f, ...): run f(...) on a pool thread. f and its
** arguments are copied (threads.TransferError at the call if one cannot
** be); an error in f is logged with its traceback on the main thread.
** Main thread. twisted IReactorThreads.callInThread. */
static int pool_callInThread(lua_State *L) {
  sp_checkcallable(L, 1);
  pool_queue(L, 1, lua_gettop(L), 1, W_CALL, LUA_NOREF);
  return 0;
}

/* reactor.suggestThreadPoolSize(n): at most n (an integer in 1..4096)
** pool threads from now on; more start at once if work is waiting, extra
** ones end when idle. Raises a bad-argument error for anything else: 0,
** which Twisted accepts, would leave every later callInThread queued
** forever without a word. Main thread.
** twisted ReactorBase.suggestThreadPoolSize. */
static int pool_suggestThreadPoolSize(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  int start;
  luaL_argcheck(L, n >= 1 && n <= 4096, 1,
                n == 0 ? "size must be at least 1 (0 would never run "
                         "the work queued)"
                       : "size must be in 1..4096");
  uv_mutex_lock(&pool.lock);
  pool.max = (int)n;
  start = pool.stopping ? 0 : pool_wanted();
  uv_cond_broadcast(&pool.cond);
  uv_mutex_unlock(&pool.lock);
  while (start-- > 0) worker_start();
  return 0;
}

/* reactor.getThreadPool() -> {min, max, workers, busy, queued, running}:
** the pool's bounds, its threads (started, not ended), those running
** work, the work waiting, and where each running function was defined
** ({"file:line", ...}, at most 32). Any fields are a snapshot. Main thread.
** Like twisted ReactorBase.getThreadPool, as numbers. */
static int pool_getThreadPool(lua_State *L) {
  int v[4], n = 0;
  char running[32][96];
  uv_mutex_lock(&pool.lock);
  v[0] = pool.max;
  v[1] = pool.workers;
  v[2] = pool.busy;
  v[3] = pool.queued;
  for (worker *w = pool.all; w != NULL && n < 32; w = w->next)
    if (!w->exited && w->inbatch) {
      uv_mutex_lock(&w->runlock);
      if (w->running[0] != '\0')
        memcpy(running[n++], w->running, sizeof running[0]);
      uv_mutex_unlock(&w->runlock);
    }
  uv_mutex_unlock(&pool.lock);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushstring(L, running[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_createtable(L, 0, 6);
  lua_insert(L, -2);
  lua_setfield(L, -2, "running");
  lua_pushinteger(L, 0);
  lua_setfield(L, -2, "min");
  lua_pushinteger(L, v[0]);
  lua_setfield(L, -2, "max");
  lua_pushinteger(L, v[1]);
  lua_setfield(L, -2, "workers");
  lua_pushinteger(L, v[2]);
  lua_setfield(L, -2, "busy");
  lua_pushinteger(L, v[3]);
  lua_setfield(L, -2, "queued");
  return 1;
}

/* threads.deferToThread(f, ...) -> Deferred: run f(...) on a pool
** thread; the Deferred fires on the main thread with f's first result
** (copied back), or a Failure with f's error message and traceback (a
** result that cannot be copied fails with threads.TransferError). Raises
** TransferError at the call for arguments. Main thread.
** twisted.internet.threads.deferToThread. */
static int threads_deferToThread(lua_State *L) {
  int n = lua_gettop(L), ref;
  work *job;
  sp_fncheckcallable(L, 1, "deferToThread");
  pool_checkopen(L);
  sp_worker_snapshot(L);
  if (spare_n == 0) {
    lua_pushboolean(L, 1);
    spare_refs[spare_n++] = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  sp_deferred_new_meta(L, lua_upvalueindex(1));
  job = job_pack(L, 1, n, 1);
  if (spares.replies != NULL) { /* a block for the result's reply */
    job->spare = spares.replies;
    spares.replies = job->spare->more;
    spares.nreplies--;
  }
  ref = spare_refs[--spare_n];
  lua_pushvalue(L, -1);
  lua_rawseti(L, LUA_REGISTRYINDEX, ref); /* an existing key: no memory */
  job->kind = W_DEFER;
  job->ref = ref;
  pool_submit(job);
  return 1;
}

/* threads.blockingCallFromThread on the main thread: refused, since the
** main thread would wait for itself. */
static int threads_blockingCallFromThread(lua_State *L) {
  return luaL_error(L,
                    "blockingCallFromThread must be called from a pool "
                    "thread: on the reactor thread it would wait for "
                    "itself (call the function directly)");
}

/* _threads.callMultiple(runner, list): run runner(list) on one pool
** thread; values in list are named arg #1 in errors (callMultipleInThread
** in threads.lua). */
static int threads_callMultiple(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_checktype(L, 2, LUA_TTABLE);
  pool_queue(L, 1, 2, 0, W_CALL, LUA_NOREF);
  return 0;
}

/* ---------------------------------------------------------------- */
/* Set-up and shutdown                                                 */

/* At exit the pool ends through loop.c's live registry, in its first
** phase (SP_LIVE_THREADS): before connections are lost and before the
** loop drops the replies still in its inbox. */
static void pool_shutdown(lua_State *L, sp_live *n) {
  (void)L;
  (void)n;
  sp_pool_stop();
}

static sp_live pool_live = {NULL, NULL, pool_shutdown, SP_LIVE_THREADS};

/* __gc of a registry sentinel: os.exit(code, true) closes the state
** without the shutdown hooks; stop the pool then too. */
static int pool_sentinel_gc(lua_State *L) {
  (void)L;
  sp_pool_stop();
  return 0;
}

static void pool_init(lua_State *L) {
  static const char sentinel_key = 'S';
  if (pool.ready) return;
  if (uv_mutex_init(&pool.lock) != 0 || uv_cond_init(&pool.cond) != 0)
    luaL_error(L, "cannot set up the thread pool");
  pool.max = DEFAULT_MAX;
  pool.avg = HOLD_NS; /* calls count as long until measured */
  pool.ready = 1;
  sp_loop();
  sp_live_add(&pool_live);
  lua_newuserdatauv(L, 0, 0);
  lua_newtable(L);
  lua_pushcfunction(L, pool_sentinel_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &sentinel_key);
}

/* spindle._pool: the reactor's thread functions (a part of reactor.lua). */
int luaopen_spindle__pool(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"callInThread", pool_callInThread},
      {"suggestThreadPoolSize", pool_suggestThreadPoolSize},
      {"getThreadPool", pool_getThreadPool},
      {NULL, NULL}};
  pool_init(L);
  luaL_newlib(L, funcs);
  return 1;
}

/* spindle._threads: the C half of spindle.threads. Its functions'
** upvalue 1 is the Deferred metatable (sp_deferred_new_meta). */
int luaopen_spindle__threads(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"deferToThread", threads_deferToThread},
      {"blockingCallFromThread", threads_blockingCallFromThread},
      {"callMultiple", threads_callMultiple},
      {NULL, NULL}};
  pool_init(L);
  luaL_newlibtable(L, funcs);
  sp_deferred_meta(L);
  luaL_setfuncs(L, funcs, 1);
  return 1;
}
