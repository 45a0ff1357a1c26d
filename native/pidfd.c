// pidfd syscalls (pidfd_open(2), pidfd_send_signal(2), pidfd_getfd(2)),
// SO_PEERPIDFD, and how a process ended (PIDFD_GET_INFO, waitid(P_PIDFD)). Each returns an fd or 0, or -errno; an fd returned here is
// close-on-exec (the kernel always makes pidfds and pidfd_getfd copies so).
// The syscall numbers are the same on every architecture since Linux 5.1,
// so they are spelled out for C libraries whose headers lack them.
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
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

#ifndef P_PIDFD
#define P_PIDFD 3 // waitid(2) on a pidfd, Linux >= 5.4
#endif

// PIDFD_GET_INFO (Linux >= 6.13) fills this struct; its first published size
// is 64 bytes, and the kernel takes any size it knows (the ioctl number
// carries it), so older and newer kernels agree on these fields. exit_code
// (Linux >= 6.15: PIDFD_INFO_EXIT) is a wait(2) status, set only once the
// process has been reaped by its parent: a zombie has none yet.
struct fdp_pidfd_info {
  uint64_t mask;
  uint64_t cgroupid;
  uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
  int32_t exit_code;
};
#define FDP_PIDFD_GET_INFO _IOWR(0xFF, 11, struct fdp_pidfd_info)
#define FDP_PIDFD_INFO_EXIT 8u

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

// pidfdExitInfo(pidfd) -> the wait(2) status of a reaped process |
// -ENODATA (still running, a zombie not reaped yet, or Linux 6.13-6.14 whose
// PIDFD_GET_INFO has no exit status) | -ENOTTY (Linux < 6.13: no
// PIDFD_GET_INFO) | -errno
static napi_value fdp_pidfd_exit_info(napi_env env, napi_callback_info info) {
  int32_t a[1];
  struct fdp_pidfd_info pi;
  if (fdp_int_args(env, info, 1, a))
    return NULL;
  memset(&pi, 0, sizeof(pi));
  pi.mask = FDP_PIDFD_INFO_EXIT;
  if (ioctl(a[0], FDP_PIDFD_GET_INFO, &pi) < 0)
    return fdp_number(env, -errno);
  if (!(pi.mask & FDP_PIDFD_INFO_EXIT))
    return fdp_number(env, -ENODATA);
  return fdp_number(env, (uint32_t)pi.exit_code & 0xffff);
}

// pidfdWaitStatus(pidfd) -> the wait(2) status of our own child that has
// exited and was not reaped yet, leaving it unreaped (WNOWAIT: whoever reaps
// it, libuv for a child_process, still can) | -EAGAIN (still running) |
// -ECHILD (not our child, or reaped already) | -errno. Never blocks (WNOHANG).
static napi_value fdp_pidfd_wait_status(napi_env env, napi_callback_info info) {
  int32_t a[1];
  siginfo_t si;
  if (fdp_int_args(env, info, 1, a))
    return NULL;
  memset(&si, 0, sizeof(si));
  if (waitid((idtype_t)P_PIDFD, (id_t)a[0], &si, WEXITED | WNOHANG | WNOWAIT) <
      0)
    return fdp_number(env, -errno);
  if (si.si_pid == 0)
    return fdp_number(env, -EAGAIN);
  switch (si.si_code) {
  case CLD_EXITED:
    return fdp_number(env, (si.si_status & 0xff) << 8);
  case CLD_KILLED:
    return fdp_number(env, si.si_status & 0x7f);
  case CLD_DUMPED:
    return fdp_number(env, (si.si_status & 0x7f) | 0x80);
  default: // stopped or continued: WEXITED asked for neither
    return fdp_number(env, -EAGAIN);
  }
}

napi_status fdp_init_pidfd(napi_env env, napi_value exports) {
  static const fdp_function_t fns[] = {
      {"pidfdOpen", fdp_pidfd_open},
      {"pidfdSendSignal", fdp_pidfd_send_signal},
      {"pidfdGetfd", fdp_pidfd_getfd},
      {"peerPidfd", fdp_peer_pidfd},
      {"pidfdExitInfo", fdp_pidfd_exit_info},
      {"pidfdWaitStatus", fdp_pidfd_wait_status},
  };
  return fdp_export(env, exports, FDP_LIST(fns), FDP_NONE, NULL);
}
