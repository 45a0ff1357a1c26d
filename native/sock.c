// Plain socket and fd syscalls, one binding each; every one returns a result
// or -errno. Sockets are created SOCK_CLOEXEC | SOCK_NONBLOCK and accepted
// with accept4, so no child inherits them and nothing here blocks, except
// poll (for the *Sync functions only).
#define _GNU_SOURCE // POLLRDHUP
#include "fdpass.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

// socket(type) -> fd
static napi_value fdp_socket(napi_env env, napi_callback_info info) {
  int32_t a[1];
  if (fdp_int_args(env, info, 1, a))
    return NULL;
  return fdp_result(env,
                    socket(AF_UNIX, a[0] | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
}

// socketpair(type, out: Int32Array(2)) -> 0
static napi_value fdp_socketpair(napi_env env, napi_callback_info info) {
  FDP_ARGS(2);
  size_t n = 0;
  int type;
  int *out = fdp_bytes(env, argv[1], &n);
  if (!out || fdp_int(env, argv[0], &type))
    return NULL;
  if (n < 2 * sizeof(int))
    return fdp_range_error(env, "socketpair out");
  int r = socketpair(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, out);
  return fdp_number(env, r < 0 ? -errno : 0);
}

// bind(fd, address) -> 0
static napi_value fdp_bind(napi_env env, napi_callback_info info) {
  FDP_ARGS(2);
  int fd;
  struct sockaddr_un sa;
  socklen_t len;
  if (fdp_int(env, argv[0], &fd) || fdp_addr(env, argv[1], &sa, &len))
    return NULL;
  int r = bind(fd, (struct sockaddr *)&sa, len);
  return fdp_number(env, r < 0 ? -errno : 0);
}

// listen(fd, backlog) -> 0
static napi_value fdp_listen(napi_env env, napi_callback_info info) {
  int32_t a[2];
  if (fdp_int_args(env, info, 2, a))
    return NULL;
  return fdp_result(env, listen(a[0], a[1]));
}

// connect(fd, address) -> 0. A non-blocking AF_UNIX connect either completes
// at once or fails with EAGAIN while the listener's backlog is full; the
// caller retries later.
static napi_value fdp_connect(napi_env env, napi_callback_info info) {
  FDP_ARGS(2);
  int fd, r;
  struct sockaddr_un sa;
  socklen_t len;
  if (fdp_int(env, argv[0], &fd) || fdp_addr(env, argv[1], &sa, &len))
    return NULL;
  do
    r = connect(fd, (struct sockaddr *)&sa, len);
  while (r < 0 && errno == EINTR);
  return fdp_number(env, r < 0 ? -errno : 0);
}

// acceptBatch(fd, out: Int32Array) -> count. Accepts until EAGAIN or the
// array is full; an error after some connections is left for the next call.
static napi_value fdp_accept_batch(napi_env env, napi_callback_info info) {
  FDP_ARGS(2);
  size_t n = 0;
  int fd;
  int *out = fdp_bytes(env, argv[1], &n);
  if (!out || fdp_int(env, argv[0], &fd))
    return NULL;
  size_t max = n / sizeof(int), count = 0;
  while (count < max) {
    int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c < 0) {
      if (errno == EINTR)
        continue;
      if (count == 0)
        return fdp_number(env, -errno);
      break;
    }
    out[count++] = c;
  }
  return fdp_number(env, (int64_t)count);
}

// sockInfo(fd, out: Int32Array(3)) -> 0: SO_TYPE, SO_DOMAIN, SO_ACCEPTCONN.
// ENOTSOCK for an fd that is not a socket.
static napi_value fdp_sock_info(napi_env env, napi_callback_info info) {
  FDP_ARGS(2);
  size_t n = 0;
  int fd;
  int *out = fdp_bytes(env, argv[1], &n);
  if (!out || fdp_int(env, argv[0], &fd))
    return NULL;
  if (n < 3 * sizeof(int))
    return fdp_range_error(env, "sockInfo out");
  static const int opts[3] = {SO_TYPE, SO_DOMAIN, SO_ACCEPTCONN};
  for (int i = 0; i < 3; i++) {
    socklen_t len = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, opts[i], &out[i], &len) < 0)
      return fdp_number(env, -errno);
  }
  return fdp_number(env, 0);
}

