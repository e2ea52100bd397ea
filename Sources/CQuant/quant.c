// Portable kernels (the reference every fast path must match), activation quantisers,
// dequantisers and the matrix-vector product over the worker pool.
#include "cquant.h"
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <stdatomic.h>

// MARK: - Activation quantisers

static void quantize_q8_0(const float *x, int cols, uint8_t *out) {
    for (int b = 0; b < cols / 32; b++, x += 32, out += Q8_0_BYTES) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        // As ggml's x86 path: the inverse scale is 127/amax (not 1/d, which rounds differently).
        float d = amax / 127, id = amax != 0 ? 127 / amax : 0;
        uint16_t dh = cq_float_to_half(d);
        memcpy(out, &dh, 2);
        int8_t *qs = (int8_t *)(out + 2);
        for (int j = 0; j < 32; j++) qs[j] = (int8_t)nearbyintf(x[j] * id);
    }
}

static void quantize_q8_1(const float *x, int cols, uint8_t *out) {
    for (int b = 0; b < cols / 32; b++, x += 32, out += Q8_1_BYTES) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127, id = amax != 0 ? 127 / amax : 0;
        int8_t *qs = (int8_t *)(out + 6);
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            qs[j] = (int8_t)nearbyintf(x[j] * id);
            sum += qs[j];
        }
        uint16_t dh = cq_float_to_half(d);
        // ggml keeps s = d·Σq rounded to f16, with d before its own rounding: so does this
        // (held in an f32 field).
        float s = cq_half_to_float(cq_float_to_half(d * (float)sum));
        memcpy(out, &dh, 2);
        memcpy(out + 2, &s, 4);
    }
}

static void quantize_q8_k(const float *x, int cols, uint8_t *out) {
    for (int b = 0; b < cols / 256; b++, x += 256, out += Q8_K_BYTES) {
        float amax = 0, max = 0;
        for (int j = 0; j < 256; j++) {
            if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
        }
        int8_t *qs = (int8_t *)(out + 4);
        int16_t bsums[16];
        float d = 0;
        if (amax == 0) {
            memset(qs, 0, 256);
            memset(bsums, 0, sizeof bsums);
        } else {
            // The largest magnitude maps to -127 (its sign kept in d), as ggml does.
            float iscale = -127.f / max;
            for (int j = 0; j < 256; j++) {
                int v = (int)nearbyintf(iscale * x[j]);
                qs[j] = (int8_t)(v > 127 ? 127 : v < -128 ? -128 : v);
            }
            for (int g = 0; g < 16; g++) {
                int s = 0;
                for (int j = 0; j < 16; j++) s += qs[16 * g + j];
                bsums[g] = (int16_t)s;
            }
            d = 1 / iscale;
        }
        memcpy(out, &d, 4);
        memcpy(out + 260, bsums, sizeof bsums);
    }
}

// MARK: - Portable dot products

static float dot_q4_0(int cols, const uint8_t *w, const uint8_t *y) {
    float sum = 0;
    for (int b = 0; b < cols / 32; b++, w += 18, y += Q8_0_BYTES) {
        const int8_t *q8 = (const int8_t *)(y + 2);
        int s = 0;
        for (int j = 0; j < 16; j++) s += ((w[2 + j] & 0x0F) - 8) * q8[j] + ((w[2 + j] >> 4) - 8) * q8[j + 16];
        sum += (float)s * cq_half_to_float(cq_load_u16(w)) * cq_half_to_float(cq_load_u16(y));
    }
    return sum;
}

static float dot_q4_1(int cols, const uint8_t *w, const uint8_t *y) {
    float sum = 0;
    for (int b = 0; b < cols / 32; b++, w += 20, y += Q8_1_BYTES) {
        const int8_t *q8 = (const int8_t *)(y + 6);
        int s = 0;
        for (int j = 0; j < 16; j++) s += (w[4 + j] & 0x0F) * q8[j] + (w[4 + j] >> 4) * q8[j + 16];
        sum += (float)s * cq_half_to_float(cq_load_u16(w)) * cq_half_to_float(cq_load_u16(y))
             + cq_half_to_float(cq_load_u16(w + 2)) * cq_load_f32(y + 2);
    }
    return sum;
}

