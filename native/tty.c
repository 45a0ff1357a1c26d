// Terminal window size (TIOCGWINSZ / TIOCSWINSZ, ioctl_tty(2)) of any tty fd,
// a pty master included. Neither ioctl blocks.
#define _GNU_SOURCE
#include <errno.h>
#include <sys/ioctl.h>

#include "args.h"

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
      {"setWindowSize", fdp_set_window_size},
      {"getWindowSize", fdp_get_window_size},
  };
  return fdp_export(env, exports, fns, sizeof(fns) / sizeof(fns[0]));
}
