// Shared between the portable kernels and the AVX2 ones.
#ifndef CQUANT_INTERNAL_H
#define CQUANT_INTERNAL_H

#include <stdint.h>
#include <string.h>

// Activation block layouts (ggml-common.h).
#define Q8_0_BYTES 34   // d: f16, qs: [32]i8
#define Q8_1_BYTES 38   // d: f16, s = d·Σqs rounded to f16 (as ggml's) held as f32, qs: [32]i8
#define Q8_K_BYTES 292  // d: f32, qs: [256]i8, bsums: [16]i16 (sums of 16 qs each)

static inline float cq_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exponent = (h >> 10) & 0x1F, mantissa = h & 0x3FF, bits;
    if (exponent == 0) {
        if (mantissa == 0) {
            bits = sign;
        } else {
            uint32_t e = 127 - 15 + 1;
            while (!(mantissa & 0x400)) { mantissa <<= 1; e--; }
            bits = sign | (e << 23) | ((mantissa & 0x3FF) << 13);
        }
    } else if (exponent == 0x1F) {
        bits = sign | 0x7F800000 | (mantissa << 13);
    } else {
        bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

// Round to nearest even, as F16C's conversion does.
static inline uint16_t cq_float_to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    int32_t exponent = (int32_t)((x >> 23) & 0xFF) - 127 + 15;
    uint32_t mantissa = x & 0x7FFFFF;
    if (((x >> 23) & 0xFF) == 0xFF) return (uint16_t)(sign | 0x7C00 | (mantissa ? 0x200 : 0));
    if (exponent >= 0x1F) return (uint16_t)(sign | 0x7C00);
    if (exponent <= 0) {
        if (exponent < -10) return (uint16_t)sign;
        mantissa |= 0x800000;
        uint32_t shift = (uint32_t)(14 - exponent);
        uint32_t half = mantissa >> shift, rest = mantissa & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rest > mid || (rest == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = ((uint32_t)exponent << 10) | (mantissa >> 13), rest = mantissa & 0x1FFF;
    if (rest > 0x1000 || (rest == 0x1000 && (half & 1))) half++;
    return (uint16_t)(sign | half);
}

static inline uint16_t cq_load_u16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline float cq_load_f32(const uint8_t *p) { float v; memcpy(&v, p, 4); return v; }
static inline uint32_t cq_load_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

// 6-bit scale and min `j` (0..<8) of Q4_K/Q5_K's 12 packed bytes.
static inline void cq_scale_min_k4(int j, const uint8_t *q, uint8_t *scale, uint8_t *min) {
    if (j < 4) {
        *scale = q[j] & 63;
        *min = q[j + 4] & 63;
    } else {
        *scale = (uint8_t)((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4));
        *min = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

typedef float (*cq_dot_fn)(int cols, const uint8_t *w, const uint8_t *xq);
// Four weight rows (row_bytes apart) times one activation row; out[r] is what the one-row
// kernel gives for row r, to the bit.
typedef void (*cq_dot4_fn)(int cols, const uint8_t *w, size_t row_bytes, const uint8_t *xq, float *out);
// The same four rows times two activation rows (xq_stride apart): out [2][4].
typedef void (*cq_dot4x2_fn)(int cols, const uint8_t *w, size_t row_bytes, const uint8_t *xq, size_t xq_stride, float *out);

// One f32 weight row times four f32 activation rows (x_stride bytes apart): out[i] is what the
// one-row f32 kernel gives for row i, to the bit (the exact arithmetic's decode batches).
typedef void (*cq_dot_rows4_fn)(int cols, const uint8_t *w, const uint8_t *x, size_t x_stride, float *out);
// Three f32 weight rows (w_stride bytes apart) times two activation rows: out[i·3 + r] is the
// one-row f32 kernel's result for weight row r and activation row i, to the bit. Each loaded
// weight vector meets two rows and each activation vector three, so decode batches are not
// bound by loads.
typedef void (*cq_dot_tile3x2_fn)(int cols, const uint8_t *w, size_t w_stride, const uint8_t *x, size_t x_stride, float *out);

// The AVX2 kernels for a type, or NULL (x86-64 with AVX2, FMA and F16C only).
cq_dot_fn cq_avx2_dot(int type);
cq_dot_rows4_fn cq_avx2_f32_rows4(void);
cq_dot_tile3x2_fn cq_avx2_f32_tile3x2(void);
cq_dot4_fn cq_avx2_dot4(int type);
cq_dot4x2_fn cq_avx2_dot4x2(int type);
/// Dequantises `blocks` whole blocks, the same bits as the portable dequantiser; NULL where none.
typedef void (*cq_dequantize_fn)(const uint8_t *src, float *dst, size_t blocks);
cq_dequantize_fn cq_avx2_dequantize(int type);
int cq_cpu_has_avx2(void);
// Non-zero when the AVX2 kernels run (the CPU has them and the portable ones are not forced).
int cq_fast_kernels(void);

#endif
