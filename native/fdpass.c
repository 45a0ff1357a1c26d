// fdpass native layer: a thin Node-API binding over the AF_UNIX syscalls and
// a libuv poll handle. Every function returns a result or -errno; turning
// errnos into errors, framing, queues and ownership policy live in TypeScript.
//
// Kernel rules this file relies on (see unix(7), cmsg(3)):
// - Sockets are created SOCK_CLOEXEC | SOCK_NONBLOCK and accepted with accept4
//   so no child inherits them and nothing here ever blocks, except fdp_poll.
// - Received fds are installed with MSG_CMSG_CLOEXEC.
// - Sends use MSG_NOSIGNAL: a dead peer gives EPIPE, not SIGPIPE.
// - The kernel sizes the fd room of a control buffer as
//   (controllen - sizeof(struct cmsghdr)) / sizeof(int); CMSG_SPACE(4) holds
//   two fds on 64-bit. We collect every fd that arrived, whatever was asked,
//   so the caller can close the extras.
// - On MSG_CTRUNC the fds that fit are installed and must be closed by us;
//   the caller sees the flag and the fds, and closes them.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "args.h"
#include "cmsg.h"
#include "watcher_thread.h"

#define FDP_MAX_FDS 253 // SCM_MAX_FD: more fds in one sendmsg fail with EINVAL
#define META_INTS 4     // per message: bytes, fds, flags, control summary

// Flags beside the kernel's MSG_TRUNC (0x20) and MSG_CTRUNC (0x08).
#define FDP_EOF 0x10000

// A control buffer large enough for a full SCM_RIGHTS plus credentials and a
// little more, so a peer that adds unexpected messages is seen, not cut.
#define CONTROL_SIZE                                                           \
  (CMSG_SPACE(FDP_MAX_FDS * sizeof(int)) + CMSG_SPACE(sizeof(struct ucred)) +  \
   256)

typedef struct watcher watcher_t;

// The buffers of one recvmmsg: a control buffer per message.
#define MMSG_BATCH 64
typedef struct {
  union {
    char buf[CONTROL_SIZE];
    struct cmsghdr align;
  } control[MMSG_BATCH];
  struct mmsghdr hdr[MMSG_BATCH];
  struct iovec iov[MMSG_BATCH];
} mmsg_t;

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
  napi_ref owned_ref;
  mmsg_t *mm;  // recvmmsg buffers, allocated on first use
  int high_fd; // the highest fd received so far
} instance_t;

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

// ---- helpers ---------------------------------------------------------------

#define CHECK(call)                                                            \
  do {                                                                         \
    if ((call) != napi_ok)                                                     \
      return NULL;                                                             \
  } while (0)

static napi_value make_int(napi_env env, int64_t v) {
  napi_value r;
  napi_create_int64(env, v, &r);
  return r;
}

static int arg_int(napi_env env, napi_value v, int *out) {
  return napi_get_value_int32(env, v, out) == napi_ok ? 0 : -1;
}

static void *arg_bytes(napi_env env, napi_value v, size_t *len) {
  napi_typedarray_type type;
  void *data = NULL;
  size_t length = 0;
  napi_value ab;
  size_t offset;
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is)
    return NULL;
  if (napi_get_typedarray_info(env, v, &type, &length, &data, &ab, &offset) !=
      napi_ok)
    return NULL;
  if (type == napi_int32_array)
    length *= 4;
  *len = length;
  return data ? data : (void *)"";
}

static void mark_owned(instance_t *inst, int fd, int owned) {
  if (!inst->owned || fd < 0 || (size_t)fd >= inst->owned_bits)
    return;
  if (owned)
    inst->owned[fd >> 3] |= (uint8_t)(1u << (fd & 7));
  else
    inst->owned[fd >> 3] &= (uint8_t) ~(1u << (fd & 7));
}

static int throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return -1;
}

// Fill a sockaddr_un from the bytes JS prepared: a path, or a NUL byte and an
// abstract name. Paths get their terminating NUL; abstract names count it not.
static int make_addr(napi_env env, napi_value v, struct sockaddr_un *sa,
                     socklen_t *len) {
  size_t n;
  const char *bytes = arg_bytes(env, v, &n);
  if (!bytes)
    return throw_type(env, "address must be a Uint8Array");
  if (n == 0 || n > sizeof(sa->sun_path) - (bytes[0] != 0))
    return throw_type(env, "address length out of range");
  memset(sa, 0, sizeof(*sa));
  sa->sun_family = AF_UNIX;
  memcpy(sa->sun_path, bytes, n);
  *len =
      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (bytes[0] != 0));
  return 0;
}

