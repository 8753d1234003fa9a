/*
 * The state transpose of the packed conv (conv_kernel.transpose, internal.h): the portable
 * linattn_conv_transpose and every kernel family's transpose this build and CPU run, against a
 * plain loop here, bit for bit.
 *
 * Both directions of the packed operator (src/api/varlen_conv.c): an (n, S) channels-first state
 * block (contiguous, S elements per channel) to an (S, n) tile whose rows are n or more elements
 * apart, and back; fp32 and 16-bit elements (any bits: NaN payloads, subnormals; moved, never
 * converted); every S from 0 to 10 (K = 2..5 undilated, dilation 2 and 3 of K = 3 and 4, and
 * beyond the vector paths' limit of 8), every channel count from 0 to 70 (every tail length of 8-,
 * 16- and 32-lane groups) and some long blocks (up to 6144 channels), unaligned starts (0..5
 * elements past a 64-byte boundary), tile rows with and without a gap, and a state block with
 * gaps between its channels (a shape the vector paths hand to the portable loop). Destinations
 * are poisoned with random bits; the whole destination buffer (gaps, margins) must equal the
 * loop's result on an identical copy, so a write out of place or a missing one fails.
 *
 * The loop's broken variant (the last channel of a block left unwritten) must differ from it in
 * some case of the run: the comparison can see such a fault. Closing line "N passed, N failed".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "testkit.h"

#define MAX_FNS 16

typedef struct tr_fn {
  const char* name;
  conv_transpose_fn fn;
} tr_fn;

static int64_t g_variant_caught;

/* The portable transpose and each family's. */
static int find_fns(tr_fn* out, int max) {
  int n = 0;
  out[n++] = (tr_fn){"portable", linattn_conv_transpose};
  for (int isa = LINATTN_ISA_REFERENCE; isa <= linattn_isa_count() && n < max; isa++) {
    const kernel_table* kt = linattn_kernels_for_isa((linattn_isa)isa);
    if (kt) out[n++] = (tr_fn){kt->conv->name, kt->conv->transpose};
  }
  return n;
}

/* dst[k * dst_ld + r] = src[r * src_ld + k]; variant 1 skips the last channel (the last row of
 * a state block, the last column of a tile). */
static void oracle(void* dst, const void* src, int64_t rows, int64_t cols, int64_t src_ld, int64_t dst_ld, size_t es,
                   bool to_tile, int variant) {
  for (int64_t r = 0; r < rows; r++)
    for (int64_t k = 0; k < cols; k++) {
      if (variant == 1 && (to_tile ? r == rows - 1 : k == cols - 1)) continue;
      memcpy((char*)dst + (k * dst_ld + r) * (int64_t)es, (const char*)src + (r * src_ld + k) * (int64_t)es, es);
    }
}

static void random_bytes(tk_rng* r, void* p, size_t n) {
  unsigned char* b = (unsigned char*)p;
  for (size_t i = 0; i < n; i++) b[i] = (unsigned char)tk_next(r);
}

/* One shape: n channels, state length S; to_tile: state block -> tile, else back. tile_gap:
 * extra elements between tile rows; state_gap: extra elements between a block's channels. */