static float dot_q5_0(int cols, const uint8_t *w, const uint8_t *y) {
    float sum = 0;
    for (int b = 0; b < cols / 32; b++, w += 22, y += Q8_0_BYTES) {
        const int8_t *q8 = (const int8_t *)(y + 2);
        uint32_t qh = cq_load_u32(w + 2);
        int s = 0;
        for (int j = 0; j < 16; j++) {
            int lo = (w[6 + j] & 0x0F) | (int)(((qh >> j) & 1) << 4);
            int hi = (w[6 + j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            s += (lo - 16) * q8[j] + (hi - 16) * q8[j + 16];
        }
        sum += (float)s * cq_half_to_float(cq_load_u16(w)) * cq_half_to_float(cq_load_u16(y));
    }
    return sum;
}

static float dot_q5_1(int cols, const uint8_t *w, const uint8_t *y) {
    float sum = 0;
    for (int b = 0; b < cols / 32; b++, w += 24, y += Q8_1_BYTES) {
        const int8_t *q8 = (const int8_t *)(y + 6);
        uint32_t qh = cq_load_u32(w + 4);
        int s = 0;
        for (int j = 0; j < 16; j++) {
            int lo = (w[8 + j] & 0x0F) | (int)(((qh >> j) & 1) << 4);
            int hi = (w[8 + j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            s += lo * q8[j] + hi * q8[j + 16];
        }
        sum += (float)s * cq_half_to_float(cq_load_u16(w)) * cq_half_to_float(cq_load_u16(y))
             + cq_half_to_float(cq_load_u16(w + 2)) * cq_load_f32(y + 2);
    }
    return sum;
}

static float dot_q8_0(int cols, const uint8_t *w, const uint8_t *y) {
    float sum = 0;
    for (int b = 0; b < cols / 32; b++, w += 34, y += Q8_0_BYTES) {
        const int8_t *qw = (const int8_t *)(w + 2), *q8 = (const int8_t *)(y + 2);
        int s = 0;
        for (int j = 0; j < 32; j++) s += qw[j] * q8[j];
        sum += (float)s * cq_half_to_float(cq_load_u16(w)) * cq_half_to_float(cq_load_u16(y));
    }
    return sum;
}

static float dot_q4_k(int cols, const uint8_t *w, const uint8_t *y) {
    float sum = 0;
    for (int b = 0; b < cols / 256; b++, w += 144, y += Q8_K_BYTES) {
        float dy;
        memcpy(&dy, y, 4);
        const int8_t *q8 = (const int8_t *)(y + 4);
        int16_t bsums[16];
        memcpy(bsums, y + 260, sizeof bsums);
        const uint8_t *q = w + 16;
        int scaled = 0, mins = 0;
        for (int s = 0; s < 8; s++) {
            uint8_t sc, m;
            cq_scale_min_k4(s, w + 4, &sc, &m);
            const uint8_t *qs = q + 32 * (s / 2);
            int shift = (s & 1) * 4, acc = 0;
            for (int l = 0; l < 32; l++) acc += ((qs[l] >> shift) & 0x0F) * q8[32 * s + l];
            scaled += sc * acc;
            mins += m * (bsums[2 * s] + bsums[2 * s + 1]);
        }
        sum += dy * (cq_half_to_float(cq_load_u16(w)) * (float)scaled - cq_half_to_float(cq_load_u16(w + 2)) * (float)mins);
    }
    return sum;
}

static float dot_q5_k(int cols, const uint8_t *w, const uint8_t *y) {
    float sum = 0;
    for (int b = 0; b < cols / 256; b++, w += 176, y += Q8_K_BYTES) {
        float dy;
        memcpy(&dy, y, 4);
        const int8_t *q8 = (const int8_t *)(y + 4);
        int16_t bsums[16];
        memcpy(bsums, y + 260, sizeof bsums);
        const uint8_t *qh = w + 16, *ql = w + 48;
        int scaled = 0, mins = 0;
        for (int s = 0; s < 8; s++) {
            uint8_t sc, m;
            cq_scale_min_k4(s, w + 4, &sc, &m);
            const uint8_t *qs = ql + 32 * (s / 2);
            int shift = (s & 1) * 4, acc = 0;
            for (int l = 0; l < 32; l++) {
                int q5 = ((qs[l] >> shift) & 0x0F) | (((qh[l] >> s) & 1) << 4);
                acc += q5 * q8[32 * s + l];
            }
            scaled += sc * acc;
            mins += m * (bsums[2 * s] + bsums[2 * s + 1]);
        }
        sum += dy * (cq_half_to_float(cq_load_u16(w)) * (float)scaled - cq_half_to_float(cq_load_u16(w + 2)) * (float)mins);
    }
    return sum;
}

static float dot_q6_k(int cols, const uint8_t *w, const uint8_t *y) {
    float sum = 0;
    for (int b = 0; b < cols / 256; b++, w += 210, y += Q8_K_BYTES) {
        float dy;
        memcpy(&dy, y, 4);
        const int8_t *q8 = (const int8_t *)(y + 4);
        int scaled = 0;
        for (int half = 0; half < 2; half++) {
            const uint8_t *ql = w + 64 * half, *qh = w + 128 + 32 * half;
            const int8_t *sc = (const int8_t *)(w + 192 + 8 * half);
            const int8_t *y8 = q8 + 128 * half;
            int acc[8] = {0};
            for (int l = 0; l < 32; l++) {
                int g = l / 16;
                acc[g + 0] += ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) * y8[l] - 32 * y8[l];
                acc[g + 2] += ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) * y8[l + 32] - 32 * y8[l + 32];
                acc[g + 4] += ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) * y8[l + 64] - 32 * y8[l + 64];
                acc[g + 6] += ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) * y8[l + 96] - 32 * y8[l + 96];
            }
            for (int g = 0; g < 8; g++) scaled += sc[g] * acc[g];
        }
        sum += dy * cq_half_to_float(cq_load_u16(w + 208)) * (float)scaled;
    }
    return sum;
}

