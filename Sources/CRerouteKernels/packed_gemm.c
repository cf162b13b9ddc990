// Register-blocked FMA kernels over pre-packed weights (see the header): 6×16 for AVX2+FMA,
// 12×32 for AVX-512. Compiled for their ISA per function, so the rest of the package keeps
// the default x86-64 baseline; the caller picks a path the CPU has (reroute_isa_widest).
#include "CRerouteKernels.h"

#if defined(__x86_64__)
#include "microkernels.h"
#define KC REROUTE_PACK_KC
#define MC REROUTE_PACK_MC

size_t reroute_packed_count(int n_out, int k_in) { return (size_t)((n_out + NR - 1) / NR) * NR * (size_t)k_in; }

// Row blocks are whole tiles of either kernel, so a block starts at a tile of the packed rows.
_Static_assert(MC % MR == 0 && MC % MR512 == 0, "REROUTE_PACK_MC must be a multiple of both tile heights");

void reroute_pack_weights(const float *w, int n_out, int k_in, float *out) {
    int panels = (n_out + NR - 1) / NR;
    for (int k0 = 0; k0 < k_in; k0 += KC)
        pack_tiles(w, n_out, k_in, k0, k_in - k0 < KC ? k_in - k0 : KC, NR, out + (size_t)k0 * panels * NR, 0, panels);
}

// One full panel (16 rows of `row_bytes` bytes from `w`, columns 0 ..< kc) of bf16 elements
// into its k-major panel `dst`, 16 × 16 blocks at a time: each row's 16 elements widened
// (zero-extended, shifted into the upper half) and the block transposed in registers, so every
// store is one k's 16 floats. The same floats as pack_tiles_bf16.
__attribute__((target("avx512f"))) static void pack_panel_bf16_avx512(const unsigned char *w, size_t row_bytes, int kc, float *dst) {
    int k = 0;
    for (; k + NR <= kc; k += NR) {
        __m512i t[NR], u[NR];
        for (int i = 0; i < NR; i += 2) {
            __m512i a = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(w + i * row_bytes + 2 * (size_t)k))), 16);
            __m512i b = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(w + (i + 1) * row_bytes + 2 * (size_t)k))), 16);
            t[i] = _mm512_unpacklo_epi32(a, b);      // per 128-bit lane L: rows i, i+1 at columns 4L, 4L+1
            t[i + 1] = _mm512_unpackhi_epi32(a, b);  // columns 4L+2, 4L+3
        }
        for (int g = 0; g < NR; g += 4) {  // rows g ..< g+4: u[g + j] holds column 4L + j in lane L
            u[g + 0] = _mm512_unpacklo_epi64(t[g], t[g + 2]);
            u[g + 1] = _mm512_unpackhi_epi64(t[g], t[g + 2]);
            u[g + 2] = _mm512_unpacklo_epi64(t[g + 1], t[g + 3]);
            u[g + 3] = _mm512_unpackhi_epi64(t[g + 1], t[g + 3]);
        }
        for (int j = 0; j < 4; j++) {  // column j + 4L from lane L of the four row groups
            __m512i v0 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x88), v1 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x88);
            __m512i w0 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xdd), w1 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xdd);
            _mm512_storeu_si512(dst + (size_t)(k + j) * NR, _mm512_shuffle_i32x4(v0, v1, 0x88));
            _mm512_storeu_si512(dst + (size_t)(k + j + 8) * NR, _mm512_shuffle_i32x4(v0, v1, 0xdd));
            _mm512_storeu_si512(dst + (size_t)(k + j + 4) * NR, _mm512_shuffle_i32x4(w0, w1, 0x88));
            _mm512_storeu_si512(dst + (size_t)(k + j + 12) * NR, _mm512_shuffle_i32x4(w0, w1, 0xdd));
        }
    }
    for (; k < kc; k++)
        for (int i = 0; i < NR; i++) {
            bf16_bytes e;
            memcpy(&e, w + i * row_bytes + 2 * (size_t)k, sizeof e);
            dst[(size_t)k * NR + i] = bf16_widen(e);
        }
}

void reroute_pack_weights_bf16(int isa, const void *w, int n_out, int k_in, float *out) {
    const int panels = (n_out + NR - 1) / NR, full = isa >= REROUTE_ISA_AVX512 ? n_out / NR : 0;
    const unsigned char *bytes = w;
    for (int k0 = 0; k0 < k_in; k0 += KC) {
        int kc = k_in - k0 < KC ? k_in - k0 : KC;
        float *block = out + (size_t)k0 * panels * NR;
        for (int p = 0; p < full; p++)
            pack_panel_bf16_avx512(bytes + 2 * ((size_t)p * NR * k_in + k0), 2 * (size_t)k_in, kc, block + (size_t)p * kc * NR);
        pack_tiles_bf16((const bf16_bytes *)w, n_out, k_in, k0, kc, NR, block, full, panels);
    }
}

