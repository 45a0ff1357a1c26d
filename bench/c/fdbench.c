// The C baselines of the benchmark: plain blocking sendmsg/recvmsg loops over
// an AF_UNIX stream socket inherited as fd 3, the practical limit for a
// process that passes fds; and the same with sendmmsg/recvmmsg in batches of
// 64, the kernel's own limit (what is left once the syscalls are amortised
// is the kernel's work per fd). Also the load generator of the scale runs.
//
//   fdbench send COUNT NFDS            send COUNT messages of 9 bytes + NFDS fds
//   fdbench recv COUNT NFDS WARMUP     receive them, close each fd; prints JSON
//   fdbench sendm COUNT NFDS           send as `send` does, 64 per sendmmsg
//   fdbench recvm COUNT NFDS WARMUP    receive as `recv` does, 64 per recvmmsg
//   fdbench ping COUNT WARMUP          round trips, one fd each way; prints JSON
//   fdbench pong COUNT                 the other end of ping
//   fdbench connect-many PATH COUNT    COUNT connections open at once, each
//                                      sending one 9-byte message with one fd
//
// Results go to stdout as one JSON line; the clock starts at message WARMUP so
// that start-up and warm-up are not measured.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define SOCK 3
#define MAX_FDS 253
#define PAYLOAD "/dev/ptmx" // 9 bytes, the runc console-socket case
#define MMSG_BATCH 64

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what) {
  fprintf(stderr, "fdbench: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void set_blocking(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
    die("fcntl");
}

typedef union {
  char buf[CMSG_SPACE(MAX_FDS * sizeof(int))];
  struct cmsghdr align;
} control_t;

static void send_fds(int sock, const int *fds, int nfds) {
  control_t control;
  struct iovec iov = {.iov_base = PAYLOAD, .iov_len = sizeof(PAYLOAD) - 1};
  struct msghdr msg = {.msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = control.buf,
                       .msg_controllen = CMSG_SPACE(nfds * sizeof(int))};
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
  memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
  ssize_t r;
  do
    r = sendmsg(sock, &msg, MSG_NOSIGNAL);
  while (r < 0 && errno == EINTR);
  if (r != (ssize_t)iov.iov_len)
    die("sendmsg");
}

// Receive one message and close its fds; returns how many fds came.
static int recv_close(int sock) {
  control_t control;
  char data[64];
  struct iovec iov = {.iov_base = data, .iov_len = sizeof(data)};
  struct msghdr msg = {.msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = control.buf,
                       .msg_controllen = sizeof(control.buf)};
  ssize_t r;
  do
    r = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  while (r < 0 && errno == EINTR);
  if (r < 0)
    die("recvmsg");
  if (r == 0)
    return -1;
  int n = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
      continue;
    int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    for (int i = 0; i < count; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      close(fd);
      n++;
    }
  }
  return n;
}

// Send `count` messages as send_fds does, up to MMSG_BATCH per sendmmsg.
static void send_many(int sock, const int *fds, int nfds, long count) {
  static control_t control; // read-only for the kernel: one for all
  static struct mmsghdr msgs[MMSG_BATCH];
  struct iovec iov = {.iov_base = PAYLOAD, .iov_len = sizeof(PAYLOAD) - 1};
  struct msghdr proto = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = control.buf,
                         .msg_controllen = CMSG_SPACE(nfds * sizeof(int))};
  struct cmsghdr *c = CMSG_FIRSTHDR(&proto);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
  memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
  for (int i = 0; i < MMSG_BATCH; i++)
    msgs[i].msg_hdr = proto;
  while (count > 0) {
    unsigned int n = count < MMSG_BATCH ? (unsigned int)count : MMSG_BATCH;
    int r = sendmmsg(sock, msgs, n, MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      die("sendmmsg");
    for (int i = 0; i < r; i++)
      if (msgs[i].msg_len != iov.iov_len)
        die("sendmmsg: short message");
    count -= r;
  }
}

