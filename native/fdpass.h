// Shared by the addon's C files: the per-environment instance, the argument
// macro every binding starts with, and the helpers that unpack arguments.
// Each file holds one concern: sock.c (plain socket syscalls), msg.c
// (sendmsg and batched receives), watcher.c (readiness through libuv),
// instance.c (the environment's instance, the owned-fd map, the exports).
#ifndef FDPASS_H
#define FDPASS_H

#define _GNU_SOURCE
#include <node_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#define FDP_MAX_FDS 253 // SCM_MAX_FD: more fds in one sendmsg fail with EINVAL

typedef struct watcher watcher_t;
typedef struct mmsg mmsg_t;

// One per Node-API environment (the main thread, each worker): no global
// state, so the addon is context-aware.
typedef struct {
  napi_env env;
  watcher_t *watchers; // open watchers, closed when the environment ends
  int closing_handles; // uv handles waiting for their close callback
  napi_async_cleanup_hook_handle cleanup;
  int cleaning;
  napi_async_context async_context;
  uint8_t *owned; // bitmap of fds received and not yet handed to the user
  size_t owned_bits;
  napi_ref owned_ref; // the ArrayBuffer behind `owned`, exported as ownedMap
  mmsg_t *mm;         // recvmmsg buffers, allocated on first use
  int high_fd;        // the highest fd received so far
} instance_t;

// Every binding starts with FDP_ARGS(n): argv[0..n) holds its arguments
// (undefined where the caller passed fewer) and inst this environment's
// instance. On a Node-API failure the binding returns NULL (undefined).
#define FDP_ARGS(n)                                                            \
  napi_value argv[(n)];                                                        \
  instance_t *inst;                                                            \
  if (fdp_args(env, info, (n), argv, &inst) != 0)                              \
  return NULL

int fdp_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv,
             instance_t **inst);

// Argument helpers: 0 on success; on failure -1, with an exception pending
// where the value was of the wrong type.
int fdp_int(napi_env env, napi_value v, int *out);
void *fdp_bytes(napi_env env, napi_value v, size_t *len);
int fdp_addr(napi_env env, napi_value v, struct sockaddr_un *sa,
             socklen_t *len);
napi_value fdp_result(napi_env env, int64_t v);
napi_value fdp_range_error(napi_env env, const char *what);
napi_value fdp_type_error(napi_env env, const char *what);

// The owned-fd map (instance.c).
void fdp_mark_owned(instance_t *inst, int fd, int owned);

// A binding's name and function, for the exports table.
typedef struct {
  const char *name;
  napi_callback fn;
} fdp_fn;

// A constant JS reads from the addon instead of repeating it.
typedef struct {
  const char *name;
  int value;
} fdp_const;

// Each concern's bindings and constants (sock.c, msg.c, watcher.c), put on
// the exports by fdpass.c.
typedef struct {
  const fdp_fn *fns;
  size_t fns_count;
  const fdp_const *consts;
  size_t consts_count;
} fdp_module;

extern const fdp_module fdp_sock_module;
extern const fdp_module fdp_msg_module;
extern const fdp_module fdp_watcher_module;

// watcher.c: close every watcher of an environment that ends.
void fdp_watchers_shutdown(instance_t *inst);

#define FDP_COUNT(a) (sizeof(a) / sizeof((a)[0]))

#endif
