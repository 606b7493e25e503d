// OpenBLAS sgemm on the BDH shapes, best-of-30 wall time, to set beside `Bdh.Benchmarks gflops`.
// Build: cc -O2 -o sgemm_openblas sgemm_openblas.c -lopenblas   Run: OPENBLAS_NUM_THREADS=2 ./sgemm_openblas
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void) {
    struct { const char *name; int m, n, k, ta, tb; } shapes[] = {
        {"x·encoder        [1024x128]·[128x2048]", 1024, 2048, 128, 0, 0},
        {"xy·decoder       [1024x2048]·[2048x128]", 1024, 128, 2048, 0, 0},
        {"dW = xᵀ·dY        [128x1024]ᵀ·[1024x2048]", 128, 2048, 1024, 1, 0},
        {"dX = dY·Wᵀ        [1024x2048]·[128x2048]ᵀ", 1024, 128, 2048, 0, 1},
        {"x·encoder_h      [1024x128]·[128x512]", 1024, 512, 128, 0, 0},
        {"xy_h·decoder_h   [1024x512]·[512x128]", 1024, 128, 512, 0, 0},
        {"dW_h = xᵀ·dY_h    [128x1024]ᵀ·[1024x512]", 128, 512, 1024, 1, 0},
        {"dX_h = dY_h·W_hᵀ  [1024x512]·[128x512]ᵀ", 1024, 128, 512, 0, 1},
        {"square           [1024x1024]·[1024x1024]", 1024, 1024, 1024, 0, 0},
    };
    printf("OpenBLAS %s, %d threads\n", openblas_get_config(), openblas_get_num_threads());
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int m = shapes[s].m, n = shapes[s].n, k = shapes[s].k;
        float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * k * n), *c = malloc(sizeof(float) * m * n);
        for (int i = 0; i < m * k; i++) a[i] = (float)rand() / RAND_MAX - 0.5f;
        for (int i = 0; i < k * n; i++) b[i] = (float)rand() / RAND_MAX - 0.5f;
        double best = 1e30;
        for (int rep = 0; rep < 30; rep++) {
            double t0 = now();
            cblas_sgemm(CblasRowMajor, shapes[s].ta ? CblasTrans : CblasNoTrans, shapes[s].tb ? CblasTrans : CblasNoTrans,
                        m, n, k, 1.0f, a, shapes[s].ta ? m : k, b, shapes[s].tb ? k : n, 0.0f, c, n);
            double t = now() - t0;
            if (t < best) best = t;
        }
        printf("%-45s %7.1f GFLOP/s\n", shapes[s].name, 2.0 * m * n * k / best / 1e9);
        free(a); free(b); free(c);
    }
    return 0;
}