// ---- plain syscalls --------------------------------------------------------

// socket(type) -> fd | -errno
static napi_value fdp_socket(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int type;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (arg_int(env, argv[0], &type))
    return NULL;
  int fd = socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  return make_int(env, fd < 0 ? -errno : fd);
}

// socketpair(type, out: Int32Array(2)) -> 0 | -errno
static napi_value fdp_socketpair(napi_env env, napi_callback_info info) {
  size_t argc = 2, n = 0;
  napi_value argv[2];
  int type;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int *out = arg_bytes(env, argv[1], &n);
  if (arg_int(env, argv[0], &type) || !out || n < 2 * sizeof(int))
    return NULL;
  int r = socketpair(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, out);
  return make_int(env, r < 0 ? -errno : 0);
}

// bind(fd, address) -> 0 | -errno
static napi_value fdp_bind(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int fd;
  struct sockaddr_un sa;
  socklen_t len;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (arg_int(env, argv[0], &fd) || make_addr(env, argv[1], &sa, &len))
    return NULL;
  int r = bind(fd, (struct sockaddr *)&sa, len);
  return make_int(env, r < 0 ? -errno : 0);
}

// listen(fd, backlog) -> 0 | -errno
static napi_value fdp_listen(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int fd, backlog;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (arg_int(env, argv[0], &fd) || arg_int(env, argv[1], &backlog))
    return NULL;
  return make_int(env, listen(fd, backlog) < 0 ? -errno : 0);
}

// connect(fd, address) -> 0 | -errno. A non-blocking AF_UNIX connect either
// completes at once or fails with EAGAIN when the listener's backlog is full;
// the caller retries later.
static napi_value fdp_connect(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int fd, r;
  struct sockaddr_un sa;
  socklen_t len;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (arg_int(env, argv[0], &fd) || make_addr(env, argv[1], &sa, &len))
    return NULL;
  do
    r = connect(fd, (struct sockaddr *)&sa, len);
  while (r < 0 && errno == EINTR);
  return make_int(env, r < 0 ? -errno : 0);
}

// acceptBatch(fd, out: Int32Array) -> count | -errno. Accepts until EAGAIN or
// the array is full; an error after some connections is left for the next call.
static napi_value fdp_accept_batch(napi_env env, napi_callback_info info) {
  size_t argc = 2, n = 0;
  napi_value argv[2];
  int fd;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int *out = arg_bytes(env, argv[1], &n);
  if (arg_int(env, argv[0], &fd) || !out)
    return NULL;
  size_t max = n / sizeof(int), count = 0;
  while (count < max) {
    int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c < 0) {
      if (errno == EINTR)
        continue;
      if (count == 0)
        return make_int(env, -errno);
      break;
    }
    out[count++] = c;
  }
  return make_int(env, (int64_t)count);
}

// sockInfo(fd, out: Int32Array(3)) -> 0 | -errno: SO_TYPE, SO_DOMAIN,
// SO_ACCEPTCONN. Fails with ENOTSOCK for an fd that is not a socket.
static napi_value fdp_sock_info(napi_env env, napi_callback_info info) {
  size_t argc = 2, n = 0;
  napi_value argv[2];
  int fd;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int *out = arg_bytes(env, argv[1], &n);
  if (arg_int(env, argv[0], &fd) || !out || n < 3 * sizeof(int))
    return NULL;
  static const int opts[3] = {SO_TYPE, SO_DOMAIN, SO_ACCEPTCONN};
  for (int i = 0; i < 3; i++) {
    socklen_t len = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, opts[i], &out[i], &len) < 0)
      return make_int(env, -errno);
  }
  return make_int(env, 0);
}

