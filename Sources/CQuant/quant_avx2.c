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

// One block of each format: unpack_FMT gives the weight block's 32 integers (signed, or
// unsigned for the formats with a minimum); pair_FMT adds d_w·d_y·Σ q_w·q_y to acc, and
// gathers in `mins` the per-block offset terms of the formats with a minimum. Every kernel
// below runs these same steps per output, so a row's result does not depend on the rows
// computed with it.
static inline __m256i unpack_q4_0(const uint8_t *w) { return _mm256_sub_epi8(nibbles(w + 2), _mm256_set1_epi8(8)); }
static inline __m256i unpack_q4_1(const uint8_t *w) { return nibbles(w + 4); }
static inline __m256i unpack_q5_0(const uint8_t *w) {
    // q − 16 = nibble − 16 where the fifth bit is clear, the nibble itself where it is set.
    __m256i high = _mm256_andnot_si256(bit_bytes(cq_load_u32(w + 2)), _mm256_set1_epi8((char)0xF0));
    return _mm256_or_si256(nibbles(w + 6), high);
}
static inline __m256i unpack_q5_1(const uint8_t *w) {
    return _mm256_or_si256(nibbles(w + 8), _mm256_and_si256(bit_bytes(cq_load_u32(w + 4)), _mm256_set1_epi8(0x10)));
}
static inline __m256i unpack_q8_0(const uint8_t *w) { return _mm256_loadu_si256((const __m256i *)(w + 2)); }

static inline __m256 scaled(__m256 acc, const uint8_t *w, const uint8_t *y, __m256i p) {
    return _mm256_fmadd_ps(_mm256_set1_ps(half(w) * half(y)), _mm256_cvtepi32_ps(p), acc);
}
static inline __m256 pair_signed(__m256 acc, float *mins, __m256i q, const uint8_t *w, const uint8_t *y) {
    (void)mins;
    return scaled(acc, w, y, dot_signed(q, _mm256_loadu_si256((const __m256i *)(y + 2))));
}
static inline __m256 pair_with_min(__m256 acc, float *mins, __m256i q, const uint8_t *w, const uint8_t *y) {
    *mins += half(w + 2) * cq_load_f32(y + 2);
    return scaled(acc, w, y, dot_unsigned(q, _mm256_loadu_si256((const __m256i *)(y + 6))));
}

// dot_FMT: one row. dot4_FMT: four weight rows (row_bytes apart) against one activation row.
// dot4x2_FMT: the same four against two activation rows (y_stride apart), each weight block
// unpacked once for both; out: [2][4].
#define BLOCK_DOTS(fmt, pair, wbytes, ybytes)                                                                 \
    static float dot_##fmt(int cols, const uint8_t *w, const uint8_t *y) {                                   \
        __m256 acc = _mm256_setzero_ps();                                                                     \
        float mins = 0;                                                                                       \
        for (int b = 0; b < cols / 32; b++, w += wbytes, y += ybytes) acc = pair(acc, &mins, unpack_##fmt(w), w, y); \
        return hsum(acc) + mins;                                                                              \
    }                                                                                                         \
    static void dot4_##fmt(int cols, const uint8_t *w, size_t rb, const uint8_t *y, float *out) {            \
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()}; \
        float mins[4] = {0, 0, 0, 0};                                                                         \
        for (int b = 0; b < cols / 32; b++, w += wbytes, y += ybytes)                                         \
            for (int r = 0; r < 4; r++) acc[r] = pair(acc[r], &mins[r], unpack_##fmt(w + r * rb), w + r * rb, y); \
        for (int r = 0; r < 4; r++) out[r] = hsum(acc[r]) + mins[r];                                          \
    }                                                                                                         \
    static void dot4x2_##fmt(int cols, const uint8_t *w, size_t rb, const uint8_t *y, size_t ys, float *out) { \
        __m256 a[8];                                                                                          \
        float mins[8] = {0};                                                                                  \
        for (int k = 0; k < 8; k++) a[k] = _mm256_setzero_ps();                                               \
        for (int b = 0; b < cols / 32; b++, w += wbytes, y += ybytes)                                         \
            for (int r = 0; r < 4; r++) {                                                                     \
                __m256i q = unpack_##fmt(w + r * rb);                                                         \
                a[r] = pair(a[r], &mins[r], q, w + r * rb, y);                                                \
                a[4 + r] = pair(a[4 + r], &mins[4 + r], q, w + r * rb, y + ys);                               \
            }                                                                                                 \
        for (int k = 0; k < 8; k++) out[k] = hsum(a[k]) + mins[k];                                            \
    }

