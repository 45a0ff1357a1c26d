// Readiness through libuv: one uv_poll_t per watched fd, on the loop of the
// calling environment. The JS side is src/io/uv.ts, one backend of the
// Readiness interface (src/io/readiness.ts); nothing else calls these.
#include "fdpass.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include <uv.h>

struct watcher {
  uv_poll_t poll;
  instance_t *inst;
  int fd;            // -1 once closed or released
  int handle_open;   // uv handle initialised and its close callback not run
  int js_collected;  // the JS external was finalised
  napi_ref callback; // strong while polling, weak otherwise
  int polling;
  watcher_t *prev, *next;
};

static void maybe_free(watcher_t *w) {
  if (w->js_collected && !w->handle_open)
    free(w);
}

static void unlink_watcher(watcher_t *w) {
  instance_t *inst = w->inst;
  if (w->prev)
    w->prev->next = w->next;
  else if (inst->watchers == w)
    inst->watchers = w->next;
  if (w->next)
    w->next->prev = w->prev;
  w->prev = w->next = NULL;
}

static void maybe_finish_cleanup(instance_t *inst) {
  if (inst->cleaning && inst->closing_handles == 0 && inst->cleanup) {
    napi_remove_async_cleanup_hook(inst->cleanup);
    inst->cleanup = NULL;
  }
}

static void on_handle_closed(uv_handle_t *h) {
  watcher_t *w = h->data;
  instance_t *inst = w->inst;
  w->handle_open = 0;
  inst->closing_handles--;
  maybe_finish_cleanup(inst);
  maybe_free(w);
}

// Stop polling, close the uv handle and, if close_fd, the fd. Idempotent.
static int shut_watcher(napi_env env, watcher_t *w, int close_fd) {
  int r = 0;
  if (w->fd < 0)
    return 0;
  if (w->handle_open && !uv_is_closing((uv_handle_t *)&w->poll)) {
    uv_poll_stop(&w->poll);
    w->inst->closing_handles++;
    uv_close((uv_handle_t *)&w->poll, on_handle_closed);
  }
  if (w->callback) {
    if (env)
      napi_delete_reference(env, w->callback);
    w->callback = NULL;
  }
  if (close_fd && close(w->fd) < 0 && errno != EINTR)
    r = -errno;
  w->fd = -1;
  unlink_watcher(w);
  return r;
}

// The libuv backend's part of the end of the environment: close the poll
// handles (their close callbacks end the async hook). The owned fds are
// fdpass.c's part.
static void on_env_cleanup(napi_async_cleanup_hook_handle handle, void *arg) {
  instance_t *inst = arg;
  (void)handle;
  inst->cleaning = 1;
  while (inst->watchers)
    shut_watcher(NULL, inst->watchers, 1);
  maybe_finish_cleanup(inst);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  watcher_t *w = h->data;
  napi_env env = w->inst->env;
  napi_handle_scope scope;
  napi_value cb, recv, arg, result;
  // On POLLERR (a pending socket error such as ECONNRESET) libuv stops the
  // handle and reports UV_EBADF: the caller learns the real error from its
  // next syscall, and must start polling again if it still wants to.
  if (status < 0 && w->polling && w->callback) {
    uint32_t refs;
    w->polling = 0;
    napi_reference_unref(env, w->callback, &refs);
  }
  if (!w->callback || napi_open_handle_scope(env, &scope) != napi_ok)
    return;
  if (napi_get_reference_value(env, w->callback, &cb) != napi_ok || !cb) {
    // The owner let its callback be collected while idle: nobody can be
    // told, so stop rather than wake up for ever on a level-triggered fd.
    uint32_t refs;
    uv_poll_stop(h);
    if (w->polling)
      napi_reference_unref(env, w->callback, &refs);
    w->polling = 0;
  } else {
    napi_get_global(env, &recv);
    napi_create_int32(env, status < 0 ? status : events, &arg);
    if (napi_make_callback(env, w->inst->async_context, recv, cb, 1, &arg,
                           &result) == napi_pending_exception) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
      napi_fatal_exception(env, exc);
    }
  }
  napi_close_handle_scope(env, scope);
}

static void finalize_watcher(napi_env env, void *data, void *hint) {
  (void)hint;
  watcher_t *w = data;
  shut_watcher(env, w, 1);
  w->js_collected = 1;
  maybe_free(w);
}