// peerCred(fd, out: Int32Array(3)) -> 0 | -errno: pid, uid, gid as of
// connect() or socketpair().
static napi_value fdp_peer_cred(napi_env env, napi_callback_info info) {
  size_t argc = 2, n = 0;
  napi_value argv[2];
  int fd;
  struct ucred cred;
  socklen_t len = sizeof(cred);
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int *out = arg_bytes(env, argv[1], &n);
  if (arg_int(env, argv[0], &fd) || !out || n < 3 * sizeof(int))
    return NULL;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
    return make_int(env, -errno);
  out[0] = cred.pid;
  out[1] = (int)cred.uid;
  out[2] = (int)cred.gid;
  return make_int(env, 0);
}

// setFlags(fd, cloexec, nonblock) -> 0 | -errno; -1 leaves a flag as it is.
static napi_value fdp_set_flags(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int fd, cloexec, nonblock, f;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (arg_int(env, argv[0], &fd) || arg_int(env, argv[1], &cloexec) ||
      arg_int(env, argv[2], &nonblock))
    return NULL;
  if (cloexec >= 0) {
    if ((f = fcntl(fd, F_GETFD)) < 0 ||
        fcntl(fd, F_SETFD, cloexec ? f | FD_CLOEXEC : f & ~FD_CLOEXEC) < 0)
      return make_int(env, -errno);
  }
  if (nonblock >= 0) {
    if ((f = fcntl(fd, F_GETFL)) < 0 ||
        fcntl(fd, F_SETFL, nonblock ? f | O_NONBLOCK : f & ~O_NONBLOCK) < 0)
      return make_int(env, -errno);
  }
  return make_int(env, 0);
}

// getFlags(fd) -> bit 0: FD_CLOEXEC, bit 1: O_NONBLOCK | -errno
static napi_value fdp_get_flags(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int fd, fdf, flf;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (arg_int(env, argv[0], &fd))
    return NULL;
  if ((fdf = fcntl(fd, F_GETFD)) < 0 || (flf = fcntl(fd, F_GETFL)) < 0)
    return make_int(env, -errno);
  return make_int(env,
                  ((fdf & FD_CLOEXEC) ? 1 : 0) | ((flf & O_NONBLOCK) ? 2 : 0));
}

// shutdown(fd, how) -> 0 | -errno
static napi_value fdp_shutdown(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int fd, how;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (arg_int(env, argv[0], &fd) || arg_int(env, argv[1], &how))
    return NULL;
  return make_int(env, shutdown(fd, how) < 0 ? -errno : 0);
}

// close(fd) -> 0 | -errno. The fd is no longer ours even when close fails
// (Linux frees the number first), so it leaves the owned set either way.
static napi_value fdp_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int fd;
  instance_t *inst;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(napi_get_instance_data(env, (void **)&inst));
  if (arg_int(env, argv[0], &fd))
    return NULL;
  mark_owned(inst, fd, 0);
  return make_int(env, close(fd) < 0 && errno != EINTR ? -errno : 0);
}

// closeMany(fds: Int32Array, count) -> 0 | -errno of the first failure.
// Every fd is closed whatever happens to the others; EINTR still closed it.
static napi_value fdp_close_many(napi_env env, napi_callback_info info) {
  size_t argc = 2, len = 0;
  napi_value argv[2];
  int count, first_error = 0;
  instance_t *inst;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(napi_get_instance_data(env, (void **)&inst));
  int *fds = arg_bytes(env, argv[0], &len);
  if (!fds || arg_int(env, argv[1], &count))
    return NULL;
  if (count < 0 || (size_t)count > len / sizeof(int)) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "closeMany count");
    return NULL;
  }
  for (int i = 0; i < count; i++) {
    mark_owned(inst, fds[i], 0);
    if (close(fds[i]) < 0 && errno != EINTR && first_error == 0)
      first_error = -errno;
  }
  return make_int(env, first_error);
}

// poll(fd, events, timeoutMs) -> revents | 0 on timeout | -errno. Blocks: for
// the *Sync functions only.
static napi_value fdp_poll(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int fd, events, timeout, r;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (arg_int(env, argv[0], &fd) || arg_int(env, argv[1], &events) ||
      arg_int(env, argv[2], &timeout))
    return NULL;
  struct pollfd p = {.fd = fd, .events = (short)events};
  do
    r = poll(&p, 1, timeout);
  while (r < 0 && errno == EINTR);
  if (r < 0)
    return make_int(env, -errno);
  return make_int(env, r == 0 ? 0 : p.revents);
}

