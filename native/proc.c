// Process syscalls of the supervisor (fdpass/supervisor): reaping exited
// processes that are not child_process's, becoming their reaper, and the
// credentials of notify datagrams. Thin: which pid to reap, and when, is
// decided in src/protocols/supervisor/reaper.ts.
#define _GNU_SOURCE
#include <errno.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

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

// passCred(fd) -> 0 | -errno: SO_PASSCRED, so that every datagram received
// carries its sender's SCM_CREDENTIALS (recvBatch reports the pid). The
// kernel fills them in even when the sender sent none: no sender can omit
// or forge them (unix(7)).
static napi_value fdp_pass_cred(napi_env env, napi_callback_info info) {
  FDP_ARGS(1);
  int fd, one = 1;
  if (fdp_int(env, argv[0], &fd))
    return NULL;
  int r = setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one));
  return fdp_number(env, r < 0 ? -errno : 0);
}

napi_status fdp_init_proc(napi_env env, napi_value exports) {
  static const fdp_function_t fns[] = {
      {"waitpid", fdp_waitpid},
      {"setSubreaper", fdp_set_subreaper},
      {"passCred", fdp_pass_cred},
  };
  return fdp_export(env, exports, FDP_LIST(fns), FDP_NONE, NULL);
}
