// Register-blocked 6×16 FMA kernel over pre-packed weights (see the header). Compiled for
// AVX2+FMA per function, so the rest of the package keeps the default x86-64 baseline; the
// caller uses it only on the AVX2 path or wider (reroute_isa_widest).
#include "CRerouteKernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define KC REROUTE_PACK_KC
#define NR REROUTE_PACK_PANEL
#define MR 6
#define MC REROUTE_PACK_MC

size_t reroute_packed_count(int n_out, int k_in) { return (size_t)((n_out + NR - 1) / NR) * NR * (size_t)k_in; }

void reroute_pack_weights(const float *w, int n_out, int k_in, float *out) {
    int panels = (n_out + NR - 1) / NR;
    for (int k0 = 0; k0 < k_in; k0 += KC) {
        int kc = k_in - k0 < KC ? k_in - k0 : KC;
        float *block = out + (size_t)k0 * panels * NR;
        for (int p = 0; p < panels; p++)
            for (int j = 0; j < NR; j++) {
                int o = p * NR + j;
                float *dst = block + (size_t)p * kc * NR + j;
                if (o < n_out) {
                    const float *src = w + (size_t)o * k_in + k0;
                    for (int k = 0; k < kc; k++) dst[(size_t)k * NR] = src[k];
                } else {
                    for (int k = 0; k < kc; k++) dst[(size_t)k * NR] = 0;
                }
            }
    }
}

// Rows [0, rows) of x (stride ld) × columns [k0, k0+kc) → [row block of 6][k][6], zero rows past `rows`.
static void pack_rows(const float *x, int rows, int ld, int k0, int kc, float *out) {
    for (int i = 0; i < rows; i += MR)
        for (int r = 0; r < MR; r++) {
            float *dst = out + (size_t)(i / MR) * kc * MR + r;
            if (i + r < rows) {
                const float *src = x + (size_t)(i + r) * ld + k0;
                for (int k = 0; k < kc; k++) dst[(size_t)k * MR] = src[k];
            } else {
                for (int k = 0; k < kc; k++) dst[(size_t)k * MR] = 0;
            }
        }
}

// C tile [rows ≤ 6, cols ≤ 16] (=, or += when accumulate) of packed rows × one weight panel.
__attribute__((target("avx2,fma")))
static void kernel_6x16(int rows, int cols, int kc, const float *xp, const float *wp, float *c, int ldc, int accumulate) {
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00;
    __m256 a30 = a00, a31 = a00, a40 = a00, a41 = a00, a50 = a00, a51 = a00;
    for (int k = 0; k < kc; k++) {
        __m256 w0 = _mm256_loadu_ps(wp + k * NR), w1 = _mm256_loadu_ps(wp + k * NR + 8);
        const float *x = xp + k * MR;
        __m256 b;
        b = _mm256_broadcast_ss(x + 0); a00 = _mm256_fmadd_ps(b, w0, a00); a01 = _mm256_fmadd_ps(b, w1, a01);
        b = _mm256_broadcast_ss(x + 1); a10 = _mm256_fmadd_ps(b, w0, a10); a11 = _mm256_fmadd_ps(b, w1, a11);
        b = _mm256_broadcast_ss(x + 2); a20 = _mm256_fmadd_ps(b, w0, a20); a21 = _mm256_fmadd_ps(b, w1, a21);
        b = _mm256_broadcast_ss(x + 3); a30 = _mm256_fmadd_ps(b, w0, a30); a31 = _mm256_fmadd_ps(b, w1, a31);
        b = _mm256_broadcast_ss(x + 4); a40 = _mm256_fmadd_ps(b, w0, a40); a41 = _mm256_fmadd_ps(b, w1, a41);
        b = _mm256_broadcast_ss(x + 5); a50 = _mm256_fmadd_ps(b, w0, a50); a51 = _mm256_fmadd_ps(b, w1, a51);
    }
    __m256 acc[MR][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31}, {a40, a41}, {a50, a51}};
    for (int r = 0; r < rows; r++) {
        float *cr = c + (size_t)r * ldc;
        if (cols == NR) {
            if (accumulate) {
                acc[r][0] = _mm256_add_ps(_mm256_loadu_ps(cr), acc[r][0]);
                acc[r][1] = _mm256_add_ps(_mm256_loadu_ps(cr + 8), acc[r][1]);
            }
            _mm256_storeu_ps(cr, acc[r][0]);
            _mm256_storeu_ps(cr + 8, acc[r][1]);
        } else {
            float t[NR];
            _mm256_storeu_ps(t, acc[r][0]);
            _mm256_storeu_ps(t + 8, acc[r][1]);
            for (int j = 0; j < cols; j++) cr[j] = accumulate ? cr[j] + t[j] : t[j];
        }
    }
}

void reroute_packed_gemm(int rows, int n_out, int k_in, const float *x, const float *packed, float *c, int p0, int p1,
                         float *workspace) {
    int panels = (n_out + NR - 1) / NR;
    if (p1 > panels) p1 = panels;
    if (k_in == 0) {  // an empty sum: zeros, as sgemm with beta 0 writes
        for (int i = 0; i < rows; i++)
            for (int o = p0 * NR; o < p1 * NR && o < n_out; o++) c[(size_t)i * n_out + o] = 0;
        return;
    }
    for (int k0 = 0; k0 < k_in; k0 += KC) {
        int kc = k_in - k0 < KC ? k_in - k0 : KC;
        const float *block = packed + (size_t)k0 * panels * NR;
        for (int m0 = 0; m0 < rows; m0 += MC) {
            int mn = rows - m0 < MC ? rows - m0 : MC;
            pack_rows(x + (size_t)m0 * k_in, mn, k_in, k0, kc, workspace);
            for (int p = p0; p < p1; p++) {
                int cols = n_out - p * NR < NR ? n_out - p * NR : NR;
                const float *wp = block + (size_t)p * kc * NR;
                for (int i = 0; i < mn; i += MR)
                    kernel_6x16(mn - i < MR ? mn - i : MR, cols, kc, workspace + (size_t)(i / MR) * kc * MR, wp,
                                c + (size_t)(m0 + i) * n_out + p * NR, n_out, k0 > 0);
            }
        }
    }
}
#else
size_t reroute_packed_count(int n_out, int k_in) { (void)n_out; (void)k_in; return 0; }
void reroute_pack_weights(const float *w, int n_out, int k_in, float *out) { (void)w; (void)n_out; (void)k_in; (void)out; }
void reroute_packed_gemm(int rows, int n_out, int k_in, const float *x, const float *packed, float *c, int p0, int p1,
                         float *workspace) {
    (void)rows; (void)n_out; (void)k_in; (void)x; (void)packed; (void)c; (void)p0; (void)p1; (void)workspace;
}
#endif
