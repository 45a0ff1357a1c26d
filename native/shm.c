// Shared memory through an fd (fdpass/shm): memfd_create(2), ftruncate(2),
// fstat(2) with the file's seals (fcntl F_GET_SEALS / F_ADD_SEALS,
// memfd_create(2) "File sealing"), and mmap(2) of a whole file as an
// external ArrayBuffer. Which fds may be mapped, how, and with what seals is
// policy, in src/shm.
//
// A mapping's memory belongs to its ArrayBuffer: the buffer's finalizer
// unmaps it and closes the fd when the buffer is collected, and so does the
// end of its environment (a worker). unmap() does it early: it detaches the
// buffer first, so that JS can no longer reach the memory (a detached buffer
// has length 0), then unmaps. The finalizer still runs later, for the small
// record below only; it must not unmap again, since the address range may
// belong to another mapping by then.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "args.h"

// Linux >= 3.17; spelled out for C libraries whose headers lack them. The
// raw syscall also spares glibc < 2.27 the memfd_create symbol.
#ifndef SYS_memfd_create
#if defined(__x86_64__)
#define SYS_memfd_create 319
#elif defined(__aarch64__)
#define SYS_memfd_create 279
#endif
#endif
#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif
#ifndef MFD_ALLOW_SEALING
#define MFD_ALLOW_SEALING 0x0002U
#endif
#ifndef F_ADD_SEALS
#define F_ADD_SEALS 1033
#define F_GET_SEALS 1034
#endif
#ifndef F_SEAL_SEAL
#define F_SEAL_SEAL 0x0001
#define F_SEAL_SHRINK 0x0002
#define F_SEAL_GROW 0x0004
#define F_SEAL_WRITE 0x0008
#endif
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010 // Linux >= 5.1
#endif

typedef struct registry registry_t;

// One mapping: what the buffer's finalizer, unmap() or the end of the
// environment releases. For an empty file nothing is mapped (mmap refuses
// length 0): addr is NULL and the buffer, of length 0, is handed this
// record as its data (Node gives such a buffer a data pointer of its own).
typedef struct mapping {
  void *addr;
  size_t len;
  int fd;
  bool shared;         // MAP_SHARED, else MAP_PRIVATE
  atomic_int released; // unmapped and closed; the finalizer frees only
  registry_t *reg;
  struct mapping *prev, *next;
} mapping_t;

// The mappings of one environment (the main thread, a worker), so that its
// end releases them: Deno runs no buffer finalizer when it terminates a
// worker, only the environment's cleanup hooks. A finalizer may run after
// that hook, on whichever thread the runtime chooses: the list has a lock,
// and the registry lives until the hook and every finalizer are done.
struct registry {
  pthread_mutex_t lock;
  mapping_t *head;
  int refs; // the environment's, and one per mapping not yet finalized
};

static void registry_unref(registry_t *reg) {
  int last = --reg->refs == 0;
  pthread_mutex_unlock(&reg->lock);
  if (last) {
    pthread_mutex_destroy(&reg->lock);
    free(reg);
  }
}

// Unmap and close, once: whoever sets `released` first does it.
static void release(mapping_t *m) {
  if (atomic_exchange(&m->released, 1))
    return;
  if (m->addr)
    munmap(m->addr, m->len);
  close(m->fd);
}

static void finalize_mapping(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  mapping_t *m = hint;
  registry_t *reg = m->reg;
  pthread_mutex_lock(&reg->lock);
  if (m->prev)
    m->prev->next = m->next;
  else
    reg->head = m->next;
  if (m->next)
    m->next->prev = m->prev;
  release(m);
  free(m);
  registry_unref(reg); // unlocks
}

// The end of the environment: release every mapping still held. No
// JavaScript of this environment runs any more to touch the buffers.
static void release_all(void *arg) {
  registry_t *reg = arg;
  pthread_mutex_lock(&reg->lock);
  for (mapping_t *m = reg->head; m; m = m->next)
    release(m);
  registry_unref(reg); // unlocks
}

// memfdCreate(name) -> fd | -errno. name: NUL-terminated bytes (at most 249
// before the NUL, or EINVAL). The fd is close-on-exec and may be sealed.
static napi_value fdp_memfd_create(napi_env env, napi_callback_info info) {
  FDP_ARGS(1);
  size_t n;
  const char *name = fdp_bytes(env, argv[0], &n);
  if (!name)
    return NULL;
  if (n == 0 || name[n - 1] != 0)
    return fdp_type_error(env, "expected a NUL-terminated name");
  long fd = syscall(SYS_memfd_create, name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  return fdp_number(env, fd < 0 ? -errno : fd);
}

// A size in bytes: an integer number in 0..2^53-1; 0, or -1 with a
// RangeError pending.
static int size_arg(napi_env env, napi_value v, int64_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok) {
    fdp_type_error(env, "expected a number");
    return -1;
  }
  if (!(d >= 0 && d <= 9007199254740991.0) || d != (double)(int64_t)d) {
    fdp_range_error(env, "expected a size from 0 to 2^53-1");
    return -1;
  }
  *out = (int64_t)d;
  return 0;
}

