// The ISA dispatch's probe, the FMA peak loop, and the elementwise and row kernels per path.
// Each path is compiled for its ISA per function (target attributes), so the package keeps the
// default x86-64 baseline and runs everywhere; callers pick a path the CPU has.
#include "CRerouteKernels.h"

#include <math.h>

// No a·b + c fused into an FMA behind the source's back: the portable path is the plain
// definition bit for bit on any target, and each path's scalar tails are fixed by the source.
#pragma STDC FP_CONTRACT OFF

#if defined(__x86_64__)
#include <immintrin.h>

int reroute_isa_widest(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        return REROUTE_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return REROUTE_ISA_AVX2;
    return REROUTE_ISA_PORTABLE;
}

// glibc's vector expf (libmvec), by its vector-ABI names: AVX2 8 lanes, AVX-512 16 lanes.
__attribute__((target("avx2,fma"))) __m256 _ZGVdN8v_expf(__m256 x);
__attribute__((target("avx512f"))) __m512 _ZGVeN16v_expf(__m512 x);

// The peak loop at one width W: 12 independent FMA chains (more than FMA latency × ports on
// any of these cores), multipliers just below 1 and a small addend keep them normal and finite;
// the sum goes to a volatile so the loop is not removed. Each FMA is one instruction of inline
// assembly: written in C, a chain that starts at a fixed point of a·m + c (1.0 here) is a
// constant the compiler may drop, and the loop would do less than the count it returns.
#define PEAK_FMA(a) __asm__("vfmadd213ps %[c], %[m], %[x]" : [x] "+x"(a) : [m] "x"(m), [c] "x"(c))
#define DEFINE_PEAK(SUFFIX, TARGET, V, W, SET1, ADD, STORE)                                       \
    __attribute__((target(TARGET))) static double peak_##SUFFIX(long iterations) {                \
        V m = SET1(0.999999f), c = SET1(1e-6f);                                                   \
        V a0 = SET1(1.5f), a1 = SET1(1.6f), a2 = SET1(1.7f), a3 = SET1(1.8f), a4 = SET1(1.9f),     \
          a5 = SET1(2.0f), a6 = SET1(2.1f), a7 = SET1(2.2f), a8 = SET1(2.3f), a9 = SET1(2.4f),     \
          a10 = SET1(2.5f), a11 = SET1(2.6f);                                                      \
        for (long i = 0; i < iterations; i++) {                                                    \
            PEAK_FMA(a0); PEAK_FMA(a1); PEAK_FMA(a2); PEAK_FMA(a3); PEAK_FMA(a4); PEAK_FMA(a5);    \
            PEAK_FMA(a6); PEAK_FMA(a7); PEAK_FMA(a8); PEAK_FMA(a9); PEAK_FMA(a10); PEAK_FMA(a11);  \
        }                                                                                          \
        V s = ADD(ADD(ADD(ADD(a0, a1), ADD(a2, a3)), ADD(ADD(a4, a5), ADD(a6, a7))),               \
                  ADD(ADD(a8, a9), ADD(a10, a11)));                                                \
        float lanes[W];                                                                            \
        STORE(lanes, s);                                                                           \
        volatile float sink = lanes[0] + lanes[W - 1];                                             \
        (void)sink;                                                                                \
        return 2.0 * W * 12 * (double)iterations;                                                  \
    }

DEFINE_PEAK(avx2, "avx2,fma", __m256, 8, _mm256_set1_ps, _mm256_add_ps, _mm256_storeu_ps)
DEFINE_PEAK(avx512, "avx512f", __m512, 16, _mm512_set1_ps, _mm512_add_ps, _mm512_storeu_ps)

