/* Context, errors, version, small public helpers. */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

/* ------------------------------------------------------------------ version, status */

uint32_t linattn_version(void) { return LINATTN_VERSION; }
const char* linattn_version_string(void) { return LINATTN_VERSION_STRING; }

const char* linattn_status_string(linattn_status status) {
  switch (status) {
    case LINATTN_SUCCESS: return "success";
    case LINATTN_ERROR_INVALID_ARGUMENT: return "invalid argument";
    case LINATTN_ERROR_UNSUPPORTED: return "unsupported";
    case LINATTN_ERROR_OUT_OF_MEMORY: return "out of memory";
    case LINATTN_ERROR_WORKSPACE_TOO_SMALL: return "workspace too small";
    case LINATTN_ERROR_INTERNAL: return "internal error";
  }
  return "unknown status";
}

static _Thread_local char g_last_error[512];

const char* linattn_last_error(void) { return g_last_error; }

void linattn_clear_error(void) { g_last_error[0] = '\0'; }

linattn_status linattn_set_error(linattn_status status, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_last_error, sizeof g_last_error, fmt, ap);
  va_end(ap);
  return status;
}

/* ------------------------------------------------------------------ dtypes, tensors */

size_t linattn_dtype_size(linattn_dtype dtype) {
  switch (dtype) {
    case LINATTN_DTYPE_F32: return 4;
    case LINATTN_DTYPE_F16:
    case LINATTN_DTYPE_BF16: return 2;
    default: return 0;
  }
}

const char* linattn_dtype_name(linattn_dtype dtype) {
  switch (dtype) {
    case LINATTN_DTYPE_F32: return "float32";
    case LINATTN_DTYPE_F16: return "float16";
    case LINATTN_DTYPE_BF16: return "bfloat16";
    default: return "invalid";
  }
}

linattn_tensor linattn_make_tensor(void* data, linattn_dtype dtype, int32_t rank, const int64_t* dims) {
  linattn_tensor t;
  memset(&t, 0, sizeof t);
  t.data = data;
  t.dtype = dtype;
  t.rank = rank;
  for (int32_t i = 0; i < rank && i < LINATTN_MAX_RANK && dims; i++) t.dims[i] = dims[i];
  return t;
}

linattn_update_rule linattn_update_rule_from_string(const char* name) {
  if (!name) return LINATTN_UPDATE_INVALID;
  if (!strcmp(name, "linear")) return LINATTN_UPDATE_LINEAR;
  if (!strcmp(name, "gated")) return LINATTN_UPDATE_GATED;
  if (!strcmp(name, "delta")) return LINATTN_UPDATE_DELTA;
  if (!strcmp(name, "gated_delta")) return LINATTN_UPDATE_GATED_DELTA;
  return LINATTN_UPDATE_INVALID;
}

linattn_activation linattn_activation_from_string(const char* name) {
  if (!name) return LINATTN_ACTIVATION_INVALID;
  if (!strcmp(name, "none")) return LINATTN_ACTIVATION_NONE;
  if (!strcmp(name, "silu") || !strcmp(name, "swish")) return LINATTN_ACTIVATION_SILU;
  return LINATTN_ACTIVATION_INVALID;
}

void linattn_linear_attention_desc_init(linattn_linear_attention_desc* desc) {
  if (!desc) return;
  memset(desc, 0, sizeof *desc);
  desc->update_rule = LINATTN_UPDATE_GATED_DELTA;
  desc->scale = 0.0f;
  desc->chunk_size = 64;
}

void linattn_causal_conv_desc_init(linattn_causal_conv_desc* desc) {
  if (!desc) return;
  memset(desc, 0, sizeof *desc);
  desc->activation = LINATTN_ACTIVATION_NONE;
  desc->dilation = 1;
}

/* ------------------------------------------------------------------ memory */

/* malloc over-allocated by the alignment, the block malloc gave stored just before the aligned
 * one: posix_memalign splits off and frees the misaligned head of each block, and the small
 * chunks it leaves make the next large request consolidate the heap (a cost that showed in every
 * decode-sized call's workspace). alignment: a power of two (linattn asks for 64). */
