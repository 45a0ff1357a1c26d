// Argument and export helpers shared by every binding file (sock.c, msg.c,
// watcher.c, watcher_thread.c, pidfd.c, seccomp.c, tty.c, inet.c, proc.c,
// shm.c): each
// binding takes numbers and typed arrays and returns a number, a result or
// -errno. Bad arguments throw (ERR_INVALID_ARG_TYPE, ERR_OUT_OF_RANGE)
// before any syscall. Each file's fdp_init_* exports its bindings and
// constants with fdp_export; fdpass.c calls every fdp_init_*.
#ifndef FDPASS_ARGS_H
#define FDPASS_ARGS_H

// accept4, SO_PEERCRED, recvmmsg...: before any system header.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <node_api.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

// Read argc arguments into argv (undefined where the caller passed fewer),
// and, if data is not NULL, the data the function was exported with; 0, or
// -1 with a JS exception pending.
static inline int fdp_get_args(napi_env env, napi_callback_info info,
                               size_t argc, napi_value *argv, void **data) {
  size_t n = argc;
  return napi_get_cb_info(env, info, &n, argv, NULL, data) == napi_ok ? 0 : -1;
}

// The one argument macro: every binding that takes arguments starts with
// FDP_ARGS(n), and finds them in argv[0..n). FDP_ARGS_DATA(n, p) also sets
// the pointer p to the function's data (fdp_export's `data`).
#define FDP_ARGS_DATA(n, p)                                                    \
  napi_value argv[(n)];                                                        \
  if (fdp_get_args(env, info, (n), argv, (void **)(p)) != 0)                   \
  return NULL
#define FDP_ARGS(n) FDP_ARGS_DATA(n, NULL)

static inline napi_value fdp_type_error(napi_env env, const char *what) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", what);
  return NULL;
}

static inline napi_value fdp_range_error(napi_env env, const char *what) {
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", what);
  return NULL;
}

// The pointer an external holds (a watcher), or NULL with a TypeError
// pending naming `what`.
static inline void *fdp_external(napi_env env, napi_value v, const char *what) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || !p) {
    fdp_type_error(env, what);
    return NULL;
  }
  return p;
}

// An int32 argument; 0, or -1 with a TypeError pending.
static inline int fdp_int(napi_env env, napi_value v, int32_t *out) {
  if (napi_get_value_int32(env, v, out) == napi_ok)
    return 0;
  fdp_type_error(env, "expected int32 arguments");
  return -1;
}

// A boolean argument; 0, or -1 with a TypeError pending.
static inline int fdp_bool(napi_env env, napi_value v, bool *out) {
  if (napi_get_value_bool(env, v, out) == napi_ok)
    return 0;
  fdp_type_error(env, "expected a boolean");
  return -1;
}

// Read argc int32 arguments into out; 0, or -1 with a JS exception pending.
static inline int fdp_int_args(napi_env env, napi_callback_info info,
                               size_t argc, int32_t *out) {
  napi_value argv[8];
  if (argc > 8 || fdp_get_args(env, info, argc, argv, NULL))
    return -1;
  for (size_t i = 0; i < argc; i++)
    if (fdp_int(env, argv[i], &out[i]))
      return -1;
  return 0;
}

// The bytes of a Uint8Array (or Buffer), or of an Int32Array (len in
// bytes); NULL, with a TypeError pending, for anything else.
static inline void *fdp_bytes(napi_env env, napi_value v, size_t *len) {
  napi_typedarray_type type;
  void *data = NULL;
  size_t length = 0, offset;
  napi_value ab;
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, v, &type, &length, &data, &ab, &offset) !=
          napi_ok) {
    fdp_type_error(env, "expected a typed array");
    return NULL;
  }
  if (type == napi_int32_array)
    length *= sizeof(int32_t);
  *len = length;
  return data ? data : (void *)"";
}

// Fill a sockaddr_un from the bytes JS prepared: a path, or a NUL byte and an
// abstract name. Paths get their terminating NUL; abstract names count it
// not. 0, or -1 with a TypeError pending.
static inline int fdp_addr(napi_env env, napi_value v, struct sockaddr_un *sa,
                           socklen_t *len) {
  size_t n;
  const char *bytes = fdp_bytes(env, v, &n);
  if (!bytes)
    return -1;
  if (n == 0 || n > sizeof(sa->sun_path) - (bytes[0] != 0)) {
    fdp_type_error(env, "address length out of range");
    return -1;
  }
  memset(sa, 0, sizeof(*sa));
  sa->sun_family = AF_UNIX;
  memcpy(sa->sun_path, bytes, n);
  *len =
      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (bytes[0] != 0));
  return 0;
}

// A BigInt argument as 64 bits; 0, or -1 with a TypeError pending.
static inline int fdp_u64(napi_env env, napi_value v, uint64_t *out) {
  bool lossless;
  if (napi_get_value_bigint_uint64(env, v, out, &lossless) == napi_ok)
    return 0;
  fdp_type_error(env, "expected a BigInt");
  return -1;
}

static inline napi_value fdp_number(napi_env env, int64_t v) {
  napi_value r;
  if (napi_create_int64(env, v, &r) != napi_ok)
    return NULL;
  return r;
}

// A syscall's result as JS sees it: the value, or -errno when it failed.
static inline napi_value fdp_result(napi_env env, long r) {
  return fdp_number(env, r < 0 ? -errno : r);
}

typedef struct {
  const char *name;
  napi_callback fn;
} fdp_function_t;

// A constant JS reads from the addon instead of repeating it.
typedef struct {
  const char *name;
  int value;
} fdp_const_t;

#define FDP_COUNT(a) (sizeof(a) / sizeof((a)[0]))
// An array and its length, as fdp_export takes them; FDP_NONE: no array.
#define FDP_LIST(a) (a), FDP_COUNT(a)
#define FDP_NONE NULL, 0

// The one export helper, what every fdp_init_* returns: add a file's
// functions (each created with `data`, for FDP_ARGS_DATA) and constants to
// exports. napi_ok or the first failure.
static inline napi_status fdp_export(napi_env env, napi_value exports,
                                     const fdp_function_t *fns, size_t nfns,
                                     const fdp_const_t *consts, size_t nconsts,
                                     void *data) {
  napi_status s = napi_ok;
  for (size_t i = 0; s == napi_ok && i < nfns; i++) {
    napi_value fn;
    s = napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn,
                             data, &fn);
    if (s == napi_ok)
      s = napi_set_named_property(env, exports, fns[i].name, fn);
  }
  for (size_t i = 0; s == napi_ok && i < nconsts; i++) {
    napi_value v;
    s = napi_create_int32(env, consts[i].value, &v);
    if (s == napi_ok)
      s = napi_set_named_property(env, exports, consts[i].name, v);
  }
  return s;
}

// Registration of each file's bindings, called from the addon's init
// (fdpass.c).
napi_status fdp_init_sock(napi_env env, napi_value exports);
napi_status fdp_init_msg(napi_env env, napi_value exports);
napi_status fdp_init_watcher(napi_env env, napi_value exports);
napi_status fdp_init_pidfd(napi_env env, napi_value exports);
napi_status fdp_init_seccomp(napi_env env, napi_value exports);
napi_status fdp_init_tty(napi_env env, napi_value exports);
napi_status fdp_init_inet(napi_env env, napi_value exports);
napi_status fdp_init_thread(napi_env env, napi_value exports);
napi_status fdp_init_proc(napi_env env, napi_value exports);
napi_status fdp_init_shm(napi_env env, napi_value exports);

#endif
