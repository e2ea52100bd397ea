// Attention row by row: the same loops for one decoded row and for a prefilled batch.
#include "cquant.h"
#include "internal.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const float *q;
    const void *keys, *values;      // f32 or f16
    size_t q_stride, kv_stride, out_stride;
    int rows, kv_heads, group, head_dim;
    const int *seen_from, *seen, *extra_from, *extra_to;
    float scale;
    float *out;
    int most_keys;
    atomic_int next;
} attention_work;

// Eight partial sums in a fixed order, the same for every row.
static inline float dot_portable(const float *a, const float *b, int n) {
    float s[8] = {0};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) s[k] += a[j + k] * b[j + k];
    float total = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; j < n; j++) total += a[j] * b[j];
    return total;
}

static inline void axpy_portable(float *y, float a, const float *x, int n) {
    for (int j = 0; j < n; j++) y[j] += a * x[j];
}

static inline float dot_half_portable(const float *a, const uint16_t *b, int n) {
    float s[8] = {0};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) s[k] += a[j + k] * cq_half_to_float(b[j + k]);
    float total = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; j < n; j++) total += a[j] * cq_half_to_float(b[j]);
    return total;
}

static inline void axpy_half_portable(float *y, float a, const uint16_t *x, int n) {
    for (int j = 0; j < n; j++) y[j] += a * cq_half_to_float(x[j]);
}

static inline float round_half_portable(float x) { return cq_half_to_float(cq_float_to_half(x)); }

#define KERNELS portable
#include "attention_worker.h"
#undef KERNELS

#if defined(__x86_64__)
#include <immintrin.h>
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)

static inline float hsum8(__m256 acc) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float dot_avx2(const float *a, const float *b, int n) {
    __m256 acc = _mm256_setzero_ps();
    int j = 0;
    for (; j + 8 <= n; j += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), acc);
    float total = hsum8(acc);
    for (; j < n; j++) total += a[j] * b[j];
    return total;
}

static inline void axpy_avx2(float *y, float a, const float *x, int n) {
    __m256 va = _mm256_set1_ps(a);
    int j = 0;
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(y + j, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + j), _mm256_loadu_ps(y + j)));
    for (; j < n; j++) y[j] += a * x[j];
}

static inline __m256 load_half8(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

static inline float dot_half_avx2(const float *a, const uint16_t *b, int n) {
    __m256 acc = _mm256_setzero_ps();
    int j = 0;
    for (; j + 8 <= n; j += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), load_half8(b + j), acc);
    float total = hsum8(acc);
    for (; j < n; j++) total += a[j] * _cvtsh_ss(b[j]);
    return total;
}

static inline void axpy_half_avx2(float *y, float a, const uint16_t *x, int n) {
    __m256 va = _mm256_set1_ps(a);
    int j = 0;
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(y + j, _mm256_fmadd_ps(va, load_half8(x + j), _mm256_loadu_ps(y + j)));
    for (; j < n; j++) y[j] += a * _cvtsh_ss(x[j]);
}

static inline float round_half_avx2(float x) { return _cvtsh_ss(_cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT)); }

static void store_half_avx2(const float *x, uint16_t *h, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm_storeu_si128((__m128i *)(h + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) h[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
}

#define KERNELS avx2
#include "attention_worker.h"
#undef KERNELS

#pragma clang attribute pop
#endif

void cq_store_half(const float *x, void *out, size_t n) {
    uint16_t *h = out;
#if defined(__x86_64__)
    if (cq_fast_kernels()) { store_half_avx2(x, h, n); return; }
#endif
    for (size_t i = 0; i < n; i++) h[i] = cq_float_to_half(x[i]);
}

void cq_attention(cq_pool *pool, const float *q, size_t q_stride, int rows, int heads, int kv_heads, int head_dim,
                  const void *keys, const void *values, int kv_half, size_t kv_stride, const int *seen_from, const int *seen, const int *extra_from,
                  const int *extra_to, float scale, float *out, size_t out_stride) {
    attention_work w = {
        .q = q, .keys = keys, .values = values, .q_stride = q_stride, .kv_stride = kv_stride, .out_stride = out_stride,
        .rows = rows, .kv_heads = kv_heads, .group = heads / kv_heads, .head_dim = head_dim,
        .seen_from = seen_from, .seen = seen, .extra_from = extra_from, .extra_to = extra_to, .scale = scale, .out = out,
    };
    int most = 0;
    for (int i = 0; i < rows; i++) {
        int n = seen[i] - (seen_from ? seen_from[i] : 0) + (extra_from && extra_to[i] > extra_from[i] ? extra_to[i] - extra_from[i] : 0);
        if (n > most) most = n;
    }
    w.most_keys = most > 0 ? most : 1;
    atomic_init(&w.next, 0);
    void (*worker)(void *, int, int) = kv_half ? attention_half_portable : attention_f32_portable;
#if defined(__x86_64__)
    if (cq_fast_kernels()) worker = kv_half ? attention_half_avx2 : attention_f32_avx2;
#endif
    if (pool) cq_pool_run(pool, worker, &w);
    else worker(&w, 0, 1);
}