static void* default_alloc(void* user, size_t size, size_t alignment) {
  (void)user;
  if (alignment < sizeof(void*)) alignment = sizeof(void*);
  size_t total;
  if (__builtin_add_overflow(size, alignment + sizeof(void*), &total)) return NULL;
  char* raw = (char*)malloc(total);
  if (!raw) return NULL;
  const uintptr_t p = ((uintptr_t)raw + sizeof(void*) + alignment - 1) & ~(uintptr_t)(alignment - 1);
  ((void**)p)[-1] = raw;
  return (void*)p;
}

static void default_free(void* user, void* ptr) {
  (void)user;
  if (ptr) free(((void**)ptr)[-1]);
}

linattn_status linattn_take_workspace(linattn_context* ctx, void* given, size_t given_size, size_t need, bool allocate,
                                      char** workspace, void** owned) {
  *owned = NULL;
  if (need == SIZE_MAX) return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, "workspace size overflows");
  if (given) {
    if (given_size < need)
      return linattn_set_error(LINATTN_ERROR_WORKSPACE_TOO_SMALL, "workspace: %zu bytes given, %zu needed", given_size,
                               need);
    if (((uintptr_t)given & 63u) != 0)
      return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, "workspace: must be 64-byte aligned");
    *workspace = (char*)given;
  } else if (need > 0 && allocate) {
    *owned = linattn_ctx_alloc(ctx, need);
    if (!*owned)
      return linattn_set_error(LINATTN_ERROR_OUT_OF_MEMORY, "workspace: allocation of %zu bytes failed", need);
    *workspace = (char*)*owned;
  }
  return LINATTN_SUCCESS;
}

linattn_status linattn_answer_workspace_size(size_t bytes, size_t* workspace_size) {
  if (bytes == SIZE_MAX) return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, "workspace size overflows");
  *workspace_size = bytes;
  return LINATTN_SUCCESS;
}

void* linattn_ctx_alloc(linattn_context* ctx, size_t size) { return ctx->alloc(ctx->alloc_user, size, 64); }

void linattn_ctx_free(linattn_context* ctx, void* ptr) {
  if (ptr) ctx->free(ctx->alloc_user, ptr);
}

/* ------------------------------------------------------------------ context */

/* Size of the last-level data cache of CPU 0 for the state store policy. sysfs first:
 * glibc's sysconf reports implausible L3 sizes on some virtual AMD CPUs (320 MiB for 32).
 * Unknown: 32 MiB, a common server L3 slice. */
static size_t detect_llc_bytes(void) {
  size_t best = 0;
  int best_level = 0;
  for (int i = 0; i < 8; i++) {
    char path[96], buf[64];
    int level = 0;
    snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
    FILE* f = fopen(path, "r");
    if (!f) break;
    if (fgets(buf, sizeof buf, f)) level = atoi(buf);
    fclose(f);
    snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/type", i);
    if (!(f = fopen(path, "r"))) continue;
    const int instr = fgets(buf, sizeof buf, f) && !strncmp(buf, "Instruction", 11);
    fclose(f);
    snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
    if (instr || level <= best_level || !(f = fopen(path, "r"))) continue;
    char* end = NULL;
    unsigned long long n = 0;
    if (fgets(buf, sizeof buf, f)) n = strtoull(buf, &end, 10);
    fclose(f);
    if (end && (*end == 'K' || *end == 'k')) n <<= 10;
    else if (end && *end == 'M') n <<= 20;
    if (n > 0) {
      best = (size_t)n;
      best_level = level;
    }
  }
  if (best) return best;
#ifdef _SC_LEVEL3_CACHE_SIZE
  const long n3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (n3 > 0) return (size_t)n3;
#endif
  return (size_t)32 << 20;
}

void linattn_context_options_init(linattn_context_options* options) {
  if (!options) return;
  memset(options, 0, sizeof *options);
}

