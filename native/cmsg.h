// Parsing of a received control buffer, kept apart from Node-API so that the
// fuzz harness (test/fuzz/cmsg_fuzz.c) tests exactly the code the addon runs.
// FDP_CLOSE may be defined before including this file to observe closes.
#ifndef FDPASS_CMSG_H
#define FDPASS_CMSG_H

#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef FDP_CLOSE
#define FDP_CLOSE close
#endif

// Collect the fds of every SCM_RIGHTS in a received control buffer into
// fds[0..room). Returns the count; *rights counts SCM_RIGHTS messages and
// *others any other control message (SCM_CREDENTIALS, ...). Fds that do not
// fit in room (never, when room is sized from controllen) are closed.
// A header whose cmsg_len runs past msg_controllen ends the walk: glibc's
// CMSG_NXTHDR checks that for every header but the first, and trusting it
// would read past the buffer (and overflow the pointer in CMSG_NXTHDR).
static int collect_fds(struct msghdr *msg, int *fds, int room, int *rights,
                       int *others) {
  int n = 0;
  const unsigned char *end =
      (const unsigned char *)msg->msg_control + msg->msg_controllen;
  *rights = *others = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
    if (c->cmsg_len > (size_t)(end - (const unsigned char *)c))
      break;
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
