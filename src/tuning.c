/*
 * Per-microarchitecture tuning (docs/tuning.md): one table of parameter sets, one chosen per
 * process from the CPU's identification (CPUID vendor, family, model), never from a timing,
 * so a CPU always runs the same code and gets the same bits. LINATTN_TUNE=<name> picks an
 * entry by name instead (any entry runs on any CPU that has the ISA: the entries differ in
 * speed, and in the bits of prefill where la.sweep_tokens differs).
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#if LINATTN_HAVE_X86 && defined(__GNUC__)
#include <cpuid.h>
#endif
#include <pthread.h>

static const linattn_tuning g_tunings[] = {
    /* The parameters the kernels were first tuned with (AMD Zen 4: one 512-bit FMA per cycle,
     * 32 KiB L1D); also the entry for CPUs not listed below. Measured on Zen 4 since, and kept
     * where they helped there (docs/tuning.md, "Zen 4"): two tokens per prefill sweep in
     * panels of 2 vectors, which keep a 128-row fp32 panel in half the L1D, with a per-head decay
     * folded out of the staged rows (other bits than one token per sweep); the specialised staging of
     * plain fp32 inputs (la.stage_plain), the 16-bit decode conversion forms
     * (la.decode_half_convert), the channels-first bf16 prefill in even and odd steps
     * (conv.cf_bf16_pairs) and the packed conv decode's sequences together (conv.decode_seqs). */
    {"zen4",
     {.sweep_tokens = 2, .lockstep_units = 8, .lockstep_min_tokens = 64, .lockstep_prefetch_next = 1, .stage_plain = 1,
      .decode_vectors = 0, .decode_overlap = 0, .decode_half_convert = 1, .pair_vectors = 2,
      .fold_head_decay = 1, .decode_one_pass_prefetch = 0},
     {.cf_stream_min_bytes = 0, .cf_prefetch_bytes = 0, .decode_vbmi = 0, .cf_bf16_pairs = 1, .decode_seqs = 16,
      .silu_table = 0}},
    /* Intel Xeon with AVX-512 (Skylake-SP to Granite Rapids: two 512-bit FMA pipes, 48 KiB
     * L1D from Ice Lake on): one state sweep per two tokens halves the state stores, which
     * bound the one-token sweep there; lock-step groups of 128 x 128 state blocks are kept to
     * four units, so the group's scratch stays in the 2 MiB L2; the next unit's input rows are
     * left to the hardware prefetchers; plain fp32 inputs are staged by a specialised copy
     * (same bits), which the small d = 64 heads feel most. Channels-first conv rows stream
     * from a fixed size, not the reported L3's: a VM reports the whole host's shared L3, and a
     * core keeps far less of it (docs/tuning.md, conv.cf_stream_min_bytes), and prefetch their
     * input a page ahead, which the hardware prefetchers (bounded by 4 KiB pages) do not
     * (docs/tuning.md, conv.cf_prefetch_bytes). Decode of an fp32
     * state in place in panels of 64 columns (32 KiB of rows, within the 48 KiB L1D), each
     * panel's update sweep also reading the next panel's rows (docs/tuning.md,
     * la.decode_vectors, la.decode_overlap). The channels-first 16-bit conv decode moves its
     * state with VBMI byte permutes where the CPU has them (docs/tuning.md, conv.decode_vbmi);
     * the channels-first bf16 prefill runs its even and odd steps apart, with fewer shuffle-port
     * uops (docs/tuning.md, conv.cf_bf16_pairs); a packed decode runs 16 sequences per unit,
     * each weight group de-interleaved once for all of them (docs/tuning.md, conv.decode_seqs).
     * With a per-head decay the two-token sweeps read k and scale q as given and the decay
     * scalars scale the sums and u instead, so a staged slot writes half the rows (other
     * bits, within the tests' bounds; docs/tuning.md, la.fold_head_decay).
     * The 16-bit conv SiLU is a gather from a table of its 65,536 results per dtype, the same
     * bits without the division that bounds it (docs/tuning.md, conv.silu_table).
     * A decode's heads run as one chain, each head's last update sweep summing the next head's
     * first panel (docs/tuning.md, la.decode_chain), for a 16-bit state too (la.decode_half_chain).
     * The one-pass decode (no delta rule) of an fp32 state prefetches its rows to L1 by inline
     * asm, which GCC does not drop (docs/tuning.md, la.decode_one_pass_prefetch). */
    {"intel-avx512",
     {.sweep_tokens = 2, .lockstep_units = 8, .lockstep_min_tokens = 64, .lockstep_state_bytes = 256 << 10,
      .lockstep_prefetch_next = 0, .stage_plain = 1, .decode_vectors = 4, .decode_overlap = 1,
      .decode_half_convert = 1, .fold_head_decay = 1,
      .decode_chain = 1, .decode_half_chain = 1, .decode_one_pass_prefetch = 1},
     {.cf_stream_min_bytes = (int64_t)20 << 20, .cf_prefetch_bytes = 4096, .decode_vbmi = 1, .cf_bf16_pairs = 1,
      .decode_seqs = 16, .silu_table = 1}},
};
enum { TUNING_DEFAULT = 0, TUNING_INTEL_AVX512 = 1 };