// SwiGLU and softmax at one vector width W (type V, intrinsics passed in), the tail scalar.
// Softmax adds the W lane sums in lane order after the vector loop, then the tail's terms.
#define DEFINE_EXP_KERNELS(SUFFIX, TARGET, V, W, LOAD, STORE, SET1, ZERO, SUB, ADD, MUL, DIV, EXP)          \
    __attribute__((target(TARGET))) static void swiglu_##SUFFIX(float *g, const float *u, size_t n) {     \
        const V one = SET1(1.0f);                                                                         \
        size_t i = 0;                                                                                     \
        for (; i + W <= n; i += W) {                                                                      \
            V x = LOAD(g + i);                                                                            \
            V e = EXP(SUB(ZERO(), x));                                                                    \
            STORE(g + i, MUL(DIV(x, ADD(one, e)), LOAD(u + i)));                                          \
        }                                                                                                 \
        for (; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];                                     \
    }                                                                                                     \
    __attribute__((target(TARGET))) static void softmax_##SUFFIX(float *x, size_t n) {                    \
        float m = -INFINITY;                                                                              \
        for (size_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;                                           \
        const V mv = SET1(m);                                                                             \
        V acc = ZERO();                                                                                   \
        size_t i = 0;                                                                                     \
        for (; i + W <= n; i += W) {                                                                      \
            V e = EXP(SUB(LOAD(x + i), mv));                                                              \
            STORE(x + i, e);                                                                              \
            acc = ADD(acc, e);                                                                            \
        }                                                                                                 \
        float lanes[W];                                                                                   \
        STORE(lanes, acc);                                                                                \
        float total = 0;                                                                                  \
        for (int k = 0; k < W; k++) total += lanes[k];                                                    \
        for (; i < n; i++) { x[i] = expf(x[i] - m); total += x[i]; }                                      \
        const V inv = SET1(1.0f / total);                                                                 \
        for (i = 0; i + W <= n; i += W) STORE(x + i, MUL(LOAD(x + i), inv));                              \
        for (; i < n; i++) x[i] *= 1.0f / total;                                                          \
    }

DEFINE_EXP_KERNELS(avx2, "avx2,fma", __m256, 8, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_setzero_ps,
                   _mm256_sub_ps, _mm256_add_ps, _mm256_mul_ps, _mm256_div_ps, _ZGVdN8v_expf)
DEFINE_EXP_KERNELS(avx512, "avx512f", __m512, 16, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_setzero_ps,
                   _mm512_sub_ps, _mm512_add_ps, _mm512_mul_ps, _mm512_div_ps, _ZGVeN16v_expf)
// RMSNorm and RoPE at one vector width W. RMSNorm: the W lane sums of squares added in lane
// order after the vector loop, then the tail's; y = (x · inv) · w. RoPE: rotate-half pairs,
// products then difference and sum (no contraction into FMAs, as the portable path).
#define DEFINE_ROW_KERNELS(SUFFIX, TARGET, V, W, LOAD, STORE, SET1, ZERO, SUB, ADD, MUL)                     \
    __attribute__((target(TARGET))) static void rmsnorm_##SUFFIX(const float *x, const float *w, float *y,  \
                                                                  size_t n, float eps) {                   \
        V acc = ZERO();                                                                                   \
        size_t i = 0;                                                                                     \
        for (; i + W <= n; i += W) { V v = LOAD(x + i); acc = ADD(acc, MUL(v, v)); }                     \
        float lanes[W];                                                                                   \
        STORE(lanes, acc);                                                                                \
        float sum = 0;                                                                                    \
        for (int k = 0; k < W; k++) sum += lanes[k];                                                      \
        for (; i < n; i++) { float t = x[i] * x[i]; sum += t; }                                          \
        const float inv = 1.0f / sqrtf(sum / (float)n + eps);                                             \
        const V s = SET1(inv);                                                                            \
        for (i = 0; i + W <= n; i += W) STORE(y + i, MUL(MUL(LOAD(x + i), s), LOAD(w + i)));             \
        for (; i < n; i++) { float t = x[i] * inv; y[i] = t * w[i]; }                                    \
    }                                                                                                     \
    __attribute__((target(TARGET))) static void rope_##SUFFIX(float *x, int heads, int dh, const float *c,  \
                                                               const float *s) {                          \
        const int h = dh / 2;                                                                             \
        for (int head = 0; head < heads; head++) {                                                        \
            float *p = x + (size_t)head * dh;                                                             \
            int i = 0;                                                                                    \
            for (; i + W <= h; i += W) {                                                                  \
                V a = LOAD(p + i), b = LOAD(p + i + h), cv = LOAD(c + i), sv = LOAD(s + i);               \
                STORE(p + i, SUB(MUL(a, cv), MUL(b, sv)));                                                \
                STORE(p + i + h, ADD(MUL(b, cv), MUL(a, sv)));                                            \
            }                                                                                             \
            for (; i < h; i++) {                                                                          \
                float a = p[i], b = p[i + h];                                                             \
                float ac = a * c[i], bs = b * s[i], bc = b * c[i], as = a * s[i];                         \
                p[i] = ac - bs;                                                                           \
                p[i + h] = bc + as;                                                                       \
            }                                                                                             \
        }                                                                                                 \
    }

