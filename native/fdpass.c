// fdpass native layer: thin Node-API bindings over the AF_UNIX syscalls and
// a libuv poll handle. Every binding returns a result or -errno; turning
// errnos into errors, framing, queues and ownership policy live in
// TypeScript. This file: the per-environment instance, the owned-fd map,
// the end of an environment, and the exports (sock.c, msg.c, watcher.c).
#include "fdpass.h"

#include <stdlib.h>
#include <unistd.h>

// The owned-fd map: a bit per fd received and not yet handed to the user.
// msg.c sets bits, close clears them, JS clears them as it hands fds out
// (through the ownedMap export, a view of the same bytes); the end of the
// environment closes every fd still marked. One map per instance: the ESM
// and CommonJS builds of fdpass load the same instance, so they share it.
#define OWNED_BITS (1 << 20)

void fdp_mark_owned(instance_t *inst, int fd, int owned) {
  if (fd < 0 || (size_t)fd >= inst->owned_bits)
    return;
  if (owned)
    inst->owned[fd >> 3] |= (uint8_t)(1u << (fd & 7));
  else
    inst->owned[fd >> 3] &= (uint8_t) ~(1u << (fd & 7));
}

static void on_env_cleanup(napi_async_cleanup_hook_handle handle, void *arg) {
  instance_t *inst = arg;
  (void)handle;
  inst->cleaning = 1;
  fdp_watchers_shutdown(inst);
  for (size_t i = 0; i < inst->owned_bits; i++)
    if (inst->owned[i >> 3] & (1u << (i & 7))) {
      close((int)i);
      inst->owned[i >> 3] &= (uint8_t) ~(1u << (i & 7));
    }
}

static void finalize_instance(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  instance_t *inst = data;
  // Watchers still closing keep a pointer to inst: leak it rather than race.
  if (inst->closing_handles == 0 && !inst->watchers) {
    free(inst->mm);
    free(inst);
  }
}

static int export_module(napi_env env, napi_value exports,
                         const fdp_module *m) {
  for (size_t i = 0; i < m->fns_count; i++) {
    napi_value fn;
    if (napi_create_function(env, m->fns[i].name, NAPI_AUTO_LENGTH,
                             m->fns[i].fn, NULL, &fn) != napi_ok ||
        napi_set_named_property(env, exports, m->fns[i].name, fn) != napi_ok)
      return -1;
  }
  for (size_t i = 0; i < m->consts_count; i++)
    if (napi_set_named_property(env, exports, m->consts[i].name,
                                fdp_result(env, m->consts[i].value)) != napi_ok)
      return -1;
  return 0;
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  instance_t *inst = calloc(1, sizeof(*inst));
  napi_value name, map;
  void *bits;
  if (!inst)
    return NULL;
  inst->env = env;
  if (napi_create_string_utf8(env, "fdpass", NAPI_AUTO_LENGTH, &name) !=
          napi_ok ||
      napi_async_init(env, NULL, name, &inst->async_context) != napi_ok ||
      napi_set_instance_data(env, inst, finalize_instance, NULL) != napi_ok)
    return NULL;
  // The map's memory is an ArrayBuffer that JS sees as ownedMap; the
  // reference keeps it for as long as the environment lives.
  if (napi_create_arraybuffer(env, OWNED_BITS / 8, &bits, &map) != napi_ok ||
      napi_create_reference(env, map, 1, &inst->owned_ref) != napi_ok)
    return NULL;
  inst->owned = bits;
  inst->owned_bits = OWNED_BITS;
  if (napi_add_async_cleanup_hook(env, on_env_cleanup, inst, &inst->cleanup) !=
          napi_ok ||
      napi_set_named_property(env, exports, "ownedMap", map) != napi_ok ||
      export_module(env, exports, &fdp_sock_module) ||
      export_module(env, exports, &fdp_msg_module) ||
      export_module(env, exports, &fdp_watcher_module))
    return NULL;
  return exports;
}
