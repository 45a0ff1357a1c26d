// Messages: sendmsg with one SCM_RIGHTS, and batched receives that cross
// into JS once per batch. Kernel rules relied on (unix(7), cmsg(3)):
// - Sends use MSG_NOSIGNAL: a dead peer gives EPIPE, not SIGPIPE. They go
//   to the kernel past libc's wrapper (sendmsg.h: musl <= 1.2.3 fails 253
//   fds with ENOMEM), so the msghdr and control buffer start zeroed.
// - Received fds are installed with MSG_CMSG_CLOEXEC.
// - The kernel sizes the fd room of a control buffer as
//   (controllen - sizeof(struct cmsghdr)) / sizeof(int); CMSG_SPACE(4) holds
//   two fds on 64-bit. Every fd that arrived is collected, whatever was
//   asked, so the caller can close the extras.
// - On MSG_CTRUNC the fds that fit are installed: the caller sees the flag
//   and the fds, and closes them.
// - On a socket with SO_PASSPIDFD every message also brings an SCM_PIDFD
//   (the sender's pidfd, installed like a received fd, written after the
//   fds): the control buffer has room for it, and it is handed up in
//   META_PIDFD, owned, for the caller to hand out or close (cmsg.h).
#include "fdpass.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "cmsg.h"
#include "sendmsg.h"

// The layout of a batch's meta array: META_INTS ints per message, then one
// status int (BATCH_DRAINED when the socket was found empty).
enum {
  META_BYTES,
  META_FDS,
  META_FLAGS,
  META_CONTROL,
  META_PID,
  META_PIDFD,
  META_INTS
};
#define BATCH_DRAINED 1
#define MMSG_BATCH 64 // messages per recvmmsg, at most

// Flags beside the kernel's MSG_TRUNC (0x20) and MSG_CTRUNC (0x08).
#define FDP_EOF 0x10000

// A control buffer large enough for a full SCM_RIGHTS plus credentials, a
// pidfd and a little more, so a peer that adds unexpected messages is seen,
// not cut.
#define CONTROL_SIZE                                                           \
  (CMSG_SPACE(FDP_MAX_FDS * sizeof(int)) + CMSG_SPACE(sizeof(struct ucred)) +  \
   CMSG_SPACE(sizeof(int)) + 256)

// The control length asked for per message: room for per_fds fds as the
// kernel counts it (a request for 0 fds still gets one slot, so that a
// sender's fds are seen and closed, not dropped), credentials, and the
// SCM_PIDFD the kernel writes last (it needs a whole CMSG_LEN(sizeof(int))
// left after the fds, else MSG_CTRUNC and no pidfd). The kernel hands out
// no more than SCM_MAX_FD (253) fds, so with per_fds 253 the fds never eat
// the pidfd's room; with fewer, a sender's extra fds may (MSG_CTRUNC).
#define CONTROL_LEN(per_fds)                                                   \
  (CMSG_SPACE(((per_fds) ? (per_fds) : 1) * sizeof(int)) +                     \
   CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int)))
#define FD_ROOM(per_fds) ((CONTROL_LEN(per_fds) - CMSG_LEN(0)) / sizeof(int))

typedef union {
  char buf[CONTROL_SIZE];
  struct cmsghdr align;
} control_t;

// The buffers of one recvmmsg: a control buffer per message.
struct mmsg {
  control_t control[MMSG_BATCH];
  struct mmsghdr hdr[MMSG_BATCH];
  struct iovec iov[MMSG_BATCH];
};

