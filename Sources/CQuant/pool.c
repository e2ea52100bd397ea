// The engine's worker pool: threads created once, woken per run. A decoded token makes
// about a hundred runs of a few microseconds each, so workers spin a little before sleeping.
//
// A run never waits for a worker that has not started on it: the work functions hand out
// their pieces through atomic counters, so whoever runs does the work, and the caller only
// waits for workers already inside. On a shared machine (the box extracts documents while it
// answers) a worker without a core then costs nothing, where waiting for every worker to
// check in would cost a scheduling slice per run.
#include "cquant.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

// A waiting worker spins about 50–100 µs (yielding its core after the first rounds), then
// sleeps on the condition variable.
enum { PAUSE_ROUNDS = 2000, SPIN_ROUNDS = 20000 };

struct cq_pool {
    int threads;
    pthread_t *ids;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    atomic_uint generation;  // one more per run
    atomic_int open;         // the current run still takes workers
    atomic_int active;       // workers inside the current run's function
    atomic_int sleepers;
    atomic_int stop;
    void (*fn)(void *, int, int);
    void *ctx;
};

typedef struct {
    cq_pool *pool;
    int index;
} worker_start;

static void relax(int round) {
    if (round < PAUSE_ROUNDS) CPU_RELAX();
    else sched_yield();
}

static void *worker_main(void *arg) {
    worker_start start = *(worker_start *)arg;
    free(arg);
    cq_pool *p = start.pool;
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen && !atomic_load(&p->stop)) {
            if (++spins < SPIN_ROUNDS) { relax(spins); continue; }
            pthread_mutex_lock(&p->lock);
            atomic_fetch_add(&p->sleepers, 1);
            while (atomic_load(&p->generation) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->wake, &p->lock);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->lock);
            spins = 0;
        }
        if (atomic_load(&p->stop)) return 0;
        seen = g;
        // Enter, then look: a caller that closed the run before this worker entered has not
        // seen it in `active` and may be gone, so the worker must not touch its work.
        atomic_fetch_add(&p->active, 1);
        if (atomic_load(&p->open)) p->fn(p->ctx, start.index, p->threads);
        atomic_fetch_sub(&p->active, 1);
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
    atomic_store(&p->open, 1);
    // A worker going to sleep checks the generation under the lock: no wake-up is lost.
    pthread_mutex_lock(&p->lock);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    if (atomic_load(&p->sleepers) > 0) pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    fn(ctx, 0, p->threads);
    // Every piece is taken; wait only for the workers still finishing theirs.
    atomic_store(&p->open, 0);
    for (int spins = 0; atomic_load(&p->active) > 0; spins++) relax(spins);
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
