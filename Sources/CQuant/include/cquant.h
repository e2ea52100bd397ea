// Dot products of GGUF-format weight rows with quantised activations, the activation
// quantisers, dequantisers, and the engine's worker pool.
//
// Activations are quantised as ggml's CPU path does, so results agree with llama.cpp on the
// same file: Q8_0 blocks for Q4_0, Q5_0 and Q8_0 weights; Q8_1 (with the block's sum) for
// Q4_1 and Q5_1; Q8_K super-blocks for Q4_K, Q5_K and Q6_K; f32 for F32, F16 and BF16.
// Every fast path (AVX2/FMA/F16C, chosen at run time) has a portable twin it must match.
#ifndef CQUANT_H
#define CQUANT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// GGML type ids as GGUF stores them.
enum {
    CQ_F32 = 0, CQ_F16 = 1, CQ_Q4_0 = 2, CQ_Q4_1 = 3, CQ_Q5_0 = 6, CQ_Q5_1 = 7, CQ_Q8_0 = 8,
    CQ_Q4_K = 12, CQ_Q5_K = 13, CQ_Q6_K = 14, CQ_BF16 = 30,
};

/// Non-zero when the dot products of `type` are implemented.
int cq_supported(int type);
/// Elements per block of `type` (a row's length must be a multiple).
int cq_block_elements(int type);
/// Which activation format the dot products of `type` read (types with the same one share it).
int cq_activation_format(int type);
/// Bytes of one row of `cols` activations quantised for weights of `type`.
size_t cq_activation_bytes(int type, int cols);
/// Quantises `cols` activations for weights of `type` into `out` (cq_activation_bytes).
void cq_quantize_activation(int type, const float *x, int cols, void *out);
/// One weight row (`cols` elements of `type`) times activations quantised for it.
float cq_vec_dot(int type, int cols, const void *w, const void *xq);
/// Dequantises `count` elements (whole blocks) of `type`.
void cq_dequantize(int type, const void *src, float *dst, size_t count);

/// Dequantises `rows` rows of `cols` elements (`row_bytes` apart) into dst[rows][cols], the rows
/// shared out over the pool's workers (declared below).
struct cq_pool;
void cq_dequantize_rows(struct cq_pool *pool, int type, const void *src, size_t row_bytes, int rows, int cols, float *dst);

/// "avx2" or "portable": the kernels this process runs.
const char *cq_kernel_path(void);
/// Forces the portable kernels (1) or the fastest the CPU has (0); for tests and benchmarks.
void cq_force_portable(int on);

/// Worker threads that stay alive between calls (no per-token thread creation). A run calls
/// `fn(ctx, worker, workers)` on the caller (worker 0) and on every worker that wakes while the
/// run is open, and returns when the caller's call has and no worker is still inside. `fn`
/// must share its work out through atomic counters, so that whoever runs does all of it: a
/// worker may join late, not at all, or twice. Idle workers spin briefly, then sleep.
typedef struct cq_pool cq_pool;
cq_pool *cq_pool_create(int threads);
void cq_pool_destroy(cq_pool *pool);
int cq_pool_threads(const cq_pool *pool);
void cq_pool_run(cq_pool *pool, void (*fn)(void *ctx, int worker, int workers), void *ctx);

/// One weight matrix of a product: out[i·ldo + r] (+)= row r of `weights` · activation row i.
typedef struct {
    int type;
    int rows;
    const void *weights;
    size_t row_bytes;
    float *out;
    size_t ldo;
    int accumulate;
} cq_matmul_job;

/// Bytes of scratch `cq_matmul` needs for `rows` activation rows of `cols` (every format).
size_t cq_matmul_scratch_bytes(int cols, int rows);
/// Every job against the same activations x [rows, cols] (row stride ldx): each row is
/// quantised once per activation format the jobs need, and the weight rows are shared out
/// over the pool's workers in chunks. Decode (one row) and prefill (many) run the same dot
/// product per output, so their results are identical. `exact`: f32 arithmetic instead (each
/// weight row dequantised once, times the f32 activations): what an f32 engine computes.
void cq_matmul(cq_pool *pool, const float *x, int rows, size_t ldx, int cols, const cq_matmul_job *jobs, int njobs, int exact,
               void *scratch);

/// Attention for `rows` query rows, each head over the keys row i may see: positions
/// [seen_from[i], seen[i]) (seen_from NULL: from 0; later starts are a sliding window) and then
/// [extra_from[i], extra_to[i]) (a branch's own rows after a shared prefix; empty otherwise),
/// in that order. q: [rows, q_stride] f32 with head h at h·head_dim;
/// keys and values: [positions, kv_stride] elements, f32, or f16 when `kv_half` (then the
/// queries and attention weights are rounded to f16 as llama.cpp's CPU path does), kv head g
/// at g·head_dim; out: [rows, out_stride] f32. Every row is computed alone in the same order of
/// summation, so a row's result does not depend on the rows evaluated with it (decode, prefill
/// and branches agree).
void cq_attention(cq_pool *pool, const float *q, size_t q_stride, int rows, int heads, int kv_heads, int head_dim,
                  const void *keys, const void *values, int kv_half, size_t kv_stride, const int *seen_from, const int *seen, const int *extra_from,
                  const int *extra_to, float scale, float *out, size_t out_stride);

/// `n` floats rounded to f16 (to nearest even), as an f16 KV cache stores them.
void cq_store_half(const float *x, void *out, size_t n);

#ifdef __cplusplus
}
#endif

#endif