// peerCred(fd, out: Int32Array(3)) -> 0: pid, uid, gid as of connect() or
// socketpair().
static napi_value fdp_peer_cred(napi_env env, napi_callback_info info) {
  FDP_ARGS(2);
  size_t n = 0;
  int fd;
  struct ucred cred;
  socklen_t len = sizeof(cred);
  int *out = fdp_bytes(env, argv[1], &n);
  if (!out || fdp_int(env, argv[0], &fd))
    return NULL;
  if (n < 3 * sizeof(int))
    return fdp_range_error(env, "peerCred out");
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
    return fdp_number(env, -errno);
  out[0] = cred.pid;
  out[1] = (int)cred.uid;
  out[2] = (int)cred.gid;
  return fdp_number(env, 0);
}

#ifndef SO_PASSRIGHTS
#define SO_PASSRIGHTS 83 // Linux >= 6.16; older kernels: ENOPROTOOPT
#endif
#ifndef SO_PASSPIDFD
#define SO_PASSPIDFD 76 // Linux >= 6.5; older kernels: ENOPROTOOPT
#endif

// setSocketFlag(fd, option, on) -> 0 | -errno: a boolean SOL_SOCKET option,
// one of the three exported below. A listener's setting of each is
// inherited by the sockets it accepts, including connections queued before
// accept().
// - SO_PASSRIGHTS off: the socket refuses fds; a sendmsg that carries
//   SCM_RIGHTS to it fails with EPERM in the sender. ENOPROTOOPT before 6.16.
// - SO_PASSPIDFD on: every message brings an SCM_PIDFD, a pidfd of the
//   sender's thread-group leader installed in the receiver (msg.c hands it
//   up). ENOPROTOOPT before 6.5.
// - SO_PASSCRED on: every datagram carries its sender's SCM_CREDENTIALS
//   (recvBatch reports the pid); the kernel fills them in even when the
//   sender sent none, so no sender can omit or forge them (unix(7)).
static napi_value fdp_set_socket_flag(napi_env env, napi_callback_info info) {
  int32_t a[3];
  if (fdp_int_args(env, info, 3, a))
    return NULL;
  if (a[1] != SO_PASSRIGHTS && a[1] != SO_PASSPIDFD && a[1] != SO_PASSCRED)
    return fdp_range_error(env, "setSocketFlag option");
  int on = a[2] != 0;
  if (setsockopt(a[0], SOL_SOCKET, a[1], &on, sizeof(on)) < 0)
    return fdp_number(env, -errno);
  return fdp_number(env, 0);
}

// setFlags(fd, cloexec, nonblock) -> 0; -1 leaves a flag as it is.
static napi_value fdp_set_flags(napi_env env, napi_callback_info info) {
  FDP_ARGS(3);
  int fd, cloexec, nonblock, f;
  if (fdp_int(env, argv[0], &fd) || fdp_int(env, argv[1], &cloexec) ||
      fdp_int(env, argv[2], &nonblock))
    return NULL;
  // FD_CLOEXEC is the only fd flag (fcntl(2)): set it without reading.
  if (cloexec >= 0 && fcntl(fd, F_SETFD, cloexec ? FD_CLOEXEC : 0) < 0)
    return fdp_number(env, -errno);
  if (nonblock >= 0) {
    if ((f = fcntl(fd, F_GETFL)) < 0 ||
        fcntl(fd, F_SETFL, nonblock ? f | O_NONBLOCK : f & ~O_NONBLOCK) < 0)
      return fdp_number(env, -errno);
  }
  return fdp_number(env, 0);
}

// getFlags(fd) -> bit 0: FD_CLOEXEC, bit 1: O_NONBLOCK
static napi_value fdp_get_flags(napi_env env, napi_callback_info info) {
  FDP_ARGS(1);
  int fd, fdf, flf;
  if (fdp_int(env, argv[0], &fd))
    return NULL;
  if ((fdf = fcntl(fd, F_GETFD)) < 0 || (flf = fcntl(fd, F_GETFL)) < 0)
    return fdp_number(env, -errno);
  return fdp_number(env, ((fdf & FD_CLOEXEC) ? 1 : 0) |
                             ((flf & O_NONBLOCK) ? 2 : 0));
}

