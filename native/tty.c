// The syscalls of a pty master (PtyStream): its bytes, with read(2) and
// write(2) in batches (a pty is no socket: no recvmsg, no sendmsg), and the
// terminal window size (TIOCGWINSZ / TIOCSWINSZ, ioctl_tty(2)) of any tty
// fd. The fd is non-blocking; neither ioctl blocks.
#define _GNU_SOURCE
#include <errno.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "args.h"

// (fd, buf, offset, length): read(2) or write(2) the bytes [offset, offset +
// length) of buf until all moved or the fd has no more now (EAGAIN, end of
// file): one call a batch. The count, or -errno if the first call failed;
// an error or the end after some bytes is the next batch's result.
static napi_value batch(napi_env env, napi_callback_info info, int writing) {
  FDP_ARGS(4);
  size_t n = 0, done = 0;
  int32_t fd, off, len;
  char *data = fdp_bytes(env, argv[1], &n);
  if (!data || fdp_int(env, argv[0], &fd) || fdp_int(env, argv[2], &off) ||
      fdp_int(env, argv[3], &len))
    return NULL;
  if (off < 0 || len < 0 || (size_t)off + (size_t)len > n)
    return fdp_range_error(env, "offset and length out of the buffer's bounds");
  char *p = data + off;
  while (done < (size_t)len) {
    size_t left = (size_t)len - done;
    ssize_t r = writing ? write(fd, p + done, left) : read(fd, p + done, left);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0 && done == 0)
      return fdp_number(env, -errno);
    if (r <= 0)
      break;
    done += (size_t)r;
  }
  return fdp_number(env, (int64_t)done);
}

// readBytes(fd, buf, offset, length) -> bytes read | 0 at end of file |
// -errno (EAGAIN: nothing to read now; EIO: a pty master whose terminal hung
// up).
static napi_value fdp_read_bytes(napi_env env, napi_callback_info info) {
  return batch(env, info, 0);
}

// writeBytes(fd, buf, offset, length) -> bytes written | -errno (EAGAIN: no
// room now).
static napi_value fdp_write_bytes(napi_env env, napi_callback_info info) {
  return batch(env, info, 1);
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
