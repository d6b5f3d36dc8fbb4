// An LD_PRELOAD shim that counts heap allocations of the whole process (malloc, calloc, realloc,
// the aligned variants and every C++ operator new) and passes them on to the allocator that would
// have served them (mimalloc for pgwarden). On SIGUSR2 it writes the counts so far to the file
// named by ALLOC_COUNT_FILE: "allocations N\nbytes B\n". bench/alloc_count.sh uses it.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_ulong g_count;
static atomic_ulong g_bytes;

typedef void* (*alloc_fn)(size_t);
typedef void* (*calloc_fn)(size_t, size_t);
typedef void* (*realloc_fn)(void*, size_t);
typedef int (*memalign_fn)(void**, size_t, size_t);
typedef void* (*aligned_fn)(size_t, size_t);
typedef void* (*new_al_fn)(size_t, size_t);

static void* next(const char* name) { return dlsym(RTLD_NEXT, name); }

static void count(size_t n) {
  atomic_fetch_add_explicit(&g_count, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&g_bytes, n, memory_order_relaxed);
}

// dlsym may call calloc before the real one is known: serve that from a static arena.
static char g_boot[4096];
static size_t g_boot_used;
static int g_resolving;

void* malloc(size_t n) {
  static alloc_fn f;
  if (!f) f = (alloc_fn)next("malloc");
  count(n);
  return f(n);
}
void* calloc(size_t a, size_t b) {
  static calloc_fn f;
  if (!f) {
    if (g_resolving) {
      size_t n = (a * b + 15) & ~(size_t)15;
      if (g_boot_used + n > sizeof g_boot) return NULL;
      void* p = g_boot + g_boot_used;
      g_boot_used += n;
      return p;
    }
    g_resolving = 1;
    f = (calloc_fn)next("calloc");
    g_resolving = 0;
  }
  count(a * b);
  return f(a, b);
}
void free(void* p) {
  static void (*f)(void*);
  if ((char*)p >= g_boot && (char*)p < g_boot + sizeof g_boot) return;
  if (!f) f = (void (*)(void*))next("free");
  f(p);
}
void* realloc(void* p, size_t n) {
  static realloc_fn f;
  if (!f) f = (realloc_fn)next("realloc");
  count(n);
  return f(p, n);
}
int posix_memalign(void** out, size_t al, size_t n) {
  static memalign_fn f;
  if (!f) f = (memalign_fn)next("posix_memalign");
  count(n);
  return f(out, al, n);
}
void* aligned_alloc(size_t al, size_t n) {
  static aligned_fn f;
  if (!f) f = (aligned_fn)next("aligned_alloc");
  count(n);
  return f(al, n);
}

#define NEW(sym)                            \
  void* sym(size_t n) {                     \
    static alloc_fn f;                      \
    if (!f) f = (alloc_fn)next(#sym);       \
    count(n);                               \
    return f(n);                            \
  }
NEW(_Znwm)
NEW(_Znam)
#define NEW_NOTHROW(sym)                    \
  void* sym(size_t n, const void* t) {      \
    static void* (*f)(size_t, const void*); \
    if (!f) f = next(#sym);                 \
    count(n);                               \
    return f(n, t);                         \
  }
NEW_NOTHROW(_ZnwmRKSt9nothrow_t)
NEW_NOTHROW(_ZnamRKSt9nothrow_t)
#define NEW_ALIGNED(sym)                    \
  void* sym(size_t n, size_t al) {          \
    static new_al_fn f;                     \
    if (!f) f = (new_al_fn)next(#sym);      \
    count(n);                               \
    return f(n, al);                        \
  }
NEW_ALIGNED(_ZnwmSt11align_val_t)
NEW_ALIGNED(_ZnamSt11align_val_t)

static size_t put_num(char* out, unsigned long v) {
  char tmp[24];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  for (size_t i = 0; i < n; ++i) out[i] = tmp[n - 1 - i];
  return n;
}

static void report(int sig) {
  (void)sig;
  const char* path = getenv("ALLOC_COUNT_FILE");
  if (path == NULL) return;
  char buf[96];
  size_t n = 0;
  memcpy(buf, "allocations ", 12);
  n = 12;
  n += put_num(buf + n, atomic_load(&g_count));
  memcpy(buf + n, "\nbytes ", 7);
  n += 7;
  n += put_num(buf + n, atomic_load(&g_bytes));
  buf[n++] = '\n';
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  ssize_t w = write(fd, buf, n);
  (void)w;
  close(fd);
}

__attribute__((constructor)) static void init(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = report;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGUSR2, &sa, NULL);
}
