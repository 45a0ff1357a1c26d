// Readiness without libuv: one watcher thread per environment waits in
// epoll_wait and wakes JS through one threadsafe function, one crossing per
// batch of events. src/io/thread.ts puts it behind the Readiness interface
// (src/io/readiness.ts); its contract, in poll(2)'s terms:
// - threadWatch(fd, callback): the watcher owns its fd; closing the watcher,
//   collecting it, or the end of the environment closes the fd;
// - threadSetEvents(watcher, POLLIN | POLLOUT | POLLRDHUP, or 0 to stop);
// - callback(events): what epoll reported: events of the interest, POLLHUP,
//   POLLERR (src/io/watched.ts keeps the interest and folds a hang-up or an
//   error into its events); POLLERR stops the watcher until its interest is
//   set again;
// - keep-alive as libuv's: the threadsafe function is referenced while some
//   watcher has an interest, unreferenced otherwise, so an idle watched fd
//   does not hold the process open and a pending read or send does;
// - the callback is held strongly only while there is an interest.
//
// Interest is EPOLLONESHOT: once an fd has fired, the kernel disarms it and
// the thread never sees it again until JS has run its callback and re-armed
// it. The only state kept per watcher is that of the epoll entry: the mask
// to re-arm it with (what JS last asked for) and whether it is armed now. So the thread never spins on a level-triggered fd that JS has not read
// yet, and queues at most one entry per watcher.
//
// The thread never dereferences a watcher: epoll carries an id (slot and
// generation), checked under the lock against the slot table, which only the
// JS thread changes. Nothing here calls libuv.
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "args.h"

// glibc 2.34 moved pthread_create and pthread_join into libc under a new
// symbol version; bind the old ones, so that the prebuilt addon loads on
// glibc 2.28 too (there Node's own libpthread defines them).
#if defined(__GLIBC__) && defined(__x86_64__)
__asm__(".symver pthread_create,pthread_create@GLIBC_2.2.5");
__asm__(".symver pthread_join,pthread_join@GLIBC_2.2.5");
#elif defined(__GLIBC__) && defined(__aarch64__)
__asm__(".symver pthread_create,pthread_create@GLIBC_2.17");
__asm__(".symver pthread_join,pthread_join@GLIBC_2.17");
#endif

// Equal to POLLIN, POLLOUT and POLLRDHUP.
#define INTEREST (EPOLLIN | EPOLLOUT | EPOLLRDHUP)
#define EPOLL_BATCH 64
#define WAKE_ID 0 // the eventfd that stops the thread; watcher ids are never 0

typedef struct backend backend_t;

typedef struct {
  backend_t *b;
  uint64_t id;       // slot | generation << 32
  int fd;            // -1 once closed or released
  int events;        // what JS wants: EPOLLIN | EPOLLOUT | EPOLLRDHUP
  int armed;         // the events armed in epoll; 0 once fired (JS thread)
  int polling;       // events != 0: the callback is strong, counted active
  napi_ref callback; // strong while polling, weak otherwise
} twatcher_t;

typedef struct {
  twatcher_t *w;  // NULL when free
  uint32_t gen;   // bumped each time the slot is freed
  int32_t queued; // index of its entry in the ready list, or -1
} slot_t;

typedef struct {
  uint64_t id;
  uint32_t events;
} ready_t;

struct backend {
  napi_env env;
  pthread_mutex_t lock;
  pthread_t thread;
  int started;  // the thread and epoll exist
  int stopping; // under lock: the thread must exit
  int epfd, wakefd;
  napi_threadsafe_function tsfn;
  int tsfn_alive;   // under lock: the runtime has not finalised tsfn
  int call_pending; // under lock: a tsfn call is queued, not yet run
  napi_async_context async_context;
  // Under lock: the events the thread queued, and a spare list the JS
  // thread swaps in. Each holds one entry per slot at most.
  ready_t *ready, *spare;
  size_t nready;
  // Grown by the JS thread only, under lock; read by the thread under lock.
  slot_t *slots;
  size_t nslots, cap;
  uint32_t *free_slots;
  size_t nfree;
  int active;   // watchers polling; tsfn is referenced while > 0
  int cleaned;  // the environment's cleanup hook ran
  size_t alive; // watcher structs not yet freed (their JS objects live)
};

// ---- the watcher thread ------------------------------------------------------

