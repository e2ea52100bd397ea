// AVX2/FMA/F16C dot products of the 32-element formats with Q8_0/Q8_1 activations. Each
// block's integer sum is exact (the portable kernels' sum); only the f32 accumulation order differs.
#include "cquant.h"
#include "internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

int cq_cpu_has_avx2(void) {
    static int known = -1;
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    }
    return known;
}

#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)

static inline float half(const uint8_t *p) { return _cvtsh_ss(cq_load_u16(p)); }

// 16 bytes of nibbles → 32 bytes: the low nibbles (elements 0–15), then the high ones (16–31).
static inline __m256i nibbles(const uint8_t *qs) {
    __m128i t = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), _mm256_set1_epi8(0x0F));
}

// Byte j is 0xFF where bit j of `bits` is set, else 0.
static inline __m256i bit_bytes(uint32_t bits) {
    const __m256i pick = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                          2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i mask = _mm256_set1_epi64x(0x8040201008040201LL);
    __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), pick);
    return _mm256_cmpeq_epi8(_mm256_and_si256(spread, mask), mask);
}

// Σ u·s over 32 unsigned (≤ 31) by 32 signed bytes, as 8 i32 lanes.
static inline __m256i dot_unsigned(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

// Σ a·b over 32 signed by 32 signed bytes (a ≥ −127 or its magnitude fits).
static inline __m256i dot_signed(__m256i a, __m256i b) {
    return dot_unsigned(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
}

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static float dot_q4_0(int cols, const uint8_t *w, const uint8_t *y) {
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < cols / 32; b++, w += 18, y += Q8_0_BYTES) {
        __m256i q = _mm256_sub_epi8(nibbles(w + 2), _mm256_set1_epi8(8));
        __m256i p = dot_signed(q, _mm256_loadu_si256((const __m256i *)(y + 2)));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(half(w) * half(y)), _mm256_cvtepi32_ps(p), acc);
    }
    return hsum(acc);
}

static float dot_q4_1(int cols, const uint8_t *w, const uint8_t *y) {
    __m256 acc = _mm256_setzero_ps();
    float mins = 0;
    for (int b = 0; b < cols / 32; b++, w += 20, y += Q8_1_BYTES) {
        __m256i p = dot_unsigned(nibbles(w + 4), _mm256_loadu_si256((const __m256i *)(y + 6)));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(half(w) * half(y)), _mm256_cvtepi32_ps(p), acc);
        mins += half(w + 2) * cq_load_f32(y + 2);
    }
    return hsum(acc) + mins;
}

static float dot_q5_0(int cols, const uint8_t *w, const uint8_t *y) {
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < cols / 32; b++, w += 22, y += Q8_0_BYTES) {
        // q − 16 = nibble − 16 where the fifth bit is clear, the nibble itself where it is set.
        __m256i high = _mm256_andnot_si256(bit_bytes(cq_load_u32(w + 2)), _mm256_set1_epi8((char)0xF0));
        __m256i q = _mm256_or_si256(nibbles(w + 6), high);
        __m256i p = dot_signed(q, _mm256_loadu_si256((const __m256i *)(y + 2)));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(half(w) * half(y)), _mm256_cvtepi32_ps(p), acc);
    }
    return hsum(acc);
}

static float dot_q5_1(int cols, const uint8_t *w, const uint8_t *y) {
    __m256 acc = _mm256_setzero_ps();
    float mins = 0;
    for (int b = 0; b < cols / 32; b++, w += 24, y += Q8_1_BYTES) {
        __m256i high = _mm256_and_si256(bit_bytes(cq_load_u32(w + 4)), _mm256_set1_epi8(0x10));
        __m256i q = _mm256_or_si256(nibbles(w + 8), high);
        __m256i p = dot_unsigned(q, _mm256_loadu_si256((const __m256i *)(y + 6)));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(half(w) * half(y)), _mm256_cvtepi32_ps(p), acc);
        mins += half(w + 2) * cq_load_f32(y + 2);
    }
    return hsum(acc) + mins;
}

static float dot_q8_0(int cols, const uint8_t *w, const uint8_t *y) {
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < cols / 32; b++, w += 34, y += Q8_0_BYTES) {
        __m256i p = dot_signed(_mm256_loadu_si256((const __m256i *)(w + 2)), _mm256_loadu_si256((const __m256i *)(y + 2)));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(half(w) * half(y)), _mm256_cvtepi32_ps(p), acc);
    }
    return hsum(acc);
}

static float dot_f32(int cols, const uint8_t *w, const uint8_t *y) {
    const float *a = (const float *)w, *x = (const float *)y;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int j = 0;
    for (; j + 16 <= cols; j += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(x + j), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j + 8), _mm256_loadu_ps(x + j + 8), acc1);
    }
    float s = hsum(_mm256_add_ps(acc0, acc1));
    for (; j < cols; j++) s += a[j] * x[j];
    return s;
}

static float dot_f16(int cols, const uint8_t *w, const uint8_t *y) {
    const float *x = (const float *)y;
    __m256 acc = _mm256_setzero_ps();
    int j = 0;
    for (; j + 8 <= cols; j += 8) {
        __m256 a = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 2 * j)));
        acc = _mm256_fmadd_ps(a, _mm256_loadu_ps(x + j), acc);
    }
    float s = hsum(acc);
    for (; j < cols; j++) s += half(w + 2 * j) * x[j];
    return s;
}

#pragma clang attribute pop

cq_dot_fn cq_avx2_dot(int type) {
    switch (type) {
    case CQ_F32: return dot_f32;
    case CQ_F16: return dot_f16;
    case CQ_Q4_0: return dot_q4_0;
    case CQ_Q4_1: return dot_q4_1;
    case CQ_Q5_0: return dot_q5_0;
    case CQ_Q5_1: return dot_q5_1;
    case CQ_Q8_0: return dot_q8_0;
    default: return 0;  // the K-quants run the portable kernels for now
    }
}

#else

int cq_cpu_has_avx2(void) { return 0; }
cq_dot_fn cq_avx2_dot(int type) { (void)type; return 0; }

#endif