typedef struct cpu_id {
  char vendor[13];
  unsigned family, model;
  int avx512f;
} cpu_id;

static cpu_id read_cpu_id(void) {
  cpu_id id;
  memset(&id, 0, sizeof id);
#if LINATTN_HAVE_X86 && defined(__GNUC__)
  unsigned a, b, c, d;
  if (__get_cpuid(0, &a, &b, &c, &d)) {
    memcpy(id.vendor, &b, 4);
    memcpy(id.vendor + 4, &d, 4);
    memcpy(id.vendor + 8, &c, 4);
  }
  if (__get_cpuid(1, &a, &b, &c, &d)) {
    const unsigned base_family = (a >> 8) & 0xf, ext_family = (a >> 20) & 0xff;
    const unsigned base_model = (a >> 4) & 0xf, ext_model = (a >> 16) & 0xf;
    id.family = base_family == 0xf ? base_family + ext_family : base_family;
    id.model = base_family == 0x6 || base_family == 0xf ? (ext_model << 4) + base_model : base_model;
  }
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) id.avx512f = (b >> 16) & 1;
#endif
  return id;
}

/* The entry for a CPU identification: Intel family 6 with AVX-512 -> intel-avx512; anything
 * else (AMD Zen 4 / Zen 5, other vendors, no AVX-512) -> zen4. */
static int tuning_index_for(const cpu_id* id) {
  if (!strcmp(id->vendor, "GenuineIntel") && id->family == 6 && id->avx512f) return TUNING_INTEL_AVX512;
  return TUNING_DEFAULT;
}

static int g_cpu_tuning;
static pthread_once_t g_tuning_once = PTHREAD_ONCE_INIT;
static void detect_tuning(void) {
  const cpu_id id = read_cpu_id();
  g_cpu_tuning = tuning_index_for(&id);
}

const linattn_tuning* linattn_tuning_by_name(const char* name) {
  for (size_t i = 0; i < sizeof g_tunings / sizeof g_tunings[0]; i++)
    if (name && !strcmp(name, g_tunings[i].name)) return &g_tunings[i];
  return NULL;
}

const linattn_tuning* linattn_tuning_for_cpu(void) {
  pthread_once(&g_tuning_once, detect_tuning);
  return &g_tunings[g_cpu_tuning];
}

const linattn_tuning* linattn_auto_tuning(const char** bad_env) {
  const char* env = getenv("LINATTN_TUNE");
  if (env && *env && strcmp(env, "auto") != 0) {
    const linattn_tuning* t = linattn_tuning_by_name(env);
    if (!t && bad_env) *bad_env = env;
    return t;
  }
  return linattn_tuning_for_cpu();
}

const char* linattn_tuning_names(void) { return "auto, zen4, intel-avx512"; }

const linattn_tuning* linattn_tuning_at(size_t i) {
  return i < sizeof g_tunings / sizeof g_tunings[0] ? &g_tunings[i] : NULL;
}
