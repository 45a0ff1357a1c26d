// sendmsg(2) and sendmmsg(2) straight to the kernel, past libc's wrappers.
//
// musl up to 1.2.3 (Debian 12's musl, Alpine <= 3.17) copies a sendmsg's
// control data into a 1,024-byte buffer on its stack, to clear the padding
// of its 64-bit struct cmsghdr, and fails with ENOMEM when the control data
// is larger: SCM_MAX_FD = 253 fds need CMSG_SPACE(253 * 4) = 1,032 bytes,
// so 252 fds pass and 253 fail, where glibc sends both. musl's 64-bit
// sendmmsg is a loop over that same sendmsg. musl 1.2.4 raised the buffer,
// but a prebuilt addon meets whatever musl the machine has, and musl has no
// macro to test for at build time. The system call takes any size the
// kernel takes (SCM_MAX_FD, then EINVAL), on every libc, so the addon calls
// it directly. glibc's wrappers add nothing but a cancellation point.
//
// What musl's copy did is then the caller's job: on 64-bit musl the
// msg_iovlen, msg_controllen and cmsg_len fields are 32-bit with a padding
// word beside them (named __pad), and the kernel reads the pair as one
// 64-bit length. Build every struct msghdr, struct mmsghdr and control
// buffer zeroed (designated initializers, memset) before setting fields.
#ifndef FDPASS_SENDMSG_H
#define FDPASS_SENDMSG_H

// Included after fdpass.h: args.h defines _GNU_SOURCE (struct mmsghdr,
// syscall()).
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

// sendmsg(2): bytes sent, or -1 with errno.
static inline ssize_t fdp_sys_sendmsg(int fd, const struct msghdr *msg,
                                      int flags) {
  return (ssize_t)syscall(SYS_sendmsg, fd, msg, flags);
}

// sendmmsg(2): messages sent, or -1 with errno.
static inline int fdp_sys_sendmmsg(int fd, struct mmsghdr *msgs,
                                   unsigned int count, int flags) {
  return (int)syscall(SYS_sendmmsg, fd, msgs, count, flags);
}

#endif
