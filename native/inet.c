// TCP listeners for fdpass/cluster: the primary accepts with acceptBatch
// (fdpass.c), on a listening socket made here. Same conventions as fdpass.c:
// SOCK_CLOEXEC | SOCK_NONBLOCK, results or -errno, no policy.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "args.h"

#define INET_V6ONLY 1    // flags bit: IPV6_V6ONLY on an AF_INET6 listener
#define INET_REUSEPORT 2 // flags bit: SO_REUSEPORT (one of a group)

static napi_value result(napi_env env, int64_t v) { return fdp_number(env, v); }

// inetListen(family 4|6, address: Uint8Array(4|16), port, backlog, flags)
//   -> listening fd | -errno. SO_REUSEADDR as Node sets it. With
//   INET_REUSEPORT the socket joins the group of listeners of the same uid
//   on that address and port (SO_REUSEPORT): the kernel spreads incoming
//   connections over the group by a hash of the 4-tuple, and a socket's
//   queue stays its own (a connection in it dies with its last fd).
static napi_value fdp_inet_listen(napi_env env, napi_callback_info info) {
  FDP_ARGS(5);
  size_t n = 0;
  int family, port, backlog, flags, one = 1;
  uint8_t *addr = fdp_bytes(env, argv[1], &n);
  if (!addr || fdp_int(env, argv[0], &family) || fdp_int(env, argv[2], &port) ||
      fdp_int(env, argv[3], &backlog) || fdp_int(env, argv[4], &flags))
    return NULL;
  if ((family != 4 && family != 6) || n != (family == 4 ? 4u : 16u) ||
      port < 0 || port > 65535)
    return fdp_range_error(env, "inetListen arguments");
  struct sockaddr_in sin;
  struct sockaddr_in6 sin6;
  struct sockaddr *sa;
  socklen_t len;
  if (family == 4) {
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    memcpy(&sin.sin_addr, addr, 4);
    sa = (struct sockaddr *)&sin;
    len = sizeof(sin);
  } else {
    memset(&sin6, 0, sizeof(sin6));
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons((uint16_t)port);
    memcpy(&sin6.sin6_addr, addr, 16);
    sa = (struct sockaddr *)&sin6;
    len = sizeof(sin6);
  }
  int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return result(env, -errno);
  int v6only = (flags & INET_V6ONLY) ? 1 : 0;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
      ((flags & INET_REUSEPORT) &&
       setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
      (family == 6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only,
                                 sizeof(v6only)) < 0) ||
      bind(fd, sa, len) < 0 || listen(fd, backlog) < 0) {
    int e = errno;
    close(fd);
    return result(env, -e);
  }
  return result(env, fd);
}

// inetSockName(fd, out: Uint8Array(16)) -> family (4|6) * 65536 + port |
// -errno; the address bytes go to out (4 or 16 of them).
static napi_value fdp_inet_sock_name(napi_env env, napi_callback_info info) {
  FDP_ARGS(2);
  size_t n = 0;
  int fd;
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  uint8_t *out = fdp_bytes(env, argv[1], &n);
  if (!out || fdp_int(env, argv[0], &fd))
    return NULL;
  if (n < 16)
    return fdp_range_error(env, "inetSockName out");
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
    return result(env, -errno);
  if (ss.ss_family == AF_INET) {
    struct sockaddr_in *s = (struct sockaddr_in *)&ss;
    memcpy(out, &s->sin_addr, 4);
    return result(env, 4 * 65536 + ntohs(s->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
    memcpy(out, &s->sin6_addr, 16);
    return result(env, 6 * 65536 + ntohs(s->sin6_port));
  }
  return result(env, -EAFNOSUPPORT);
}

napi_status fdp_init_inet(napi_env env, napi_value exports) {
  static const fdp_function_t fns[] = {
      {"inetListen", fdp_inet_listen},
      {"inetSockName", fdp_inet_sock_name},
  };
  return fdp_export(env, exports, FDP_LIST(fns), FDP_NONE, NULL);
}
