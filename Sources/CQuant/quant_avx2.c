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

// The K-quants: integer sums per super-block, kept as eight i32 lanes, then scaled into eight f32
// lanes (d_w·d_y per super-block) that are summed across only at the end of the row, as
// llama.cpp's AVX2 kernels do. The offset terms (Q4_K/Q5_K's minimums, Q6_K's −32) come from the
// activations' sums of 16 (Q8_K's bsums), not from a second pass over the elements. A super-block
// is unpacked once for every activation row it meets; each output runs the same steps whichever
// kernel computes it.
static inline __m256i scaled_pair(__m256i lo, __m256i hi, const int8_t *y, __m256i sc_lo, __m256i sc_hi) {
    __m256i p_lo = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)y));
    __m256i p_hi = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(y + 32)));
    return _mm256_add_epi32(_mm256_madd_epi16(p_lo, sc_lo), _mm256_madd_epi16(p_hi, sc_hi));
}

// A Q4_K/Q5_K super-block's header: d, dmin, the eight 6-bit scales, and the eight mins as 16
// i16 lanes (each twice, beside the two sums of 16 of its sub-block). The 12 packed bytes as
// three words w0 w1 w2: scales 0–3 are w0's low six bits, mins 0–3 w1's; scales 4–7 are w2's low
// nibbles with w0's top two bits above them, mins 4–7 w2's high nibbles with w1's top two bits.
typedef struct {
    float d, dmin;
    uint8_t sc[8], mn[8];
    __m256i mins;
} k4_header;

static inline k4_header k4_header_of(const uint8_t *w) {
    uint32_t w0 = cq_load_u32(w + 4), w1 = cq_load_u32(w + 8), w2 = cq_load_u32(w + 12);
    uint32_t scales[2] = {w0 & 0x3f3f3f3f, (w2 & 0x0f0f0f0f) | (((w0 >> 6) & 0x03030303) << 4)};
    uint32_t mins[2] = {w1 & 0x3f3f3f3f, ((w2 >> 4) & 0x0f0f0f0f) | (((w1 >> 6) & 0x03030303) << 4)};
    k4_header h = {.d = half(w), .dmin = half(w + 2)};
    memcpy(h.sc, scales, 8);
    memcpy(h.mn, mins, 8);
    __m128i m = _mm_shuffle_epi8(_mm_loadl_epi64((const __m128i *)mins),
                                 _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7));
    h.mins = _mm256_cvtepu8_epi16(m);
    return h;
}

static inline __m256i activation_sums(const uint8_t *y) { return _mm256_loadu_si256((const __m256i *)(y + 260)); }

// acc += d_y·(d·dots − dmin·Σ min·bsum), lane by lane.
static inline __m256 k4_epilogue(__m256 acc, const k4_header *h, const uint8_t *y, __m256i dots) {
    float dy = cq_load_f32(y);
    __m256i mins = _mm256_madd_epi16(h->mins, activation_sums(y));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h->d * dy), _mm256_cvtepi32_ps(dots), acc);
    return _mm256_fnmadd_ps(_mm256_set1_ps(h->dmin * dy), _mm256_cvtepi32_ps(mins), acc);
}

// Q5_K sub-blocks 2k and 2k+1 (32 bytes q of nibbles): the nibbles with their fifth bits, bit s of
// each qh byte being sub-block s's.
static inline void q5_k_unpack(__m256i q, __m256i qh, int k, __m256i *lo, __m256i *hi) {
    const __m256i low = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    __m256i h_lo = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * k), one), 4);
    __m256i h_hi = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * k + 1), one), 4);
    *lo = _mm256_or_si256(_mm256_and_si256(q, low), h_lo);
    *hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), low), h_hi);
}

// Half h (128 elements) of a Q6_K super-block as four vectors of 32 values in 0…63.
static inline void q6_k_unpack(const uint8_t *w, int h, __m256i q[4]) {
    const __m256i low = _mm256_set1_epi8(0x0F), two = _mm256_set1_epi8(3);
    __m256i ql0 = _mm256_loadu_si256((const __m256i *)(w + 64 * h));
    __m256i ql1 = _mm256_loadu_si256((const __m256i *)(w + 64 * h + 32));
    __m256i qh = _mm256_loadu_si256((const __m256i *)(w + 128 + 32 * h));
    q[0] = _mm256_or_si256(_mm256_and_si256(ql0, low), _mm256_slli_epi16(_mm256_and_si256(qh, two), 4));
    q[1] = _mm256_or_si256(_mm256_and_si256(ql1, low), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), two), 4));
    q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), two), 4));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), two), 4));
}

