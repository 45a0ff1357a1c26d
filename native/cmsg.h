// Parsing of a received control buffer, kept apart from Node-API so that the
// fuzz harness (test/fuzz/cmsg_fuzz.c) tests exactly the code the addon runs.
// FDP_CLOSE may be defined before including this file to observe closes.
#ifndef FDPASS_CMSG_H
#define FDPASS_CMSG_H

#include <limits.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef FDP_CLOSE
#define FDP_CLOSE close
#endif

#ifndef SCM_PIDFD
#define SCM_PIDFD 0x04 // Linux >= 6.5, on a socket with SO_PASSPIDFD
#endif

// *pidfd when the message carried no SCM_PIDFD.
#define FDP_NO_PIDFD INT_MIN

// Collect the fds of every SCM_RIGHTS in a received control buffer into
// fds[0..room). Returns the count; *rights counts SCM_RIGHTS messages and
// *others any other control message (SCM_CREDENTIALS, ...) but SCM_PIDFD,
// which the receiver asked for (SO_PASSPIDFD), not the sender. Fds that do
// not fit in room (never, when room is sized from controllen) are closed.
// A header whose cmsg_len runs past msg_controllen ends the walk: glibc's
// CMSG_NXTHDR checks that for every header but the first, and trusting it
// would read past the buffer (and overflow the pointer in CMSG_NXTHDR).
//
// SCM_PIDFD (the sender's pidfd) is an fd the kernel installed, owned like
// those of SCM_RIGHTS: it goes to *pidfd, or is closed when pidfd is NULL or
// one is there already (the kernel sends one at most). The kernel writes it
// after SCM_RIGHTS and SCM_CREDENTIALS, and only when a whole
// CMSG_LEN(sizeof(int)) still fits; else it installs nothing and sets
// MSG_CTRUNC. When it cannot make the pidfd (the receiver at
// RLIMIT_NOFILE; a sender already reaped, before Linux 6.17) it writes the
// negative errno in its place, with no MSG_CTRUNC: that is not an fd, and
// goes to *pidfd as it is when no fd came. *pidfd is FDP_NO_PIDFD when no
// SCM_PIDFD came.
static int collect_fds(struct msghdr *msg, int *fds, int room, int *rights,
                       int *others, int *pidfd) {
  int n = 0;
  const unsigned char *end =
      (const unsigned char *)msg->msg_control + msg->msg_controllen;
  *rights = *others = 0;
  if (pidfd)
    *pidfd = FDP_NO_PIDFD;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
    if (c->cmsg_len > (size_t)(end - (const unsigned char *)c))
      break;
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_PIDFD) {
      int v;
      if (c->cmsg_len < CMSG_LEN(sizeof(int)))
        continue;
      memcpy(&v, CMSG_DATA(c), sizeof(int));
      if (v >= 0 && (!pidfd || *pidfd >= 0))
        FDP_CLOSE(v);
      else if (pidfd && (v >= 0 || *pidfd == FDP_NO_PIDFD))
        *pidfd = v;
      continue;
    }
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
      (*others)++;
      continue;
    }
    (*rights)++;
    if (c->cmsg_len < CMSG_LEN(0))
      continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    // CMSG_DATA may be unaligned for int in theory; copy byte-wise.
    const unsigned char *p = CMSG_DATA(c);
    for (size_t i = 0; i < count; i++) {
      int fd;
      memcpy(&fd, p + i * sizeof(int), sizeof(int));
      if (n < room)
        fds[n++] = fd;
      else
        FDP_CLOSE(fd);
    }
  }
  return n;
}

#endif
