#ifndef REROUTE_KERNELS_H
#define REROUTE_KERNELS_H

#include <stddef.h>

/// A GEMM for few rows against pre-packed weights (SPEC.md §10.2).
///
/// OpenBLAS packs both operands on every call; with few rows (routed layers keep 40-130
/// tokens) repacking the weight matrix costs about as much as the multiply. Here the weights
/// are packed once, when the decoder is made, and the rows once per input, shared by every
/// product of that input (q, k and v; gate and up) and by the workers.
///
/// Layout of a packed W [N outputs, K inputs]: K is cut into blocks of
/// `REROUTE_PACK_KC` (the last may be shorter); within a block, outputs are cut into panels
/// of 16 (the last zero-padded), each stored k-major: element (o, k) of block b, panel p is
/// at `b·KC·P·16 + p·kc_b·16 + (k − b·KC)·16 + (o − 16p)` where P = ceil(N/16) and kc_b is
/// the block's length. Every output element is accumulated in the same order (k ascending,
/// one FMA per k, block partial sums added in block order) whatever the panel split, so
/// results do not depend on the thread count, nor on the path: the AVX2 kernel (6 rows × one
/// panel) and the AVX-512 kernel (12 rows × two panels) do the same operations per element.
/// The kernels need AVX2 and FMA: the product is called on the AVX2 path or wider only (see
/// the vector paths below).

/// Vector paths of the kernels, narrowest first. Each kernel below that takes an `isa` runs
/// the code of that path; a path may only be asked for on a CPU that has it
/// (`reroute_isa_widest`). Results are bitwise reproducible for a fixed path and thread
/// count; across paths they differ by rounding (vector sums, the vector expf).
#define REROUTE_ISA_PORTABLE 0
/// AVX2 and FMA (256-bit).
#define REROUTE_ISA_AVX2 1
/// AVX-512 F, BW and VL (512-bit), with the OS saving the ZMM state.
#define REROUTE_ISA_AVX512 2

/// The widest path this CPU and OS support (CPUID and XCR0, as `__builtin_cpu_supports` reads them).
int reroute_isa_widest(void);

/// A register-only loop of independent multiply-adds at the width of `isa` (AVX-512: 16 lanes,
/// AVX2: 8 lanes, one FMA each; portable: scalar multiply and add), `iterations` times over 12
/// accumulators, on the calling thread. Returns the floating-point operations done (2 per lane
/// per multiply-add); with the elapsed time this is the core's peak, the bound no kernel beats.
/// The vector paths' FMAs are inline assembly, so every counted operation is executed.
double reroute_fma_peak_loop(int isa, long iterations);

/// `g[i] = g[i] / (1 + exp(−g[i])) · u[i]` (SwiGLU after the gate and up products). AVX2 and
/// AVX-512 use glibc's vector expf (libmvec, 8 and 16 lanes); portable, `expf`.
void reroute_swiglu(int isa, float *g, const float *u, size_t n);

/// In-place softmax of `n` values: the maximum subtracted, `exp`, divided by the sum (vector
/// paths: libmvec expf and lane-wise partial sums, added in a fixed order).
void reroute_softmax(int isa, float *x, size_t n);

/// `y[i] = x[i] · inv · w[i]` with `inv = 1 / sqrt(Σ x² / n + eps)` (RMSNorm; `y` may be `x`).
/// Vector paths: lane-wise partial sums of squares, added in lane order, then the tail.
void reroute_rmsnorm(int isa, const float *x, const float *w, float *y, size_t n, float eps);

/// RoPE in place on `heads` consecutive vectors of `head_dim` (even) floats at one position:
/// for i < head_dim/2, (a, b) = (x[i], x[i + head_dim/2]) becomes (a·cos[i] − b·sin[i],
/// b·cos[i] + a·sin[i]) (rotate-half pairing, SPEC.md §2.4); tables of head_dim/2 entries.
void reroute_rope(int isa, float *x, int heads, int head_dim, const float *cos_table, const float *sin_table);

/// k block and row block, chosen by measurement (the product alone, one thread, Zen 4, medians
/// of 6 interleaved runs): 1024 × 180 gives 1.15–1.17× the throughput of 256 × 132 on both
/// kernels at 612 rows and 1.12–1.17× at 47–128 rows, as fewer k blocks mean fewer passes of
/// C through the cache; a row block of packed X (720 KiB) stays within a core's L2.
#define REROUTE_PACK_KC 1024
#define REROUTE_PACK_PANEL 16
/// Rows of X in one L2-resident row block of the product (a multiple of both tile heights).
#define REROUTE_PACK_MC 180

