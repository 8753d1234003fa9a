/*
 * Test kit shared by the C test suites: a check counter with the closing "N passed, N failed"
 * line, a seeded RNG whose seed is printed (LINATTN_TEST_SEED=<n> reproduces a run), float64
 * models of the three dtypes (rounding, encoding, ulp) written independently of src/convert.h,
 * and test tensors (packed or strided views, NaN poison, "every element written" checks).
 * Only the public API (linattn.h) is used here.
 */
#ifndef LINATTN_TESTKIT_H
#define LINATTN_TESTKIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "linattn.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define TK_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define TK_PRINTF(a, b)
#endif

/* Sanitizer and unoptimised builds run the randomised suites with fewer cases. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || !defined(__OPTIMIZE__)
#define TK_SLOW_BUILD 1
#else
#define TK_SLOW_BUILD 0
#endif

/* Reduced problem set: LINATTN_TEST_REDUCED=1 (set by scripts/test-neon, whose qemu-user runs
 * are 10-30x slower than native). Suites then run fewer random cases and smaller sizes while
 * keeping every code path (rule, dtype, state mode, panel shape) they cover natively. */
int tk_reduced(void);

/* Number of random cases: LINATTN_TEST_CASES if set, else fast_default (optimised builds) or
 * slow_default (sanitizers / -O0, or a reduced run). */
int tk_case_count(int fast_default, int slow_default);

/* ------------------------------------------------------------------ report */

/* Starts a suite: prints its name. */
void tk_begin(const char* suite);
/* Sets a description of the current case, printed with every failure until changed. */
void tk_context(const char* fmt, ...) TK_PRINTF(1, 2);
/* Counts one check; on failure prints the context and the message (the first 200 only).
 * Returns ok. */
bool tk_check(bool ok, const char* fmt, ...) TK_PRINTF(2, 3);
/* Prints a note (not a check). */
void tk_note(const char* fmt, ...) TK_PRINTF(1, 2);
/* Prints "N passed, N failed" and returns the process exit code (0 iff nothing failed). */
int tk_finish(void);
int64_t tk_failed(void);
int64_t tk_passed(void);
/* Aborts the suite (e.g. allocation failure) after printing the closing line. */
void tk_fatal(const char* fmt, ...) TK_PRINTF(1, 2);

/* Monotonic seconds. */
double tk_seconds(void);

/* ------------------------------------------------------------------ rng */

typedef struct tk_rng { uint64_t s[4]; } tk_rng;

/* The run seed: LINATTN_TEST_SEED if set, else fresh (time, pid). Printed once. */
uint64_t tk_seed(void);
void tk_rng_init(tk_rng* r, uint64_t seed);
uint64_t tk_next(tk_rng* r);
double tk_uniform(tk_rng* r);                      /* [0, 1) */
double tk_uniform_range(tk_rng* r, double lo, double hi);
double tk_normal(tk_rng* r);
/* The larger of a and b, out of line: gcc 12's AArch64 cross compiler crashes vectorising
 * fmax reductions in the tests' error loops. */
double tk_max(double a, double b);
int64_t tk_below(tk_rng* r, int64_t n);            /* [0, n) */
void tk_shuffle(tk_rng* r, int* a, int n);

/* A balanced sampler for one test axis: values 0..n-1 drawn from successive random
 * permutations, so every value appears equally often (pairwise-ish coverage when several
 * axes are drawn independently). */
typedef struct tk_axis { int n, pos; int perm[64]; } tk_axis;
void tk_axis_init(tk_axis* a, int n);
int tk_axis_next(tk_axis* a, tk_rng* r);

/* ------------------------------------------------------------------ dtypes (float64 model) */

/* Significand bits (without the hidden bit), minimum and maximum normal exponent. */
int tk_dtype_mant(linattn_dtype dt);
int tk_dtype_emin(linattn_dtype dt);
int tk_dtype_emax(linattn_dtype dt);
size_t tk_dtype_size(linattn_dtype dt);
const char* tk_dtype_str(linattn_dtype dt);

/* Rounds x to the nearest value of dt (ties to even, gradual underflow, overflow to inf,
 * NaN kept). Computed in double: a direct single rounding from x. */
double tk_round(double x, linattn_dtype dt);
/* Spacing of dt values at magnitude |x| (the ulp of the binade of x; min subnormal spacing
 * below the normal range). */
double tk_ulp(double x, linattn_dtype dt);
/* Bit patterns: encode a value already representable in dt (NaN -> quiet NaN), decode. */
uint32_t tk_encode(double x, linattn_dtype dt);
double tk_decode(uint32_t bits, linattn_dtype dt);
/* Element i of a dt array. tk_store rounds x to dt first and returns the stored value. */
double tk_load(const void* base, int64_t i, linattn_dtype dt);
double tk_store(void* base, int64_t i, linattn_dtype dt, double x);
/* The poison pattern: a NaN with a recognisable payload. */
uint32_t tk_poison_bits(linattn_dtype dt);