// ---- sendmsg / recvmsg -------------------------------------------------------

// sendmsg(fd, data, offset, length, fds|null, nfds, address|null)
//   -> bytes sent | -errno
// One SCM_RIGHTS with nfds fds from the Int32Array, MSG_NOSIGNAL, EINTR
// retried. A stream may take fewer bytes than given: the caller sends the rest
// without the fds, which are attached to the first byte.
static napi_value fdp_sendmsg(napi_env env, napi_callback_info info) {
  size_t argc = 7, dlen = 0, flen = 0;
  napi_value argv[7];
  int fd, off, len, nfds;
  napi_valuetype t;
  struct sockaddr_un sa;
  socklen_t salen = 0;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char *data = arg_bytes(env, argv[1], &dlen);
  if (arg_int(env, argv[0], &fd) || !data || arg_int(env, argv[2], &off) ||
      arg_int(env, argv[3], &len) || arg_int(env, argv[5], &nfds))
    return NULL;
  if (off < 0 || len < 0 || (size_t)off + (size_t)len > dlen || nfds < 0 ||
      nfds > FDP_MAX_FDS) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "sendmsg bounds");
    return NULL;
  }
  int *fds = NULL;
  if (nfds > 0) {
    fds = arg_bytes(env, argv[4], &flen);
    if (!fds || flen < (size_t)nfds * sizeof(int)) {
      throw_type(env, "fds must be an Int32Array");
      return NULL;
    }
  }
  CHECK(napi_typeof(env, argv[6], &t));
  if (t != napi_null && t != napi_undefined &&
      make_addr(env, argv[6], &sa, &salen))
    return NULL;

  union {
    char buf[CMSG_SPACE(FDP_MAX_FDS * sizeof(int))];
    struct cmsghdr align;
  } control;
  struct iovec iov = {.iov_base = data + off, .iov_len = (size_t)len};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  if (salen) {
    msg.msg_name = &sa;
    msg.msg_namelen = salen;
  }
  if (nfds > 0) {
    memset(control.buf, 0, CMSG_SPACE(nfds * sizeof(int)));
    msg.msg_control = control.buf;
    msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
    memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
  }
  ssize_t r;
  do
    r = sendmsg(fd, &msg, MSG_NOSIGNAL);
  while (r < 0 && errno == EINTR);
  return make_int(env, r < 0 ? -errno : r);
}

// Fill one message's meta from what recvmsg returned and collect its fds
// (marked owned). Returns the number of fds collected.
static int take_message(instance_t *inst, struct msghdr *msg, ssize_t r,
                        int *fds, size_t room, int *m) {
  int rights, others;
  int n = msg->msg_controllen > 0
              ? collect_fds(msg, fds, (int)room, &rights, &others)
              : (rights = others = 0);
  for (int i = 0; i < n; i++) {
    mark_owned(inst, fds[i], 1);
    if (fds[i] > inst->high_fd)
      inst->high_fd = fds[i];
  }
  m[0] = (int)r;
  m[1] = n;
  m[2] = msg->msg_flags & (MSG_TRUNC | MSG_CTRUNC);
  m[3] = rights | (others << 8);
  return n;
}

// How many messages one recvmmsg may read without letting the kernel cut a
// read-ahead message's fds at RLIMIT_NOFILE (a reader taking one message at a
// time, closing as it goes, would get them all). Fds take the lowest free
// numbers and the limit bounds the numbers, so k messages surely fit while
// the highest fd seen + k * 253 stays under the limit. The limit is read
// each time: another process may lower it (prlimit --pid).
static int fds_safe_batch(instance_t *inst, int sock, int want) {
  long high = inst->high_fd > sock ? inst->high_fd : sock;
  struct rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) < 0)
    return 1;
  if (nofile.rlim_cur == RLIM_INFINITY ||
      nofile.rlim_cur - 1 >= (rlim_t)high + (rlim_t)want * FDP_MAX_FDS)
    return want;
  long k = ((long)nofile.rlim_cur - 1 - high) / FDP_MAX_FDS;
  return k < 1 ? 1 : (int)k;
}

