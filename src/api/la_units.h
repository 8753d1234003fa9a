/* What the operators running the LinearAttention micro-kernels (LinearAttention, its packed
 * form, GatedDeltaNet) share around them: advancing units in lock-step, and the recompute of a
 * unit whose fast-kernel outputs are not finite by the reference kernel (docs/reliability.md).
 *
 * The fused kernels read the output from the old state plus a rank-1 term and fold the scale
 * (and GatedDeltaNet's L2 norms) into q and k, which equals the reference's order of operations
 * only up to rounding: where infinities appear (inf inputs, exp(decay) or a product overflowing)
 * they can give inf where the reference gives NaN or the reverse, or a finite output near
 * |scale| * FLT_MAX where the reference's unscaled sum overflowed. A unit whose outputs are not
 * all finite and below the recompute limit is therefore run again by the reference kernel; a
 * non-finite state always shows in the last token's outputs (q . S with an inf or NaN term).
 * The recompute needs the entering state: a state updated in place is copied first, in calls of
 * at least LA_KEEP_ENTRY_MIN_TOKENS tokens (the copy costs about a decode step); shorter in-place
 * calls keep the fast kernel's result. */
#ifndef LINATTN_LA_UNITS_H
#define LINATTN_LA_UNITS_H

#include "internal.h"

/* Most units of a lock-step group. */
#define LA_LOCKSTEP_UNITS_MAX 16

/* Lock-step (la_step_units): a task's units advance token tile by token tile together, so the
 * rows of consecutive heads of the same tokens are read together (one contiguous row of
 * token-major inputs instead of a new page per token and head); each unit keeps its own scratch
 * between rounds. From la_lockstep_min_tokens tokens on, in groups of at most
 * la_lockstep_group units (the context's tuning, docs/tuning.md; fewer where the group's state
 * blocks of state_block_bytes each would not stay in L2). LA_LOCKSTEP_MIN_TOKENS at build time
 * (e.g. 1) overrides the tuning, to test the path everywhere. */
int64_t la_lockstep_min_tokens(const linattn_context* ctx);
int64_t la_lockstep_group(const linattn_context* ctx, size_t state_block_bytes);

/* Tokens from which an in-place state is copied so that its unit can be recomputed. */
#define LA_KEEP_ENTRY_MIN_TOKENS 256

/* The bits of |output| (in p->io_dtype) from which a unit is recomputed: T's largest finite
 * value, or less when |scale| < 1 (see la_units.c). The outputs are scanned by the kernel
 * family's la_kernel.outputs_finite (la_finite_fn, internal.h). */
uint32_t la_refine_limit(const la_params* p);

/* Copies rows [0, rows) x elements [0, n) of esz bytes between blocks of row strides ld_src and
 * ld_dst (an entering in-place state kept for the recompute, and back). */
void la_copy_rows(void* dst, int64_t ld_dst, const void* src, int64_t ld_src, int64_t rows, int64_t n, size_t esz);

/* Advances the n prepared units (the same p->T tokens each) token tile by token tile together,
 * chunk tokens a round, with kern->step, which gives the bits of kern->run; with prefetch_next
 * each step prefetches the rows of the next unit's step. finite (NULL: not checked): finite[i] is cleared when a
 * step's outputs of unit i are not (kern->outputs_finite), checked while still in cache. */
void la_step_units(const la_kernel* kern, const la_params* p, la_unit* units, char* const* kscr, int64_t n,
                   int64_t chunk, bool* finite, uint32_t limit, bool prefetch_next);

#endif