static float dot_f32(int cols, const uint8_t *w, const uint8_t *y) {
    const float *a = (const float *)w, *x = (const float *)y;
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int j = 0;
    for (; j + 4 <= cols; j += 4) { s0 += a[j] * x[j]; s1 += a[j + 1] * x[j + 1]; s2 += a[j + 2] * x[j + 2]; s3 += a[j + 3] * x[j + 3]; }
    for (; j < cols; j++) s0 += a[j] * x[j];
    return (s0 + s1) + (s2 + s3);
}

static float dot_f16(int cols, const uint8_t *w, const uint8_t *y) {
    const float *x = (const float *)y;
    float s = 0;
    for (int j = 0; j < cols; j++) s += cq_half_to_float(cq_load_u16(w + 2 * j)) * x[j];
    return s;
}

static float dot_bf16(int cols, const uint8_t *w, const uint8_t *y) {
    const float *x = (const float *)y;
    float s = 0;
    for (int j = 0; j < cols; j++) {
        uint32_t bits = (uint32_t)cq_load_u16(w + 2 * j) << 16;
        float v;
        memcpy(&v, &bits, 4);
        s += v * x[j];
    }
    return s;
}

static cq_dot_fn portable_dot(int type) {
    switch (type) {
    case CQ_F32: return dot_f32;
    case CQ_F16: return dot_f16;
    case CQ_BF16: return dot_bf16;
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

// MARK: - Dispatch

static atomic_int force_portable = 0;

void cq_force_portable(int on) { atomic_store(&force_portable, on); }

int cq_fast_kernels(void) { return !atomic_load_explicit(&force_portable, memory_order_relaxed) && cq_cpu_has_avx2(); }

static cq_dot_fn dot_for(int type) {
    if (cq_fast_kernels()) {
        cq_dot_fn f = cq_avx2_dot(type);
        if (f) return f;
    }
    return portable_dot(type);
}

const char *cq_kernel_path(void) {
    return cq_fast_kernels() ? "avx2" : "portable";
}

int cq_supported(int type) { return portable_dot(type) != 0; }

int cq_block_elements(int type) {
    switch (type) {
    case CQ_F32: case CQ_F16: case CQ_BF16: return 1;
    case CQ_Q4_0: case CQ_Q4_1: case CQ_Q5_0: case CQ_Q5_1: case CQ_Q8_0: return 32;
    case CQ_Q4_K: case CQ_Q5_K: case CQ_Q6_K: return 256;
    default: return 0;
    }
}

// The activation format a weight type's dot product reads.
enum { ACT_F32, ACT_Q8_0, ACT_Q8_1, ACT_Q8_K, ACT_COUNT };

static int activation_format(int type) {
    switch (type) {
    case CQ_Q4_0: case CQ_Q5_0: case CQ_Q8_0: return ACT_Q8_0;
    case CQ_Q4_1: case CQ_Q5_1: return ACT_Q8_1;
    case CQ_Q4_K: case CQ_Q5_K: case CQ_Q6_K: return ACT_Q8_K;
    default: return ACT_F32;
    }
}

static size_t format_bytes(int format, int cols) {
    switch (format) {
    case ACT_Q8_0: return (size_t)(cols / 32) * Q8_0_BYTES;
    case ACT_Q8_1: return (size_t)(cols / 32) * Q8_1_BYTES;
    case ACT_Q8_K: return (size_t)(cols / 256) * Q8_K_BYTES;
    default: return (size_t)cols * 4;
    }
}

static void quantize_format(int format, const float *x, int cols, void *out) {
    switch (format) {
    case ACT_Q8_0: quantize_q8_0(x, cols, out); break;
    case ACT_Q8_1: quantize_q8_1(x, cols, out); break;
    case ACT_Q8_K: quantize_q8_k(x, cols, out); break;
    default: memcpy(out, x, (size_t)cols * 4); break;
    }
}

int cq_activation_format(int type) { return activation_format(type); }

size_t cq_activation_bytes(int type, int cols) { return format_bytes(activation_format(type), cols); }

void cq_quantize_activation(int type, const float *x, int cols, void *out) {
    quantize_format(activation_format(type), x, cols, out);
}

float cq_vec_dot(int type, int cols, const void *w, const void *xq) {
    return dot_for(type)(cols, (const uint8_t *)w, (const uint8_t *)xq);
}

// MARK: - Dequantisers (prefill tiles)

void cq_dequantize(int type, const void *src, float *dst, size_t count) {
    const uint8_t *s = src;
    size_t blocks = count / (size_t)(cq_block_elements(type) ? cq_block_elements(type) : 1);
    cq_dequantize_fn fast = cq_fast_kernels() ? cq_avx2_dequantize(type) : 0;
    if (fast) {
        fast(s, dst, blocks);
        return;
    }
    switch (type) {
    case CQ_F32: memcpy(dst, src, count * 4); return;
    case CQ_F16: for (size_t i = 0; i < count; i++) dst[i] = cq_half_to_float(cq_load_u16(s + 2 * i)); return;
    case CQ_BF16:
        for (size_t i = 0; i < count; i++) {
            uint32_t bits = (uint32_t)cq_load_u16(s + 2 * i) << 16;
            memcpy(dst + i, &bits, 4);
        }
        return;
    case CQ_Q4_0:
        for (size_t b = 0; b < blocks; b++, s += 18, dst += 32) {
            float d = cq_half_to_float(cq_load_u16(s));
            for (int j = 0; j < 16; j++) { dst[j] = (float)((s[2 + j] & 0x0F) - 8) * d; dst[j + 16] = (float)((s[2 + j] >> 4) - 8) * d; }
        }
        return;
    case CQ_Q4_1:
        for (size_t b = 0; b < blocks; b++, s += 20, dst += 32) {
            float d = cq_half_to_float(cq_load_u16(s)), m = cq_half_to_float(cq_load_u16(s + 2));
            for (int j = 0; j < 16; j++) { dst[j] = (float)(s[4 + j] & 0x0F) * d + m; dst[j + 16] = (float)(s[4 + j] >> 4) * d + m; }
        }
        return;
    case CQ_Q5_0:
        for (size_t b = 0; b < blocks; b++, s += 22, dst += 32) {
            float d = cq_half_to_float(cq_load_u16(s));
            uint32_t qh = cq_load_u32(s + 2);
            for (int j = 0; j < 16; j++) {
                dst[j] = (float)(((s[6 + j] & 0x0F) | (int)(((qh >> j) & 1) << 4)) - 16) * d;
                dst[j + 16] = (float)(((s[6 + j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4)) - 16) * d;
            }
        }
        return;
    case CQ_Q5_1:
        for (size_t b = 0; b < blocks; b++, s += 24, dst += 32) {
            float d = cq_half_to_float(cq_load_u16(s)), m = cq_half_to_float(cq_load_u16(s + 2));
            uint32_t qh = cq_load_u32(s + 4);
            for (int j = 0; j < 16; j++) {
                dst[j] = (float)((s[8 + j] & 0x0F) | (int)(((qh >> j) & 1) << 4)) * d + m;
                dst[j + 16] = (float)((s[8 + j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4)) * d + m;
            }
        }
        return;
    case CQ_Q8_0:
        for (size_t b = 0; b < blocks; b++, s += 34, dst += 32) {
            float d = cq_half_to_float(cq_load_u16(s));
            const int8_t *q = (const int8_t *)(s + 2);
            for (int j = 0; j < 32; j++) dst[j] = (float)q[j] * d;
        }
        return;
    case CQ_Q4_K:
        for (size_t b = 0; b < blocks; b++, s += 144, dst += 256) {
            float d = cq_half_to_float(cq_load_u16(s)), dmin = cq_half_to_float(cq_load_u16(s + 2));
            for (int sub = 0; sub < 8; sub++) {
                uint8_t sc, m;
                cq_scale_min_k4(sub, s + 4, &sc, &m);
                const uint8_t *q = s + 16 + 32 * (sub / 2);
                int shift = (sub & 1) * 4;
                float a = d * sc, c = dmin * m;
                for (int l = 0; l < 32; l++) dst[32 * sub + l] = a * (float)((q[l] >> shift) & 0x0F) - c;
            }
        }
        return;
    case CQ_Q5_K:
        for (size_t b = 0; b < blocks; b++, s += 176, dst += 256) {
            float d = cq_half_to_float(cq_load_u16(s)), dmin = cq_half_to_float(cq_load_u16(s + 2));
            const uint8_t *qh = s + 16;
            for (int sub = 0; sub < 8; sub++) {
                uint8_t sc, m;
                cq_scale_min_k4(sub, s + 4, &sc, &m);
                const uint8_t *q = s + 48 + 32 * (sub / 2);
                int shift = (sub & 1) * 4;
                float a = d * sc, c = dmin * m;
                for (int l = 0; l < 32; l++) dst[32 * sub + l] = a * (float)(((q[l] >> shift) & 0x0F) | (((qh[l] >> sub) & 1) << 4)) - c;
            }
        }
        return;
    case CQ_Q6_K:
        for (size_t b = 0; b < blocks; b++, s += 210, dst += 256) {
            float d = cq_half_to_float(cq_load_u16(s + 208));
            for (int half = 0; half < 2; half++) {
                const uint8_t *ql = s + 64 * half, *qh = s + 128 + 32 * half;
                const int8_t *sc = (const int8_t *)(s + 192 + 8 * half);
                float *out = dst + 128 * half;
                for (int l = 0; l < 32; l++) {
                    int g = l / 16;
                    out[l] = d * sc[g] * (float)(((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32);
                    out[l + 32] = d * sc[g + 2] * (float)(((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32);
                    out[l + 64] = d * sc[g + 4] * (float)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                    out[l + 96] = d * sc[g + 6] * (float)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
                }
            }
        }
        return;
    default:
        return;
    }
}

typedef struct {
    int type, rows, cols;
    const uint8_t *src;
    size_t row_bytes;
    float *dst;
    atomic_int next;
} dequantize_work;

static void dequantize_worker(void *ctx, int worker, int workers) {
    (void)worker; (void)workers;
    dequantize_work *d = ctx;
    enum { ROWS_PER_TAKE = 8 };
    for (int r; (r = atomic_fetch_add_explicit(&d->next, ROWS_PER_TAKE, memory_order_relaxed)) < d->rows;) {
        int n = d->rows - r < ROWS_PER_TAKE ? d->rows - r : ROWS_PER_TAKE;
        for (int k = 0; k < n; k++)
            cq_dequantize(d->type, d->src + (size_t)(r + k) * d->row_bytes, d->dst + (size_t)(r + k) * d->cols, (size_t)d->cols);
    }
}

void cq_dequantize_rows(cq_pool *pool, int type, const void *src, size_t row_bytes, int rows, int cols, float *dst) {
    dequantize_work d = {.type = type, .rows = rows, .cols = cols, .src = src, .row_bytes = row_bytes, .dst = dst};
    atomic_init(&d.next, 0);
    if (pool) cq_pool_run(pool, dequantize_worker, &d);
    else dequantize_worker(&d, 0, 1);
}

// MARK: - Matrix products over the pool

size_t cq_matmul_scratch_bytes(int cols, int rows) {
    size_t total = 0;
    for (int f = 0; f < ACT_COUNT; f++) total += (format_bytes(f, cols) * (size_t)rows + 63) & ~(size_t)63;
    return total;
}

// A worker takes 16 weight rows at a time and meets them with 8 activation rows at a time,
// so both stay in L1 during prefill.
enum { CHUNK_ROWS = 16, ACTIVATION_BLOCK = 8, MAX_JOBS = 8, MAX_WORKERS = 64 };

typedef struct {
    const cq_matmul_job *jobs;
    int njobs;
    int cols;
    int rows;                      // activation rows
    const uint8_t *xq[MAX_JOBS];   // the activation rows quantised for each job's type
    size_t xq_stride[MAX_JOBS];
    cq_dot_fn dot[MAX_JOBS];
    cq_dot4_fn dot4[MAX_JOBS];     // four weight rows by one activation row, or NULL
    cq_dot4x2_fn dot4x2[MAX_JOBS]; // four by two, or NULL
    int first_chunk[MAX_JOBS + 1];
    // Exact f32 arithmetic instead: each weight row dequantised, times the f32 activations.
    const float *x;
    size_t ldx;
    cq_dot_fn f32_dot;
    cq_dot_rows4_fn f32_rows4;     // the same dot, four activation rows at once, or NULL
    cq_dot_tile3x2_fn f32_tile3x2; // three weight rows by two activation rows, or NULL
    // Worker w owns chunks [w·total/W, (w+1)·total/W) and takes them in order, so it streams
    // through memory; a worker done with its own takes from the others' (the machine is
    // shared and noisy).
    atomic_int cursor[MAX_WORKERS];
} matmul_work;

static inline void store(const cq_matmul_job *job, float *out, float v) { *out = job->accumulate ? *out + v : v; }

// Weight rows [r0, r1) of job j times every activation row, quantised. Every output is the
// same dot product (one row or four at once give the same bits), so a position's result does
// not depend on how many rows came with it.
static void quantized_chunk(matmul_work *m, int j, int r0, int r1) {
    const cq_matmul_job *job = &m->jobs[j];
    const uint8_t *weights = (const uint8_t *)job->weights;
    size_t rb = job->row_bytes, xs = m->xq_stride[j];
    for (int i0 = 0; i0 < m->rows; i0 += ACTIVATION_BLOCK) {
        int i1 = i0 + ACTIVATION_BLOCK < m->rows ? i0 + ACTIVATION_BLOCK : m->rows;
        int r = r0;
        for (; m->dot4x2[j] && r + 4 <= r1; r += 4) {
            int i = i0;
            for (; i + 2 <= i1; i += 2) {
                float v[8];
                m->dot4x2[j](m->cols, weights + (size_t)r * rb, rb, m->xq[j] + (size_t)i * xs, xs, v);
                for (int k = 0; k < 8; k++) store(job, job->out + (size_t)(i + k / 4) * job->ldo + r + k % 4, v[k]);
            }
            for (; i < i1; i++) {
                float v[4];
                if (m->dot4[j]) m->dot4[j](m->cols, weights + (size_t)r * rb, rb, m->xq[j] + (size_t)i * xs, v);
                else for (int k = 0; k < 4; k++) v[k] = m->dot[j](m->cols, weights + (size_t)(r + k) * rb, m->xq[j] + (size_t)i * xs);
                for (int k = 0; k < 4; k++) store(job, job->out + (size_t)i * job->ldo + r + k, v[k]);
            }
        }
        for (; r < r1; r++)
            for (int i = i0; i < i1; i++)
                store(job, job->out + (size_t)i * job->ldo + r, m->dot[j](m->cols, weights + (size_t)r * rb, m->xq[j] + (size_t)i * xs));
    }
}

// The same in f32: each weight row dequantised into `rows` (room for three), times the f32
// activations; with two activation rows or more, three weight rows at a time meet them in pairs.
static void dequantized_chunk(matmul_work *m, int j, int r0, int r1, float *rows) {
    const cq_matmul_job *job = &m->jobs[j];
    const uint8_t *weights = (const uint8_t *)job->weights;
    size_t xs = m->ldx * sizeof(float);
    int r = r0;
    for (; m->f32_tile3x2 && m->rows >= 2 && r + 3 <= r1; r += 3) {
        for (int k = 0; k < 3; k++) cq_dequantize(job->type, weights + (size_t)(r + k) * job->row_bytes, rows + (size_t)k * m->cols, (size_t)m->cols);
        int i = 0;
        for (; i + 2 <= m->rows; i += 2) {
            float v[6];
            m->f32_tile3x2(m->cols, (const uint8_t *)rows, m->cols * sizeof(float), (const uint8_t *)(m->x + (size_t)i * m->ldx), xs, v);
            for (int k = 0; k < 6; k++) store(job, job->out + (size_t)(i + k / 3) * job->ldo + r + k % 3, v[k]);
        }
        for (; i < m->rows; i++)
            for (int k = 0; k < 3; k++)
                store(job, job->out + (size_t)i * job->ldo + r + k,
                      m->f32_dot(m->cols, (const uint8_t *)(rows + (size_t)k * m->cols), (const uint8_t *)(m->x + (size_t)i * m->ldx)));
    }
    for (; r < r1; r++) {
        cq_dequantize(job->type, weights + (size_t)r * job->row_bytes, rows, (size_t)m->cols);
        int i = 0;
        for (; m->f32_rows4 && i + 4 <= m->rows; i += 4) {
            float v[4];
            m->f32_rows4(m->cols, (const uint8_t *)rows, (const uint8_t *)(m->x + (size_t)i * m->ldx), xs, v);
            for (int k = 0; k < 4; k++) store(job, job->out + (size_t)(i + k) * job->ldo + r, v[k]);
        }
        for (; i < m->rows; i++)
            store(job, job->out + (size_t)i * job->ldo + r, m->f32_dot(m->cols, (const uint8_t *)rows, (const uint8_t *)(m->x + (size_t)i * m->ldx)));
    }
}

static void matmul_worker(void *ctx, int worker, int workers) {
    matmul_work *m = ctx;
    int total = m->first_chunk[m->njobs];
    if (workers > MAX_WORKERS) workers = MAX_WORKERS;
    float *row = m->x ? malloc(3 * sizeof(float) * (size_t)m->cols) : 0;
    for (int k = 0; k < workers && worker < MAX_WORKERS; k++) {
        int owner = (worker + k) % workers, end = (int)((long)total * (owner + 1) / workers);
        for (;;) {
            int c = atomic_fetch_add_explicit(&m->cursor[owner], 1, memory_order_relaxed);
            if (c >= end) break;
            int j = 0;
            while (c >= m->first_chunk[j + 1]) j++;
            int r0 = (c - m->first_chunk[j]) * CHUNK_ROWS, r1 = r0 + CHUNK_ROWS < m->jobs[j].rows ? r0 + CHUNK_ROWS : m->jobs[j].rows;
            if (row) dequantized_chunk(m, j, r0, r1, row);
            else quantized_chunk(m, j, r0, r1);
        }
    }
    free(row);
}

typedef struct {
    int format, cols, rows;
    const float *x;
    size_t ldx, stride;
    uint8_t *out;
    atomic_int next;
} quantize_work;

static void quantize_worker(void *ctx, int worker, int workers) {
    (void)worker; (void)workers;
    quantize_work *q = ctx;
    for (int i; (i = atomic_fetch_add_explicit(&q->next, 1, memory_order_relaxed)) < q->rows;)
        quantize_format(q->format, q->x + (size_t)i * q->ldx, q->cols, q->out + (size_t)i * q->stride);
}

// A prefill's activation rows are quantised on the pool; a decoded row on the caller.
static void quantize_rows(cq_pool *pool, int format, const float *x, int rows, size_t ldx, int cols, uint8_t *out, size_t stride) {
    quantize_work q = {.format = format, .cols = cols, .rows = rows, .x = x, .ldx = ldx, .stride = stride, .out = out};
    atomic_init(&q.next, 0);
    if (pool && rows >= 16) cq_pool_run(pool, quantize_worker, &q);
    else quantize_worker(&q, 0, 1);
}

void cq_matmul(cq_pool *pool, const float *x, int rows, size_t ldx, int cols, const cq_matmul_job *jobs, int njobs, int exact,
               void *scratch) {
    for (int start = 0; start < njobs; start += MAX_JOBS) {
        int n = njobs - start < MAX_JOBS ? njobs - start : MAX_JOBS;
        matmul_work m;
        m.jobs = jobs + start;
        m.njobs = n;
        m.cols = cols;
        m.rows = rows;
        m.x = exact ? x : 0;
        m.ldx = ldx;
        m.f32_dot = dot_for(CQ_F32);
        m.f32_rows4 = cq_fast_kernels() ? cq_avx2_f32_rows4() : 0;
        m.f32_tile3x2 = cq_fast_kernels() ? cq_avx2_f32_tile3x2() : 0;
        const uint8_t *formats[ACT_COUNT] = {0};
        uint8_t *cursor = scratch;
        m.first_chunk[0] = 0;
        for (int j = 0; j < n; j++) {
            int f = activation_format(m.jobs[j].type);
            size_t stride = format_bytes(f, cols);
            if (!formats[f] && !exact) {
                formats[f] = cursor;
                quantize_rows(pool, f, x, rows, ldx, cols, cursor, stride);
                cursor += (stride * (size_t)rows + 63) & ~(size_t)63;
            }
            m.xq[j] = formats[f];
            m.xq_stride[j] = stride;
            m.dot[j] = dot_for(m.jobs[j].type);
            m.dot4[j] = cq_fast_kernels() ? cq_avx2_dot4(m.jobs[j].type) : 0;
            m.dot4x2[j] = cq_fast_kernels() ? cq_avx2_dot4x2(m.jobs[j].type) : 0;
            m.first_chunk[j + 1] = m.first_chunk[j] + (m.jobs[j].rows + CHUNK_ROWS - 1) / CHUNK_ROWS;
        }
        int workers = pool ? cq_pool_threads(pool) : 1;
        if (workers > MAX_WORKERS) workers = MAX_WORKERS;
        for (int w = 0; w < workers; w++) atomic_init(&m.cursor[w], (int)((long)m.first_chunk[n] * w / workers));
        if (pool) cq_pool_run(pool, matmul_worker, &m);
        else matmul_worker(&m, 0, 1);
    }
}