// recvBatch(fd, data: Uint8Array, fds: Int32Array, meta: Int32Array,
//           maxMessages, bytesPerMessage, fdsPerMessage, connected)
//   -> count | -errno
// Reads up to maxMessages messages so that JS is entered once per batch: one
// recvmsg when maxMessages is 1, else one recvmmsg (one syscall for the
// batch; MSG_WAITFORONE never waits past the first message). Message i has
// meta[4i..4i+3] = bytes, fds, flags, control summary (SCM_RIGHTS count |
// others << 8); its bytes and fds follow the previous message's in data and
// fds. meta[4 * maxMessages] is -errno for an error after some messages (the
// caller reports it next), 1 when the socket was found empty (a short batch:
// there is no need to try again before readiness), else 0.
static napi_value fdp_recv_batch(napi_env env, napi_callback_info info) {
  size_t argc = 8, dlen = 0, flen = 0, mlen = 0;
  napi_value argv[8];
  int fd, max_msgs, per_bytes, per_fds, connected;
  instance_t *inst;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(napi_get_instance_data(env, (void **)&inst));
  char *data = arg_bytes(env, argv[1], &dlen);
  int *fds = arg_bytes(env, argv[2], &flen);
  int *meta = arg_bytes(env, argv[3], &mlen);
  if (arg_int(env, argv[0], &fd) || !data || !fds || !meta ||
      arg_int(env, argv[4], &max_msgs) || arg_int(env, argv[5], &per_bytes) ||
      arg_int(env, argv[6], &per_fds) || arg_int(env, argv[7], &connected))
    return NULL;
  if (per_fds < 0 || per_fds > FDP_MAX_FDS || per_bytes < 0 || max_msgs < 1 ||
      mlen < ((size_t)max_msgs * META_INTS + 1) * sizeof(int)) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "recvBatch bounds");
    return NULL;
  }
  // Room for per_fds fds as the kernel counts it; a request for 0 fds still
  // gets one slot so that a sender's fds are seen (and closed), not dropped.
  size_t controllen = CMSG_SPACE((per_fds ? per_fds : 1) * sizeof(int)) +
                      CMSG_SPACE(sizeof(struct ucred));
  size_t fd_room = (controllen - CMSG_LEN(0)) / sizeof(int);
  size_t fd_cap = flen / sizeof(int);
  // Each message read at once needs its own data slot and fd room.
  size_t fit = fd_cap / fd_room;
  if (per_bytes > 0 && dlen / (size_t)per_bytes < fit)
    fit = dlen / (size_t)per_bytes;
  if (fit < 1) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "recvBatch buffers");
    return NULL;
  }
  int want = max_msgs < MMSG_BATCH ? max_msgs : MMSG_BATCH;
  if ((size_t)want > fit)
    want = (int)fit;
  meta[max_msgs * META_INTS] = 0;

  if (want == 1) {
    union {
      char buf[CONTROL_SIZE];
      struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = data, .iov_len = (size_t)per_bytes};
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = control.buf,
                         .msg_controllen = controllen};
    ssize_t r;
    do
      r = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
    while (r < 0 && errno == EINTR);
    if (r < 0)
      return make_int(env, -errno);
    take_message(inst, &msg, r, fds, fd_cap, meta);
    // Zero bytes and no control data on a connected socket is end of file.
    if (r == 0 && msg.msg_controllen == 0 && connected)
      meta[2] |= FDP_EOF;
    return make_int(env, 1);
  }

  mmsg_t *mm = inst->mm;
  if (!mm && !(mm = inst->mm = malloc(sizeof(*mm)))) {
    napi_throw_error(env, "ENOMEM", "recvBatch: out of memory");
    return NULL;
  }
  want = fds_safe_batch(inst, fd, want);
  for (int i = 0; i < want; i++) {
    mm->iov[i].iov_base = data + (size_t)i * (size_t)per_bytes;
    mm->iov[i].iov_len = (size_t)per_bytes;
    mm->hdr[i].msg_hdr = (struct msghdr){.msg_iov = &mm->iov[i],
                                         .msg_iovlen = 1,
                                         .msg_control = mm->control[i].buf,
                                         .msg_controllen = controllen};
  }
  int got;
  do
    got = recvmmsg(fd, mm->hdr, (unsigned)want,
                   MSG_CMSG_CLOEXEC | MSG_WAITFORONE, NULL);
  while (got < 0 && errno == EINTR);
  if (got < 0)
    return make_int(env, -errno);
  // The kernel stops a batch early at EAGAIN, or at an error it keeps for the
  // next call (sk_err); either way, readiness tells when to read again.
  if (got < want)
    meta[max_msgs * META_INTS] = 1;
  size_t used_bytes = 0, used_fds = 0;
  int count = 0;
  while (count < got) {
    struct msghdr *msg = &mm->hdr[count].msg_hdr;
    ssize_t r = (ssize_t)mm->hdr[count].msg_len;
    // Pack the bytes: message i follows message i - 1 in data.
    if (count > 0 && r > 0)
      memmove(data + used_bytes, mm->iov[count].iov_base, (size_t)r);
    int *m = meta + count * META_INTS;
    used_fds += (size_t)take_message(inst, msg, r, fds + used_fds, fd_room, m);
    used_bytes += (size_t)r;
    count++;
    // Zero bytes and no control data on a connected socket is end of file
    // (at end of file recvmmsg fills every entry with it). On a seqpacket
    // socket it may be an empty message: what came after it is dropped, as
    // a reader stopping there would leave it, and its fds are closed.
    if (r == 0 && msg->msg_controllen == 0 && connected) {
      m[2] |= FDP_EOF;
      for (int i = count; i < got; i++) {
        struct msghdr *rest = &mm->hdr[i].msg_hdr;
        int rights, others;
        if (rest->msg_controllen > 0)
          collect_fds(rest, NULL, 0, &rights, &others);
      }
      break;
    }
  }
  return make_int(env, count);
}

