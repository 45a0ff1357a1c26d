// The syscalls of a pty master (PtyStream): its bytes, with read(2) and
// write(2) in batches (a pty is no socket: no recvmsg, no sendmsg), and the
// terminal window size (TIOCGWINSZ / TIOCSWINSZ, ioctl_tty(2)) of any tty
// fd. The fd is non-blocking; neither ioctl blocks.
#define _GNU_SOURCE
#include <errno.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "args.h"

// The fd and the bytes [offset, offset + length) of a typed array; 0, or -1
// with a JS exception pending.
static int fd_span(napi_env env, napi_value *argv, int *fd, char **span,
                   size_t *len) {
  size_t n = 0;
  int32_t off, length;
  char *data = fdp_bytes(env, argv[1], &n);
  if (!data || fdp_int(env, argv[0], fd) || fdp_int(env, argv[2], &off) ||
      fdp_int(env, argv[3], &length))
    return -1;
  if (off < 0 || length < 0 || (size_t)off + (size_t)length > n) {
    fdp_range_error(env, "offset and length out of the buffer's bounds");
    return -1;
  }
  *span = data + off;
  *len = (size_t)length;
  return 0;
}

// readBytes(fd, buf, offset, length) -> bytes read | 0 at end of file |
// -errno (EAGAIN: nothing to read now; EIO: a pty master whose terminal hung
// up). Reads until the span is full or the fd is empty: one call a batch.
// An error or the end after some bytes is the next call's result.
static napi_value fdp_read_bytes(napi_env env, napi_callback_info info) {
  FDP_ARGS(4);
  int fd;
  char *p;
  size_t len, got = 0;
  if (fd_span(env, argv, &fd, &p, &len))
    return NULL;
  while (got < len) {
    ssize_t r = read(fd, p + got, len - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0 && got == 0)
      return fdp_number(env, -errno);
    if (r <= 0)
      break;
    got += (size_t)r;
  }
  return fdp_number(env, (int64_t)got);
}

// writeBytes(fd, buf, offset, length) -> bytes written | -errno (EAGAIN: no
// room now). Writes until all is written or the fd is full; an error after
// some bytes is the next call's result.
static napi_value fdp_write_bytes(napi_env env, napi_callback_info info) {
  FDP_ARGS(4);
  int fd;
  char *p;
  size_t len, put = 0;
  if (fd_span(env, argv, &fd, &p, &len))
    return NULL;
  while (put < len) {
    ssize_t r = write(fd, p + put, len - put);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0 && put == 0)
      return fdp_number(env, -errno);
    if (r <= 0)
      break;
    put += (size_t)r;
  }
  return fdp_number(env, (int64_t)put);
}

// setWindowSize(fd, cols, rows) -> 0 | -errno (ENOTTY: not a terminal). The
// kernel sends SIGWINCH to the terminal's foreground process group.
static napi_value fdp_set_window_size(napi_env env, napi_callback_info info) {
  int32_t a[3];
  if (fdp_int_args(env, info, 3, a))
    return NULL;
  struct winsize ws = {.ws_col = (unsigned short)a[1],
                       .ws_row = (unsigned short)a[2]};
  return fdp_number(env, ioctl(a[0], TIOCSWINSZ, &ws) < 0 ? -errno : 0);
}

// getWindowSize(fd) -> cols << 16 | rows | -errno
static napi_value fdp_get_window_size(napi_env env, napi_callback_info info) {
  int32_t a[1];
  struct winsize ws;
  if (fdp_int_args(env, info, 1, a))
    return NULL;
  if (ioctl(a[0], TIOCGWINSZ, &ws) < 0)
    return fdp_number(env, -errno);
  return fdp_number(env, ((int64_t)ws.ws_col << 16) | ws.ws_row);
}

napi_status fdp_init_tty(napi_env env, napi_value exports) {
  static const fdp_function_t fns[] = {
      {"readBytes", fdp_read_bytes},
      {"writeBytes", fdp_write_bytes},
      {"setWindowSize", fdp_set_window_size},
      {"getWindowSize", fdp_get_window_size},
  };
  return fdp_export(env, exports, FDP_LIST(fns), FDP_NONE, NULL);
}
