/*
 * Instantiates the panel functions of la_simd_body.h that an ISA file lists, builds their
 * table, the family's run and step entry points (LA_FN(la_run), LA_FN(la_step)) and
 * LA_SIMD_KERNEL, its kernel descriptor. Included
 * after la_simd_body.h by la_avx512.c, la_avx2.c, la_neon.c and la_scalar.c, which define
 *
 *   LA_PANELS(X)   X(NQ, W) for every panel to instantiate: NQ heads per group (1, 2, 3, 4, 8),
 *                  W vectors of columns
 *   LA_PAIR_PANELS(X)  optional: X(NQ, W) for every two-token panel (la_panel_pairs; NQ 1 or
 *                  2, the widths la_setup picks with LA_WMAX_PAIR). Without it the family runs
 *                  one token per sweep whatever la_tuning.sweep_tokens says.
 *
 * Compile-time check: for each group size the list holds exactly the widths la_setup can pick
 * (LA_PANEL_WIDTH over LA_WMAX and LA_WMAX_DECODE), so a width the planner can choose cannot
 * be left as a NULL slot of the table, and nothing is instantiated that no unit runs.
 */
#ifndef LA_PANELS
#error "define LA_PANELS(X) before including la_simd_panels.h"
#endif

/* Width bits la_setup can give for that wmax: left = 0 .. LA_WCAP covers every case (left at or
 * above wmax gives wmax). */
#define LA_WIDTH_BIT(left, wmax, decode) (1u << LA_PANEL_WIDTH(left, wmax, decode))
#define LA_WIDTHS_FROM(wmax, decode)                                                                     \
  (LA_WIDTH_BIT(0, wmax, decode) | LA_WIDTH_BIT(1, wmax, decode) | LA_WIDTH_BIT(2, wmax, decode) |      \
   LA_WIDTH_BIT(3, wmax, decode) | LA_WIDTH_BIT(4, wmax, decode) | LA_WIDTH_BIT(5, wmax, decode) |      \
   LA_WIDTH_BIT(6, wmax, decode) | LA_WIDTH_BIT(7, wmax, decode) | LA_WIDTH_BIT(8, wmax, decode))
#define LA_WIDTHS_NEEDED(G) (LA_WIDTHS_FROM(LA_WMAX(G), 0) | LA_WIDTHS_FROM(LA_WMAX_DECODE(G), 1))