// sendmsg(fd, data, offset, length, fds|null, nfds, address|null)
//   -> bytes sent | -errno
// One SCM_RIGHTS with nfds fds from the Int32Array, MSG_NOSIGNAL, EINTR
// retried. A stream may take fewer bytes than given: the caller sends the rest
// without the fds, which are attached to the first byte.
static napi_value fdp_sendmsg(napi_env env, napi_callback_info info) {
  FDP_ARGS(7);
  size_t dlen = 0, flen = 0;
  int fd, off, len, nfds;
  napi_valuetype t;
  struct sockaddr_un sa;
  socklen_t salen = 0;
  char *data = fdp_bytes(env, argv[1], &dlen);
  if (!data || fdp_int(env, argv[0], &fd) || fdp_int(env, argv[2], &off) ||
      fdp_int(env, argv[3], &len) || fdp_int(env, argv[5], &nfds))
    return NULL;
  if (off < 0 || len < 0 || (size_t)off + (size_t)len > dlen || nfds < 0 ||
      nfds > FDP_MAX_FDS)
    return fdp_range_error(env, "sendmsg bounds");
  int *fds = NULL;
  if (nfds > 0) {
    fds = fdp_bytes(env, argv[4], &flen);
    if (!fds)
      return NULL;
    if (flen < (size_t)nfds * sizeof(int))
      return fdp_range_error(env, "sendmsg fds");
  }
  if (napi_typeof(env, argv[6], &t) != napi_ok)
    return NULL;
  if (t != napi_null && t != napi_undefined &&
      fdp_addr(env, argv[6], &sa, &salen))
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
    r = fdp_sys_sendmsg(fd, &msg, MSG_NOSIGNAL); // not libc's: sendmsg.h
  while (r < 0 && errno == EINTR);
  return fdp_number(env, r < 0 ? -errno : r);
}

// The sender's pid from SCM_CREDENTIALS (a socket with SO_PASSCRED), or 0.
static int cred_pid(struct msghdr *msg) {
  const unsigned char *end =
      (const unsigned char *)msg->msg_control + msg->msg_controllen;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
    if (c->cmsg_len > (size_t)(end - (const unsigned char *)c))
      break; // as collect_fds: a header running past the buffer ends the walk
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS &&
        c->cmsg_len >= CMSG_LEN(sizeof(struct ucred))) {
      struct ucred cred;
      memcpy(&cred, CMSG_DATA(c), sizeof(cred));
      return (int)cred.pid;
    }
  }
  return 0;
}

static void note_owned(instance_t *inst, int fd) {
  fdp_mark_owned(inst, fd, 1);
  if (fd > inst->high_fd)
    inst->high_fd = fd;
}

// Fill one message's meta from what recvmsg returned and collect its fds and
// its pidfd (marked owned). Zero bytes and no control data on a connected
// socket is end of file (FDP_EOF). Returns the number of fds collected.
static int take_message(instance_t *inst, struct msghdr *msg, ssize_t r,
                        int connected, int *fds, size_t room, int *m) {
  int rights = 0, others = 0, n = 0, pidfd = FDP_NO_PIDFD;
  if (msg->msg_controllen > 0)
    n = collect_fds(msg, fds, (int)room, &rights, &others, &pidfd);
  for (int i = 0; i < n; i++)
    note_owned(inst, fds[i]);
  if (pidfd >= 0)
    note_owned(inst, pidfd);
  m[META_PIDFD] = pidfd;
  m[META_BYTES] = (int)r;
  m[META_FDS] = n;
  m[META_FLAGS] = msg->msg_flags & (MSG_TRUNC | MSG_CTRUNC);
  if (r == 0 && msg->msg_controllen == 0 && connected)
    m[META_FLAGS] |= FDP_EOF;
  m[META_CONTROL] = rights | (others << 8);
  m[META_PID] = others ? cred_pid(msg) : 0;
  return n;
}

// Read-ahead policy: how many messages one recvmmsg may read without letting
// the kernel cut a read-ahead message's fds at RLIMIT_NOFILE (a reader taking
// one message at a time, closing as it goes, would get them all). Fds take
// the lowest free numbers and the limit bounds the numbers, so k messages
// surely fit while the highest fd seen + k * (253 + a pidfd) stays under the
// limit. Another process may lower the limit (prlimit --pid), so it is read
// again when the last reading is a millisecond old: getrlimit is a system
// call (a ping-pong makes one per message), the clock is not (vDSO). A
// lowering lands between a reading and the recvmmsg however often it is
// read; the millisecond only widens that window.
#define NOFILE_TTL_MS 1
static unsigned long long nofile_limit(instance_t *inst) {
  struct timespec now;
  long long ms = 0;
  if (clock_gettime(CLOCK_MONOTONIC, &now) == 0)
    ms = (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000 + 1;
  if (ms && inst->nofile_at_ms && ms - inst->nofile_at_ms < NOFILE_TTL_MS)
    return inst->nofile;
  struct rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) < 0)
    return 0;
  inst->nofile = nofile.rlim_cur == RLIM_INFINITY
                     ? ~0ULL
                     : (unsigned long long)nofile.rlim_cur;
  inst->nofile_at_ms = ms;
  return inst->nofile;
}

