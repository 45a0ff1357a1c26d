// pidfd syscalls (pidfd_open(2), pidfd_send_signal(2), pidfd_getfd(2)) and
// SO_PEERPIDFD. Each returns an fd or 0, or -errno; an fd returned here is
// close-on-exec (the kernel always makes pidfds and pidfd_getfd copies so).
// The syscall numbers are the same on every architecture since Linux 5.1,
// so they are spelled out for C libraries whose headers lack them.
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "args.h"

#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77 // Linux >= 6.5; older kernels: ENOPROTOOPT
#endif

static int64_t result(long r) { return r < 0 ? -errno : r; }

// pidfdOpen(pid) -> pidfd | -errno (ESRCH: no such process)
static napi_value fdp_pidfd_open(napi_env env, napi_callback_info info) {
  int32_t a[1];
  if (fdp_int_args(env, info, 1, a))
    return NULL;
  return fdp_number(env, result(syscall(SYS_pidfd_open, (pid_t)a[0], 0u)));
}

// pidfdSendSignal(pidfd, sig) -> 0 | -errno (ESRCH once the process exited)
static napi_value fdp_pidfd_send_signal(napi_env env, napi_callback_info info) {
  int32_t a[2];
  if (fdp_int_args(env, info, 2, a))
    return NULL;
  return fdp_number(
      env, result(syscall(SYS_pidfd_send_signal, a[0], a[1], NULL, 0u)));
}

// pidfdGetfd(pidfd, targetFd) -> a close-on-exec copy of the target's fd |
// -errno (EPERM without ptrace rights over the process, EBADF no such fd)
static napi_value fdp_pidfd_getfd(napi_env env, napi_callback_info info) {
  int32_t a[2];
  if (fdp_int_args(env, info, 2, a))
    return NULL;
  return fdp_number(env, result(syscall(SYS_pidfd_getfd, a[0], a[1], 0u)));
}

// peerPidfd(sock) -> a pidfd of the peer as of connect() | -errno
static napi_value fdp_peer_pidfd(napi_env env, napi_callback_info info) {
  int32_t a[1];
  int pidfd = -1;
  socklen_t len = sizeof(pidfd);
  if (fdp_int_args(env, info, 1, a))
    return NULL;
  if (getsockopt(a[0], SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) < 0)
    return fdp_number(env, -errno);
  return fdp_number(env, pidfd);
}

napi_status fdp_init_pidfd(napi_env env, napi_value exports) {
  static const fdp_function_t fns[] = {
      {"pidfdOpen", fdp_pidfd_open},
      {"pidfdSendSignal", fdp_pidfd_send_signal},
      {"pidfdGetfd", fdp_pidfd_getfd},
      {"peerPidfd", fdp_peer_pidfd},
  };
  return fdp_export(env, exports, FDP_LIST(fns), FDP_NONE, NULL);
}