// truncate(fd, size) -> 0 | -errno (EPERM: sealed against it; EFBIG)
static napi_value fdp_shm_truncate(napi_env env, napi_callback_info info) {
  FDP_ARGS(2);
  int32_t fd;
  int64_t size;
  if (fdp_int(env, argv[0], &fd) || size_arg(env, argv[1], &size))
    return NULL;
  int r;
  do
    r = ftruncate(fd, (off_t)size);
  while (r < 0 && errno == EINTR);
  return fdp_number(env, r < 0 ? -errno : 0);
}

// shmStat(fd, out: Float64Array(3)) -> 0 | -errno of fstat. out: st_mode,
// st_size, and the seals (-errno when the file takes none: EINVAL for
// anything not a memfd or shmem file).
static napi_value fdp_shm_stat(napi_env env, napi_callback_info info) {
  FDP_ARGS(2);
  int32_t fd;
  napi_typedarray_type type;
  size_t length = 0;
  void *data = NULL;
  if (fdp_int(env, argv[0], &fd))
    return NULL;
  if (napi_get_typedarray_info(env, argv[1], &type, &length, &data, NULL,
                               NULL) != napi_ok ||
      type != napi_float64_array || length < 3)
    return fdp_type_error(env, "expected a Float64Array of 3");
  double *out = data;
  // The raw syscall: glibc >= 2.33 binds fstat() to a new symbol version,
  // which the prebuilt addon must not need (it loads on glibc 2.28). Its
  // struct stat is the kernel's on x86_64 and arm64.
  struct stat st;
  if (syscall(SYS_fstat, fd, &st) < 0)
    return fdp_number(env, -errno);
  int seals = fcntl(fd, F_GET_SEALS);
  out[2] = seals < 0 ? -errno : seals;
  out[0] = st.st_mode;
  out[1] = (double)st.st_size;
  return fdp_number(env, 0);
}

// addSeals(fd, seals) -> 0 | -errno (EPERM: F_SEAL_SEAL is set, or the
// file takes no seals; EBUSY: F_SEAL_WRITE while a shared writable mapping
// exists)
static napi_value fdp_add_seals(napi_env env, napi_callback_info info) {
  int32_t a[2];
  if (fdp_int_args(env, info, 2, a))
    return NULL;
  return fdp_number(env, fcntl(a[0], F_ADD_SEALS, a[1]) < 0 ? -errno : 0);
}

// mmap(fd, size, shared) -> [ArrayBuffer, mapping] | -errno. Maps the
// file's first `size` bytes readable and writable: MAP_SHARED when shared
// is true (writes reach the file), else MAP_PRIVATE (writes stay in private
// copies of the pages; pages not written show the file as it is). On
// success the mapping owns fd. Pages the file no longer has (it shrank)
// raise SIGBUS when touched: the caller checks the seals first.
static napi_value fdp_shm_map(napi_env env, napi_callback_info info) {
  registry_t *reg;
  FDP_ARGS_DATA(3, &reg);
  int32_t fd;
  int64_t size;
  bool shared;
  if (fdp_int(env, argv[0], &fd) || size_arg(env, argv[1], &size) ||
      fdp_bool(env, argv[2], &shared))
    return NULL;
  if ((uint64_t)size > SIZE_MAX)
    return fdp_number(env, -ENOMEM);
  mapping_t *m = calloc(1, sizeof(*m));
  if (!m)
    return fdp_number(env, -ENOMEM);
  m->fd = fd;
  m->len = (size_t)size;
  m->shared = shared;
  m->reg = reg;
  if (size > 0) {
    m->addr = mmap(NULL, m->len, PROT_READ | PROT_WRITE,
                   shared ? MAP_SHARED : MAP_PRIVATE, fd, 0);
    if (m->addr == MAP_FAILED) {
      int e = errno;
      free(m);
      return fdp_number(env, -e);
    }
  }
  napi_value ab, handle, pair;
  napi_status s = napi_create_external_arraybuffer(
      env, m->addr ? m->addr : (void *)m, m->len, finalize_mapping, m, &ab);
  if (s != napi_ok) {
    // Refused (a runtime without external buffers): nothing was taken.
    if (m->addr)
      munmap(m->addr, m->len);
    free(m);
    return fdp_number(env, -ENOTSUP);
  }
  // From here the buffer's finalizer owns m, the memory and the fd.
  pthread_mutex_lock(&reg->lock);
  m->next = reg->head;
  if (reg->head)
    reg->head->prev = m;
  reg->head = m;
  reg->refs++;
  pthread_mutex_unlock(&reg->lock);
  if (napi_create_external(env, m, NULL, NULL, &handle) != napi_ok ||
      napi_create_array_with_length(env, 2, &pair) != napi_ok ||
      napi_set_element(env, pair, 0, ab) != napi_ok ||
      napi_set_element(env, pair, 1, handle) != napi_ok)
    return NULL;
  return pair;
}