linattn_status linattn_context_create(const linattn_context_options* options, linattn_context** context) {
  linattn_clear_error();
  if (!context) return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, "context: NULL output pointer");
  *context = NULL;
  linattn_context_options def;
  linattn_context_options_init(&def);
  const linattn_context_options* o = options ? options : &def;

  if (o->num_threads < 0 || o->num_threads > LINATTN_MAX_THREADS)
    return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT,
                             "options.num_threads: expected 0..%d (0 = all CPUs), got %d", LINATTN_MAX_THREADS,
                             (int)o->num_threads);
  if ((o->alloc == NULL) != (o->free == NULL))
    return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT,
                             "options.alloc/options.free: give both hooks or neither");
  if ((int)o->isa < LINATTN_ISA_AUTO || (int)o->isa > linattn_isa_count())
    return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, "options.isa: unknown value %d", (int)o->isa);
  if ((int)o->state_stores < LINATTN_STATE_STORES_AUTO || (int)o->state_stores > LINATTN_STATE_STORES_STREAMING)
    return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT,
                             "options.state_stores: unknown value %d (expected 0 auto, 1 cached, 2 streaming)",
                             (int)o->state_stores);

  linattn_isa isa = o->isa;
  if (isa == LINATTN_ISA_AUTO) {
    const char* bad = NULL;
    isa = linattn_auto_isa(&bad);
    if (isa == LINATTN_ISA_AUTO)
      return linattn_set_error(LINATTN_ERROR_UNSUPPORTED,
                               "environment LINATTN_ISA=%s: expected one of %s that this CPU supports",
                               bad ? bad : "?", linattn_isa_names());
  } else if (!linattn_isa_available(isa)) {
    return linattn_set_error(LINATTN_ERROR_UNSUPPORTED, "options.isa: %s kernels are not available on this CPU/build",
                             linattn_isa_name(isa));
  }

  const char* bad_tune = NULL;
  const linattn_tuning* tuning = linattn_auto_tuning(&bad_tune);
  if (!tuning)
    return linattn_set_error(LINATTN_ERROR_UNSUPPORTED, "environment LINATTN_TUNE=%s: expected one of %s",
                             bad_tune ? bad_tune : "?", linattn_tuning_names());

  int32_t threads = o->num_threads;
  if (threads == 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    threads = n > 0 ? (int32_t)(n > LINATTN_MAX_THREADS ? LINATTN_MAX_THREADS : n) : 1;
  }

  linattn_alloc_fn af = o->alloc ? o->alloc : default_alloc;
  linattn_free_fn ff = o->free ? o->free : default_free;
  linattn_context* ctx = (linattn_context*)af(o->alloc_user, sizeof *ctx, 64);
  if (!ctx) return linattn_set_error(LINATTN_ERROR_OUT_OF_MEMORY, "context: allocation of %zu bytes failed", sizeof *ctx);
  memset(ctx, 0, sizeof *ctx);
  atomic_init(&ctx->lifetime, 0);
  ctx->num_threads = threads;
  ctx->parallel_for = o->parallel_for;
  ctx->parallel_for_data = o->parallel_for_data;
  ctx->alloc = af;
  ctx->free = ff;
  ctx->alloc_user = o->alloc_user;
  ctx->state_stores = o->state_stores;
  ctx->llc_bytes = detect_llc_bytes();
  ctx->tuning = tuning;
  ctx->kernels = linattn_kernels_for_isa(isa);
  if (!ctx->kernels) {
    ff(o->alloc_user, ctx);
    return linattn_set_error(LINATTN_ERROR_INTERNAL, "context: no kernel table for %s", linattn_isa_name(isa));
  }
  if (threads > 1 && !ctx->parallel_for) {
    ctx->pool = linattn_pool_create(ctx, threads);
    if (!ctx->pool) {
      ff(o->alloc_user, ctx);
      return linattn_set_error(LINATTN_ERROR_OUT_OF_MEMORY, "context: could not start %d pool threads", (int)threads);
    }
  }
  *context = ctx;
  return LINATTN_SUCCESS;
}

/* ------------------------------------------------------------------ lifetime */

#define LA_CTX_CLOSING ((uint_fast64_t)1)
#define LA_CTX_CALL ((uint_fast64_t)2)

/* Closers wait here for the last call in flight on their context. Process-wide: the call that
 * leaves last cannot touch its context after its decrement, so it signals through these. */