int reroute_pack_tile_rows(int isa) { return isa >= REROUTE_ISA_AVX512 ? 12 : MR; }

size_t reroute_packed_rows_count(int rows, int k_in) { return (size_t)((rows + 11) / 12) * 12 * (size_t)k_in; }

void reroute_pack_rows(int isa, int rows, int k_in, const float *x, int ld, float *out, int t0, int t1) {
    const int mr = reroute_pack_tile_rows(isa);
    const size_t padded = (size_t)((rows + mr - 1) / mr) * mr;
    for (int k0 = 0; k0 < k_in; k0 += KC) {
        int kc = k_in - k0 < KC ? k_in - k0 : KC;
        pack_tiles(x, rows, ld, k0, kc, mr, out + (size_t)k0 * padded, t0, t1);
    }
}

void reroute_packed_gemm(int isa, int rows, int n_out, int k_in, const float *xpacked, const float *packed, float *c, int ldc,
                         int p0, int p1) {
    int panels = (n_out + NR - 1) / NR;
    if (p1 > panels) p1 = panels;
    if (k_in == 0) {  // an empty sum: zeros, as sgemm with beta 0 writes
        for (int i = 0; i < rows; i++)
            for (int o = p0 * NR; o < p1 * NR && o < n_out; o++) c[(size_t)i * ldc + o] = 0;
        return;
    }
    const int wide = isa >= REROUTE_ISA_AVX512;
    const int mr = reroute_pack_tile_rows(isa);
    const size_t padded = (size_t)((rows + mr - 1) / mr) * mr;
    for (int k0 = 0; k0 < k_in; k0 += KC) {
        int kc = k_in - k0 < KC ? k_in - k0 : KC;
        const float *block = packed + (size_t)k0 * panels * NR;
        const float *xblock = xpacked + (size_t)k0 * padded;
        // Row blocks of MC rows keep their packed rows in L2 while every panel passes.
        for (int m0 = 0; m0 < rows; m0 += MC) {
            int mn = rows - m0 < MC ? rows - m0 : MC;
            for (int p = p0; p < p1; p += wide ? 2 : 1) {
                int cols = n_out - p * NR;
                const float *wp = block + (size_t)p * kc * NR;
                float *cp = c + (size_t)m0 * ldc + p * NR;
                for (int i = 0; i < mn; i += mr) {
                    int tile = mn - i < mr ? mn - i : mr;
                    const float *xp = xblock + (size_t)(m0 + i) * kc;
                    float *ct = cp + (size_t)i * ldc;
                    if (!wide)
                        kernel_6x16(tile, cols < NR ? cols : NR, kc, xp, wp, ct, ldc, k0 > 0);
                    else if (p + 1 < p1)
                        kernel_12x32(tile, cols < 2 * NR ? cols : 2 * NR, kc, xp, wp, wp + (size_t)kc * NR, ct, ldc, k0 > 0);
                    else
                        kernel_12x16(tile, cols < NR ? cols : NR, kc, xp, wp, ct, ldc, k0 > 0);
                }
            }
        }
    }
}

// One vector of x times a weight panel: a panel's 16 columns as one AVX-512 vector or two AVX2
// halves, the same FMA per element either way.
typedef struct { __m256 lo, hi; } panel256;
__attribute__((target("avx2,fma"))) static inline panel256 zero256(void) { return (panel256){_mm256_setzero_ps(), _mm256_setzero_ps()}; }
__attribute__((target("avx2,fma"))) static inline panel256 fma256(float x, const float *w, panel256 a) {
    __m256 b = _mm256_set1_ps(x);
    return (panel256){_mm256_fmadd_ps(b, _mm256_loadu_ps(w), a.lo), _mm256_fmadd_ps(b, _mm256_loadu_ps(w + 8), a.hi)};
}
__attribute__((target("avx2,fma"))) static inline void store256(float *t, panel256 a) { _mm256_storeu_ps(t, a.lo); _mm256_storeu_ps(t + 8, a.hi); }
__attribute__((target("avx512f"))) static inline __m512 zero512(void) { return _mm512_setzero_ps(); }
__attribute__((target("avx512f"))) static inline __m512 fma512(float x, const float *w, __m512 a) {
    return _mm512_fmadd_ps(_mm512_set1_ps(x), _mm512_loadu_ps(w), a);
}
__attribute__((target("avx512f"))) static inline void store512(float *t, __m512 a) { _mm512_storeu_ps(t, a); }

// A panel's sums of one k block into y's `cols` columns: = on the first block, y + sum after,
// as the product kernels store a tile.
static inline void gemv_store(const float *t, float *y, int cols, int accumulate) {
    for (int j = 0; j < cols; j++) y[j] = accumulate ? y[j] + t[j] : t[j];
}

