// Register-blocked FMA kernels over pre-packed weights (see the header): 6×16 for AVX2+FMA,
// 12×32 for AVX-512. Compiled for their ISA per function, so the rest of the package keeps
// the default x86-64 baseline; the caller picks a path the CPU has (reroute_isa_widest).
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

// Rows [0, rows) of x (stride ld) × columns [k0, k0+kc) → [row block of mr][k][mr], zero rows past `rows`.
static void pack_rows(const float *x, int rows, int ld, int k0, int kc, int mr, float *out) {
    for (int i = 0; i < rows; i += mr)
        for (int r = 0; r < mr; r++) {
            float *dst = out + (size_t)(i / mr) * kc * mr + r;
            if (i + r < rows) {
                const float *src = x + (size_t)(i + r) * ld + k0;
                for (int k = 0; k < kc; k++) dst[(size_t)k * mr] = src[k];
            } else {
                for (int k = 0; k < kc; k++) dst[(size_t)k * mr] = 0;
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

// AVX-512: C tile [rows ≤ 12, cols ≤ 16·np] of packed rows (12 wide) × np ∈ {1, 2} adjacent
// weight panels (panel stride kc·16), one 16-lane accumulator per row and panel, the row value
// broadcast from memory into the FMA. Each output element sees the same operations in the same
// order as in kernel_6x16 (one FMA per k, k ascending, then + C), so the two paths agree bit
// for bit on this product.
#define MR512 12
// Row blocks are packed whole in tiles of either kernel: the workspace holds MC rows exactly.
_Static_assert(MC % MR == 0 && MC % MR512 == 0, "REROUTE_PACK_MC must be a multiple of both tile heights");
__attribute__((target("avx512f"), always_inline))
static inline void kernel_12xnp(int np, int rows, int cols, int kc, const float *xp, const float *wp, float *c, int ldc,
                                int accumulate) {
    __m512 acc[MR512][2];
    for (int r = 0; r < MR512; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    const float *wq = wp + (size_t)kc * NR;
    for (int k = 0; k < kc; k++) {
        const float *x = xp + k * MR512;
        __m512 w0 = _mm512_loadu_ps(wp + k * NR);
        __m512 w1 = np == 2 ? _mm512_loadu_ps(wq + k * NR) : w0;
        for (int r = 0; r < MR512; r++) {
            __m512 b = _mm512_set1_ps(x[r]);
            acc[r][0] = _mm512_fmadd_ps(b, w0, acc[r][0]);
            if (np == 2) acc[r][1] = _mm512_fmadd_ps(b, w1, acc[r][1]);
        }
    }
    for (int r = 0; r < rows; r++) {
        float *cr = c + (size_t)r * ldc;
        for (int h = 0; h < np; h++) {
            int left = cols - h * NR;
            if (left <= 0) break;
            __mmask16 m = left >= NR ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
            __m512 v = acc[r][h];
            if (accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, cr + h * NR), v);
            _mm512_mask_storeu_ps(cr + h * NR, m, v);
        }
    }
}

__attribute__((target("avx512f")))
static void kernel_12x32(int rows, int cols, int kc, const float *xp, const float *wp, float *c, int ldc, int accumulate) {
    kernel_12xnp(2, rows, cols, kc, xp, wp, c, ldc, accumulate);
}

__attribute__((target("avx512f")))
static void kernel_12x16(int rows, int cols, int kc, const float *xp, const float *wp, float *c, int ldc, int accumulate) {
    kernel_12xnp(1, rows, cols, kc, xp, wp, c, ldc, accumulate);
}

void reroute_packed_gemm(int isa, int rows, int n_out, int k_in, const float *x, const float *packed, float *c, int p0,
                         int p1, float *workspace) {
    int panels = (n_out + NR - 1) / NR;
    if (p1 > panels) p1 = panels;
    if (k_in == 0) {  // an empty sum: zeros, as sgemm with beta 0 writes
        for (int i = 0; i < rows; i++)
            for (int o = p0 * NR; o < p1 * NR && o < n_out; o++) c[(size_t)i * n_out + o] = 0;
        return;
    }
    const int wide = isa >= REROUTE_ISA_AVX512;
    const int mr = wide ? MR512 : MR;
    for (int k0 = 0; k0 < k_in; k0 += KC) {
        int kc = k_in - k0 < KC ? k_in - k0 : KC;
        const float *block = packed + (size_t)k0 * panels * NR;
        for (int m0 = 0; m0 < rows; m0 += MC) {
            int mn = rows - m0 < MC ? rows - m0 : MC;
            pack_rows(x + (size_t)m0 * k_in, mn, k_in, k0, kc, mr, workspace);
            for (int p = p0; p < p1; p += wide ? 2 : 1) {
                int cols = n_out - p * NR;
                const float *wp = block + (size_t)p * kc * NR;
                float *cp = c + (size_t)m0 * n_out + p * NR;
                for (int i = 0; i < mn; i += mr) {
                    int tile = mn - i < mr ? mn - i : mr;
                    const float *xp = workspace + (size_t)(i / mr) * kc * mr;
                    float *ct = cp + (size_t)i * n_out;
                    if (!wide)
                        kernel_6x16(tile, cols < NR ? cols : NR, kc, xp, wp, ct, n_out, k0 > 0);
                    else if (p + 1 < p1)
                        kernel_12x32(tile, cols < 2 * NR ? cols : 2 * NR, kc, xp, wp, ct, n_out, k0 > 0);
                    else
                        kernel_12x16(tile, cols < NR ? cols : NR, kc, xp, wp, ct, n_out, k0 > 0);
                }
            }
        }
    }
}
#else
size_t reroute_packed_count(int n_out, int k_in) { (void)n_out; (void)k_in; return 0; }
void reroute_pack_weights(const float *w, int n_out, int k_in, float *out) { (void)w; (void)n_out; (void)k_in; (void)out; }
void reroute_packed_gemm(int isa, int rows, int n_out, int k_in, const float *x, const float *packed, float *c, int p0,
                         int p1, float *workspace) {
    (void)isa; (void)rows; (void)n_out; (void)k_in; (void)x; (void)packed; (void)c; (void)p0; (void)p1; (void)workspace;
}
#endif
