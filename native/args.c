// Unpacking a binding's arguments, and making its results. Bindings return a
// number (a result or -errno); bad arguments throw before any syscall.
#include "fdpass.h"

#include <string.h>

int fdp_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv,
             instance_t **inst) {
  size_t argc = n;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok)
    return -1;
  return napi_get_instance_data(env, (void **)inst) == napi_ok ? 0 : -1;
}

napi_value fdp_result(napi_env env, int64_t v) {
  napi_value r;
  napi_create_int64(env, v, &r);
  return r;
}

napi_value fdp_type_error(napi_env env, const char *what) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", what);
  return NULL;
}

napi_value fdp_range_error(napi_env env, const char *what) {
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", what);
  return NULL;
}

int fdp_int(napi_env env, napi_value v, int *out) {
  if (napi_get_value_int32(env, v, out) == napi_ok)
    return 0;
  fdp_type_error(env, "expected a number");
  return -1;
}

// The bytes of a Uint8Array (or Buffer), or of an Int32Array (len in bytes).
// NULL, with a TypeError pending, for anything else.
void *fdp_bytes(napi_env env, napi_value v, size_t *len) {
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
    length *= sizeof(int);
  *len = length;
  return data ? data : (void *)"";
}

// Fill a sockaddr_un from the bytes JS prepared: a path, or a NUL byte and an
// abstract name. Paths get their terminating NUL; abstract names count it not.
int fdp_addr(napi_env env, napi_value v, struct sockaddr_un *sa,
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
