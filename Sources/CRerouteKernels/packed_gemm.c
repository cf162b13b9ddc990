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

void reroute_packed_gemm(int isa, int rows, int n_out, int k_in, const float *xpacked, const float *packed, float *c, int p0,
                         int p1) {
    int panels = (n_out + NR - 1) / NR;
    if (p1 > panels) p1 = panels;
    if (k_in == 0) {  // an empty sum: zeros, as sgemm with beta 0 writes
        for (int i = 0; i < rows; i++)
            for (int o = p0 * NR; o < p1 * NR && o < n_out; o++) c[(size_t)i * n_out + o] = 0;
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
                float *cp = c + (size_t)m0 * n_out + p * NR;
                for (int i = 0; i < mn; i += mr) {
                    int tile = mn - i < mr ? mn - i : mr;
                    const float *xp = xblock + (size_t)(m0 + i) * kc;
                    float *ct = cp + (size_t)i * n_out;
                    if (!wide)
                        kernel_6x16(tile, cols < NR ? cols : NR, kc, xp, wp, ct, n_out, k0 > 0);
                    else if (p + 1 < p1)
                        kernel_12x32(tile, cols < 2 * NR ? cols : 2 * NR, kc, xp, wp, wp + (size_t)kc * NR, ct, n_out, k0 > 0);
                    else
                        kernel_12x16(tile, cols < NR ? cols : NR, kc, xp, wp, ct, n_out, k0 > 0);
                }
            }
        }
    }
}
#else
int reroute_pack_tile_rows(int isa) { (void)isa; return 12; }
size_t reroute_packed_count(int n_out, int k_in) { (void)n_out; (void)k_in; return 0; }
size_t reroute_packed_rows_count(int rows, int k_in) { (void)rows; (void)k_in; return 0; }
void reroute_pack_weights(const float *w, int n_out, int k_in, float *out) { (void)w; (void)n_out; (void)k_in; (void)out; }
void reroute_pack_rows(int isa, int rows, int k_in, const float *x, int ld, float *out, int t0, int t1) {
    (void)isa; (void)rows; (void)k_in; (void)x; (void)ld; (void)out; (void)t0; (void)t1;
}
void reroute_packed_gemm(int isa, int rows, int n_out, int k_in, const float *xpacked, const float *packed, float *c, int p0,
                         int p1) {
    (void)isa; (void)rows; (void)n_out; (void)k_in; (void)xpacked; (void)packed; (void)c; (void)p0; (void)p1;
}
#endif
