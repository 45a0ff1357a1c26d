// Fuzz harness for the control-message parser the addon runs (native/cmsg.h).
// Each input is one received control buffer: the first byte chooses the fd
// room, the rest is copied into a heap block of exactly its size, so any read
// past the end is an AddressSanitizer report. The parser's result is checked
// against an independent walk of the same bytes: every fd it reports or closes
// lies inside the buffer, and none is lost or invented. SCM_PIDFD (the
// sender's pidfd) is an fd too: the parser keeps the first one that is >= 0
// (when it was asked to) and closes every other; a negative value (the
// errno the kernel writes when it cannot make one) is no fd and is never
// closed. The first input byte's low bit chooses whether the pidfd is
// asked for.
//
// Built two ways by scripts/fuzz-cmsg.mjs:
// - with clang -fsanitize=fuzzer,address,undefined: libFuzzer drives
//   LLVMFuzzerTestOneInput for a fixed time;
// - with -DFDP_STANDALONE and any compiler with ASan: main() generates
//   structured buffers (well-formed, truncated, oversized, misaligned headers)
//   from a seed for a fixed time.
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static size_t closed_count;
static int fuzz_close(int fd) {
  (void)fd; // never a real close: the numbers are arbitrary bytes
  closed_count++;
  return 0;
}
#define FDP_CLOSE fuzz_close
#include "../../native/cmsg.h"

#define HDR sizeof(struct cmsghdr)
#define ALIGNED(n) CMSG_ALIGN(n)

// What a correct parser must see in buf[0..len): headers one after another at
// CMSG_ALIGN(cmsg_len) steps while a whole header fits (glibc's CMSG_NXTHDR);
// a header shorter than itself is the last; a header whose cmsg_len runs past
// the end of the buffer ends the walk unread (the kernel never writes one; a
// parser that trusts it reads past the buffer).
static void reference(const unsigned char *buf, size_t len, size_t *fds,
                      int *rights, int *others, size_t *pidfds, int *first,
                      int *first_error) {
  size_t o = 0;
  *fds = *pidfds = 0;
  *rights = *others = 0;
  *first = *first_error = FDP_NO_PIDFD;
  while (o + HDR <= len) {
    struct cmsghdr h;
    memcpy(&h, buf + o, HDR);
    size_t left = len - o;
    if (h.cmsg_len > left)
      break;
    if (h.cmsg_level == SOL_SOCKET && h.cmsg_type == SCM_PIDFD) {
      if (h.cmsg_len >= CMSG_LEN(sizeof(int))) {
        int v;
        memcpy(&v, buf + o + CMSG_LEN(0), sizeof(int));
        if (v >= 0) {
          (*pidfds)++;
          if (*first == FDP_NO_PIDFD)
            *first = v;
        } else if (*first_error == FDP_NO_PIDFD) {
          *first_error = v;
        }
      }
    } else if (h.cmsg_level == SOL_SOCKET && h.cmsg_type == SCM_RIGHTS) {
      (*rights)++;
      if (h.cmsg_len >= CMSG_LEN(0))
        *fds += (h.cmsg_len - CMSG_LEN(0)) / sizeof(int);
    } else {
      (*others)++;
    }
    if (h.cmsg_len < HDR)
      break;
    o += ALIGNED(h.cmsg_len);
  }
}

