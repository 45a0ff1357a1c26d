// Seccomp user notification (seccomp_unotify(2)): the four ioctls of a
// notify fd. The structs and ioctl numbers are the kernel's ABI, written out
// here so that C libraries without <linux/seccomp.h> (musl) build this file.
//
// SECCOMP_IOCTL_NOTIF_RECV blocks while nothing is pending, whatever
// O_NONBLOCK says, and after a notification vanished (its target died) the
// kernel's count is off by one: a receive that finds nothing returns ENOENT
// once, then blocks. So seccompRecv receives only when poll() says, right
// now, that a notification waits: called once per readiness, it never
// blocks. SEND, ID_VALID and ADDFD do not wait for anything but the target,
// which sleeps in the kernel for our answer (ADDFD wakes it to install the
// fd and waits for that; a signal to the target aborts it with ESRCH).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/ioctl.h>

#include "args.h"

struct fdp_seccomp_data {
  int32_t nr;
  uint32_t arch;
  uint64_t instruction_pointer;
  uint64_t args[6];
};

struct fdp_notif {
  uint64_t id;
  uint32_t pid;
  uint32_t flags;
  struct fdp_seccomp_data data;
};

struct fdp_notif_resp {
  uint64_t id;
  int64_t val;
  int32_t error;
  uint32_t flags;
};

struct fdp_notif_addfd {
  uint64_t id;
  uint32_t flags;
  uint32_t srcfd;
  uint32_t newfd;
  uint32_t newfd_flags;
};

#define FDP_NOTIF_RECV _IOWR('!', 0, struct fdp_notif)
#define FDP_NOTIF_SEND _IOWR('!', 1, struct fdp_notif_resp)
#define FDP_NOTIF_ID_VALID _IOW('!', 2, uint64_t)
#define FDP_NOTIF_ADDFD _IOW('!', 3, struct fdp_notif_addfd)

#define FDP_FLAG_CONTINUE 1u // SECCOMP_USER_NOTIF_FLAG_CONTINUE
#define FDP_ADDFD_SETFD 1u   // SECCOMP_ADDFD_FLAG_SETFD
#define FDP_ADDFD_SEND 2u    // SECCOMP_ADDFD_FLAG_SEND (Linux >= 5.14)

// What seccompRecv reports besides -errno.
#define FDP_NOTIF_RECEIVED 0
#define FDP_NOTIF_HUP 1 // every process of the filter is gone

static int ioctl_retry(int fd, unsigned long req, void *arg) {
  int r;
  do
    r = ioctl(fd, req, arg);
  while (r < 0 && errno == EINTR);
  return r < 0 ? -errno : r;
}

// seccompRecv(fd, out: Uint8Array(80)) -> 0 (a notification in out) |
// 1 (hung up: no process of the filter is left) | -EAGAIN (nothing pending)
// | -errno (ENOENT: its target died between poll and receive)
static napi_value fdp_seccomp_recv(napi_env env, napi_callback_info info) {
  FDP_ARGS(2);
  int32_t fd;
  size_t length = 0;
  void *data = fdp_bytes(env, argv[1], &length);
  if (!data || fdp_int(env, argv[0], &fd))
    return NULL;
  if (length < sizeof(struct fdp_notif))
    return fdp_range_error(env, "out must be a Uint8Array of 80 bytes");
  struct pollfd p = {.fd = fd, .events = POLLIN};
  int r;
  do
    r = poll(&p, 1, 0);
  while (r < 0 && errno == EINTR);
  if (r < 0)
    return fdp_number(env, -errno);
  if (p.revents & POLLNVAL)
    return fdp_number(env, -EBADF);
  // Hung up: whatever is still listed can no longer be answered.
  if (p.revents & POLLHUP)
    return fdp_number(env, FDP_NOTIF_HUP);
  if (!(p.revents & POLLIN))
    return fdp_number(env, -EAGAIN);
  struct fdp_notif n;
  memset(&n, 0, sizeof(n)); // RECV refuses a struct that is not zeroed
  r = ioctl_retry(fd, FDP_NOTIF_RECV, &n);
  if (r < 0)
    return fdp_number(env, r);
  memcpy(data, &n, sizeof(n));
  return fdp_number(env, FDP_NOTIF_RECEIVED);
}

// seccompSend(fd, id, val: BigInt (int64 bits), error, continue) -> 0 |
// -errno (ENOENT: the target is gone or the id is unknown)
static napi_value fdp_seccomp_send(napi_env env, napi_callback_info info) {
  FDP_ARGS(5);
  int32_t fd, error, cont;
  struct fdp_notif_resp resp;
  memset(&resp, 0, sizeof(resp));
  uint64_t val;
  if (fdp_int(env, argv[0], &fd) || fdp_u64(env, argv[1], &resp.id) ||
      fdp_u64(env, argv[2], &val) || fdp_int(env, argv[3], &error) ||
      fdp_int(env, argv[4], &cont))
    return NULL;
  resp.val = (int64_t)val;
  resp.error = error;
  resp.flags = cont ? FDP_FLAG_CONTINUE : 0;
  return fdp_number(env, ioctl_retry(fd, FDP_NOTIF_SEND, &resp));
}

// seccompIdValid(fd, id) -> 0 while the request is pending | -ENOENT
static napi_value fdp_seccomp_id_valid(napi_env env, napi_callback_info info) {
  FDP_ARGS(2);
  int32_t fd;
  uint64_t id;
  if (fdp_int(env, argv[0], &fd) || fdp_u64(env, argv[1], &id))
    return NULL;
  return fdp_number(env, ioctl_retry(fd, FDP_NOTIF_ID_VALID, &id));
}

// seccompAddfd(fd, id, srcfd, targetFd (-1: lowest free), send, cloexec)
//   -> the fd's number in the target | -errno. With send, the target's
//   syscall returns that number and the request is answered.
static napi_value fdp_seccomp_addfd(napi_env env, napi_callback_info info) {
  FDP_ARGS(6);
  int32_t fd, srcfd, newfd, send, cloexec;
  struct fdp_notif_addfd add;
  memset(&add, 0, sizeof(add));
  if (fdp_int(env, argv[0], &fd) || fdp_u64(env, argv[1], &add.id) ||
      fdp_int(env, argv[2], &srcfd) || fdp_int(env, argv[3], &newfd) ||
      fdp_int(env, argv[4], &send) || fdp_int(env, argv[5], &cloexec))
    return NULL;
  add.srcfd = (uint32_t)srcfd;
  if (newfd >= 0) {
    add.flags |= FDP_ADDFD_SETFD;
    add.newfd = (uint32_t)newfd;
  }
  if (send)
    add.flags |= FDP_ADDFD_SEND;
  add.newfd_flags = cloexec ? O_CLOEXEC : 0;
  return fdp_number(env, ioctl_retry(fd, FDP_NOTIF_ADDFD, &add));
}

napi_status fdp_init_seccomp(napi_env env, napi_value exports) {
  static const fdp_function_t fns[] = {
      {"seccompRecv", fdp_seccomp_recv},
      {"seccompSend", fdp_seccomp_send},
      {"seccompIdValid", fdp_seccomp_id_valid},
      {"seccompAddfd", fdp_seccomp_addfd},
  };
  return fdp_export(env, exports, FDP_LIST(fns), FDP_NONE, NULL);
}