BLOCK_DOTS(q4_0, pair_signed, 18, Q8_0_BYTES)
BLOCK_DOTS(q4_1, pair_with_min, 20, Q8_1_BYTES)
BLOCK_DOTS(q5_0, pair_signed, 22, Q8_0_BYTES)
BLOCK_DOTS(q5_1, pair_with_min, 24, Q8_1_BYTES)
BLOCK_DOTS(q8_0, pair_signed, 34, Q8_0_BYTES)

// The K-quants: each super-block's integer sums are the portable kernels' (exact), then the
// same f32 epilogue per super-block.
static inline int hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

// Σ over 8 sub-blocks of sc[s]·Σ q·y, for 32 unsigned q per sub-block given two at a time.
static inline __m256i scaled_pair(__m256i lo, __m256i hi, const int8_t *y, uint8_t sc_lo, uint8_t sc_hi) {
    __m256i p_lo = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)y));
    __m256i p_hi = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(y + 32)));
    return _mm256_add_epi32(_mm256_madd_epi16(p_lo, _mm256_set1_epi16(sc_lo)), _mm256_madd_epi16(p_hi, _mm256_set1_epi16(sc_hi)));
}

// The eight 6-bit scales of a Q4_K/Q5_K super-block into sc[8], and Σ min_s·(sums of the
// activations of sub-block s), exact. The 12 packed bytes as three words w0 w1 w2: scales 0–3 are
// w0's low six bits, mins 0–3 w1's; scales 4–7 are w2's low nibbles with w0's top two bits above
// them, mins 4–7 w2's high nibbles with w1's top two bits.
static inline int k4_scales_and_mins(const uint8_t *w, const uint8_t *y, uint8_t *sc) {
    uint32_t w0 = cq_load_u32(w + 4), w1 = cq_load_u32(w + 8), w2 = cq_load_u32(w + 12);
    uint32_t scales[2] = {w0 & 0x3f3f3f3f, (w2 & 0x0f0f0f0f) | (((w0 >> 6) & 0x03030303) << 4)};
    uint32_t mins[2] = {w1 & 0x3f3f3f3f, ((w2 >> 4) & 0x0f0f0f0f) | (((w1 >> 6) & 0x03030303) << 4)};
    memcpy(sc, scales, 8);
    // Each min twice, beside the two 16-element sums of its sub-block.
    __m128i m = _mm_shuffle_epi8(_mm_loadl_epi64((const __m128i *)mins),
                                 _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7));
    __m256i sums = _mm256_madd_epi16(_mm256_cvtepu8_epi16(m), _mm256_loadu_si256((const __m256i *)(y + 260)));
    return hsum_i32(sums);
}

// One super-block's contribution to a dot product (the same f32 epilogue as the portable kernels).
static inline float superblock_q4_k(const uint8_t *w, const uint8_t *y) {
    const __m256i low = _mm256_set1_epi8(0x0F);
    uint8_t sc[8];
    int mins = k4_scales_and_mins(w, y, sc);
    const int8_t *q8 = (const int8_t *)(y + 4);
    __m256i acc = _mm256_setzero_si256();
    for (int k = 0; k < 4; k++) {
        __m256i q = _mm256_loadu_si256((const __m256i *)(w + 16 + 32 * k));
        acc = _mm256_add_epi32(acc, scaled_pair(_mm256_and_si256(q, low), _mm256_and_si256(_mm256_srli_epi16(q, 4), low),
                                                q8 + 64 * k, sc[2 * k], sc[2 * k + 1]));
    }
    return cq_load_f32(y) * (half(w) * (float)hsum_i32(acc) - half(w + 2) * (float)mins);
}

static inline float superblock_q5_k(const uint8_t *w, const uint8_t *y) {
    const __m256i low = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    uint8_t sc[8];
    int mins = k4_scales_and_mins(w, y, sc);
    const int8_t *q8 = (const int8_t *)(y + 4);
    __m256i qh = _mm256_loadu_si256((const __m256i *)(w + 16));
    __m256i acc = _mm256_setzero_si256();
    for (int k = 0; k < 4; k++) {
        __m256i q = _mm256_loadu_si256((const __m256i *)(w + 48 + 32 * k));
        // Bit s of each qh byte is the fifth bit of sub-block s.
        __m256i h_lo = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * k), one), 4);
        __m256i h_hi = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * k + 1), one), 4);
        acc = _mm256_add_epi32(acc, scaled_pair(_mm256_or_si256(_mm256_and_si256(q, low), h_lo),
                                                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), low), h_hi),
                                                q8 + 64 * k, sc[2 * k], sc[2 * k + 1]));
    }
    return cq_load_f32(y) * (half(w) * (float)hsum_i32(acc) - half(w + 2) * (float)mins);
}