/// Floats of the packed form of an N×K matrix: ceil(N/16)·16·K.
size_t reroute_packed_count(int n_out, int k_in);

/// Packs row-major `w` [n_out, k_in] into `out` (reroute_packed_count floats).
void reroute_pack_weights(const float *w, int n_out, int k_in, float *out);

/// reroute_pack_weights for bfloat16 `w` (16-bit little-endian patterns, any alignment, as a
/// mapped checkpoint holds them), on path `isa` (AVX-512: full panels transposed in registers;
/// otherwise element by element): each element widened exactly, so `out` holds the same floats
/// as packing the widened f32 matrix on any path. Packing a tile of rows (w + 2·r0·k_in bytes,
/// n_out = the tile's rows) gives a packed matrix of its own.
void reroute_pack_weights_bf16(int isa, const void *w, int n_out, int k_in, float *out);

/// Rows per tile of X on path `isa`: 12 on AVX-512, 6 on AVX2 (the kernels' heights).
int reroute_pack_tile_rows(int isa);

/// Floats of X [rows, K] packed for any path: ceil(rows/12)·12·K.
size_t reroute_packed_rows_count(int rows, int k_in);

/// Packs the rows of X [rows, k_in] (row-major, row stride `ld`) for path `isa`, once for every
/// product of these rows. Layout, with mr = reroute_pack_tile_rows(isa) and R = rows rounded
/// up to a multiple of mr: k block b (from k0 = b·KC, length kc_b) at k0·R; within it, tile t
/// (rows t·mr ..< t·mr + mr) at t·mr·kc_b, element (t·mr + r, k0 + k) at k·mr + r; rows past
/// `rows` are zeros. Only tiles t0 ..< t1 are written, so workers can split the packing.
void reroute_pack_rows(int isa, int rows, int k_in, const float *x, int ld, float *out, int t0, int t1);

/// C[:, 16·p0 ..< min(N, 16·p1)] = X · Wᵀ for panels p0 ..< p1, with X [rows, K] packed by
/// reroute_pack_rows for the same `isa` (every tile) and C [rows, ≥ N] row-major with row
/// stride `ldc` ≥ N, on path `isa` (AVX2 or AVX-512; the CPU must have it). Concurrent calls on
/// disjoint panel ranges share the packed X and weights. A tile of W's rows packed on its own
/// and written at C's column offset (`c + r0`, `ldc` the whole width) gives the same bits as
/// the whole packed matrix: each element's operations depend on neither.
void reroute_packed_gemm(int isa, int rows, int n_out, int k_in, const float *xpacked, const float *packed, float *c, int ldc,
                         int p0, int p1);

/// y[16·p0 ..< min(N, 16·p1)] = W · x for one vector x [K] (a decode step's projection), over
/// the same packed weights, on path `isa` (AVX2 or AVX-512; the CPU must have it). Each element
/// is computed by the same operations as reroute_packed_gemm's for a row equal to x (one FMA
/// per k, ascending, from zero within each k block; the block's sum added to the running sum
/// after the first), so it equals that product's row bit for bit on either path, and does not
/// depend on the panel split. Reads each weight once, four panels at a time.
void reroute_packed_gemv(int isa, int n_out, int k_in, const float *x, const float *packed, float *y, int p0, int p1);

/// Causal attention of one query head over its key/value head, on path `isa` (AVX2 or
/// AVX-512; the CPU must have it): for every query i < n,
/// `out_i = Σ_{j ≤ i} softmax_j(scale · q_i · k_j) · v_j`, with q_i at `q + i·ldq`, k_j at
/// `k + j·ldk`, v_j at `v + j·ldv` and out_i at `out + i·ldo` (head_dim floats each).
/// Keys and values are packed once per call, queries in tiles of reroute_pack_tile_rows rows;
/// each score is one product kernel's dot (one FMA per dim, in order) times `scale`, then
/// reroute_softmax over j ≤ i; each output element one FMA per key, keys ascending (the
/// tile's keys past i carry probability 0). So the result does not depend on the caller's
/// thread split, and the AVX2 and AVX-512 paths differ only through the softmax.
/// `workspace` holds reroute_attention_workspace_count(n, head_dim) floats, one per concurrent caller.
void reroute_causal_attention(int isa, int n, int head_dim, float scale, const float *q, int ldq, const float *k, int ldk,
                              const float *v, int ldv, float *out, int ldo, float *workspace);

/// Floats of one caller's workspace for reroute_causal_attention:
/// 16⌈n/16⌉·head_dim + 16⌈head_dim/16⌉·n + 12·head_dim + 24·16⌈n/16⌉.
size_t reroute_attention_workspace_count(int n, int head_dim);

#endif