// Queue one event, merged with the entry the watcher may already have.
static void queue_event(backend_t *b, uint64_t id, uint32_t events) {
  uint32_t i = (uint32_t)id;
  if (i >= b->nslots || !b->slots[i].w ||
      b->slots[i].gen != (uint32_t)(id >> 32))
    return; // closed since it was armed
  slot_t *s = &b->slots[i];
  if (s->queued >= 0) {
    b->ready[s->queued].events |= events;
    return;
  }
  s->queued = (int32_t)b->nready;
  b->ready[b->nready++] = (ready_t){.id = id, .events = events};
}

static void *thread_main(void *arg) {
  backend_t *b = arg;
  struct epoll_event evs[EPOLL_BATCH];
  for (;;) {
    int n = epoll_wait(b->epfd, evs, EPOLL_BATCH, -1);
    if (n < 0 && errno != EINTR)
      break; // only EBADF/EINVAL: the epoll fd is gone
    pthread_mutex_lock(&b->lock);
    if (b->stopping) {
      pthread_mutex_unlock(&b->lock);
      break;
    }
    for (int i = 0; i < n; i++)
      if (evs[i].data.u64 != WAKE_ID)
        queue_event(b, evs[i].data.u64, evs[i].events);
    // One call per batch: while a call is pending, later events join it.
    // The call is made under the lock so that the tsfn cannot be finalised
    // meanwhile (tsfn_finalize takes the lock); it never blocks (no limit on
    // the queue).
    if (b->nready > 0 && !b->call_pending && b->tsfn_alive) {
      b->call_pending = napi_call_threadsafe_function(
                            b->tsfn, NULL, napi_tsfn_nonblocking) == napi_ok;
    }
    pthread_mutex_unlock(&b->lock);
  }
  return NULL;
}

// ---- helpers on the JS thread --------------------------------------------------

static twatcher_t *lookup(backend_t *b, uint64_t id) {
  uint32_t i = (uint32_t)id;
  if (id == 0 || i >= b->nslots || b->slots[i].gen != (uint32_t)(id >> 32))
    return NULL;
  return b->slots[i].w;
}

static int arm(twatcher_t *w) {
  struct epoll_event ev = {.events = EPOLLONESHOT | (uint32_t)w->events,
                           .data.u64 = w->id};
  if (epoll_ctl(w->b->epfd, EPOLL_CTL_MOD, w->fd, &ev) < 0)
    return -errno;
  w->armed = w->events;
  return 0;
}

static void set_polling(napi_env env, twatcher_t *w, int on) {
  backend_t *b = w->b;
  uint32_t refs;
  if (w->polling == on)
    return;
  w->polling = on;
  if (env && w->callback) {
    if (on)
      napi_reference_ref(env, w->callback, &refs);
    else
      napi_reference_unref(env, w->callback, &refs);
  }
  b->active += on ? 1 : -1;
  if (env && b->tsfn && (on ? b->active == 1 : b->active == 0)) {
    if (on)
      napi_ref_threadsafe_function(env, b->tsfn);
    else
      napi_unref_threadsafe_function(env, b->tsfn);
  }
}

// The backend lives until the environment ended, every watcher struct was
// freed and the runtime finalised the tsfn (whose context it is).
static void maybe_free_backend(backend_t *b) {
  if (!b->cleaned || b->alive > 0 || b->tsfn_alive)
    return;
  pthread_mutex_destroy(&b->lock);
  free(b->ready);
  free(b->spare);
  free(b->slots);
  free(b->free_slots);
  free(b);
}

// Stop watching and, if close_fd, close the fd. Idempotent. env is NULL at
// the end of the environment: references are not touched then.
static int shut(napi_env env, twatcher_t *w, int close_fd) {
  backend_t *b = w->b;
  int r = 0;
  if (w->fd < 0)
    return 0;
  set_polling(env, w, 0);
  if (env && w->callback)
    napi_delete_reference(env, w->callback);
  w->callback = NULL;
  uint32_t i = (uint32_t)w->id;
  pthread_mutex_lock(&b->lock);
  int32_t q = b->slots[i].queued;
  if (q >= 0) { // drop its queued event: the last entry takes its place
    ready_t last = b->ready[--b->nready];
    if ((size_t)q < b->nready) {
      b->ready[q] = last;
      b->slots[(uint32_t)last.id].queued = q;
    }
  }
  b->slots[i] = (slot_t){.w = NULL, .gen = b->slots[i].gen + 1, .queued = -1};
  if (b->slots[i].gen == 0)
    b->slots[i].gen = 1;
  b->free_slots[b->nfree++] = i;
  pthread_mutex_unlock(&b->lock);
  if (b->started)
    epoll_ctl(b->epfd, EPOLL_CTL_DEL, w->fd, NULL);
  if (close_fd && close(w->fd) < 0 && errno != EINTR)
    r = -errno;
  w->fd = -1;
  return r;
}

