// The FMA micro-kernels shared by the packed product and attention (private to this target).
// X tiles are k-major [k][mr]; a weight panel is k-major [k][16]. Each output element sees one
// FMA per k, k ascending, then + C when accumulating: the same operations on every kernel.
#ifndef REROUTE_MICROKERNELS_H
#define REROUTE_MICROKERNELS_H
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "CRerouteKernels.h"

#define NR REROUTE_PACK_PANEL
#define MR 6

// Rows [0, rows) of x (row stride ld), columns [k0, k0 + kc), as tiles of mr rows: tile t at
// t·mr·kc, element (t·mr + r, k0 + k) at k·mr + r; tiles t0 ..< t1 only; rows past `rows` zero.
// With mr = 16 these are a weight matrix's panels. The bf16 form reads bfloat16 bits and widens
// each exactly (bf16 is the upper half of a float32), so both forms give the same floats.
#define DEFINE_PACK_TILES(NAME, T, WIDEN)                                                                  \
    static inline void NAME(const T *x, int rows, int ld, int k0, int kc, int mr, float *out, int t0, int t1) { \
        for (int t = t0; t < t1; t++)                                                                      \
            for (int r = 0; r < mr; r++) {                                                                 \
                int i = t * mr + r;                                                                        \
                float *dst = out + (size_t)t * mr * kc + r;                                                \
                if (i < rows) {                                                                            \
                    const T *src = x + (size_t)i * ld + k0;                                                \
                    for (int k = 0; k < kc; k++) dst[(size_t)k * mr] = WIDEN(src[k]);                      \
                } else {                                                                                   \
                    for (int k = 0; k < kc; k++) dst[(size_t)k * mr] = 0;                                  \
                }                                                                                          \
            }                                                                                              \
    }
static inline float float_identity(float v) { return v; }
// A bf16 element of a mapped checkpoint, which need not be 2-byte aligned.
typedef struct { unsigned char b[2]; } bf16_bytes;
static inline float bf16_widen(bf16_bytes v) {
    uint16_t h;
    memcpy(&h, &v, sizeof h);
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}
DEFINE_PACK_TILES(pack_tiles, float, float_identity)
DEFINE_PACK_TILES(pack_tiles_bf16, bf16_bytes, bf16_widen)

// C tile [rows ≤ 6, cols ≤ 16] (=, or += when accumulate) of packed rows × one weight panel.
__attribute__((target("avx2,fma")))
static inline void kernel_6x16(int rows, int cols, int kc, const float *xp, const float *wp, float *c, int ldc, int accumulate) {
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
// weight panels (the second at `wq`), one 16-lane accumulator per row and panel, the row value
// broadcast from memory into the FMA. Each output element sees the same operations in the same
// order as in kernel_6x16 (one FMA per k, k ascending, then + C), so the two paths agree bit
// for bit on this product.
#define MR512 12
__attribute__((target("avx512f"), always_inline))
static inline void kernel_12xnp(int np, int rows, int cols, int kc, const float *xp, const float *wp, const float *wq, float *c,
                                int ldc, int accumulate) {
    __m512 acc[MR512][2];
    for (int r = 0; r < MR512; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
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
static inline void kernel_12x32(int rows, int cols, int kc, const float *xp, const float *wp, const float *wq, float *c, int ldc,
                         int accumulate) {
    kernel_12xnp(2, rows, cols, kc, xp, wp, wq, c, ldc, accumulate);
}

__attribute__((target("avx512f")))
static inline void kernel_12x16(int rows, int cols, int kc, const float *xp, const float *wp, float *c, int ldc, int accumulate) {
    kernel_12xnp(1, rows, cols, kc, xp, wp, wp, c, ldc, accumulate);
}

#endif