// One super-block of weights against n activation rows (ys apart): acc[i·stride] += its share.
static inline __attribute__((always_inline)) void superblock_q4_k(const uint8_t *w, const uint8_t *y, size_t ys, int n,
                                                                  __m256 *acc, int stride) {
    const __m256i low = _mm256_set1_epi8(0x0F);
    k4_header h = k4_header_of(w);
    __m256i dots[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    for (int k = 0; k < 4; k++) {
        __m256i q = _mm256_loadu_si256((const __m256i *)(w + 16 + 32 * k));
        __m256i lo = _mm256_and_si256(q, low), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low);
        __m256i s_lo = _mm256_set1_epi16(h.sc[2 * k]), s_hi = _mm256_set1_epi16(h.sc[2 * k + 1]);
        for (int i = 0; i < n; i++)
            dots[i] = _mm256_add_epi32(dots[i], scaled_pair(lo, hi, (const int8_t *)(y + i * ys + 4) + 64 * k, s_lo, s_hi));
    }
    for (int i = 0; i < n; i++) acc[i * stride] = k4_epilogue(acc[i * stride], &h, y + i * ys, dots[i]);
}

static inline __attribute__((always_inline)) void superblock_q5_k(const uint8_t *w, const uint8_t *y, size_t ys, int n,
                                                                  __m256 *acc, int stride) {
    k4_header h = k4_header_of(w);
    __m256i qh = _mm256_loadu_si256((const __m256i *)(w + 16));
    __m256i dots[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    for (int k = 0; k < 4; k++) {
        __m256i q = _mm256_loadu_si256((const __m256i *)(w + 48 + 32 * k));
        __m256i lo, hi;
        q5_k_unpack(q, qh, k, &lo, &hi);
        __m256i s_lo = _mm256_set1_epi16(h.sc[2 * k]), s_hi = _mm256_set1_epi16(h.sc[2 * k + 1]);
        for (int i = 0; i < n; i++)
            dots[i] = _mm256_add_epi32(dots[i], scaled_pair(lo, hi, (const int8_t *)(y + i * ys + 4) + 64 * k, s_lo, s_hi));
    }
    for (int i = 0; i < n; i++) acc[i * stride] = k4_epilogue(acc[i * stride], &h, y + i * ys, dots[i]);
}

// Q6_K: q in 0…63 against y, scale per 16 elements; the −32 offset is 32·Σ scale·bsum.
static inline __attribute__((always_inline)) void superblock_q6_k(const uint8_t *w, const uint8_t *y, size_t ys, int n,
                                                                  __m256 *acc, int stride) {
    const int8_t *sc = (const int8_t *)(w + 192);
    __m256i dots[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    for (int h = 0; h < 2; h++) {
        __m256i q[4];
        q6_k_unpack(w, h, q);
        for (int k = 0; k < 4; k++) {
            // Elements 0–15 of the 32 use scale 2k of this half, 16–31 scale 2k+1 (one per 16 lanes).
            __m256i scales = _mm256_set_m128i(_mm_set1_epi16(sc[8 * h + 2 * k + 1]), _mm_set1_epi16(sc[8 * h + 2 * k]));
            for (int i = 0; i < n; i++) {
                __m256i y8 = _mm256_loadu_si256((const __m256i *)(y + i * ys + 4 + 128 * h + 32 * k));
                dots[i] = _mm256_add_epi32(dots[i], _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], y8), scales));
            }
        }
    }
    __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc));
    float d = half(w + 208);
    for (int i = 0; i < n; i++) {
        const uint8_t *yi = y + i * ys;
        __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(sc16, activation_sums(yi)), 5);
        acc[i * stride] = _mm256_fmadd_ps(_mm256_set1_ps(d * cq_load_f32(yi)), _mm256_cvtepi32_ps(_mm256_sub_epi32(dots[i], offset)),
                                          acc[i * stride]);
    }
}

// One row, and four rows by two activation rows (out: [2][4]), over super-blocks of 256. No
// four-by-one kernel: built from these steps it halved a 1.5B Q4_K_M's decode (alternating runs,
// 2026-12-07; 1.9× the CPU time with the earlier steps too).
#define SUPERBLOCK_DOTS(fmt, wbytes)                                                                          \
    static float dot_##fmt(int cols, const uint8_t *w, const uint8_t *y) {                                   \
        __m256 acc = _mm256_setzero_ps();                                                                     \
        for (int b = 0; b < cols / 256; b++, w += wbytes, y += Q8_K_BYTES) superblock_##fmt(w, y, 0, 1, &acc, 1); \
        return hsum(acc);                                                                                     \
    }                                                                                                         \
    static void dot4x2_##fmt(int cols, const uint8_t *w, size_t rb, const uint8_t *y, size_t ys, float *out) { \
        __m256 acc[8];                                                                                        \
        for (int k = 0; k < 8; k++) acc[k] = _mm256_setzero_ps();                                             \
        for (int b = 0; b < cols / 256; b++, w += wbytes, y += Q8_K_BYTES)                                    \
            for (int r = 0; r < 4; r++) superblock_##fmt(w + r * rb, y, ys, 2, acc + r, 4);                   \
        for (int k = 0; k < 8; k++) out[k] = hsum(acc[k]);                                                    \
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