static int fds_safe_batch(instance_t *inst, int sock, int want) {
  long high = inst->high_fd > sock ? inst->high_fd : sock;
  unsigned long long limit = nofile_limit(inst);
  if (limit == 0)
    return 1;
  if (limit - 1 >=
      (unsigned long long)high + (unsigned long long)want * (FDP_MAX_FDS + 1))
    return want;
  long long k = ((long long)limit - 1 - high) / (FDP_MAX_FDS + 1);
  return k < 1 ? 1 : (int)k;
}

// Receive up to want messages into mm: recvmsg for one, else one recvmmsg
// (MSG_WAITFORONE never waits past the first message). Returns the count or
// -errno.
static int receive(instance_t *inst, int fd, mmsg_t *mm, int want, char *data,
                   int per_bytes, size_t controllen) {
  int got;
  for (int i = 0; i < want; i++) {
    mm->iov[i].iov_base = data + (size_t)i * (size_t)per_bytes;
    mm->iov[i].iov_len = (size_t)per_bytes;
    mm->hdr[i].msg_hdr = (struct msghdr){.msg_iov = &mm->iov[i],
                                         .msg_iovlen = 1,
                                         .msg_control = mm->control[i].buf,
                                         .msg_controllen = controllen};
  }
  if (want == 1) {
    ssize_t r;
    do
      r = recvmsg(fd, &mm->hdr[0].msg_hdr, MSG_CMSG_CLOEXEC);
    while (r < 0 && errno == EINTR);
    mm->hdr[0].msg_len = (unsigned)(r < 0 ? 0 : r);
    return r < 0 ? -errno : 1;
  }
  want = fds_safe_batch(inst, fd, want);
  do
    got = recvmmsg(fd, mm->hdr, (unsigned)want,
                   MSG_CMSG_CLOEXEC | MSG_WAITFORONE, NULL);
  while (got < 0 && errno == EINTR);
  return got < 0 ? -errno : got;
}

