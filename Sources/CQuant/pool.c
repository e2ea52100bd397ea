// The engine's worker pool: threads created once, woken per run. A decoded token makes
// about a hundred runs of a few microseconds each, so workers spin a little before sleeping.
#include "cquant.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

// About 50–100 µs of spinning before a worker sleeps on the condition variable.
enum { SPIN_ROUNDS = 20000 };

struct cq_pool {
    int threads;
    pthread_t *ids;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    atomic_uint generation;
    atomic_int pending;
    atomic_int sleepers;
    atomic_int stop;
    void (*fn)(void *, int, int);
    void *ctx;
};

typedef struct {
    cq_pool *pool;
    int index;
} worker_start;

static void *worker_main(void *arg) {
    worker_start start = *(worker_start *)arg;
    free(arg);
    cq_pool *p = start.pool;
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen && !atomic_load(&p->stop)) {
            if (++spins < SPIN_ROUNDS) { CPU_RELAX(); continue; }
            pthread_mutex_lock(&p->lock);
            atomic_fetch_add(&p->sleepers, 1);
            while (atomic_load(&p->generation) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->wake, &p->lock);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->lock);
            spins = 0;
        }
        if (atomic_load(&p->stop)) return 0;
        seen = g;
        p->fn(p->ctx, start.index, p->threads);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
    }
}

cq_pool *cq_pool_create(int threads) {
    cq_pool *p = calloc(1, sizeof *p);
    if (!p) return 0;
    p->threads = threads < 1 ? 1 : threads;
    pthread_mutex_init(&p->lock, 0);
    pthread_cond_init(&p->wake, 0);
    p->ids = calloc((size_t)p->threads, sizeof(pthread_t));
    for (int i = 1; i < p->threads; i++) {
        worker_start *s = malloc(sizeof *s);
        s->pool = p;
        s->index = i;
        if (pthread_create(&p->ids[i], 0, worker_main, s) != 0) {
            free(s);
            p->threads = i;  // run with the workers that started
            break;
        }
    }
    return p;
}

int cq_pool_threads(const cq_pool *p) { return p->threads; }

void cq_pool_run(cq_pool *p, void (*fn)(void *, int, int), void *ctx) {
    if (p->threads == 1) { fn(ctx, 0, 1); return; }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->pending, p->threads - 1, memory_order_relaxed);
    // A worker going to sleep checks the generation under the lock: no wake-up is lost.
    pthread_mutex_lock(&p->lock);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    if (atomic_load(&p->sleepers) > 0) pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    fn(ctx, 0, p->threads);
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) CPU_RELAX();
}

void cq_pool_destroy(cq_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 1; i < p->threads; i++) pthread_join(p->ids[i], 0);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    free(p->ids);
    free(p);
}