// The mapping behind a live buffer of this module, or NULL with an
// exception pending. A detached buffer (unmapped before) is -EBADF in *err:
// its record may be gone already.
static mapping_t *live_mapping(napi_env env, napi_value *argv, int *err) {
  mapping_t *m = fdp_external(env, argv[0], "expected a mapping");
  void *data = NULL;
  size_t len = 0;
  bool detached = true;
  *err = 0;
  if (!m)
    return NULL;
  if (napi_is_detached_arraybuffer(env, argv[1], &detached) != napi_ok ||
      detached) {
    *err = -EBADF;
    return NULL;
  }
  if (napi_get_arraybuffer_info(env, argv[1], &data, &len) != napi_ok ||
      len != m->len || (m->addr && data != m->addr)) {
    fdp_type_error(env, "expected the mapping's own ArrayBuffer");
    return NULL;
  }
  return m;
}

// remap(mapping, buffer, fd) -> 0 | -errno of mmap(2) or mremap(2). Maps
// fd's file (at least the mapping's length, which the caller checked) at
// the same address, the same way (shared or private), in place of the file
// mapped there, whose fd it closes; the mapping then owns fd. The buffer
// stays what it was to V8: a new external buffer of 64 MiB or more starts a
// garbage collection in V8 (its external-memory limit is 64 MiB above the
// lowest amount since the last one), remapping one does not. The new file
// is mapped elsewhere first and moved over the old one by mremap(2)
// (MREMAP_FIXED unmaps what was there): a failure leaves the old mapping
// whole, where mmap(MAP_FIXED) could leave a hole the buffer points into.
static napi_value fdp_shm_remap(napi_env env, napi_callback_info info) {
  FDP_ARGS(3);
  int err;
  int32_t fd;
  mapping_t *m = live_mapping(env, argv, &err);
  if (!m)
    return err ? fdp_number(env, err) : NULL;
  if (fdp_int(env, argv[2], &fd))
    return NULL;
  if (m->addr) {
    void *p = mmap(NULL, m->len, PROT_READ | PROT_WRITE,
                   m->shared ? MAP_SHARED : MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED)
      return fdp_number(env, -errno);
    if (mremap(p, m->len, m->len, MREMAP_MAYMOVE | MREMAP_FIXED, m->addr) ==
        MAP_FAILED) {
      int e = errno;
      munmap(p, m->len);
      return fdp_number(env, -e);
    }
  }
  int old = m->fd;
  m->fd = fd;
  close(old); // ours: its errors (EINTR, EIO) leave nothing to do
  return fdp_number(env, 0);
}

// unmap(mapping, buffer) -> 0 | -errno of close(2) | -ENOTSUP when the
// runtime cannot detach the buffer (nothing was done then). Detaches the
// buffer, unmaps its memory and closes the fd. The caller keeps `buffer`
// alive across the call, and with it the mapping record.
static napi_value fdp_shm_unmap(napi_env env, napi_callback_info info) {
  FDP_ARGS(2);
  int err;
  mapping_t *m = live_mapping(env, argv, &err);
  if (!m)
    return err ? fdp_number(env, err) : NULL;
  // Copies first: once detached, a runtime may run the finalizer at once,
  // which frees m.
  mapping_t copy = {.addr = m->addr, .len = m->len, .fd = m->fd};
  atomic_store(&m->released, 1);
  if (napi_detach_arraybuffer(env, argv[1]) != napi_ok) {
    atomic_store(&m->released, 0);
    return fdp_number(env, -ENOTSUP);
  }
  if (copy.addr)
    munmap(copy.addr, copy.len);
  return fdp_number(env, close(copy.fd) < 0 ? -errno : 0);
}

napi_status fdp_init_shm(napi_env env, napi_value exports) {
  static const fdp_function_t fns[] = {
      {"memfdCreate", fdp_memfd_create}, {"shmTruncate", fdp_shm_truncate},
      {"shmStat", fdp_shm_stat},         {"addSeals", fdp_add_seals},
      {"shmMap", fdp_shm_map},           {"shmUnmap", fdp_shm_unmap},
      {"shmRemap", fdp_shm_remap},
  };
  static const fdp_const_t consts[] = {
      {"F_SEAL_SEAL", F_SEAL_SEAL},
      {"F_SEAL_SHRINK", F_SEAL_SHRINK},
      {"F_SEAL_GROW", F_SEAL_GROW},
      {"F_SEAL_WRITE", F_SEAL_WRITE},
      {"F_SEAL_FUTURE_WRITE", F_SEAL_FUTURE_WRITE},
  };
  registry_t *reg = calloc(1, sizeof(*reg));
  if (!reg)
    return napi_generic_failure;
  pthread_mutex_init(&reg->lock, NULL);
  reg->refs = 1;
  napi_status s = napi_add_env_cleanup_hook(env, release_all, reg);
  if (s != napi_ok) {
    pthread_mutex_destroy(&reg->lock);
    free(reg);
    return s;
  }
  return fdp_export(env, exports, FDP_LIST(fns), FDP_LIST(consts), reg);
}
