// Shared by the addon's core files: the per-environment instance and the
// owned-fd map. Each file holds one concern: sock.c (plain socket
// syscalls), msg.c (sendmsg and batched receives), watcher.c (readiness
// through libuv), fdpass.c (the instance, the owned-fd map, the exports);
// pidfd.c, seccomp.c, tty.c, inet.c and shm.c the syscalls of their modules.
// Arguments are unpacked, and each file's bindings exported, the same way
// everywhere (args.h).
#ifndef FDPASS_H
#define FDPASS_H

#include "args.h"

#define FDP_MAX_FDS 253 // SCM_MAX_FD: more fds in one sendmsg fail with EINVAL

typedef struct watcher watcher_t;
typedef struct mmsg mmsg_t;

// One per Node-API environment (the main thread, each worker): no global
// state, so the addon is context-aware.
typedef struct {
  napi_env env;
  watcher_t *watchers; // open watchers, closed when the environment ends
  int closing_handles; // uv handles waiting for their close callback
  napi_async_cleanup_hook_handle cleanup; // registered by the first watch
  int uv_started;                         // the libuv backend is in use
  int cleaning;
  int owned_closed; // the environment's cleanup hook closed the owned fds
  int finalized;
  napi_async_context async_context;
  uint8_t *owned; // bitmap of fds received and not yet handed to the user
  size_t owned_bits;
  napi_ref owned_ref; // the ArrayBuffer behind `owned`, exported as ownedMap
  mmsg_t *mm;         // recvmmsg buffers, allocated on first use
  int high_fd;        // the highest fd received so far
  // RLIMIT_NOFILE's soft limit as last read, and when (msg.c)
  unsigned long long nofile;
  long long nofile_at_ms; // CLOCK_MONOTONIC, ms + 1; 0: never read
} instance_t;

// This environment's instance; NULL, with an exception pending, if none.
static inline instance_t *fdp_instance(napi_env env) {
  void *inst = NULL;
  if (napi_get_instance_data(env, &inst) != napi_ok || !inst)
    napi_throw_error(env, "ERR_FDPASS_INTERNAL", "fdpass: no instance data");
  return inst;
}

// The owned-fd map (fdpass.c).
void fdp_mark_owned(instance_t *inst, int fd, int owned);

#endif