static void check_one(const uint8_t *data, size_t size) {
  if (size == 0)
    return;
  int room = data[0] % 256;
  int want_pidfd = data[0] & 1;
  size_t len = size - 1;
  // malloc is aligned for struct cmsghdr; an exact size makes overreads fatal.
  unsigned char *buf = malloc(len ? len : 1);
  int *fds = malloc(sizeof(int) * (room ? (size_t)room : 1));
  if (!buf || !fds)
    abort();
  memcpy(buf, data + 1, len);
  struct msghdr msg = {.msg_control = buf, .msg_controllen = len};
  int rights, others, pidfd = 12345;
  closed_count = 0;
  int n = collect_fds(&msg, fds, room, &rights, &others,
                      want_pidfd ? &pidfd : NULL);
  size_t want_fds, pidfds;
  int want_rights, want_others, first, first_error;
  reference(buf, len, &want_fds, &want_rights, &want_others, &pidfds, &first,
            &first_error);
  // Every fd that arrived is either handed out or closed, exactly once.
  int kept = want_pidfd && pidfd >= 0;
  int want_pidfd_value = first != FDP_NO_PIDFD ? first : first_error;
  if (n < 0 || n > room ||
      (size_t)n + (size_t)kept + closed_count != want_fds + pidfds ||
      rights != want_rights || others != want_others ||
      (want_pidfd && pidfd != want_pidfd_value) ||
      (!want_pidfd && pidfd != 12345)) {
    fprintf(stderr,
            "cmsg_fuzz: mismatch: len %zu room %d: got %d fds + %zu closed, "
            "rights %d, others %d, pidfd %d; want %zu fds + %zu pidfds, "
            "rights %d, others %d, pidfd %d\n",
            len, room, n, closed_count, rights, others, pidfd, want_fds, pidfds,
            want_rights, want_others, want_pidfd ? want_pidfd_value : 12345);
    abort();
  }
  free(fds);
  free(buf);
}

#ifndef FDP_STANDALONE
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  check_one(data, size);
  return 0;
}
#else
static uint64_t rng_state;
static uint64_t rnd(void) { // xorshift64*
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ULL;
}

// One structured input: room byte, then 0..6 control messages of assorted
// kinds and lengths, then maybe cut anywhere.
static size_t generate(uint8_t *out, size_t cap) {
  size_t o = 1;
  out[0] = (uint8_t)rnd();
  int count = (int)(rnd() % 7);
  for (int i = 0; i < count && o + HDR <= cap; i++) {
    struct cmsghdr h;
    size_t nfds = rnd() % 260;
    uint64_t kind = rnd() % 12;
    h.cmsg_level = kind < 10 ? SOL_SOCKET : (int)rnd();
    h.cmsg_type = kind < 5   ? SCM_RIGHTS
                  : kind < 7 ? SCM_CREDENTIALS
                  : kind < 9 ? SCM_PIDFD
                             : (int)rnd();
    size_t payload = h.cmsg_type == SCM_RIGHTS  ? nfds * sizeof(int)
                     : h.cmsg_type == SCM_PIDFD ? sizeof(int)
                                                : rnd() % 40;
    switch (rnd() % 8) {
    case 0: h.cmsg_len = rnd(); break;                 // anything at all
    case 1: h.cmsg_len = rnd() % HDR; break;           // shorter than a header
    case 2: h.cmsg_len = CMSG_LEN(payload) + 1 + rnd() % 4096; break; // too long
    case 3: h.cmsg_len = CMSG_LEN(payload) + rnd() % 3; break; // misaligned
    default: h.cmsg_len = CMSG_LEN(payload); break;    // well formed
    }
    memcpy(out + o, &h, HDR);
    o += HDR;
    for (size_t b = 0; b < payload && o < cap; b++)
      out[o++] = (uint8_t)rnd();
    while ((o - 1) % sizeof(size_t) && o < cap) // CMSG_ALIGN padding
      out[o++] = 0;
  }
  if (rnd() % 3 == 0 && o > 1)
    o = 1 + rnd() % (o - 1); // cut mid-message
  return o;
}

int main(int argc, char **argv) {
  uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 1;
  double seconds = argc > 2 ? atof(argv[2]) : 5;
  rng_state = seed ? seed : 1;
  static uint8_t input[1 + 8 * (CMSG_SPACE(260 * sizeof(int)) + 64)];
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  unsigned long runs = 0;
  for (;;) {
    size_t n = generate(input, sizeof(input));
    check_one(input, n);
    if (++runs % 4096 == 0) {
      clock_gettime(CLOCK_MONOTONIC, &t);
      if ((double)(t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 >=
          seconds)
        break;
    }
  }
  printf("cmsg_fuzz: seed %llu: %lu inputs, no finding\n",
         (unsigned long long)seed, runs);
  return 0;
}
#endif