// recvBatch(fd, data: Uint8Array, fds: Int32Array, meta: Int32Array,
//           maxMessages, bytesPerMessage, fdsPerMessage, connected)
//   -> count | -errno
// Reads up to maxMessages messages so that JS is entered once per batch.
// Message i has meta[META_INTS * i ..] = bytes, fds, flags, control summary
// (SCM_RIGHTS count | others << 8), sender's pid (SCM_CREDENTIALS, else 0),
// sender's pidfd (SCM_PIDFD: an owned fd, a negative errno the kernel gave
// instead, or NO_PIDFD); its bytes and fds follow the previous message's in
// data and fds. meta[META_INTS * maxMessages] is BATCH_DRAINED
// when the batch came out short (the kernel stopped at EAGAIN, or at an
// error it keeps for the next call): readiness tells when to read again.
static napi_value fdp_recv_batch(napi_env env, napi_callback_info info) {
  FDP_ARGS(8);
  instance_t *inst = fdp_instance(env);
  if (!inst)
    return NULL;
  size_t dlen = 0, flen = 0, mlen = 0;
  int fd, max_msgs, per_bytes, per_fds, connected;
  char *data = fdp_bytes(env, argv[1], &dlen);
  int *fds = data ? fdp_bytes(env, argv[2], &flen) : NULL;
  int *meta = fds ? fdp_bytes(env, argv[3], &mlen) : NULL;
  if (!meta || fdp_int(env, argv[0], &fd) || fdp_int(env, argv[4], &max_msgs) ||
      fdp_int(env, argv[5], &per_bytes) || fdp_int(env, argv[6], &per_fds) ||
      fdp_int(env, argv[7], &connected))
    return NULL;
  if (per_fds < 0 || per_fds > FDP_MAX_FDS || per_bytes < 0 || max_msgs < 1 ||
      mlen < ((size_t)max_msgs * META_INTS + 1) * sizeof(int))
    return fdp_range_error(env, "recvBatch bounds");
  size_t controllen = CONTROL_LEN(per_fds);
  size_t fd_room = FD_ROOM(per_fds);
  size_t fd_cap = flen / sizeof(int);
  // Each message read at once needs its own data slot and fd room.
  size_t fit = fd_cap / fd_room;
  if (per_bytes > 0 && dlen / (size_t)per_bytes < fit)
    fit = dlen / (size_t)per_bytes;
  if (fit < 1)
    return fdp_range_error(env, "recvBatch buffers");
  int want = max_msgs < MMSG_BATCH ? max_msgs : MMSG_BATCH;
  if ((size_t)want > fit)
    want = (int)fit;
  mmsg_t *mm = inst->mm;
  if (!mm && !(mm = inst->mm = malloc(sizeof(*mm)))) {
    napi_throw_error(env, "ENOMEM", "recvBatch: out of memory");
    return NULL;
  }
  int *status = meta + (size_t)max_msgs * META_INTS;
  *status = 0;
  int got = receive(inst, fd, mm, want, data, per_bytes, controllen);
  if (got < 0)
    return fdp_number(env, got);
  if (got < want)
    *status = BATCH_DRAINED;
  size_t used_bytes = 0, used_fds = 0;
  int count = 0;
  while (count < got) {
    struct msghdr *msg = &mm->hdr[count].msg_hdr;
    ssize_t r = (ssize_t)mm->hdr[count].msg_len;
    // Pack the bytes: message i follows message i - 1 in data.
    if (count > 0 && r > 0)
      memmove(data + used_bytes, mm->iov[count].iov_base, (size_t)r);
    int *m = meta + (size_t)count * META_INTS;
    used_fds += (size_t)take_message(inst, msg, r, connected, fds + used_fds,
                                     want == 1 ? fd_cap : fd_room, m);
    used_bytes += (size_t)r;
    count++;
    // At end of file recvmmsg fills every entry with it. On a seqpacket
    // socket it may be an empty message: what came after it is dropped, as
    // a reader stopping there would leave it, and its fds are closed.
    if (m[META_FLAGS] & FDP_EOF) {
      for (int i = count; i < got; i++) {
        struct msghdr *rest = &mm->hdr[i].msg_hdr;
        int rights, others;
        if (rest->msg_controllen > 0)
          collect_fds(rest, NULL, 0, &rights, &others, NULL);
      }
      break;
    }
  }
  return fdp_number(env, count);
}

static const fdp_function_t fns[] = {
    {"sendmsg", fdp_sendmsg},
    {"recvBatch", fdp_recv_batch},
};

// What JS sizes its buffers with and reads the meta array by.
static const fdp_const_t consts[] = {
    {"MAX_FDS", FDP_MAX_FDS},   {"FD_ROOM", (int)FD_ROOM(FDP_MAX_FDS)},
    {"BATCH", MMSG_BATCH},      {"META_INTS", META_INTS},
    {"META_BYTES", META_BYTES}, {"META_FDS", META_FDS},
    {"META_FLAGS", META_FLAGS}, {"META_CONTROL", META_CONTROL},
    {"META_PID", META_PID},     {"META_PIDFD", META_PIDFD},
    {"NO_PIDFD", FDP_NO_PIDFD}, {"BATCH_DRAINED", BATCH_DRAINED},
    {"MSG_TRUNC", MSG_TRUNC},   {"MSG_CTRUNC", MSG_CTRUNC},
    {"FDP_EOF", FDP_EOF},
};

napi_status fdp_init_msg(napi_env env, napi_value exports) {
  return fdp_export(env, exports, FDP_LIST(fns), FDP_LIST(consts), NULL);
}
