// The attention loop, included once per kernel set (KERNELS: portable or avx2, naming its
// primitives); it defines attention_f32_KERNELS and attention_half_KERNELS. Not a public header.
//
// A task is one query row and one kv head with the query heads that share it: each key and
// value is read once for the group. Tasks go kv head by kv head, so a worker's consecutive
// rows read the same keys while they are in its cache. With an f16 cache the queries and the
// attention weights are rounded to f16 too, as llama.cpp's CPU path multiplies them.
#define CQ_CAT_(a, b) a##b
#define CQ_CAT(a, b) CQ_CAT_(a, b)

#define ATTENTION_WORKER CQ_CAT(attention_f32_, KERNELS)
#define KV_TYPE float
#define KEY_DOT CQ_CAT(dot_, KERNELS)
#define VALUE_AXPY CQ_CAT(axpy_, KERNELS)
#define ROUND(x) (x)
#include "attention_loop.h"
#undef ATTENTION_WORKER
#undef KV_TYPE
#undef KEY_DOT
#undef VALUE_AXPY
#undef ROUND

#define ATTENTION_WORKER CQ_CAT(attention_half_, KERNELS)
#define KV_TYPE uint16_t
#define KEY_DOT CQ_CAT(dot_half_, KERNELS)
#define VALUE_AXPY CQ_CAT(axpy_half_, KERNELS)
#define ROUND(x) CQ_CAT(round_half_, KERNELS)(x)
#include "attention_loop.h"
#undef ATTENTION_WORKER
#undef KV_TYPE
#undef KEY_DOT
#undef VALUE_AXPY
#undef ROUND