// ---- readiness through libuv -------------------------------------------------

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

static void on_env_cleanup(napi_async_cleanup_hook_handle handle, void *arg);

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
  size_t argc = 2;
  napi_value argv[2], external;
  int fd;
  instance_t *inst;
  uv_loop_t *loop;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(napi_get_instance_data(env, (void **)&inst));
  if (arg_int(env, argv[0], &fd))
    return NULL;
  // The libuv backend starts here, never at load: a runtime without libuv
  // (Bun's uv_* are crash stubs) or with a broken one (Deno) must not get
  // here, and Deno frees an async cleanup hook's handle twice when it is
  // removed from inside the hook, as Node requires.
  if (!inst->uv_started) {
    CHECK(
        napi_add_async_cleanup_hook(env, on_env_cleanup, inst, &inst->cleanup));
    inst->uv_started = 1;
  }
  CHECK(napi_get_uv_event_loop(env, &loop));
  watcher_t *w = calloc(1, sizeof(*w));
  if (!w)
    return make_int(env, -ENOMEM);
  int r = uv_poll_init(loop, &w->poll, fd);
  if (r < 0) {
    free(w);
    return make_int(env, r);
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
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok) {
    throw_type(env, "not a watcher");
    return NULL;
  }
  return p;
}

// setEvents(watcher, events) -> 0 | -errno. events: 1 readable, 2 writable,
// 0 stops. The callback is held strongly only while polling, so an idle
// socket that nobody references can be collected (and its fd closed).
static napi_value fdp_set_events(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int events, r = 0;
  uint32_t refs;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  watcher_t *w = arg_watcher(env, argv[0]);
  if (!w || arg_int(env, argv[1], &events))
    return NULL;
  if (w->fd < 0)
    return make_int(env, -EBADF);
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
  return make_int(env, r);
}

// closeWatcher(watcher, closeFd) -> 0 | -errno. With closeFd false the fd is
// released to the caller (its poll handle is gone, the fd stays open).
static napi_value fdp_close_watcher(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  bool close_fd;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  watcher_t *w = arg_watcher(env, argv[0]);
  if (!w || napi_get_value_bool(env, argv[1], &close_fd) != napi_ok)
    return NULL;
  return make_int(env, shut_watcher(env, w, close_fd));
}