/* Width bits LA_PANELS instantiates for each group size. */
#define LA_LISTED_1(NQ, W) | ((NQ) == 1 ? 1u << (W) : 0u)
#define LA_LISTED_2(NQ, W) | ((NQ) == 2 ? 1u << (W) : 0u)
#define LA_LISTED_3(NQ, W) | ((NQ) == 3 ? 1u << (W) : 0u)
#define LA_LISTED_4(NQ, W) | ((NQ) == 4 ? 1u << (W) : 0u)
#define LA_LISTED_8(NQ, W) | ((NQ) == 8 ? 1u << (W) : 0u)
#define LA_CHECK_GROUP(G)                                                                                  \
  _Static_assert(LA_WIDTHS_NEEDED(G) == (0u LA_PANELS(LA_LISTED_##G)),                                     \
                 "LA_PANELS must list exactly the widths la_setup can pick for " #G " head(s) per group " \
                 "(LA_WMAX, LA_WMAX_DECODE, LA_PANEL_WIDTH)");
/* the group sizes of la_group_heads */
LA_CHECK_GROUP(1)
LA_CHECK_GROUP(2)
LA_CHECK_GROUP(3)
LA_CHECK_GROUP(4)
LA_CHECK_GROUP(8)

#define LA_PANEL_DEFINE(NQ, W) LA_DEFINE_PANELS(NQ, W)
LA_PANELS(LA_PANEL_DEFINE)

#define LA_PANEL_ENTRY(NQ, W)                                                 \
  [LA_GROUP_INDEX(NQ)][W] = {{LA_PANEL_NAME(NQ, W, 0, 0), LA_PANEL_NAME(NQ, W, 0, 1)}, \
                             {LA_PANEL_NAME(NQ, W, 1, 0), LA_PANEL_NAME(NQ, W, 1, 1)}},
static LA_FN(la_panel_fn) const LA_FN(la_table)[5][LA_WCAP + 1][2][2] = {LA_PANELS(LA_PANEL_ENTRY)};
/* T == 1 on a half-precision state: the same widths (the unpacked ones are among them) */
LA_PANELS(LA_DEFINE_DECODES)
static LA_FN(la_panel_fn) const LA_FN(la_decode_table)[LA_SD_KINDS][5][LA_WCAP + 1][2][2] = {LA_PANELS(LA_DECODE_ENTRY)};

#ifdef LA_PAIR_PANELS
#define LA_WIDTHS_PAIR(G) LA_WIDTHS_FROM(LA_WMAX_PAIR(G), 0)
#define LA_CHECK_PAIR_GROUP(G)                                                                  \
  _Static_assert(LA_WIDTHS_PAIR(G) == (0u LA_PAIR_PANELS(LA_LISTED_##G)),                        \
                 "LA_PAIR_PANELS must list exactly the widths la_setup can pick for " #G         \
                 " head(s) per group (LA_WMAX_PAIR, LA_PANEL_WIDTH)");
LA_CHECK_PAIR_GROUP(1)
LA_CHECK_PAIR_GROUP(2)
#define LA_PAIR_DEFINE(NQ, W) LA_DEFINE_PAIRS(NQ, W)
LA_PAIR_PANELS(LA_PAIR_DEFINE)
static LA_FN(la_panel_fn) const LA_FN(la_pair_table)[LA_PAIR_GMAX][LA_WCAP + 1][3][2] = {
    LA_PAIR_PANELS(LA_PAIR_ENTRY)};
static const la_tables_t LA_FN(la_tables_of) = {LA_FN(la_table), LA_FN(la_pair_table), LA_FN(la_decode_table)};
#else
static const la_tables_t LA_FN(la_tables_of) = {LA_FN(la_table), NULL, LA_FN(la_decode_table)};
#endif

static void LA_FN(la_run)(const la_params* p, const la_unit* u, void* scratch) {
  LA_FN(la_run_unit)(p, u, scratch, &LA_FN(la_tables_of));
}

static void LA_FN(la_step)(const la_params* p, const la_unit* u, void* scratch, int64_t t0, int64_t t1,
                           const la_step_next* next) {
  LA_FN(la_step_unit)(p, u, scratch, t0, t1, next, &LA_FN(la_tables_of));
}

static int LA_FN(la_run_chain)(const la_params* p, const la_unit* u, void* scratch, int primed, const la_unit* next,
                               void* nscratch) {
  return LA_FN(la_run_chain_unit)(p, u, scratch, primed, next, nscratch, &LA_FN(la_tables_of));
}

/* The family's output finiteness scan (la_kernel.outputs_finite): its own where it defines
 * LA_OUTPUTS_FINITE, else the portable one. */
#ifndef LA_OUTPUTS_FINITE
#define LA_OUTPUTS_FINITE la_unit_outputs_finite
#endif

/* The family's kernel descriptor, named isa_name ("avx512", ...). Units are whole 128-column
 * heads: the tile staging (q, k, v conversion, decay products, k.q) is then done once per head
 * and tile instead of once per 64 columns (docs/tuning.md, block_cols); panels inside the unit
 * keep the L1 working set. */
#define LA_SIMD_KERNEL(isa_name)                                                                  \
  {.name = isa_name, .run = LA_FN(la_run), .scratch_bytes = LA_FN(la_scratch), .block_cols = 128, \
   .step = LA_FN(la_step), .step_tokens = LA_TILE_TOKENS, .handles_gdn = true, .run_chain = LA_FN(la_run_chain), \
   .outputs_finite = LA_OUTPUTS_FINITE}