// ---- dispatch: the threadsafe function's call, on the JS thread ------------

static void deliver(napi_env env, backend_t *b, twatcher_t *w, uint32_t ev) {
  napi_value cb, recv, arg, result;
  // As libuv does, an error stops the watcher (the next syscall tells it).
  int events = (int)(ev & (INTEREST | EPOLLHUP | EPOLLERR));
  if (!events)
    return;
  if (events & EPOLLERR)
    set_polling(env, w, 0);
  if (!w->callback ||
      napi_get_reference_value(env, w->callback, &cb) != napi_ok || !cb) {
    // The owner let its callback be collected while idle: nobody can be
    // told, so stop rather than re-arm for ever.
    set_polling(env, w, 0);
    return;
  }
  napi_get_global(env, &recv);
  napi_create_int32(env, events, &arg);
  if (napi_make_callback(env, b->async_context, recv, cb, 1, &arg, &result) ==
      napi_pending_exception) {
    napi_value exc;
    napi_get_and_clear_last_exception(env, &exc);
    napi_fatal_exception(env, exc);
  }
}

static void dispatch(napi_env env, napi_value js_cb, void *context,
                     void *data) {
  backend_t *b = context;
  (void)js_cb;
  (void)data;
  if (!env || b->cleaned)
    return; // the tsfn is being torn down
  pthread_mutex_lock(&b->lock);
  ready_t *list = b->ready;
  size_t n = b->nready;
  b->ready = b->spare;
  b->spare = list;
  b->nready = 0;
  b->call_pending = 0;
  for (size_t k = 0; k < n; k++) {
    uint32_t i = (uint32_t)list[k].id;
    if (i < b->nslots)
      b->slots[i].queued = -1;
  }
  pthread_mutex_unlock(&b->lock);
  for (size_t k = 0; k < n; k++) {
    uint64_t id = list[k].id;
    twatcher_t *w = lookup(b, id);
    if (!w)
      continue;
    w->armed = 0; // one-shot: the kernel disarmed it when it fired
    napi_handle_scope scope;
    if (w->polling && napi_open_handle_scope(env, &scope) == napi_ok) {
      deliver(env, b, w, list[k].events);
      napi_close_handle_scope(env, scope);
    }
    // The callback may have closed it (or, through a GC, freed it).
    if ((w = lookup(b, id)) && w->polling && !w->armed) {
      int r = arm(w);
      if (r < 0 && napi_open_handle_scope(env, &scope) == napi_ok) {
        // The fd was closed behind our back: report it as libuv would.
        deliver(env, b, w, EPOLLERR);
        napi_close_handle_scope(env, scope);
      }
    }
  }
}

static void tsfn_finalize(napi_env env, void *data, void *hint) {
  backend_t *b = data;
  (void)env;
  (void)hint;
  pthread_mutex_lock(&b->lock);
  b->tsfn_alive = 0;
  pthread_mutex_unlock(&b->lock);
  maybe_free_backend(b);
}

