/* CPU feature detection (once) and the dispatch table, built from the kernel registry
 * (src/kernels/registry.inc): a new ISA adds its line there and its kernel files. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* FAMILY_IF_<arch>(yes, no): yes in builds for that target, else no. */
#define FAMILY_IF_ANY(yes, no) yes
#if LINATTN_HAVE_X86
#define FAMILY_IF_X86(yes, no) yes
#else
#define FAMILY_IF_X86(yes, no) no
#endif
#if LINATTN_HAVE_ARM64
#define FAMILY_IF_ARM64(yes, no) yes
#else
#define FAMILY_IF_ARM64(yes, no) no
#endif

/* The kernels of the families this build contains. */
#define LINATTN_FAMILY(ID, name, arch, cpu, la, conv, gates, flags) \
  FAMILY_IF_##arch(extern const la_kernel la; extern const conv_kernel conv; extern const gates_kernel gates;, )
#include "kernels/registry.inc"
#undef LINATTN_FAMILY

/* Registry line i is the linattn_isa value i + 1: the values are 1 .. FAMILY_COUNT. */
enum {
#define LINATTN_FAMILY(ID, ...) FAMILY_INDEX_##ID,
#include "kernels/registry.inc"
#undef LINATTN_FAMILY
  FAMILY_COUNT
};
#define LINATTN_FAMILY(ID, ...) \
  _Static_assert(FAMILY_INDEX_##ID + 1 == LINATTN_ISA_##ID, "registry.inc lists the families in linattn_isa order");
#include "kernels/registry.inc"
#undef LINATTN_FAMILY

#if LINATTN_HAVE_X86 && defined(__GNUC__)
#include <cpuid.h>
#endif
#include <pthread.h>

/* CPU features, detected once per process (CPUID is slow under some hypervisors). */
static int g_has_avx2, g_has_avx512, g_has_avx512vbmi;
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
  /* CPUID.(7,0):ECX bit 1 (clang 14's __builtin_cpu_supports lacks some AVX-512 names) */
  g_has_avx512vbmi = g_has_avx512 && __get_cpuid_count(7, 0, &a, &b, &c, &d) && (c & (1u << 1)) != 0;
#endif
}

/* The registry's CPU predicates. */
__attribute__((unused)) static int cpu_any(void) { return 1; }

__attribute__((unused)) static int cpu_avx2(void) {
  pthread_once(&g_cpu_once, detect_cpu);
  return g_has_avx2;
}

__attribute__((unused)) static int cpu_avx512(void) {
  pthread_once(&g_cpu_once, detect_cpu);
  return g_has_avx512;
}

int linattn_cpu_has_avx512vbmi(void) {
  pthread_once(&g_cpu_once, detect_cpu);
  return g_has_avx512vbmi;
}

typedef struct kernel_family {
  const char* name;
  int (*cpu)(void);   /* NULL: not in this build */
  kernel_table table; /* kernels NULL when not in this build */
} kernel_family;

static const kernel_family g_families[FAMILY_COUNT] = {
#define LINATTN_FAMILY(ID, name, arch, cpu, la, conv, gates, flags)                                                     \
  {#name, FAMILY_IF_##arch(cpu, NULL),                                                                               \
   {LINATTN_ISA_##ID, FAMILY_IF_##arch(&la, NULL), FAMILY_IF_##arch(&conv, NULL), FAMILY_IF_##arch(&gates, NULL)}},
#include "kernels/registry.inc"
#undef LINATTN_FAMILY
};

/* The family of an ISA value, or NULL (AUTO, out of range). */
static const kernel_family* family_of(linattn_isa isa) {
  return (int)isa >= 1 && (int)isa <= FAMILY_COUNT ? &g_families[(int)isa - 1] : NULL;
}

int linattn_isa_count(void) { return FAMILY_COUNT; }

const char* linattn_isa_name(linattn_isa isa) {
  if (isa == LINATTN_ISA_AUTO) return "auto";
  const kernel_family* f = family_of(isa);
  return f ? f->name : "unknown";
}

int linattn_isa_from_name(const char* name) {
  if (!name) return -1;
  if (!strcmp(name, "auto")) return LINATTN_ISA_AUTO;
  for (int i = 0; i < FAMILY_COUNT; i++)
    if (!strcmp(name, g_families[i].name)) return i + 1;
  return -1;
}

const char* linattn_isa_names(void) {
  static const char list[] = ""
#define LINATTN_FAMILY(ID, name, ...) ", " #name
#include "kernels/registry.inc"
#undef LINATTN_FAMILY
      ;
  return list + 2;
}

const kernel_table* linattn_kernels_for_isa(linattn_isa isa) {
  const kernel_family* f = family_of(isa);
  return f && f->cpu && f->table.la && f->table.conv && f->cpu() ? &f->table : NULL;
}

int linattn_isa_available(linattn_isa isa) { return linattn_kernels_for_isa(isa) != NULL; }

linattn_isa linattn_auto_isa(const char** bad_env) {
  const char* env = getenv("LINATTN_ISA");
  if (env && *env && strcmp(env, "auto") != 0) {
    const int isa = linattn_isa_from_name(env);
    if (isa > 0 && linattn_isa_available((linattn_isa)isa)) return (linattn_isa)isa;
    if (bad_env) *bad_env = env;
    return LINATTN_ISA_AUTO;
  }
  for (int isa = FAMILY_COUNT; isa > LINATTN_ISA_REFERENCE; isa--) /* fastest first */
    if (linattn_isa_available((linattn_isa)isa)) return (linattn_isa)isa;
  return LINATTN_ISA_REFERENCE;
}
