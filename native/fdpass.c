// fdpass native layer: thin Node-API bindings over the AF_UNIX syscalls and
// a libuv poll handle. Every binding returns a result or -errno; turning
// errnos into errors, framing, queues and ownership policy live in
// TypeScript. This file: the per-environment instance, the owned-fd map,
// the end of an environment, and the exports of every file.
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
  if (!inst->owned || fd < 0 || (size_t)fd >= inst->owned_bits)
    return;
  if (owned)
    inst->owned[fd >> 3] |= (uint8_t)(1u << (fd & 7));
  else
    inst->owned[fd >> 3] &= (uint8_t) ~(1u << (fd & 7));
}

static void free_instance(instance_t *inst) {
  // Watchers still closing keep a pointer to inst: leak it rather than race.
  if (inst->finalized && inst->owned_closed && inst->closing_handles == 0 &&
      !inst->watchers) {
    free(inst->mm);
    free(inst);
  }
}

// Whatever the backend: close every fd received and not handed to the user.
// (The libuv backend's part, its poll handles, is watcher.c's.)
static void close_owned(void *arg) {
  instance_t *inst = arg;
  if (inst->owned)
    for (size_t i = 0; i < inst->owned_bits; i++)
      if (inst->owned[i >> 3] & (1u << (i & 7))) {
        close((int)i);
        inst->owned[i >> 3] &= (uint8_t) ~(1u << (i & 7));
      }
  inst->owned = NULL;
  inst->owned_closed = 1;
  free_instance(inst);
}

static void finalize_instance(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  instance_t *inst = data;
  inst->finalized = 1;
  free_instance(inst);
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
  if (napi_add_env_cleanup_hook(env, close_owned, inst) != napi_ok ||
      napi_set_named_property(env, exports, "ownedMap", map) != napi_ok)
    return NULL;
  // Each file's bindings and constants.
  napi_status (*const inits[])(napi_env, napi_value) = {
      fdp_init_sock,  fdp_init_msg,     fdp_init_watcher, fdp_init_thread,
      fdp_init_pidfd, fdp_init_seccomp, fdp_init_tty,     fdp_init_inet,
      fdp_init_proc,  fdp_init_shm,
  };
  for (size_t i = 0; i < FDP_COUNT(inits); i++)
    if (inits[i](env, exports) != napi_ok)
      return NULL;
  return exports;
}