// dot_f32 of one weight row with four activation rows at once (the weight loaded once); each
// output's operations are dot_f32's, in its order.
static void dot_f32_rows4(int cols, const uint8_t *w, const uint8_t *y, size_t ys, float *out) {
    const float *a = (const float *)w;
    const float *x[4] = {(const float *)y, (const float *)(y + ys), (const float *)(y + 2 * ys), (const float *)(y + 3 * ys)};
    __m256 lo[4], hi[4];
    for (int i = 0; i < 4; i++) lo[i] = hi[i] = _mm256_setzero_ps();
    int j = 0;
    for (; j + 16 <= cols; j += 16) {
        __m256 a0 = _mm256_loadu_ps(a + j), a1 = _mm256_loadu_ps(a + j + 8);
        for (int i = 0; i < 4; i++) {
            lo[i] = _mm256_fmadd_ps(a0, _mm256_loadu_ps(x[i] + j), lo[i]);
            hi[i] = _mm256_fmadd_ps(a1, _mm256_loadu_ps(x[i] + j + 8), hi[i]);
        }
    }
    for (int i = 0; i < 4; i++) {
        float s = hsum(_mm256_add_ps(lo[i], hi[i]));
        for (int k = j; k < cols; k++) s += a[k] * x[i][k];
        out[i] = s;
    }
}

static void dot_f32_tile3x2(int cols, const uint8_t *w, size_t ws, const uint8_t *y, size_t ys, float *out) {
    const float *a[3] = {(const float *)w, (const float *)(w + ws), (const float *)(w + 2 * ws)};
    const float *x[2] = {(const float *)y, (const float *)(y + ys)};
    __m256 lo[2][3], hi[2][3];
    for (int i = 0; i < 2; i++)
        for (int r = 0; r < 3; r++) lo[i][r] = hi[i][r] = _mm256_setzero_ps();
    int j = 0;
    for (; j + 16 <= cols; j += 16)
        for (int r = 0; r < 3; r++) {
            __m256 a0 = _mm256_loadu_ps(a[r] + j), a1 = _mm256_loadu_ps(a[r] + j + 8);
            for (int i = 0; i < 2; i++) {
                lo[i][r] = _mm256_fmadd_ps(a0, _mm256_loadu_ps(x[i] + j), lo[i][r]);
                hi[i][r] = _mm256_fmadd_ps(a1, _mm256_loadu_ps(x[i] + j + 8), hi[i][r]);
            }
        }
    for (int i = 0; i < 2; i++)
        for (int r = 0; r < 3; r++) {
            float s = hsum(_mm256_add_ps(lo[i][r], hi[i][r]));
            for (int k = j; k < cols; k++) s += a[r][k] * x[i][k];
            out[i * 3 + r] = s;
        }
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

// MARK: - Dequantisers (the f32 engine's prefill tiles)

// dst[0..32) = v·a + b for 32 bytes v (unsigned, or signed with `is_signed`), a for the first
// 16 elements and a2 for the rest; the portable dequantiser's mul then add, so the same bits.
static inline void scaled32(float *dst, __m256i v, int is_signed, __m256 a, __m256 a2, __m256 b) {
    __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
    __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    for (int k = 0; k < 4; k++) {
        __m256i wide = is_signed ? _mm256_cvtepi8_epi32(parts[k]) : _mm256_cvtepu8_epi32(parts[k]);
        _mm256_storeu_ps(dst + 8 * k, _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(wide), k < 2 ? a : a2), b));
    }
}

static void dequantize_f16(const uint8_t *s, float *dst, size_t blocks) {
    for (size_t i = 0; i + 8 <= blocks; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + 2 * i))));
    for (size_t i = blocks / 8 * 8; i < blocks; i++) dst[i] = half(s + 2 * i);
}

static void dequantize_q4_0(const uint8_t *s, float *dst, size_t blocks) {
    for (size_t b = 0; b < blocks; b++, s += 18, dst += 32) {
        __m256 d = _mm256_set1_ps(half(s));
        scaled32(dst, unpack_q4_0(s), 1, d, d, _mm256_setzero_ps());
    }
}