// shutdown(fd, how) -> 0
static napi_value fdp_shutdown(napi_env env, napi_callback_info info) {
  int32_t a[2];
  if (fdp_int_args(env, info, 2, a))
    return NULL;
  return fdp_result(env, shutdown(a[0], a[1]));
}

// close(fd) -> 0. The fd is no longer ours even when close fails (Linux
// frees the number first), so it leaves the owned set either way.
static napi_value fdp_close(napi_env env, napi_callback_info info) {
  FDP_ARGS(1);
  instance_t *inst = fdp_instance(env);
  if (!inst)
    return NULL;
  int fd;
  if (fdp_int(env, argv[0], &fd))
    return NULL;
  fdp_mark_owned(inst, fd, 0);
  return fdp_number(env, close(fd) < 0 && errno != EINTR ? -errno : 0);
}

// closeMany(fds: Int32Array, count) -> 0 | -errno of the first failure.
// Every fd is closed whatever happens to the others; EINTR still closed it.
static napi_value fdp_close_many(napi_env env, napi_callback_info info) {
  FDP_ARGS(2);
  instance_t *inst = fdp_instance(env);
  if (!inst)
    return NULL;
  size_t len = 0;
  int count, first_error = 0;
  int *fds = fdp_bytes(env, argv[0], &len);
  if (!fds || fdp_int(env, argv[1], &count))
    return NULL;
  if (count < 0 || (size_t)count > len / sizeof(int))
    return fdp_range_error(env, "closeMany count");
  for (int i = 0; i < count; i++) {
    fdp_mark_owned(inst, fds[i], 0);
    if (close(fds[i]) < 0 && errno != EINTR && first_error == 0)
      first_error = -errno;
  }
  return fdp_number(env, first_error);
}

// poll(fd, events, timeoutMs) -> revents | 0 on timeout. Blocks unless the
// timeout is 0: for the *Sync functions only.
static napi_value fdp_poll(napi_env env, napi_callback_info info) {
  FDP_ARGS(3);
  int fd, events, timeout, r;
  if (fdp_int(env, argv[0], &fd) || fdp_int(env, argv[1], &events) ||
      fdp_int(env, argv[2], &timeout))
    return NULL;
  struct pollfd p = {.fd = fd, .events = (short)events};
  do
    r = poll(&p, 1, timeout);
  while (r < 0 && errno == EINTR);
  if (r < 0)
    return fdp_number(env, -errno);
  return fdp_number(env, r == 0 ? 0 : p.revents);
}

static const fdp_function_t fns[] = {
    {"socket", fdp_socket},
    {"socketpair", fdp_socketpair},
    {"bind", fdp_bind},
    {"listen", fdp_listen},
    {"connect", fdp_connect},
    {"acceptBatch", fdp_accept_batch},
    {"sockInfo", fdp_sock_info},
    {"peerCred", fdp_peer_cred},
    {"setFlags", fdp_set_flags},
    {"getFlags", fdp_get_flags},
    {"shutdown", fdp_shutdown},
    {"close", fdp_close},
    {"closeMany", fdp_close_many},
    {"poll", fdp_poll},
    {"setSocketFlag", fdp_set_socket_flag},
};

static const fdp_const_t consts[] = {
    {"AF_UNIX", AF_UNIX},
    {"AF_INET", AF_INET},
    {"AF_INET6", AF_INET6},
    {"SOCK_STREAM", SOCK_STREAM},
    {"SOCK_DGRAM", SOCK_DGRAM},
    {"SOCK_SEQPACKET", SOCK_SEQPACKET},
    {"POLLIN", POLLIN},
    {"POLLOUT", POLLOUT},
    {"POLLERR", POLLERR},
    {"POLLHUP", POLLHUP},
    {"POLLRDHUP", POLLRDHUP},
    {"EAGAIN", -EAGAIN},
    {"SO_PASSRIGHTS", SO_PASSRIGHTS},
    {"SO_PASSPIDFD", SO_PASSPIDFD},
    {"SO_PASSCRED", SO_PASSCRED},
};

napi_status fdp_init_sock(napi_env env, napi_value exports) {
  return fdp_export(env, exports, FDP_LIST(fns), FDP_LIST(consts), NULL);
}
