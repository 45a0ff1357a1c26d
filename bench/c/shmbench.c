// The limit for fdpass/shm's row of `npm run bench`: hand a 64 MiB buffer to
// another process that reads its last byte, in C. The parent fills a memfd
// once; per handoff it writes the last byte, sends the fd (SCM_RIGHTS) over
// a socketpair; the child maps it (size from fstat), reads the last byte,
// unmaps, closes, and answers with the byte. Prints the median seconds per
// handoff as JSON. Usage: shmbench HANDOFFS [SIZE]
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
  perror(what);
  exit(1);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void child(int sock) {
  for (;;) {
    char byte;
    char control[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = control,
                         .msg_controllen = sizeof(control)};
    ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    if (n <= 0)
      exit(0);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (!c || c->cmsg_type != SCM_RIGHTS)
      die("no fd");
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof(fd));
    struct stat st;
    if (fstat(fd, &st) < 0)
      die("fstat");
    unsigned char *p =
        mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
      die("mmap");
    unsigned char last = p[st.st_size - 1];
    munmap(p, (size_t)st.st_size);
    close(fd);
    if (write(sock, &last, 1) != 1)
      die("write");
  }
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 100;
  size_t size = argc > 2 ? (size_t)atoll(argv[2]) : 64u << 20;
  int sv[2];
  if (n < 1 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
    die("socketpair");
  pid_t pid = fork();
  if (pid == 0) {
    close(sv[0]);
    child(sv[1]);
  }
  close(sv[1]);
  int fd = memfd_create("shmbench", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
    die("memfd");
  unsigned char *p =
      mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED)
    die("mmap");
  memset(p, 1, size);
  double *t = calloc((size_t)n, sizeof(double));
  for (int i = 0; i < n; i++) {
    double start = now();
    p[size - 1] = (unsigned char)i;
    char control[CMSG_SPACE(sizeof(int))] = {0};
    char byte = 'b';
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = control,
                         .msg_controllen = sizeof(control)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(fd));
    if (sendmsg(sv[0], &msg, MSG_NOSIGNAL) != 1)
      die("sendmsg");
    unsigned char back;
    if (read(sv[0], &back, 1) != 1 || back != (unsigned char)i)
      die("answer");
    t[i] = now() - start;
  }
  close(sv[0]);
  waitpid(pid, NULL, 0);
  qsort(t, (size_t)n, sizeof(double), cmp);
  printf("{\"handoffs\":%d,\"median\":%.9f}\n", n, t[n / 2]);
  return 0;
}