static inline float superblock_q6_k(const uint8_t *w, const uint8_t *y) {
    const __m256i low = _mm256_set1_epi8(0x0F), two = _mm256_set1_epi8(3), m32 = _mm256_set1_epi8(32);
    const int8_t *q8 = (const int8_t *)(y + 4);
    __m256i acc = _mm256_setzero_si256();
    for (int h = 0; h < 2; h++) {
        __m256i ql0 = _mm256_loadu_si256((const __m256i *)(w + 64 * h));
        __m256i ql1 = _mm256_loadu_si256((const __m256i *)(w + 64 * h + 32));
        __m256i qh = _mm256_loadu_si256((const __m256i *)(w + 128 + 32 * h));
        const int8_t *sc = (const int8_t *)(w + 192 + 8 * h);
        __m256i q[4] = {
            _mm256_or_si256(_mm256_and_si256(ql0, low), _mm256_slli_epi16(_mm256_and_si256(qh, two), 4)),
            _mm256_or_si256(_mm256_and_si256(ql1, low), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), two), 4)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low),
                            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), two), 4)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low),
                            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), two), 4)),
        };
        for (int k = 0; k < 4; k++) {
            __m256i y8 = _mm256_loadu_si256((const __m256i *)(q8 + 128 * h + 32 * k));
            // (q − 32)·y per pair of elements, in 16 lanes: elements 0–15 use scale 2k, 16–31 scale 2k+1.
            __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(q[k], y8), _mm256_maddubs_epi16(m32, y8));
            __m256i scales = _mm256_set_m128i(_mm_set1_epi16(sc[2 * k + 1]), _mm_set1_epi16(sc[2 * k]));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, scales));
        }
    }
    return cq_load_f32(y) * half(w + 208) * (float)hsum_i32(acc);
}

// One row, and four rows by two activation rows, as BLOCK_DOTS, over super-blocks of 256. No
// four-by-one kernel: in decode it took 1.9× the CPU time of four one-row calls (measured on a
// Qwen2.5-1.5B-shaped Q4_K_M); the four-by-two one saves about a tenth of a prefill's.
#define SUPERBLOCK_DOTS(fmt, wbytes)                                                                          \
    static float dot_##fmt(int cols, const uint8_t *w, const uint8_t *y) {                                   \
        float sum = 0;                                                                                        \
        for (int b = 0; b < cols / 256; b++, w += wbytes, y += Q8_K_BYTES) sum += superblock_##fmt(w, y);     \
        return sum;                                                                                           \
    }                                                                                                         \
    static void dot4x2_##fmt(int cols, const uint8_t *w, size_t rb, const uint8_t *y, size_t ys, float *out) { \
        float sum[8] = {0};                                                                                   \
        for (int b = 0; b < cols / 256; b++, w += wbytes, y += Q8_K_BYTES)                                    \
            for (int r = 0; r < 4; r++) {                                                                     \
                sum[r] += superblock_##fmt(w + r * rb, y);                                                    \
                sum[4 + r] += superblock_##fmt(w + r * rb, y + ys);                                           \
            }                                                                                                 \
        for (int k = 0; k < 8; k++) out[k] = sum[k];                                                          \
    }

SUPERBLOCK_DOTS(q4_k, 144)
SUPERBLOCK_DOTS(q5_k, 176)
SUPERBLOCK_DOTS(q6_k, 210)

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
    case CQ_Q4_K: return dot_q4_k;
    case CQ_Q5_K: return dot_q5_k;
    case CQ_Q6_K: return dot_q6_k;
    default: return 0;
    }
}

cq_dot4_fn cq_avx2_dot4(int type) {
    switch (type) {
    case CQ_Q4_0: return dot4_q4_0;
    case CQ_Q4_1: return dot4_q4_1;
    case CQ_Q5_0: return dot4_q5_0;
    case CQ_Q5_1: return dot4_q5_1;
    case CQ_Q8_0: return dot4_q8_0;
    default: return 0;
    }
}

cq_dot4x2_fn cq_avx2_dot4x2(int type) {
    switch (type) {
    case CQ_Q4_0: return dot4x2_q4_0;
    case CQ_Q4_1: return dot4x2_q4_1;
    case CQ_Q5_0: return dot4x2_q5_0;
    case CQ_Q5_1: return dot4x2_q5_1;
    case CQ_Q8_0: return dot4x2_q8_0;
    case CQ_Q4_K: return dot4x2_q4_k;
    case CQ_Q5_K: return dot4x2_q5_k;
    case CQ_Q6_K: return dot4x2_q6_k;
    default: return 0;
    }
}

#else

int cq_cpu_has_avx2(void) { return 0; }
cq_dot_fn cq_avx2_dot(int type) { (void)type; return 0; }
cq_dot4_fn cq_avx2_dot4(int type) { (void)type; return 0; }
cq_dot4x2_fn cq_avx2_dot4x2(int type) { (void)type; return 0; }

#endif
