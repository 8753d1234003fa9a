/* Built-in thread pool: num_threads - 1 persistent workers plus the calling thread.
 * One parallel region at a time; tasks are claimed by index from an atomic counter
 * (ggml-style), so the split of work into tasks - not the pool - fixes the results. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct linattn_pool {
  pthread_mutex_t caller;   /* held by the thread running a region; try-locked */
  pthread_mutex_t lock;
  pthread_cond_t wake;
  pthread_cond_t done;
  uint64_t generation;      /* bumped per region (under lock) */
  int stop;
  int active;               /* workers still inside the current region */
  linattn_task_fn task;
  void* arg;
  size_t n;
  atomic_size_t next;
  int32_t num_workers;
  pthread_t* threads;
};

static void run_tasks(struct linattn_pool* p, linattn_task_fn task, void* arg, size_t n) {
  for (;;) {
    size_t i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
    if (i >= n) break;
    task(arg, i);
  }
}

static void* worker_main(void* vp) {
  struct linattn_pool* p = (struct linattn_pool*)vp;
  uint64_t seen = 0;
  pthread_mutex_lock(&p->lock);
  for (;;) {
    while (p->generation == seen && !p->stop) pthread_cond_wait(&p->wake, &p->lock);
    if (p->stop) break;
    seen = p->generation;
    linattn_task_fn task = p->task;
    void* arg = p->arg;
    size_t n = p->n;
    pthread_mutex_unlock(&p->lock);
    run_tasks(p, task, arg, n);
    pthread_mutex_lock(&p->lock);
    if (--p->active == 0) pthread_cond_signal(&p->done);
  }
  pthread_mutex_unlock(&p->lock);
  return NULL;
}

struct linattn_pool* linattn_pool_create(linattn_context* ctx, int32_t num_threads) {
  struct linattn_pool* p = (struct linattn_pool*)linattn_ctx_alloc(ctx, sizeof *p);
  if (!p) return NULL;
  memset(p, 0, sizeof *p);
  p->num_workers = num_threads - 1;
  p->threads = (pthread_t*)linattn_ctx_alloc(ctx, sizeof(pthread_t) * (size_t)p->num_workers);
  if (!p->threads) {
    linattn_ctx_free(ctx, p);
    return NULL;
  }
  pthread_mutex_init(&p->caller, NULL);
  pthread_mutex_init(&p->lock, NULL);
  pthread_cond_init(&p->wake, NULL);
  pthread_cond_init(&p->done, NULL);
  atomic_init(&p->next, 0);
  int started = 0;
  for (; started < p->num_workers; started++) {
    if (pthread_create(&p->threads[started], NULL, worker_main, p) != 0) break;
  }
  if (started < p->num_workers) {
    p->num_workers = started;
    linattn_pool_destroy(ctx, p);
    return NULL;
  }
  return p;
}

void linattn_pool_destroy(linattn_context* ctx, struct linattn_pool* p) {
  if (!p) return;
  /* No region may be running (the context waits for its calls first); taking the caller lock
   * makes the pool itself wait for one rather than strand its caller on joined workers. */
  pthread_mutex_lock(&p->caller);
  pthread_mutex_lock(&p->lock);
  p->stop = 1;
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->lock);
  for (int32_t i = 0; i < p->num_workers; i++) pthread_join(p->threads[i], NULL);
  pthread_mutex_unlock(&p->caller);
  pthread_cond_destroy(&p->wake);
  pthread_cond_destroy(&p->done);
  pthread_mutex_destroy(&p->lock);
  pthread_mutex_destroy(&p->caller);
  linattn_ctx_free(ctx, p->threads);
  linattn_ctx_free(ctx, p);
}

bool linattn_pool_try_run(struct linattn_pool* p, linattn_task_fn task, void* arg, size_t n) {
  if (pthread_mutex_trylock(&p->caller) != 0) return false;
  pthread_mutex_lock(&p->lock);
  p->task = task;
  p->arg = arg;
  p->n = n;
  atomic_store_explicit(&p->next, 0, memory_order_relaxed);
  p->active = p->num_workers;
  p->generation++;
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->lock);

  run_tasks(p, task, arg, n);

  pthread_mutex_lock(&p->lock);
  while (p->active > 0) pthread_cond_wait(&p->done, &p->lock);
  pthread_mutex_unlock(&p->lock);
  pthread_mutex_unlock(&p->caller);
  return true;
}
