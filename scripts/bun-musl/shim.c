// What Bun's musl build asks of its libstdc++ beyond musl, for running it on
// a Debian machine: there is no musl libstdc++ in Debian or on npm, so the
// patched binary (scripts/tools.mjs bun-musl) loads this library in its
// place, and this library loads Debian's glibc libstdc++.so.6 and
// libgcc_s.so.1. musl's loader ignores symbol versions, and maps libc.so.6
// and libm.so.6 to itself; what those two libraries want from glibc and
// musl lacks is defined here. Built with musl-gcc; a test tool, never
// shipped.
#include <locale.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/auxv.h>
#include <sys/random.h>
#include <time.h>

// glibc >= 2.32: libstdc++ skips atomic reference counts while it is 0.
// Always 0 here, as in a program that has started a thread.
char __libc_single_threaded = 0;

// glibc >= 2.36 (std::random_device).
uint32_t arc4random(void) {
  uint32_t v = 0;
  while (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v)
    ;
  return v;
}

// glibc's name for strftime_l (std::time_put).
size_t __strftime_l(char *s, size_t n, const char *f, const struct tm *tm,
                    locale_t l) {
  return strftime_l(s, n, f, tm, l);
}

// glibc's internal name for getauxval (arm64 libstdc++: CPU features).
unsigned long __getauxval(unsigned long type) { return getauxval(type); }

// thread_local destructors (glibc >= 2.18). Not registered: a thread's
// thread_local C++ objects are not destroyed when it ends (Bun's threads
// live as long as the process).
int __cxa_thread_atexit_impl(void (*dtor)(void *), void *obj, void *dso) {
  (void)dtor;
  (void)obj;
  (void)dso;
  return 0;
}

// glibc >= 2.35, the unwinder's fast path: -1 sends libgcc_s to its
// dl_iterate_phdr fallback, which musl has.
int _dl_find_object(void *pc, void *result) {
  (void)pc;
  (void)result;
  return -1;
}

// libgcc_s.so.1 exports its CPU model (GCC_4.8.0) and its own relocations
// name them, but musl's loader does not resolve them within it. Nothing here
// reads them (Bun asks its own cpuid): all zero, no features.
struct {
  unsigned vendor, type, subtype, features[1];
} __cpu_model;
int __cpu_indicator_init(void) { return 0; }
