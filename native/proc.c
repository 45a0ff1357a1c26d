// Process syscalls of the supervisor (fdpass/supervisor): reaping exited
// processes that are not child_process's, becoming their reaper, and
// execve for the exec shim of images without a shell (the notify socket's
// SO_PASSCRED is sock.c's setSocketFlag). Thin: which pid to reap, and when, is
// decided in src/protocols/supervisor/reaper.ts.
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "args.h"

// waitpid(pid, out: Int32Array(1)) -> pid reaped | 0 (still running) |
// -errno (ECHILD: not our child). WNOHANG: never blocks. The raw wait status
// goes to out[0]. Callers pass one pid they know is theirs to reap, never -1:
// a wait for any child would take child_process's children from under it.
static napi_value fdp_waitpid(napi_env env, napi_callback_info info) {
  FDP_ARGS(2);
  size_t n = 0;
  int pid, status = 0;
  int *out = fdp_bytes(env, argv[1], &n);
  if (!out || fdp_int(env, argv[0], &pid))
    return NULL;
  if (n < sizeof(int) || pid <= 0)
    return fdp_range_error(env, "waitpid arguments");
  int r;
  do
    r = waitpid(pid, &status, WNOHANG);
  while (r < 0 && errno == EINTR);
  out[0] = status;
  return fdp_number(env, r < 0 ? -errno : r);
}

// setSubreaper() -> 0 | -errno: orphaned descendants are reparented to this
// process instead of PID 1 (PR_SET_CHILD_SUBREAPER), so that it reaps them.
static napi_value fdp_set_subreaper(napi_env env, napi_callback_info info) {
  (void)info;
  return fdp_number(env,
                    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0 ? -errno : 0);
}

// execve(strings, argc, envc) -> -errno; on success the process becomes the
// program and this never returns. `strings` holds, each NUL-terminated, the
// path, then argc arguments, then envc NAME=value entries: one buffer built
// in JavaScript (src/protocols/supervisor/exec-shim.ts), split here.
static napi_value fdp_execve(napi_env env, napi_callback_info info) {
  FDP_ARGS(3);
  size_t n = 0;
  int argc, envc;
  char *s = fdp_bytes(env, argv[0], &n);
  if (!s || fdp_int(env, argv[1], &argc) || fdp_int(env, argv[2], &envc))
    return NULL;
  if (n == 0 || s[n - 1] != '\0' || argc < 1 || argc > 65536 || envc < 0 ||
      envc > 65536)
    return fdp_range_error(env, "execve arguments");
  // argv and envp, each NULL-terminated, in one allocation.
  char **v = calloc((size_t)argc + (size_t)envc + 2, sizeof(char *));
  if (!v)
    return fdp_number(env, -ENOMEM);
  char **args = v, **envp = v + argc + 1;
  size_t at = strlen(s) + 1; // s[n - 1] is NUL: no string runs past it
  for (int i = 0; i < argc + envc; i++) {
    if (at >= n) {
      free(v);
      return fdp_range_error(env, "execve strings");
    }
    char *str = s + at;
    at += strlen(str) + 1;
    if (i < argc)
      args[i] = str;
    else
      envp[i - argc] = str;
  }
  execve(s, args, envp);
  int err = errno;
  free(v);
  return fdp_number(env, -err);
}

napi_status fdp_init_proc(napi_env env, napi_value exports) {
  static const fdp_function_t fns[] = {
      {"waitpid", fdp_waitpid},
      {"setSubreaper", fdp_set_subreaper},
      {"execve", fdp_execve},
  };
  return fdp_export(env, exports, FDP_LIST(fns), FDP_NONE, NULL);
}