// Create the epoll set, the wake eventfd, the tsfn and the thread.
static int start(napi_env env, backend_t *b) {
  napi_value name;
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = WAKE_ID};
  int r;
  if (b->started)
    return 0;
  if ((b->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
    return -errno;
  if ((b->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0 ||
      epoll_ctl(b->epfd, EPOLL_CTL_ADD, b->wakefd, &ev) < 0) {
    r = -errno;
    goto fail;
  }
  if (napi_create_string_utf8(env, "fdpass.watcher", NAPI_AUTO_LENGTH, &name) !=
          napi_ok ||
      napi_async_init(env, NULL, name, &b->async_context) != napi_ok ||
      napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, b,
                                      tsfn_finalize, b, dispatch,
                                      &b->tsfn) != napi_ok) {
    r = -ENOMEM;
    goto fail;
  }
  b->tsfn_alive = 1;
  napi_unref_threadsafe_function(env, b->tsfn);
  // A new thread starts with its creator's name: named so while it is
  // created, it shows as fdpass-watch in /proc/PID/task from its start.
  char name_was[16] = {0};
  prctl(PR_GET_NAME, name_was);
  prctl(PR_SET_NAME, "fdpass-watch");
  r = -pthread_create(&b->thread, NULL, thread_main, b);
  prctl(PR_SET_NAME, name_was);
  if (r < 0) {
    napi_release_threadsafe_function(b->tsfn, napi_tsfn_abort);
    b->tsfn = NULL;
    goto fail;
  }
  b->started = 1;
  return 0;
fail:
  if (b->wakefd >= 0)
    close(b->wakefd);
  close(b->epfd);
  b->epfd = b->wakefd = -1;
  return r;
}

// A free slot, the tables grown if need be (ready lists keep one entry per
// slot, so the thread never allocates).
static int take_slot(backend_t *b, uint32_t *out) {
  if (b->nfree == 0 && b->nslots == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 16;
    slot_t *slots = malloc(cap * sizeof(*slots));
    ready_t *ready = malloc(cap * sizeof(*ready));
    ready_t *spare = malloc(cap * sizeof(*spare));
    uint32_t *free_slots = malloc(cap * sizeof(*free_slots));
    if (!slots || !ready || !spare || !free_slots) {
      free(slots);
      free(ready);
      free(spare);
      free(free_slots);
      return -ENOMEM;
    }
    pthread_mutex_lock(&b->lock);
    if (b->nslots)
      memcpy(slots, b->slots, b->nslots * sizeof(*slots));
    if (b->nready)
      memcpy(ready, b->ready, b->nready * sizeof(*ready));
    free(b->slots);
    free(b->ready);
    free(b->spare);
    free(b->free_slots);
    b->slots = slots;
    b->ready = ready;
    b->spare = spare;
    b->free_slots = free_slots;
    b->cap = cap;
    pthread_mutex_unlock(&b->lock);
  }
  if (b->nfree > 0) {
    *out = b->free_slots[--b->nfree];
  } else {
    *out = (uint32_t)b->nslots;
    b->slots[*out] = (slot_t){.w = NULL, .gen = 1, .queued = -1};
    b->nslots++; // the new slot is free: the thread ignores it
  }
  return 0;
}

// ---- the JS API ----------------------------------------------------------------

static void finalize_watcher(napi_env env, void *data, void *hint) {
  twatcher_t *w = data;
  backend_t *b = w->b;
  (void)hint;
  shut(b->cleaned ? NULL : env, w, 1);
  free(w);
  b->alive--;
  maybe_free_backend(b);
}

// threadWatch(fd, callback(pollEvents)) -> watcher | -errno
static napi_value thread_watch(napi_env env, napi_callback_info info) {
  backend_t *b;
  FDP_ARGS_DATA(2, &b);
  napi_value external;
  int fd, r;
  uint32_t slot;
  if (fdp_int(env, argv[0], &fd))
    return NULL;
  if ((r = start(env, b)) < 0 || (r = take_slot(b, &slot)) < 0)
    return fdp_number(env, r);
  twatcher_t *w = calloc(1, sizeof(*w));
  if (!w) {
    b->free_slots[b->nfree++] = slot;
    return fdp_number(env, -ENOMEM);
  }
  w->b = b;
  w->fd = fd;
  w->id = (uint64_t)slot | (uint64_t)b->slots[slot].gen << 32;
  // Added disarmed (one-shot, no events): fails here, as uv_poll_init does,
  // for an fd epoll cannot watch (a regular file: EPERM).
  struct epoll_event ev = {.events = EPOLLONESHOT, .data.u64 = w->id};
  if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
    r = -errno;
    free(w);
    b->free_slots[b->nfree++] = slot;
    return fdp_number(env, r);
  }
  if (napi_create_reference(env, argv[1], 0, &w->callback) != napi_ok ||
      napi_create_external(env, w, finalize_watcher, NULL, &external) !=
          napi_ok) {
    epoll_ctl(b->epfd, EPOLL_CTL_DEL, fd, NULL);
    if (w->callback)
      napi_delete_reference(env, w->callback);
    free(w);
    b->free_slots[b->nfree++] = slot;
    return NULL;
  }
  pthread_mutex_lock(&b->lock);
  b->slots[slot].w = w;
  pthread_mutex_unlock(&b->lock);
  b->alive++;
  return external;
}