// Receive `count` messages as recv_close does, up to MMSG_BATCH per
// recvmmsg (MSG_WAITFORONE: what is there, once one is), closing each fd.
static int recv_many(int sock, int nfds, long count, long warmup, double *t0) {
  static control_t controls[MMSG_BATCH];
  static char data[MMSG_BATCH][64];
  static struct iovec iovs[MMSG_BATCH];
  static struct mmsghdr msgs[MMSG_BATCH];
  long done = 0;
  while (done < count) {
    unsigned int want =
        count - done < MMSG_BATCH ? (unsigned int)(count - done) : MMSG_BATCH;
    for (unsigned int i = 0; i < want; i++) {
      iovs[i] = (struct iovec){.iov_base = data[i], .iov_len = sizeof(data[i])};
      msgs[i].msg_hdr =
          (struct msghdr){.msg_iov = &iovs[i],
                          .msg_iovlen = 1,
                          .msg_control = controls[i].buf,
                          .msg_controllen = CMSG_SPACE(nfds * sizeof(int))};
    }
    int r = recvmmsg(sock, msgs, want, MSG_CMSG_CLOEXEC | MSG_WAITFORONE, NULL);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      die("recvmmsg");
    for (int k = 0; k < r; k++) {
      struct msghdr *m = &msgs[k].msg_hdr;
      int n = 0;
      if (msgs[k].msg_len == 0)
        return -1;
      for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
          continue;
        int cnt = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int i = 0; i < cnt; i++) {
          int fd;
          memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
          close(fd);
          n++;
        }
      }
      if (n != nfds || m->msg_flags & (MSG_TRUNC | MSG_CTRUNC))
        return -1;
      // The clock starts at the batch that reaches message WARMUP.
      if (done + k == warmup)
        *t0 = now();
    }
    done += r;
  }
  return 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: see the top of fdbench.c\n");
    return 2;
  }
  const char *mode = argv[1];
  int payload_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (payload_fd < 0)
    die("open /dev/null");
  int fds[MAX_FDS];
  for (int i = 0; i < MAX_FDS; i++)
    fds[i] = payload_fd;

  if (strcmp(mode, "send") == 0 && argc == 4) {
    long count = atol(argv[2]);
    int nfds = atoi(argv[3]);
    set_blocking(SOCK);
    for (long i = 0; i < count; i++)
      send_fds(SOCK, fds, nfds);
    return 0;
  }
  if (strcmp(mode, "recv") == 0 && argc == 5) {
    long count = atol(argv[2]), warmup = atol(argv[4]);
    int nfds = atoi(argv[3]);
    set_blocking(SOCK);
    double t0 = now();
    for (long i = 0; i < count; i++) {
      if (i == warmup)
        t0 = now();
      if (recv_close(SOCK) != nfds) {
        fprintf(stderr, "fdbench: message %ld: wrong fd count\n", i);
        return 1;
      }
    }
    double dt = now() - t0;
    printf("{\"messages\":%ld,\"seconds\":%.6f}\n", count - warmup, dt);
    return 0;
  }
  if (strcmp(mode, "sendm") == 0 && argc == 4) {
    set_blocking(SOCK);
    send_many(SOCK, fds, atoi(argv[3]), atol(argv[2]));
    return 0;
  }
  if (strcmp(mode, "recvm") == 0 && argc == 5) {
    long count = atol(argv[2]), warmup = atol(argv[4]);
    set_blocking(SOCK);
    double t0 = now();
    if (recv_many(SOCK, atoi(argv[3]), count, warmup, &t0) < 0) {
      fprintf(stderr, "fdbench: recvm: wrong fd count or a cut message\n");
      return 1;
    }
    double dt = now() - t0;
    printf("{\"messages\":%ld,\"seconds\":%.6f}\n", count - warmup, dt);
    return 0;
  }
  if (strcmp(mode, "ping") == 0 && argc == 4) {
    long count = atol(argv[2]), warmup = atol(argv[3]);
    set_blocking(SOCK);
    double *lat = malloc(sizeof(double) * (size_t)count);
    if (!lat)
      die("malloc");
    for (long i = 0; i < count; i++) {
      double t = now();
      send_fds(SOCK, fds, 1);
      if (recv_close(SOCK) != 1) {
        fprintf(stderr, "fdbench: ping: no fd back\n");
        return 1;
      }
      lat[i] = now() - t;
    }
    long n = count - warmup;
    qsort(lat + warmup, (size_t)n, sizeof(double), cmp_double);
    printf("{\"messages\":%ld,\"p50\":%.9f,\"p99\":%.9f}\n", n,
           lat[warmup + n / 2], lat[warmup + (n * 99) / 100]);
    return 0;
  }
  if (strcmp(mode, "pong") == 0 && argc == 3) {
    long count = atol(argv[2]);
    set_blocking(SOCK);
    for (long i = 0; i < count; i++) {
      if (recv_close(SOCK) != 1) {
        fprintf(stderr, "fdbench: pong: no fd\n");
        return 1;
      }
      send_fds(SOCK, fds, 1);
    }
    return 0;
  }
  if (strcmp(mode, "connect-many") == 0 && argc == 4) {
    const char *path = argv[2];
    long count = atol(argv[3]);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
      rl.rlim_cur = rl.rlim_max;
      setrlimit(RLIMIT_NOFILE, &rl);
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
    int *socks = malloc(sizeof(int) * (size_t)count);
    if (!socks)
      die("malloc");
    // All connections open at once: connect and send on each, keep them
    // open, and close them only when every one has sent.
    for (long i = 0; i < count; i++) {
      socks[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (socks[i] < 0)
        die("socket");
      int r;
      do
        r = connect(socks[i], (struct sockaddr *)&sa, sizeof(sa));
      while (r < 0 && (errno == EINTR || errno == EAGAIN));
      if (r < 0)
        die("connect");
      send_fds(socks[i], fds, 1);
    }
    // Wait for the server to finish (it closes each connection after its fd).
    char b;
    for (long i = 0; i < count; i++) {
      while (read(socks[i], &b, 1) < 0 && errno == EINTR)
        ;
      close(socks[i]);
    }
    return 0;
  }
  fprintf(stderr, "fdbench: bad arguments\n");
  return 2;
}
