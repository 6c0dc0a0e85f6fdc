// Time of one empty OpenMP parallel region (fork + join) at a thread count, libgomp as bertune
// links it: the cost that merging a layer's parallel regions into one would save, per region.
// Built and run by bench/omp_regions.sh.
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char** argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 2, n = argc > 2 ? atoi(argv[2]) : 200000;
  volatile int sink = 0;
  for (int round = 0; round < 5; ++round) {
    double t0 = omp_get_wtime();
    for (int i = 0; i < n; ++i) {
#pragma omp parallel num_threads(threads)
      { if (omp_get_thread_num() == 1) sink = i; }
    }
    double t1 = omp_get_wtime();
    printf("empty-region\t%d threads\t%.3f us\n", threads, (t1 - t0) / n * 1e6);
  }
  return sink < 0;
}
