// Counts the OpenMP parallel regions a process opens, per calling object (bertune itself,
// OpenBLAS, oneDNN, ...), by standing in front of libgomp's entry points (LD_PRELOAD).
// Printed to stderr at exit. Built and used by bench/omp_regions.sh.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define MAX_OBJECTS 32
static const char* names[MAX_OBJECTS];
static atomic_long counts[MAX_OBJECTS];
static atomic_int n_names;

static void count(void* caller) {
  Dl_info info;
  const char* name = (dladdr(caller, &info) && info.dli_fname) ? info.dli_fname : "?";
  int n = atomic_load(&n_names);
  for (int i = 0; i < n; ++i)
    if (names[i] == name || strcmp(names[i], name) == 0) { atomic_fetch_add(&counts[i], 1); return; }
  if (n < MAX_OBJECTS) {  // new objects appear in the main thread in practice; good enough for a count
    names[n] = name;
    atomic_fetch_add(&counts[n], 1);
    atomic_store(&n_names, n + 1);
  }
}

__attribute__((destructor)) static void report(void) {
  for (int i = 0; i < atomic_load(&n_names); ++i)
    fprintf(stderr, "omp-regions\t%ld\t%s\n", (long)atomic_load(&counts[i]), names[i]);
}

typedef void (*fn_t)(void*);
#define NEXT(sym) static void* next_##sym; if (!next_##sym) next_##sym = dlsym(RTLD_NEXT, #sym)

void GOMP_parallel(fn_t f, void* d, unsigned n, unsigned flags) {
  NEXT(GOMP_parallel);
  count(__builtin_return_address(0));
  ((void (*)(fn_t, void*, unsigned, unsigned))next_GOMP_parallel)(f, d, n, flags);
}
#define LOOP(sym)                                                                                       \
  void sym(fn_t f, void* d, unsigned n, long s, long e, long i, long c, unsigned flags) {            \
    NEXT(sym);                                                                                          \
    count(__builtin_return_address(0));                                                                 \
    ((void (*)(fn_t, void*, unsigned, long, long, long, long, unsigned))next_##sym)(f, d, n, s, e, i, c, flags); \
  }
LOOP(GOMP_parallel_loop_static)
LOOP(GOMP_parallel_loop_dynamic)
LOOP(GOMP_parallel_loop_guided)
LOOP(GOMP_parallel_loop_nonmonotonic_dynamic)
LOOP(GOMP_parallel_loop_nonmonotonic_guided)
void GOMP_parallel_loop_runtime(fn_t f, void* d, unsigned n, long s, long e, long i, unsigned flags) {
  NEXT(GOMP_parallel_loop_runtime);
  count(__builtin_return_address(0));
  ((void (*)(fn_t, void*, unsigned, long, long, long, unsigned))next_GOMP_parallel_loop_runtime)(f, d, n, s, e, i, flags);
}
