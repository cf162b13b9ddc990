// Causal attention of one head on the packed product's micro-kernels (see the header).
#include "CRerouteKernels.h"

#if defined(__x86_64__)
#include "microkernels.h"

size_t reroute_attention_workspace_count(int n, int head_dim) {
    size_t keys = (size_t)(n + NR - 1) / NR * NR, dims = (size_t)(head_dim + NR - 1) / NR * NR;
    return keys * (size_t)head_dim + dims * (size_t)n + 12 * (size_t)head_dim + 2 * 12 * keys;
}

// Scores, then probabilities times values, one tile of query rows at a time; a tile only
// meets the keys its last row can see.
void reroute_causal_attention(int isa, int n, int head_dim, float scale, const float *q, int ldq, const float *k, int ldk,
                              const float *v, int ldv, float *out, int ldo, float *workspace) {
    if (n <= 0 || head_dim <= 0) return;
    const int wide = isa >= REROUTE_ISA_AVX512, mr = reroute_pack_tile_rows(isa), step = wide ? 2 : 1;
    const int dimPanels = (head_dim + NR - 1) / NR;
    const size_t keys = (size_t)(n + NR - 1) / NR * NR;
    float *kp = workspace;                              // keys as 16-key panels over the head's dims
    float *vp = kp + keys * (size_t)head_dim;           // values as 16-dim panels over the keys
    float *qp = vp + (size_t)dimPanels * NR * n;        // one tile of queries
    float *s = qp + 12 * (size_t)head_dim;              // the tile's scores, row stride `keys`
    float *pp = s + 12 * keys;                          // the tile's probabilities, packed
    pack_tiles(k, n, ldk, 0, head_dim, NR, kp, 0, (n + NR - 1) / NR);
    for (int p = 0; p < dimPanels; p++)
        for (int j = 0; j < n; j++) {
            float *dst = vp + ((size_t)p * n + j) * NR;
            for (int o = 0; o < NR; o++) dst[o] = p * NR + o < head_dim ? v[(size_t)j * ldv + p * NR + o] : 0;
        }
    for (int r0 = 0; r0 < n; r0 += mr) {
        const int rows = n - r0 < mr ? n - r0 : mr, visible = r0 + rows, keyPanels = (visible + NR - 1) / NR;
        pack_tiles(q + (size_t)r0 * ldq, rows, ldq, 0, head_dim, mr, qp, 0, 1);
        for (int p = 0; p < keyPanels; p += step) {
            const int cols = visible - p * NR;
            const float *wp = kp + (size_t)p * head_dim * NR;
            if (!wide)
                kernel_6x16(rows, cols < NR ? cols : NR, head_dim, qp, wp, s + p * NR, (int)keys, 0);
            else if (p + 1 < keyPanels)
                kernel_12x32(rows, cols < 2 * NR ? cols : 2 * NR, head_dim, qp, wp, wp + (size_t)head_dim * NR, s + p * NR, (int)keys, 0);
            else
                kernel_12x16(rows, cols < NR ? cols : NR, head_dim, qp, wp, s + p * NR, (int)keys, 0);
        }
        for (int i = 0; i < rows; i++) {
            float *row = s + (size_t)i * keys;
            const int seen = r0 + i + 1;
            for (int j = 0; j < seen; j++) row[j] *= scale;
            reroute_softmax(isa, row, (size_t)seen);
            for (int j = seen; j < visible; j++) row[j] = 0;
        }
        pack_tiles(s, rows, (int)keys, 0, visible, mr, pp, 0, 1);
        for (int p = 0; p < dimPanels; p += step) {
            const int cols = head_dim - p * NR;
            const float *wp = vp + (size_t)p * n * NR;
            float *c = out + (size_t)r0 * ldo + p * NR;
            if (!wide)
                kernel_6x16(rows, cols < NR ? cols : NR, visible, pp, wp, c, ldo, 0);
            else if (p + 1 < dimPanels)
                kernel_12x32(rows, cols < 2 * NR ? cols : 2 * NR, visible, pp, wp, wp + (size_t)n * NR, c, ldo, 0);
            else
                kernel_12x16(rows, cols < NR ? cols : NR, visible, pp, wp, c, ldo, 0);
        }
    }
}
#else
size_t reroute_attention_workspace_count(int n, int head_dim) { (void)n; (void)head_dim; return 0; }
void reroute_causal_attention(int isa, int n, int head_dim, float scale, const float *q, int ldq, const float *k, int ldk,
                              const float *v, int ldv, float *out, int ldo, float *workspace) {
    (void)isa; (void)n; (void)head_dim; (void)scale; (void)q; (void)ldq; (void)k; (void)ldk; (void)v; (void)ldv; (void)out; (void)ldo;
    (void)workspace;
}
#endif
