/* CPU feature detection (once) and the table of micro-kernel families per ISA.
 * A new ISA adds its kernel files and one table entry here, nothing else. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Kernel families present in this build (CMake defines LINATTN_HAVE_<FILE> for every
 * src/kernels/<file>.c it compiles). */
#ifdef LINATTN_HAVE_LA_SCALAR
extern const la_kernel linattn_la_scalar;
#endif
#ifdef LINATTN_HAVE_CONV_SCALAR
extern const conv_kernel linattn_conv_scalar;
#endif
#ifdef LINATTN_HAVE_LA_AVX2
extern const la_kernel linattn_la_avx2;
#endif
#ifdef LINATTN_HAVE_CONV_AVX2
extern const conv_kernel linattn_conv_avx2;
#endif
#ifdef LINATTN_HAVE_LA_AVX512
extern const la_kernel linattn_la_avx512;
#endif
#ifdef LINATTN_HAVE_CONV_AVX512
extern const conv_kernel linattn_conv_avx512;
#endif
#ifdef LINATTN_HAVE_LA_NEON
extern const la_kernel linattn_la_neon;
#endif
#ifdef LINATTN_HAVE_CONV_NEON
extern const conv_kernel linattn_conv_neon;
#endif

static const kernel_table table_reference = {LINATTN_ISA_REFERENCE, &linattn_la_reference, &linattn_conv_reference};

#if defined(LINATTN_HAVE_LA_SCALAR) && defined(LINATTN_HAVE_CONV_SCALAR)
#define HAVE_TABLE_SCALAR 1
static const kernel_table table_scalar = {LINATTN_ISA_SCALAR, &linattn_la_scalar, &linattn_conv_scalar};
#endif
#if LINATTN_HAVE_X86 && defined(LINATTN_HAVE_LA_AVX2) && defined(LINATTN_HAVE_CONV_AVX2)
#define HAVE_TABLE_AVX2 1
static const kernel_table table_avx2 = {LINATTN_ISA_AVX2, &linattn_la_avx2, &linattn_conv_avx2};
#endif
#if LINATTN_HAVE_X86 && defined(LINATTN_HAVE_LA_AVX512) && defined(LINATTN_HAVE_CONV_AVX512)
#define HAVE_TABLE_AVX512 1
static const kernel_table table_avx512 = {LINATTN_ISA_AVX512, &linattn_la_avx512, &linattn_conv_avx512};
#endif
#if LINATTN_HAVE_ARM64 && defined(LINATTN_HAVE_LA_NEON) && defined(LINATTN_HAVE_CONV_NEON)
#define HAVE_TABLE_NEON 1
static const kernel_table table_neon = {LINATTN_ISA_NEON, &linattn_la_neon, &linattn_conv_neon};
#endif

const char* linattn_isa_name(linattn_isa isa) {
  switch (isa) {
    case LINATTN_ISA_AUTO: return "auto";
    case LINATTN_ISA_REFERENCE: return "reference";
    case LINATTN_ISA_SCALAR: return "scalar";
    case LINATTN_ISA_AVX2: return "avx2";
    case LINATTN_ISA_AVX512: return "avx512";
    case LINATTN_ISA_NEON: return "neon";
  }
  return "unknown";
}

#if LINATTN_HAVE_X86 && defined(__GNUC__)
#include <cpuid.h>
#endif
#include <pthread.h>

/* CPU features, detected once per process (CPUID is slow under some hypervisors). */
static int g_has_avx2, g_has_avx512;
static pthread_once_t g_cpu_once = PTHREAD_ONCE_INIT;

static void detect_cpu(void) {
#if LINATTN_HAVE_X86 && defined(__GNUC__)
  __builtin_cpu_init();
  /* clang 14's __builtin_cpu_supports does not know "f16c": read CPUID.1:ECX bit 29 instead. */
  unsigned a, b, c, d;
  const int f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29)) != 0;
  g_has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
  g_has_avx512 = g_has_avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#endif
}

__attribute__((unused)) static int cpu_has_avx2(void) {
  pthread_once(&g_cpu_once, detect_cpu);
  return g_has_avx2;
}

__attribute__((unused)) static int cpu_has_avx512(void) {
  pthread_once(&g_cpu_once, detect_cpu);
  return g_has_avx512;
}

const kernel_table* linattn_kernels_for_isa(linattn_isa isa) {
  switch (isa) {
    case LINATTN_ISA_REFERENCE: return &table_reference;
#ifdef HAVE_TABLE_SCALAR
    case LINATTN_ISA_SCALAR: return &table_scalar;
#endif
#ifdef HAVE_TABLE_AVX2
    case LINATTN_ISA_AVX2: return cpu_has_avx2() ? &table_avx2 : NULL;
#endif
#ifdef HAVE_TABLE_AVX512
    case LINATTN_ISA_AVX512: return cpu_has_avx512() ? &table_avx512 : NULL;
#endif
#ifdef HAVE_TABLE_NEON
    case LINATTN_ISA_NEON: return &table_neon; /* Advanced SIMD is baseline on AArch64 */
#endif
    default: return NULL;
  }
}

int linattn_isa_available(linattn_isa isa) { return linattn_kernels_for_isa(isa) != NULL; }

linattn_isa linattn_auto_isa(const char** bad_env) {
  const char* env = getenv("LINATTN_ISA");
  if (env && *env && strcmp(env, "auto") != 0) {
    for (int i = LINATTN_ISA_REFERENCE; i <= LINATTN_ISA_NEON; i++) {
      if (!strcmp(env, linattn_isa_name((linattn_isa)i)) && linattn_isa_available((linattn_isa)i))
        return (linattn_isa)i;
    }
    if (bad_env) *bad_env = env;
    return LINATTN_ISA_AUTO;
  }
  static const linattn_isa preference[] = {LINATTN_ISA_AVX512, LINATTN_ISA_AVX2, LINATTN_ISA_NEON,
                                           LINATTN_ISA_SCALAR, LINATTN_ISA_REFERENCE};
  for (size_t i = 0; i < sizeof preference / sizeof preference[0]; i++)
    if (linattn_isa_available(preference[i])) return preference[i];
  return LINATTN_ISA_REFERENCE;
}
