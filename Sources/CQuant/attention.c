// Attention row by row: the same loops for one decoded row and for a prefilled batch.
#include "cquant.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const float *q, *keys, *values;
    size_t q_stride, kv_stride, out_stride;
    int rows, heads, group, head_dim;
    const int *seen, *extra_from, *extra_to;
    float scale;
    float *out;
    int most_keys;
    atomic_int next;
} attention_work;

static float dot(const float *a, const float *b, int n) {
    // Eight partial sums in a fixed order (vectorisable, and the same for every row).
    float s[8] = {0};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) s[k] += a[j + k] * b[j + k];
    float total = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; j < n; j++) total += a[j] * b[j];
    return total;
}

static void attention_worker(void *ctx, int worker, int workers) {
    (void)worker; (void)workers;
    attention_work *w = ctx;
    float *scores = malloc(sizeof(float) * (size_t)(w->most_keys > 0 ? w->most_keys : 1));
    int d = w->head_dim;
    for (;;) {
        int task = atomic_fetch_add_explicit(&w->next, 1, memory_order_relaxed);
        if (task >= w->rows * w->heads) break;
        int i = task / w->heads, h = task % w->heads, g = h / w->group;
        const float *q = w->q + (size_t)i * w->q_stride + (size_t)h * d;
        int n1 = w->seen[i];
        int b0 = w->extra_from ? w->extra_from[i] : 0, b1 = w->extra_to ? w->extra_to[i] : 0;
        int n = n1 + (b1 > b0 ? b1 - b0 : 0);
        float max = -INFINITY;
        for (int k = 0; k < n; k++) {
            int p = k < n1 ? k : b0 + (k - n1);
            scores[k] = w->scale * dot(q, w->keys + (size_t)p * w->kv_stride + (size_t)g * d, d);
            if (scores[k] > max) max = scores[k];
        }
        float sum = 0;
        for (int k = 0; k < n; k++) {
            scores[k] = expf(scores[k] - max);
            sum += scores[k];
        }
        float *out = w->out + (size_t)i * w->out_stride + (size_t)h * d;
        memset(out, 0, sizeof(float) * (size_t)d);
        for (int k = 0; k < n; k++) {
            int p = k < n1 ? k : b0 + (k - n1);
            const float *v = w->values + (size_t)p * w->kv_stride + (size_t)g * d;
            float a = scores[k] / sum;
            for (int j = 0; j < d; j++) out[j] += a * v[j];
        }
    }
    free(scores);
}

void cq_attention(cq_pool *pool, const float *q, size_t q_stride, int rows, int heads, int kv_heads, int head_dim,
                  const float *keys, const float *values, size_t kv_stride, const int *seen, const int *extra_from,
                  const int *extra_to, float scale, float *out, size_t out_stride) {
    attention_work w = {
        .q = q, .keys = keys, .values = values, .q_stride = q_stride, .kv_stride = kv_stride, .out_stride = out_stride,
        .rows = rows, .heads = heads, .group = heads / kv_heads, .head_dim = head_dim,
        .seen = seen, .extra_from = extra_from, .extra_to = extra_to, .scale = scale, .out = out,
    };
    int most = 0;
    for (int i = 0; i < rows; i++) {
        int n = seen[i] + (extra_from && extra_to[i] > extra_from[i] ? extra_to[i] - extra_from[i] : 0);
        if (n > most) most = n;
    }
    w.most_keys = most;
    atomic_init(&w.next, 0);
    if (pool) cq_pool_run(pool, attention_worker, &w);
    else attention_worker(&w, 0, 1);
}
