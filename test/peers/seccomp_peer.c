// A process under a seccomp filter that notifies an agent, without runc:
//   seccomp_peer SOCKET
// It installs a filter (SECCOMP_FILTER_FLAG_NEW_LISTENER) whose mkdirat and
// openat wait for the agent, sends the notify fd over SOCKET ("seccompFd"
// with one SCM_RIGHTS), then:
// 1. makes a notification vanish: a child calls mkdirat("/tmp/vanish"), the
//    peer waits until it is pending (poll on its own copy of the fd), kills
//    the child and prints "vanished" (the kernel's count is now off by one:
//    a second receive without a pending notification would block);
// 2. waits for one byte on stdin, then calls mkdirat("/tmp/refused") and
//    openat("/magic") itself and prints what they returned and read.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__x86_64__)
#define ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define ARCH AUDIT_ARCH_AARCH64
#else
#error "x86_64 or aarch64"
#endif

static void die(const char *what) {
  perror(what);
  exit(2);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: seccomp_peer SOCKET\n");
    return 2;
  }
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  strncpy(sa.sun_path, argv[1], sizeof(sa.sun_path) - 1);
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
    die("connect");

  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mkdirat, 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_openat, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
  };
  struct sock_fprog prog = {.len = sizeof(filter) / sizeof(filter[0]),
                            .filter = filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    die("prctl");
  int notify = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                            SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
  if (notify < 0)
    die("seccomp");

  char control[CMSG_SPACE(sizeof(int))];
  memset(control, 0, sizeof(control));
  struct iovec iov = {.iov_base = "seccompFd", .iov_len = 9};
  struct msghdr msg = {.msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = control,
                       .msg_controllen = sizeof(control)};
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &notify, sizeof(int));
  if (sendmsg(s, &msg, MSG_NOSIGNAL) < 0)
    die("sendmsg");

  pid_t child = fork();
  if (child < 0)
    die("fork");
  if (child == 0) {
    // Without a copy of the listener: it must not keep its own wait alive.
    close(notify);
    syscall(__NR_mkdirat, AT_FDCWD, "/tmp/vanish", 0755);
    _exit(0);
  }
  struct pollfd p = {.fd = notify, .events = POLLIN};
  if (poll(&p, 1, 30000) != 1)
    die("poll");
  kill(child, SIGKILL);
  waitpid(child, NULL, 0);
  close(notify);
  printf("vanished\n");
  fflush(stdout);

  char go;
  if (read(0, &go, 1) != 1)
    die("read stdin");
  long r = syscall(__NR_mkdirat, AT_FDCWD, "/tmp/refused", 0755);
  printf("mkdirat=%ld errno=%s\n", r, r < 0 ? strerrorname_np(errno) : "-");
  long fd = syscall(__NR_openat, AT_FDCWD, "/magic", O_RDONLY);
  char buf[100] = {0};
  ssize_t n = fd >= 0 ? read((int)fd, buf, sizeof(buf) - 1) : -1;
  printf("openat=%s read=%s", fd >= 3 ? "fd" : "error",
         n > 0 ? buf : "(nothing)\n");
  return 0;
}
