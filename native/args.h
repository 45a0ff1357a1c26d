// Argument helpers shared by the small syscall files (pidfd.c, seccomp.c,
// tty.c, inet.c): each exported function takes int32 arguments (inet.c also
// bytes) and returns a number, a result or -errno, as in fdpass.c.
#ifndef FDPASS_ARGS_H
#define FDPASS_ARGS_H

#include <node_api.h>
#include <stdint.h>

// Read argc int32 arguments into out; 0, or -1 with a JS exception pending.
static inline int fdp_int_args(napi_env env, napi_callback_info info,
                               size_t argc, int32_t *out) {
  napi_value argv[8];
  size_t n = argc;
  if (argc > 8 || napi_get_cb_info(env, info, &n, argv, NULL, NULL) != napi_ok)
    return -1;
  for (size_t i = 0; i < argc; i++) {
    if (i >= n || napi_get_value_int32(env, argv[i], &out[i]) != napi_ok) {
      napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                            "expected int32 arguments");
      return -1;
    }
  }
  return 0;
}

static inline napi_value fdp_number(napi_env env, int64_t v) {
  napi_value r;
  if (napi_create_int64(env, v, &r) != napi_ok)
    return NULL;
  return r;
}

typedef struct {
  const char *name;
  napi_callback fn;
} fdp_function_t;

// Add functions to exports; napi_ok or the first failure.
static inline napi_status fdp_export(napi_env env, napi_value exports,
                                     const fdp_function_t *fns, size_t count) {
  for (size_t i = 0; i < count; i++) {
    napi_value fn;
    napi_status s = napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH,
                                         fns[i].fn, NULL, &fn);
    if (s == napi_ok)
      s = napi_set_named_property(env, exports, fns[i].name, fn);
    if (s != napi_ok)
      return s;
  }
  return napi_ok;
}

// Registration of each file's functions, called from the addon's init.
napi_status fdp_init_pidfd(napi_env env, napi_value exports);
napi_status fdp_init_seccomp(napi_env env, napi_value exports);
napi_status fdp_init_tty(napi_env env, napi_value exports);
napi_status fdp_init_inet(napi_env env, napi_value exports);

#endif