// threadStart() -> 0 | -errno: start the thread now (else the first
// threadWatch does), so that its epoll and eventfd exist from the start, as
// libuv's own fds do, and are never mistaken for fds a test leaked.
static napi_value thread_start(napi_env env, napi_callback_info info) {
  backend_t *b;
  if (fdp_get_args(env, info, 0, NULL, (void **)&b))
    return NULL;
  return fdp_number(env, start(env, b));
}

static twatcher_t *arg_watcher(napi_env env, napi_value v) {
  return fdp_external(env, v, "not a watcher");
}

// threadSetEvents(watcher, POLLIN | POLLOUT | POLLRDHUP or 0) -> 0 | -errno.
// Stopping leaves the fd armed: if it fires meanwhile, the event is dropped on
// the JS thread (one wake-up at most, as the interest is one-shot), which
// saves a syscall per pause in the common stop-start pattern.
static napi_value thread_set_events(napi_env env, napi_callback_info info) {
  FDP_ARGS(2);
  int events, r = 0;
  twatcher_t *w = arg_watcher(env, argv[0]);
  if (!w || fdp_int(env, argv[1], &events))
    return NULL;
  events &= INTEREST;
  if (w->fd < 0) {
    r = -EBADF;
  } else if (events) {
    w->events = events;
    if (w->armed != events)
      r = arm(w);
    set_polling(env, w, r == 0);
  } else {
    w->events = 0;
    set_polling(env, w, 0);
  }
  return fdp_number(env, r);
}

// threadCloseWatcher(watcher, closeFd) -> 0 | -errno. With closeFd false the
// fd is released to the caller, out of the epoll set and still open.
static napi_value thread_close_watcher(napi_env env, napi_callback_info info) {
  FDP_ARGS(2);
  bool close_fd;
  twatcher_t *w = arg_watcher(env, argv[0]);
  if (!w || fdp_bool(env, argv[1], &close_fd))
    return NULL;
  return fdp_number(env, shut(env, w, close_fd));
}

// ---- environment lifetime --------------------------------------------------------

// The end of the environment (a worker that exits, or the main thread): stop
// and join the thread, close every watched fd. The watcher structs are freed
// by their finalisers, the backend with the last of them.
static void on_env_cleanup(void *arg) {
  backend_t *b = arg;
  if (b->started) {
    pthread_mutex_lock(&b->lock);
    b->stopping = 1;
    pthread_mutex_unlock(&b->lock);
    uint64_t one = 1;
    while (write(b->wakefd, &one, sizeof(one)) < 0 && errno == EINTR)
      ;
    pthread_join(b->thread, NULL);
  }
  for (size_t i = 0; i < b->nslots; i++)
    if (b->slots[i].w)
      shut(NULL, b->slots[i].w, 1);
  if (b->started) {
    close(b->epfd);
    close(b->wakefd);
    b->epfd = b->wakefd = -1;
    b->started = 0;
  }
  b->cleaned = 1;
  maybe_free_backend(b);
}

// Adds threadStart, threadWatch, threadSetEvents and threadCloseWatcher
// (each with this environment's backend as its data) and registers the
// environment's cleanup hook. Starts no thread: threadStart or the first
// threadWatch does.
napi_status fdp_init_thread(napi_env env, napi_value exports) {
  static const fdp_function_t fns[] = {
      {"threadStart", thread_start},
      {"threadWatch", thread_watch},
      {"threadSetEvents", thread_set_events},
      {"threadCloseWatcher", thread_close_watcher},
  };
  napi_status s;
  backend_t *b = calloc(1, sizeof(*b));
  if (!b)
    return napi_generic_failure;
  b->env = env;
  b->epfd = b->wakefd = -1;
  pthread_mutex_init(&b->lock, NULL);
  if ((s = napi_add_env_cleanup_hook(env, on_env_cleanup, b)) != napi_ok) {
    pthread_mutex_destroy(&b->lock);
    free(b);
    return s;
  }
  return fdp_export(env, exports, FDP_LIST(fns), FDP_NONE, b);
}