static pthread_mutex_t g_close_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_close_cond = PTHREAD_COND_INITIALIZER;

linattn_status linattn_ctx_enter(linattn_context* ctx) {
  if (!ctx) return LINATTN_SUCCESS;
  const uint_fast64_t s = atomic_fetch_add_explicit(&ctx->lifetime, LA_CTX_CALL, memory_order_acquire);
  if (!(s & LA_CTX_CLOSING)) return LINATTN_SUCCESS;
  linattn_ctx_leave(ctx);
  return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT,
                           "context: closed (linattn_context_close or linattn_context_destroy began before this "
                           "call); create a new context");
}

void linattn_ctx_leave(linattn_context* ctx) {
  if (!ctx) return;
  const uint_fast64_t s = atomic_fetch_sub_explicit(&ctx->lifetime, LA_CTX_CALL, memory_order_acq_rel);
  if (s == (LA_CTX_CLOSING | LA_CTX_CALL)) { /* last call out and a closer waits: ctx may be freed now */
    pthread_mutex_lock(&g_close_lock);
    pthread_cond_broadcast(&g_close_cond);
    pthread_mutex_unlock(&g_close_lock);
  }
}

void linattn_context_close(linattn_context* context) {
  if (!context) return;
  pthread_mutex_lock(&g_close_lock);
  atomic_fetch_or_explicit(&context->lifetime, LA_CTX_CLOSING, memory_order_acq_rel);
  while (atomic_load_explicit(&context->lifetime, memory_order_acquire) != LA_CTX_CLOSING)
    pthread_cond_wait(&g_close_cond, &g_close_lock);
  const bool stop_pool = !context->pool_stopped;
  context->pool_stopped = true;
  pthread_mutex_unlock(&g_close_lock);
  if (stop_pool && context->pool) {
    linattn_pool_destroy(context, context->pool);
    context->pool = NULL;
  }
}

void linattn_context_destroy(linattn_context* context) {
  if (!context) return;
  linattn_context_close(context);
  context->free(context->alloc_user, context);
}

int32_t linattn_context_num_threads(const linattn_context* context) { return context ? context->num_threads : 0; }

linattn_isa linattn_context_isa(const linattn_context* context) {
  return context && context->kernels ? context->kernels->isa : LINATTN_ISA_AUTO;
}

/* ------------------------------------------------------------------ parallel regions */

void linattn_run_parallel(linattn_context* ctx, linattn_task_fn task, void* arg, size_t n) {
  if (n == 0) return;
  if (n == 1) {
    task(arg, 0);
    return;
  }
  if (ctx->parallel_for) {
    ctx->parallel_for(ctx->parallel_for_data, task, arg, n);
    return;
  }
  if (ctx->pool && linattn_pool_try_run(ctx->pool, task, arg, n)) return;
  for (size_t i = 0; i < n; i++) task(arg, i); /* single thread, or the pool is busy */
}

/* ------------------------------------------------------------------ floating-point environment */

void linattn_fpenv_enter_ftz(linattn_fpenv* env) {
#if defined(__x86_64__) || defined(_M_X64)
  env->saved = _mm_getcsr();
  /* A state decaying through the subnormal range would take a microcode assist per vector
   * operation without FTZ (docs/reliability.md). DAZ as well: with FTZ alone a subnormal input
   * still becomes 0 at its first scaling (scale * q, beta * v), so it buys no clear rule. */
  _mm_setcsr(env->saved | 0x8040u); /* FTZ (bit 15) | DAZ (bit 6) */
#elif defined(__aarch64__)
  uint64_t fpcr;
  __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
  env->saved = (uint32_t)fpcr;
  fpcr |= (1u << 24); /* FZ */
  __asm__ volatile("msr fpcr, %0" : : "r"(fpcr));
#else
  env->saved = 0;
#endif
}

void linattn_fpenv_leave(const linattn_fpenv* env) {
#if defined(__x86_64__) || defined(_M_X64)
  _mm_setcsr(env->saved);
#elif defined(__aarch64__)
  uint64_t fpcr = env->saved;
  __asm__ volatile("msr fpcr, %0" : : "r"(fpcr));
#else
  (void)env;
#endif
}