static void dequantize_q4_1(const uint8_t *s, float *dst, size_t blocks) {
    for (size_t b = 0; b < blocks; b++, s += 20, dst += 32) {
        __m256 d = _mm256_set1_ps(half(s));
        scaled32(dst, unpack_q4_1(s), 0, d, d, _mm256_set1_ps(half(s + 2)));
    }
}

static void dequantize_q8_0(const uint8_t *s, float *dst, size_t blocks) {
    for (size_t b = 0; b < blocks; b++, s += 34, dst += 32) {
        __m256 d = _mm256_set1_ps(half(s));
        scaled32(dst, unpack_q8_0(s), 1, d, d, _mm256_setzero_ps());
    }
}

// Sub-block s: a·q − c with a = d·scale_s, c = dmin·min_s, as the portable dequantiser.
static inline void k4_sub_block(float *dst, __m256i q, const k4_header *h, int s) {
    __m256 a = _mm256_set1_ps(h->d * h->sc[s]);
    scaled32(dst, q, 0, a, a, _mm256_set1_ps(-(h->dmin * h->mn[s])));
}

static void dequantize_q4_k(const uint8_t *s, float *dst, size_t blocks) {
    const __m256i low = _mm256_set1_epi8(0x0F);
    for (size_t b = 0; b < blocks; b++, s += 144, dst += 256) {
        k4_header h = k4_header_of(s);
        for (int k = 0; k < 4; k++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(s + 16 + 32 * k));
            k4_sub_block(dst + 64 * k, _mm256_and_si256(q, low), &h, 2 * k);
            k4_sub_block(dst + 64 * k + 32, _mm256_and_si256(_mm256_srli_epi16(q, 4), low), &h, 2 * k + 1);
        }
    }
}

static void dequantize_q5_k(const uint8_t *s, float *dst, size_t blocks) {
    for (size_t b = 0; b < blocks; b++, s += 176, dst += 256) {
        k4_header h = k4_header_of(s);
        __m256i qh = _mm256_loadu_si256((const __m256i *)(s + 16));
        for (int k = 0; k < 4; k++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(s + 48 + 32 * k));
            __m256i lo, hi;
            q5_k_unpack(q, qh, k, &lo, &hi);
            k4_sub_block(dst + 64 * k, lo, &h, 2 * k);
            k4_sub_block(dst + 64 * k + 32, hi, &h, 2 * k + 1);
        }
    }
}

// The portable dequantiser's (d·scale)·(q − 32).
static void dequantize_q6_k(const uint8_t *s, float *dst, size_t blocks) {
    const __m256i m32 = _mm256_set1_epi8(32);
    for (size_t b = 0; b < blocks; b++, s += 210, dst += 256) {
        float d = half(s + 208);
        for (int h = 0; h < 2; h++) {
            const int8_t *sc = (const int8_t *)(s + 192 + 8 * h);
            __m256i q[4];
            q6_k_unpack(s, h, q);
            for (int k = 0; k < 4; k++)
                scaled32(dst + 128 * h + 32 * k, _mm256_sub_epi8(q[k], m32), 1, _mm256_set1_ps(d * sc[2 * k]),
                         _mm256_set1_ps(d * sc[2 * k + 1]), _mm256_setzero_ps());
        }
    }
}

cq_dequantize_fn cq_avx2_dequantize(int type) {
    switch (type) {
    case CQ_F16: return dequantize_f16;
    case CQ_Q4_0: return dequantize_q4_0;
    case CQ_Q4_1: return dequantize_q4_1;
    case CQ_Q8_0: return dequantize_q8_0;
    case CQ_Q4_K: return dequantize_q4_k;
    case CQ_Q5_K: return dequantize_q5_k;
    case CQ_Q6_K: return dequantize_q6_k;
    default: return 0;
    }
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

cq_dot_rows4_fn cq_avx2_f32_rows4(void) { return dot_f32_rows4; }
cq_dot_tile3x2_fn cq_avx2_f32_tile3x2(void) { return dot_f32_tile3x2; }

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
cq_dot_rows4_fn cq_avx2_f32_rows4(void) { return 0; }
cq_dot_tile3x2_fn cq_avx2_f32_tile3x2(void) { return 0; }
cq_dot4_fn cq_avx2_dot4(int type) { (void)type; return 0; }
cq_dot4x2_fn cq_avx2_dot4x2(int type) { (void)type; return 0; }
cq_dequantize_fn cq_avx2_dequantize(int type) { (void)type; return 0; }

#endif
