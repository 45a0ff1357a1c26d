// A C peer speaking runc's SendFd/RecvFd format (libcontainer/utils/cmsg.go):
// the payload is the name, with exactly one fd in one SCM_RIGHTS.
//   runc_peer send SOCKET NAME FILE   connect, send NAME with FILE opened O_RDONLY
//   runc_peer recv SOCKET             connect, receive, print "NAME\tCONTENTS"
//   runc_peer sendfd FD NAME FILE     same as send, over an inherited socket fd
//   runc_peer recvfd FD               same as recv, over an inherited socket fd
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_NAME_LEN 4096

static int dial(const char *path) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
    perror("connect");
    exit(2);
  }
  return s;
}

static void send_fd(int s, const char *name, int fd) {
  char control[CMSG_SPACE(sizeof(int))];
  memset(control, 0, sizeof(control));
  struct iovec iov = {.iov_base = (void *)name, .iov_len = strlen(name)};
  struct msghdr msg = {.msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = control,
                       .msg_controllen = sizeof(control)};
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof(int));
  if (sendmsg(s, &msg, MSG_NOSIGNAL) < 0) {
    perror("sendmsg");
    exit(2);
  }
}

static void recv_fd(int s) {
  char name[MAX_NAME_LEN];
  char control[CMSG_SPACE(sizeof(int))];
  struct iovec iov = {.iov_base = name, .iov_len = sizeof(name)};
  struct msghdr msg = {.msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = control,
                       .msg_controllen = sizeof(control)};
  ssize_t n = recvmsg(s, &msg, MSG_CMSG_CLOEXEC);
  if (n < 0 || n >= MAX_NAME_LEN) {
    fprintf(stderr, "recvmsg: n=%zd\n", n);
    exit(2);
  }
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  if (!c || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int))) {
    fprintf(stderr, "expected one fd\n");
    exit(3);
  }
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof(int));
  char buf[4096];
  ssize_t r = pread(fd, buf, sizeof(buf) - 1, 0);
  buf[r < 0 ? 0 : r] = 0;
  printf("%.*s\t%s", (int)n, name, buf);
  close(fd);
}

int main(int argc, char **argv) {
  if (argc == 5 && (!strcmp(argv[1], "send") || !strcmp(argv[1], "sendfd"))) {
    int s = !strcmp(argv[1], "send") ? dial(argv[2]) : atoi(argv[2]);
    int fd = open(argv[4], O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      perror("open");
      return 2;
    }
    send_fd(s, argv[3], fd);
    return 0;
  }
  if (argc == 3 && (!strcmp(argv[1], "recv") || !strcmp(argv[1], "recvfd"))) {
    int s = !strcmp(argv[1], "recv") ? dial(argv[2]) : atoi(argv[2]);
    // An inherited socket may be non-blocking: runc's RecvFd expects blocking.
    fcntl(s, F_SETFL, fcntl(s, F_GETFL) & ~O_NONBLOCK);
    recv_fd(s);
    return 0;
  }
  fprintf(stderr, "usage: runc_peer send|recv|sendfd|recvfd ...\n");
  return 1;
}