/* ------------------------------------------------------------------ tensors */

typedef struct tk_tensor {
  linattn_dtype dtype;
  int32_t rank;
  int64_t dims[LINATTN_MAX_RANK];
  int64_t strides[LINATTN_MAX_RANK]; /* elements, always explicit here */
  bool packed;          /* strides are the packed ones: pass all-zero strides to the library */
  void* data;           /* element (0,...,0) */
  unsigned char* base;  /* allocation start (NULL for views: owner is another tensor) */
  size_t alloc_elems;   /* elements in the allocation, for poison / gap checks */
  unsigned char* span;  /* first byte of the memory this tensor may touch (allocation) */
} tk_tensor;

int64_t tk_numel_dims(int32_t rank, const int64_t* dims);
int64_t tk_numel(const tk_tensor* t);
/* Packed tensor, allocation 64-byte aligned. Zero elements: data is a valid pointer anyway
 * unless null_if_empty. */
tk_tensor tk_alloc(linattn_dtype dt, int32_t rank, const int64_t* dims);
/* Strided tensor inside a private allocation: each dimension d > 0 gets pad[d] extra elements
 * of stride (so strides exceed the packed ones); innermost stride 1. pad may be NULL. */
tk_tensor tk_alloc_padded(linattn_dtype dt, int32_t rank, const int64_t* dims, const int64_t* pad);
/* A view into parent's allocation starting at element offset, with the given strides. */
tk_tensor tk_view(const tk_tensor* parent, int64_t offset, int32_t rank, const int64_t* dims,
                  const int64_t* strides);
void tk_free(tk_tensor* t);
/* Descriptor for the library (strides all zero when packed). */
linattn_tensor tk_desc(const tk_tensor* t);

/* Offset (elements from data) of a multi-index. */
int64_t tk_offset(const tk_tensor* t, const int64_t* idx);
/* Packed (row-major) index -> element offset. */
int64_t tk_offset_linear(const tk_tensor* t, int64_t linear);
double tk_get(const tk_tensor* t, int64_t linear);
double tk_set(tk_tensor* t, int64_t linear, double x); /* rounds; returns stored value */

/* Stores vals[i] (row-major) into t, rounding to t's dtype, and replaces vals[i] by the
 * stored value (the quantised input the oracle must see). */
void tk_fill(tk_tensor* t, double* vals);
/* Reads t into vals (row-major). */
void tk_read(const tk_tensor* t, double* vals);
/* Fills the whole allocation (logical elements and gaps) with the NaN poison pattern. */
void tk_poison(tk_tensor* t);
/* Counts logical elements that are NaN (not written). */
int64_t tk_count_nan(const tk_tensor* t);
/* Counts allocation elements outside the logical tensor that are no longer the poison
 * pattern (written out of bounds). Only meaningful after tk_poison on an owning tensor. */
int64_t tk_count_gap_writes(const tk_tensor* t);
/* Bitwise comparison of the logical elements of two tensors of the same dtype and dims.
 * Returns the number of differing elements; *first gets the first linear index (or -1). */
int64_t tk_bits_differ(const tk_tensor* a, const tk_tensor* b, int64_t* first);
/* Copies logical elements (same dims and dtype) bit for bit. */
void tk_copy(tk_tensor* dst, const tk_tensor* src);

/* Random helpers producing double arrays (then quantised by tk_fill). */
void tk_fill_normal(tk_rng* r, double* v, int64_t n, double sigma);
void tk_fill_uniform(tk_rng* r, double* v, int64_t n, double lo, double hi);
/* L2-normalise consecutive groups of d values (keys per head); eps keeps zero rows finite. */
void tk_normalise_rows(double* v, int64_t rows, int64_t d);

/* Allocation helpers that abort the suite on failure. */
void* tk_xmalloc(size_t n);
void* tk_xcalloc(size_t n, size_t size);
double* tk_dalloc(int64_t n);
void* tk_aligned_alloc(size_t alignment, size_t size);
void tk_aligned_free(void* p);

/* A context with the ISA forced and the given thread count (built-in pool). */
linattn_context* tk_context_create(linattn_isa isa, int32_t num_threads);
/* The ISAs this build and CPU can run, in a fixed order; returns the count. */
int tk_available_isas(linattn_isa* out, int max);

#ifdef __cplusplus
}
#endif

#endif /* LINATTN_TESTKIT_H */