static void run_case(tk_rng* r, const tr_fn* fns, int nfn, size_t es, bool to_tile, int64_t S, int64_t n,
                     int64_t tile_gap, int64_t state_gap, int64_t src_off, int64_t dst_off) {
  const int64_t tile_ld = n + tile_gap, state_ld = S + state_gap;
  /* element extents of the two sides */
  const int64_t state_elems = n > 0 ? (n - 1) * state_ld + S : 0;
  const int64_t tile_elems = S > 0 ? (S - 1) * tile_ld + n : 0;
  const int64_t src_elems = to_tile ? state_elems : tile_elems, dst_elems = to_tile ? tile_elems : state_elems;
  const int64_t rows = to_tile ? n : S, cols = to_tile ? S : n;
  const int64_t src_ld = to_tile ? state_ld : tile_ld, dst_ld = to_tile ? tile_ld : state_ld;
  /* the source ends its allocation (over-reads reach past it); the destination has margins */
  const size_t src_bytes = (size_t)(src_off + src_elems) * es, dst_bytes = (size_t)(dst_off + dst_elems + 32) * es;
  char* src_buf = (char*)aligned_alloc(64, (src_bytes + 63) / 64 * 64 + 64);
  char* poison = (char*)malloc(dst_bytes);
  char* want = (char*)malloc(dst_bytes);
  char* alt = (char*)malloc(dst_bytes);
  char* dst_buf = (char*)aligned_alloc(64, (dst_bytes + 63) / 64 * 64);
  if (!src_buf || !poison || !want || !alt || !dst_buf) tk_fatal("out of memory");
  char* src = src_buf + ((src_bytes + 63) / 64 * 64 + 64 - src_bytes); /* src + src_bytes ends the allocation */
  random_bytes(r, src, src_bytes);
  random_bytes(r, poison, dst_bytes);
  memcpy(want, poison, dst_bytes);
  memcpy(alt, poison, dst_bytes);
  oracle(want + dst_off * (int64_t)es, src + src_off * (int64_t)es, rows, cols, src_ld, dst_ld, es, to_tile, 0);
  oracle(alt + dst_off * (int64_t)es, src + src_off * (int64_t)es, rows, cols, src_ld, dst_ld, es, to_tile, 1);
  if (memcmp(want, alt, dst_bytes) != 0) g_variant_caught++;
  tk_context("%s es=%zu S=%lld n=%lld tile_gap=%lld state_gap=%lld src_off=%lld dst_off=%lld",
             to_tile ? "state->tile" : "tile->state", es, (long long)S, (long long)n, (long long)tile_gap,
             (long long)state_gap, (long long)src_off, (long long)dst_off);
  for (int f = 0; f < nfn; f++) {
    memcpy(dst_buf, poison, dst_bytes);
    char* d = dst_buf + dst_off * (int64_t)es;
    fns[f].fn(d, src + src_off * (int64_t)es, rows, cols, src_ld, dst_ld, es);
    int64_t bad = 0, first = -1;
    for (size_t i = 0; i < dst_bytes; i += es)
      if (memcmp(dst_buf + i, want + i, es) != 0) {
        if (first < 0) first = (int64_t)(i / es) - dst_off;
        bad++;
      }
    tk_check(bad == 0, "%s: %lld elements differ from the loop (first at element %lld)", fns[f].name, (long long)bad,
             (long long)first);
  }
  free(src_buf), free(poison), free(want), free(alt), free(dst_buf);
}

int main(int argc, char** argv) {
  tk_begin("test_conv_transpose");
  tk_rng r;
  tk_rng_init(&r, tk_seed());
  tr_fn fns[MAX_FNS];
  if (linattn_isa_count() + 2 > MAX_FNS) tk_fatal("%d kernel families: raise MAX_FNS", linattn_isa_count());
  const int nfn = find_fns(fns, MAX_FNS);
  for (int f = 0; f < nfn; f++) tk_note("transpose %s", fns[f].name);
  const int longs = argc > 1 ? atoi(argv[1]) : tk_case_count(40, 10);
  int64_t cases = 0;
  for (int e = 0; e < 2; e++) {
    const size_t es = e ? 2 : 4;
    for (int dir = 0; dir < 2; dir++)
      for (int64_t S = 0; S <= 10; S++) {
        for (int64_t n = 0; n <= 70; n++) { /* every tail; gaps and offsets drawn */
          const int64_t tile_gap = tk_below(&r, 3) == 0 ? 1 + tk_below(&r, 40) : 0;
          const int64_t state_gap = tk_below(&r, 8) == 0 ? 1 + tk_below(&r, 3) : 0;
          run_case(&r, fns, nfn, es, dir == 0, S, n, tile_gap, state_gap, tk_below(&r, 6), tk_below(&r, 6));
          cases++;
        }
        for (int k = 0; k < longs / 10 + 1; k++) { /* long blocks, as the operator's units */
          const int64_t n = k == 0 ? 6144 : 71 + tk_below(&r, 2100);
          run_case(&r, fns, nfn, es, dir == 0, S, n, tk_below(&r, 2) ? 0 : tk_below(&r, 17), 0, tk_below(&r, 6),
                   tk_below(&r, 6));
          cases++;
        }
      }
  }
  tk_context("broken variant of the loop");
  tk_check(g_variant_caught > 0, "no case saw the last channel left unwritten");
  tk_note("%lld cases; the broken loop differed in %lld", (long long)cases, (long long)g_variant_caught);
  return tk_finish();
}