// watch(fd, callback(eventsOrNegativeErrno)) -> watcher | -errno
// The watcher owns the fd from now on: closeWatcher closes it, and so does
// the end of the environment (a worker that exits) or garbage collection.
static napi_value fdp_watch(napi_env env, napi_callback_info info) {
  FDP_ARGS(2);
  instance_t *inst = fdp_instance(env);
  if (!inst)
    return NULL;
  napi_value external;
  int fd;
  uv_loop_t *loop;
  if (fdp_int(env, argv[0], &fd))
    return NULL;
  // The libuv backend starts here, never at load: a runtime without libuv
  // (Bun's uv_* are crash stubs) or with a broken one (Deno) must not get
  // here, and Deno frees an async cleanup hook's handle twice when it is
  // removed from inside the hook, as Node requires.
  if (!inst->uv_started) {
    if (napi_add_async_cleanup_hook(env, on_env_cleanup, inst,
                                    &inst->cleanup) != napi_ok)
      return NULL;
    inst->uv_started = 1;
  }
  if (napi_get_uv_event_loop(env, &loop) != napi_ok)
    return NULL;
  watcher_t *w = calloc(1, sizeof(*w));
  if (!w)
    return fdp_number(env, -ENOMEM);
  int r = uv_poll_init(loop, &w->poll, fd);
  if (r < 0) {
    free(w);
    return fdp_number(env, r);
  }
  w->poll.data = w;
  w->inst = inst;
  w->fd = fd;
  w->handle_open = 1;
  if (napi_create_reference(env, argv[1], 0, &w->callback) != napi_ok ||
      napi_create_external(env, w, finalize_watcher, NULL, &external) !=
          napi_ok) {
    if (w->callback)
      napi_delete_reference(env, w->callback);
    w->callback = NULL;
    w->fd = -1;
    w->js_collected = 1;
    inst->closing_handles++;
    uv_close((uv_handle_t *)&w->poll, on_handle_closed);
    return NULL;
  }
  w->next = inst->watchers;
  if (w->next)
    w->next->prev = w;
  inst->watchers = w;
  return external;
}

static watcher_t *arg_watcher(napi_env env, napi_value v) {
  return fdp_external(env, v, "not a watcher");
}

// setEvents(watcher, events) -> 0 | -errno. events: UV_READABLE,
// UV_WRITABLE, UV_DISCONNECT; 0 stops. The callback is held strongly only
// while polling, so an idle socket that nobody references can be collected
// (and its fd closed).
static napi_value fdp_set_events(napi_env env, napi_callback_info info) {
  FDP_ARGS(2);
  int events, r = 0;
  uint32_t refs;
  watcher_t *w = arg_watcher(env, argv[0]);
  if (!w || fdp_int(env, argv[1], &events))
    return NULL;
  if (w->fd < 0)
    return fdp_number(env, -EBADF);
  if (events) {
    r = uv_poll_start(&w->poll, events, on_poll);
    if (r == 0 && !w->polling)
      napi_reference_ref(env, w->callback, &refs);
    w->polling = r == 0;
  } else {
    r = uv_poll_stop(&w->poll);
    if (w->polling)
      napi_reference_unref(env, w->callback, &refs);
    w->polling = 0;
  }
  return fdp_number(env, r);
}

// closeWatcher(watcher, closeFd) -> 0 | -errno. With closeFd false the fd is
// released to the caller (its poll handle is gone, the fd stays open).
static napi_value fdp_close_watcher(napi_env env, napi_callback_info info) {
  FDP_ARGS(2);
  bool close_fd;
  watcher_t *w = arg_watcher(env, argv[0]);
  if (!w || fdp_bool(env, argv[1], &close_fd))
    return NULL;
  return fdp_number(env, shut_watcher(env, w, close_fd));
}

static const fdp_function_t fns[] = {
    {"watch", fdp_watch},
    {"setEvents", fdp_set_events},
    {"closeWatcher", fdp_close_watcher},
};

static const fdp_const_t consts[] = {
    {"UV_READABLE", UV_READABLE},
    {"UV_WRITABLE", UV_WRITABLE},
    {"UV_DISCONNECT", UV_DISCONNECT},
};

napi_status fdp_init_watcher(napi_env env, napi_value exports) {
  return fdp_export(env, exports, FDP_LIST(fns), FDP_LIST(consts), NULL);
}
