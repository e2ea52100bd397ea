// One attention worker (see attention_worker.h). Not a public header.
static void ATTENTION_WORKER(void *ctx, int worker, int workers) {
    (void)worker; (void)workers;
    attention_work *w = ctx;
    int d = w->head_dim, group = w->group, most = w->most_keys;
    const KV_TYPE *keys = w->keys, *values = w->values;
    float *scores = malloc(sizeof(float) * ((size_t)group * (size_t)most + (size_t)group + (size_t)group * (size_t)d));
    float *sums = scores + (size_t)group * (size_t)most, *rounded = sums + group;
    for (;;) {
        int task = atomic_fetch_add_explicit(&w->next, 1, memory_order_relaxed);
        if (task >= w->rows * w->kv_heads) break;
        int g = task / w->rows, i = task % w->rows;
        const float *q = w->q + (size_t)i * w->q_stride + (size_t)g * group * d;
        for (int j = 0; j < group * d; j++) rounded[j] = ROUND(q[j]);
        int s0 = w->seen_from ? w->seen_from[i] : 0, n1 = w->seen[i] - s0;
        int b0 = w->extra_from ? w->extra_from[i] : 0, b1 = w->extra_to ? w->extra_to[i] : 0;
        int n = n1 + (b1 > b0 ? b1 - b0 : 0);
        for (int k = 0; k < n; k++) {
            int p = k < n1 ? s0 + k : b0 + (k - n1);
            const KV_TYPE *key = keys + (size_t)p * w->kv_stride + (size_t)g * d;
            for (int h = 0; h < group; h++) scores[(size_t)h * most + k] = w->scale * KEY_DOT(rounded + (size_t)h * d, key, d);
        }
        for (int h = 0; h < group; h++) {
            float *s = scores + (size_t)h * most, max = -INFINITY, sum = 0;
            for (int k = 0; k < n; k++) if (s[k] > max) max = s[k];
            for (int k = 0; k < n; k++) {
                s[k] = expf(s[k] - max);
                sum += s[k];
            }
            sums[h] = sum;
        }
        float *out = w->out + (size_t)i * w->out_stride + (size_t)g * group * d;
        memset(out, 0, sizeof(float) * (size_t)group * (size_t)d);
        for (int k = 0; k < n; k++) {
            int p = k < n1 ? s0 + k : b0 + (k - n1);
            const KV_TYPE *value = values + (size_t)p * w->kv_stride + (size_t)g * d;
            for (int h = 0; h < group; h++) VALUE_AXPY(out + (size_t)h * d, ROUND(scores[(size_t)h * most + k] / sums[h]), value, d);
        }
    }
    free(scores);
}