// setOwnedMap(bitmap: Uint8Array): fds received by recvBatch are marked in it
// until JS hands them to the user (and clears the bit) or closes them; the
// end of the environment closes whatever is still marked.
static napi_value fdp_set_owned_map(napi_env env, napi_callback_info info) {
  size_t argc = 1, n = 0;
  napi_value argv[1];
  instance_t *inst;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(napi_get_instance_data(env, (void **)&inst));
  uint8_t *map = arg_bytes(env, argv[0], &n);
  if (!map)
    return NULL;
  if (inst->owned_ref)
    napi_delete_reference(env, inst->owned_ref);
  CHECK(napi_create_reference(env, argv[0], 1, &inst->owned_ref));
  inst->owned = map;
  inst->owned_bits = n * 8;
  return NULL;
}

// ---- environment lifetime ------------------------------------------------------

static void free_instance(instance_t *inst) {
  // Watchers still closing keep a pointer to inst: leak it rather than race.
  if (inst->finalized && inst->owned_closed && inst->closing_handles == 0 &&
      !inst->watchers) {
    free(inst->mm);
    free(inst);
  }
}

// The libuv backend's part of the end of the environment: close the poll
// handles (their close callbacks end the async hook).
static void on_env_cleanup(napi_async_cleanup_hook_handle handle, void *arg) {
  instance_t *inst = arg;
  (void)handle;
  inst->cleaning = 1;
  while (inst->watchers)
    shut_watcher(NULL, inst->watchers, 1);
  maybe_finish_cleanup(inst);
}

// Whatever the backend: close every fd received and not handed to the user.
static void close_owned(void *arg) {
  instance_t *inst = arg;
  if (inst->owned)
    for (size_t i = 0; i < inst->owned_bits; i++)
      if (inst->owned[i >> 3] & (1u << (i & 7))) {
        close((int)i);
        inst->owned[i >> 3] &= (uint8_t) ~(1u << (i & 7));
      }
  inst->owned = NULL;
  inst->owned_closed = 1;
  free_instance(inst);
}

static void finalize_instance(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  instance_t *inst = data;
  inst->finalized = 1;
  free_instance(inst);
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  instance_t *inst = calloc(1, sizeof(*inst));
  if (!inst)
    return NULL;
  inst->env = env;
  napi_value name;
  CHECK(napi_create_string_utf8(env, "fdpass", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_async_init(env, NULL, name, &inst->async_context));
  CHECK(napi_set_instance_data(env, inst, finalize_instance, NULL));
  CHECK(napi_add_env_cleanup_hook(env, close_owned, inst));
  CHECK(fdp_thread_backend_init(env, exports));

  static const struct {
    const char *name;
    napi_callback fn;
  } fns[] = {
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
      {"sendmsg", fdp_sendmsg},
      {"recvBatch", fdp_recv_batch},
      {"watch", fdp_watch},
      {"setEvents", fdp_set_events},
      {"closeWatcher", fdp_close_watcher},
      {"setOwnedMap", fdp_set_owned_map},
  };
  for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
    napi_value fn;
    CHECK(napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn,
                               NULL, &fn));
    CHECK(napi_set_named_property(env, exports, fns[i].name, fn));
  }
  static const struct {
    const char *name;
    int value;
  } consts[] = {
      {"SOCK_STREAM", SOCK_STREAM},
      {"SOCK_DGRAM", SOCK_DGRAM},
      {"SOCK_SEQPACKET", SOCK_SEQPACKET},
      {"MSG_TRUNC", MSG_TRUNC},
      {"MSG_CTRUNC", MSG_CTRUNC},
      {"FDP_EOF", FDP_EOF},
      {"POLLIN", POLLIN},
      {"POLLOUT", POLLOUT},
      {"POLLERR", POLLERR},
      {"POLLHUP", POLLHUP},
      {"MAX_FDS", FDP_MAX_FDS},
      {"META_INTS", META_INTS},
      {"EAGAIN", -EAGAIN},
      {"CONTROL_SIZE", (int)CONTROL_SIZE},
  };
  for (size_t i = 0; i < sizeof(consts) / sizeof(consts[0]); i++)
    CHECK(napi_set_named_property(env, exports, consts[i].name,
                                  make_int(env, consts[i].value)));
  CHECK(fdp_init_pidfd(env, exports));
  CHECK(fdp_init_seccomp(env, exports));
  CHECK(fdp_init_tty(env, exports));
  CHECK(fdp_init_inet(env, exports));
  return exports;
}