// y over panels p0 ..< p1 of one weight layout at one width: four panels at a time (four
// independent FMA chains streaming four panels), then one at a time.
#define DEFINE_GEMV(SUFFIX, TARGET, P, ZERO, FMA, STORE)                                                          \
    __attribute__((target(TARGET))) static void gemv_##SUFFIX(int n_out, int k_in, const float *x, const float *packed, \
                                                              float *y, int p0, int p1) {                        \
        const int panels = (n_out + NR - 1) / NR;                                                                 \
        float t[4][NR];                                                                                           \
        for (int k0 = 0; k0 < k_in; k0 += KC) {                                                                   \
            const int kc = k_in - k0 < KC ? k_in - k0 : KC;                                                       \
            const float *block = packed + (size_t)k0 * panels * NR, *xb = x + k0;                                 \
            const size_t step = (size_t)kc * NR;                                                                  \
            int p = p0;                                                                                           \
            for (; p + 4 <= p1; p += 4) {                                                                         \
                const float *w = block + (size_t)p * step;                                                        \
                P a0 = ZERO(), a1 = ZERO(), a2 = ZERO(), a3 = ZERO();                                             \
                for (int k = 0; k < kc; k++) {                                                                    \
                    const float *wk = w + (size_t)k * NR;                                                         \
                    a0 = FMA(xb[k], wk, a0); a1 = FMA(xb[k], wk + step, a1);                                      \
                    a2 = FMA(xb[k], wk + 2 * step, a2); a3 = FMA(xb[k], wk + 3 * step, a3);                       \
                }                                                                                                 \
                STORE(t[0], a0); STORE(t[1], a1); STORE(t[2], a2); STORE(t[3], a3);                               \
                for (int j = 0; j < 4; j++) {                                                                     \
                    int cols = n_out - (p + j) * NR;                                                              \
                    gemv_store(t[j], y + (p + j) * NR, cols < NR ? cols : NR, k0 > 0);                            \
                }                                                                                                 \
            }                                                                                                     \
            for (; p < p1; p++) {                                                                                 \
                const float *w = block + (size_t)p * step;                                                        \
                P a = ZERO();                                                                                     \
                for (int k = 0; k < kc; k++) a = FMA(xb[k], w + (size_t)k * NR, a);                               \
                STORE(t[0], a);                                                                                   \
                int cols = n_out - p * NR;                                                                        \
                gemv_store(t[0], y + p * NR, cols < NR ? cols : NR, k0 > 0);                                      \
            }                                                                                                     \
        }                                                                                                         \
    }

DEFINE_GEMV(avx2, "avx2,fma", panel256, zero256, fma256, store256)
DEFINE_GEMV(avx512, "avx512f", __m512, zero512, fma512, store512)

void reroute_packed_gemv(int isa, int n_out, int k_in, const float *x, const float *packed, float *y, int p0, int p1) {
    int panels = (n_out + NR - 1) / NR;
    if (p1 > panels) p1 = panels;
    if (k_in == 0) {  // an empty sum: zeros, as the product writes
        for (int o = p0 * NR; o < p1 * NR && o < n_out; o++) y[o] = 0;
        return;
    }
    if (isa >= REROUTE_ISA_AVX512)
        gemv_avx512(n_out, k_in, x, packed, y, p0, p1);
    else
        gemv_avx2(n_out, k_in, x, packed, y, p0, p1);
}
#else
int reroute_pack_tile_rows(int isa) { (void)isa; return 12; }
size_t reroute_packed_count(int n_out, int k_in) { (void)n_out; (void)k_in; return 0; }
size_t reroute_packed_rows_count(int rows, int k_in) { (void)rows; (void)k_in; return 0; }
void reroute_pack_weights(const float *w, int n_out, int k_in, float *out) { (void)w; (void)n_out; (void)k_in; (void)out; }
void reroute_pack_weights_bf16(int isa, const void *w, int n_out, int k_in, float *out) { (void)isa; (void)w; (void)n_out; (void)k_in; (void)out; }
void reroute_pack_rows(int isa, int rows, int k_in, const float *x, int ld, float *out, int t0, int t1) {
    (void)isa; (void)rows; (void)k_in; (void)x; (void)ld; (void)out; (void)t0; (void)t1;
}
void reroute_packed_gemv(int isa, int n_out, int k_in, const float *x, const float *packed, float *y, int p0, int p1) {
    (void)isa; (void)n_out; (void)k_in; (void)x; (void)packed; (void)y; (void)p0; (void)p1;
}
void reroute_packed_gemm(int isa, int rows, int n_out, int k_in, const float *xpacked, const float *packed, float *c, int ldc,
                         int p0, int p1) {
    (void)isa; (void)rows; (void)n_out; (void)k_in; (void)xpacked; (void)packed; (void)c; (void)ldc; (void)p0; (void)p1;
}
#endif