DEFINE_ROW_KERNELS(avx2, "avx2,fma", __m256, 8, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_setzero_ps,
                   _mm256_sub_ps, _mm256_add_ps, _mm256_mul_ps)
DEFINE_ROW_KERNELS(avx512, "avx512f", __m512, 16, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_setzero_ps,
                   _mm512_sub_ps, _mm512_add_ps, _mm512_mul_ps)
#else
int reroute_isa_widest(void) { return REROUTE_ISA_PORTABLE; }
#endif

// Portable: scalar, multiply then add (the x86-64 baseline has no FMA instruction). m and c
// are read through volatiles so the compiler cannot evaluate the chains and fold any of them.
static double peak_portable(long iterations) {
    volatile float vm = 0.999999f, vc = 1e-6f;
    const float m = vm, c = vc;
    float a[12] = {1.5f, 1.6f, 1.7f, 1.8f, 1.9f, 2.0f, 2.1f, 2.2f, 2.3f, 2.4f, 2.5f, 2.6f};
    for (long i = 0; i < iterations; i++)
        for (int k = 0; k < 12; k++) a[k] = a[k] * m + c;
    float sum = 0;  // every chain reaches the volatile, so none is dead code
    for (int k = 0; k < 12; k++) sum += a[k];
    volatile float sink = sum;
    (void)sink;
    return 2.0 * 12 * (double)iterations;
}

static void swiglu_portable(float *g, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void softmax_portable(float *x, size_t n) {
    float m = -INFINITY, total = 0;
    for (size_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    for (size_t i = 0; i < n; i++) { x[i] = expf(x[i] - m); total += x[i]; }
    float inv = 1.0f / total;
    for (size_t i = 0; i < n; i++) x[i] *= inv;
}

static void rmsnorm_portable(const float *x, const float *w, float *y, size_t n, float eps) {
    float sum = 0;
    for (size_t i = 0; i < n; i++) sum += x[i] * x[i];
    const float inv = 1.0f / sqrtf(sum / (float)n + eps);
    for (size_t i = 0; i < n; i++) y[i] = x[i] * inv * w[i];
}

static void rope_portable(float *x, int heads, int dh, const float *c, const float *s) {
    const int h = dh / 2;
    for (int head = 0; head < heads; head++) {
        float *p = x + (size_t)head * dh;
        for (int i = 0; i < h; i++) {
            float a = p[i], b = p[i + h];
            p[i] = a * c[i] - b * s[i];
            p[i + h] = b * c[i] + a * s[i];
        }
    }
}

double reroute_fma_peak_loop(int isa, long iterations) {
#if defined(__x86_64__)
    if (isa == REROUTE_ISA_AVX512) return peak_avx512(iterations);
    if (isa == REROUTE_ISA_AVX2) return peak_avx2(iterations);
#endif
    (void)isa;
    return peak_portable(iterations);
}

void reroute_swiglu(int isa, float *g, const float *u, size_t n) {
#if defined(__x86_64__)
    if (isa == REROUTE_ISA_AVX512) { swiglu_avx512(g, u, n); return; }
    if (isa == REROUTE_ISA_AVX2) { swiglu_avx2(g, u, n); return; }
#endif
    (void)isa;
    swiglu_portable(g, u, n);
}

void reroute_softmax(int isa, float *x, size_t n) {
#if defined(__x86_64__)
    if (isa == REROUTE_ISA_AVX512) { softmax_avx512(x, n); return; }
    if (isa == REROUTE_ISA_AVX2) { softmax_avx2(x, n); return; }
#endif
    (void)isa;
    softmax_portable(x, n);
}

void reroute_rmsnorm(int isa, const float *x, const float *w, float *y, size_t n, float eps) {
#if defined(__x86_64__)
    if (isa == REROUTE_ISA_AVX512) { rmsnorm_avx512(x, w, y, n, eps); return; }
    if (isa == REROUTE_ISA_AVX2) { rmsnorm_avx2(x, w, y, n, eps); return; }
#endif
    (void)isa;
    rmsnorm_portable(x, w, y, n, eps);
}

void reroute_rope(int isa, float *x, int heads, int head_dim, const float *cos_table, const float *sin_table) {
#if defined(__x86_64__)
    if (isa == REROUTE_ISA_AVX512) { rope_avx512(x, heads, head_dim, cos_table, sin_table); return; }
    if (isa == REROUTE_ISA_AVX2) { rope_avx2(x, heads, head_dim, cos_table, sin_table); return; }
#endif
    (void)isa;
    rope_portable(x, heads, head_dim, cos_table, sin_table);
}
