/*
 * linattn-la-ab: two builds of the library in one process, LinearAttention call by call (decode,
 * or prefill with a tN field in the case).
 *
 *   linattn-la-ab A.so B.so [--isa NAME] [--pairs N] [--budget SEC] [--case SPEC]... [--no-time]
 *
 * Each .so is dlopen'ed privately (RTLD_LOCAL). Two phases:
 *  1. bits: decode-sized calls (T = 1, 2, 3) over update rules, decay kinds, head layouts (more value
 *     heads than query heads in ORT's contrib form, with as many key heads as query heads), d_k x d_v
 *     shapes, state dtypes f32 / f16 / bf16, in place / separate present_state / no past, on fresh
 *     random inputs (fp32 activations), then the same with fp32 states at prefill lengths (T = 8 to
 *     135: tiles, pairs, a token left over; activations fp32, f16 or bf16, drawn per case; in half
 *     of them every 97th decay element is -45, so that decay segments end mid-tile); each build
 *     writes its own output and present_state; every byte must agree.
 *  2. time: per case, the two builds alternate on the same buffers (the state updated in place, or
 *     past -> a separate present), the order flipped every pair; each call timed alone in thread
 *     CPU time. Prints the medians, the median of the per-pair ratios B / A with its quartiles (above
 *     1: B slower) and the ratio of the 10th-percentile times. With "cold" in the case, each call
 *     uses the next of enough state slots (64 MiB in all) that its state comes from DRAM.
 * SPEC: preset,state dtype,inplace|separate[,cold][,tN][,abf16|af16], e.g. "qwen,f16,inplace" or
 * "qwen,f32,inplace,t4096,abf16" (T = 4096 tokens, default 1; bf16 activations: q, k, v, decay,
 * beta and the output, default fp32). Presets (B = 1): qwen (H 16, d 128, gated delta, per-head decay; Qwen3.5-0.8B), qwen9b (the same
 * with H 32: Qwen3.5-9B, q and k repeated to the 32 value heads), qwen9bort / qwen27bort (Qwen3.5-9B /
 * 27B in ORT's contrib form: q and k 16 heads, 32 / 48 value heads, LINATTN_LA_ORT_CONTRIB), kda (H 32, d 128, per-key
 * decay), rwkv (H 64, d 64, gated, per-key decay), mamba (H 80, d_k 128, d_v 64, gated).
 */
#define _GNU_SOURCE
#define AB_PROG "la-ab"
#include "ab_common.h"

typedef linattn_status (*la_fn)(linattn_context*, const linattn_linear_attention_desc*, const linattn_tensor*,
                                const linattn_tensor*, const linattn_tensor*, const linattn_tensor*,
                                const linattn_tensor*, const linattn_tensor*, const linattn_tensor*,
                                const linattn_tensor*, void*, size_t);
typedef linattn_status (*la_ws_fn)(linattn_context*, const linattn_linear_attention_desc*, const linattn_tensor*,
                                   const linattn_tensor*, const linattn_tensor*, const linattn_tensor*,
                                   const linattn_tensor*, const linattn_tensor*, const linattn_tensor*,
                                   const linattn_tensor*, size_t*);

typedef struct lib {
  ab_lib ab;
  void (*desc_init)(linattn_linear_attention_desc*);
  la_fn la;
  la_ws_fn la_ws;
} lib;

static void lib_open(lib* l, const char* path, const char* isa) {
  ab_open(&l->ab, path, isa);
  *(void**)&l->desc_init = ab_sym(l->ab.handle, path, "linattn_linear_attention_desc_init");
  *(void**)&l->la = ab_sym(l->ab.handle, path, "linattn_linear_attention");
  *(void**)&l->la_ws = ab_sym(l->ab.handle, path, "linattn_linear_attention_workspace_size");
}

/* ------------------------------------------------------------------ data */

static double uni(uint64_t* s) { return (double)(rng_next(s) >> 11) * 0x1p-53; }

static uint16_t f32_to_bf16_bits(float f) { /* round to nearest even (no NaN here) */
  uint32_t u;
  memcpy(&u, &f, 4);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static void store(void* p, size_t i, linattn_dtype dt, float x) {
  if (dt == LINATTN_DTYPE_F32) {
    ((float*)p)[i] = x;
  } else if (dt == LINATTN_DTYPE_F16) {
    const _Float16 h = (_Float16)x;
    memcpy((char*)p + 2 * i, &h, 2);
  } else {
    const uint16_t b = f32_to_bf16_bits(x);
    memcpy((char*)p + 2 * i, &b, 2);
  }
}

typedef struct la_case {
  const char* name;
  linattn_update_rule rule;
  int64_t hq, hkv, dk, dv, T;
  int per_key, scale1;
  linattn_dtype sdt;
  int mode; /* 0 in place, 1 separate present, 2 no past */
  int cold;
  int strong; /* every 97th decay element -45 (below 2^-60): C leaves the fold range, segments end mid-tile */
  linattn_dtype adt; /* activations (0: fp32) */
  int64_t hk;        /* ORT contrib form (LINATTN_LA_ORT_CONTRIB): key heads; 0: k has hkv heads */
} la_case;

static int64_t key_heads(const la_case* c) { return c->hk ? c->hk : c->hkv; }

static linattn_dtype act_dtype(const la_case* c) { return c->adt ? c->adt : LINATTN_DTYPE_F32; }

typedef struct la_bufs {
  linattn_tensor q, k, v, decay, beta, out, past, present;
  void *qb, *kb, *vb, *db, *bb, *ob;
  void** sb; /* state slots (past), present slots */
  void** pb;
  int nslots;
  size_t ns, no;
} la_bufs;

static void bufs_make(la_bufs* t, const la_case* c, uint64_t* seed, int nslots) {
  const int64_t B = 1, T = c->T, ho = c->hq > c->hkv ? c->hq : c->hkv;
  const size_t nq = (size_t)(T * c->hq * c->dk), nk = (size_t)(T * key_heads(c) * c->dk), nv = (size_t)(T * c->hkv * c->dv);
  const size_t nd = (size_t)(T * (c->per_key ? c->hkv * c->dk : c->hkv)), nb = (size_t)(T * c->hkv);
  const size_t no = (size_t)(T * ho * c->dv), ns = (size_t)(c->hkv * c->dk * c->dv), ss = dtype_size(c->sdt);
  const linattn_dtype ad = act_dtype(c);
  const size_t as = dtype_size(ad);
  memset(t, 0, sizeof *t);
  t->ns = ns, t->no = no, t->nslots = nslots;
  t->qb = xalloc(as * nq), t->kb = xalloc(as * nk), t->vb = xalloc(as * nv), t->db = xalloc(as * nd);
  t->bb = xalloc(as * nb), t->ob = xalloc(as * no);
  for (size_t i = 0; i < nq; i++) store(t->qb, i, ad, (float)(uni(seed) - 0.5) * 0.2f);
  for (size_t i = 0; i < nk; i++) store(t->kb, i, ad, (float)(uni(seed) - 0.5) * 0.2f);
  for (size_t i = 0; i < nv; i++) store(t->vb, i, ad, (float)(uni(seed) - 0.5) * 2.0f);
  for (size_t i = 0; i < nd; i++) store(t->db, i, ad, (float)-(0.02 + 0.3 * uni(seed)));
  if (c->strong)
    for (size_t i = 0; i < nd; i += 97) store(t->db, i, ad, -45.0f);
  for (size_t i = 0; i < nb; i++) store(t->bb, i, ad, (float)(0.1 + 0.8 * uni(seed)));
  memset(t->ob, 0xa5, as * no);
  t->sb = calloc((size_t)nslots, sizeof(void*));
  t->pb = calloc((size_t)nslots, sizeof(void*));
  for (int s = 0; s < nslots; s++) {
    t->sb[s] = xalloc(ss * ns + 16);
    if (s == 0) memset(t->sb[s], 0x5a, ss * ns + 16);
    if (s == 0)
      for (size_t i = 0; i < ns; i++) store((char*)t->sb[s] + 16, i, c->sdt, (float)(uni(seed) - 0.5) * 0.3f);
    else
      memcpy(t->sb[s], t->sb[0], ss * ns + 16);
    t->pb[s] = NULL;
    if (c->mode == 1) {
      t->pb[s] = xalloc(ss * ns + 16);
      memset(t->pb[s], 0xa5, ss * ns + 16);
    }
  }
  int64_t qd[3] = {B, T, c->hq * c->dk}, kd[3] = {B, T, key_heads(c) * c->dk}, vd[3] = {B, T, c->hkv * c->dv};
  int64_t dd[3] = {B, T, c->per_key ? c->hkv * c->dk : c->hkv}, bd[3] = {B, T, c->hkv};
  int64_t od[3] = {B, T, ho * c->dv}, sd[4] = {B, c->hkv, c->dk, c->dv};
  t->q = tensor(t->qb, ad, 3, qd);
  t->k = tensor(t->kb, ad, 3, kd);
  t->v = tensor(t->vb, ad, 3, vd);
  t->decay = tensor(t->db, ad, 3, dd);
  t->beta = tensor(t->bb, ad, 3, bd);
  t->out = tensor(t->ob, ad, 3, od);
  t->past = tensor((char*)t->sb[0] + 16, c->sdt, 4, sd);
  t->present = c->mode == 1 ? tensor((char*)t->pb[0] + 16, c->sdt, 4, sd) : t->past;
}

static void bufs_slot(la_bufs* t, const la_case* c, int s) {
  t->past.data = (char*)t->sb[s] + 16;
  t->present.data = c->mode == 1 ? (char*)t->pb[s] + 16 : t->past.data;
}

static void bufs_free(la_bufs* t) {
  free(t->qb), free(t->kb), free(t->vb), free(t->db), free(t->bb), free(t->ob);
  for (int s = 0; s < t->nslots; s++) free(t->sb[s]), free(t->pb[s]);
  free(t->sb), free(t->pb);
}

typedef struct call {
  linattn_linear_attention_desc desc;
  void* ws;
  size_t ws_bytes;
} call;

static int has_decay(const la_case* c) { return c->rule == LINATTN_UPDATE_GATED || c->rule == LINATTN_UPDATE_GATED_DELTA; }
static int has_beta(const la_case* c) { return c->rule == LINATTN_UPDATE_DELTA || c->rule == LINATTN_UPDATE_GATED_DELTA; }

static void call_make(call* k, lib* l, const la_case* c, const la_bufs* t) {
  l->desc_init(&k->desc);
  k->desc.update_rule = c->rule;
  k->desc.q_num_heads = c->hq;
  k->desc.kv_num_heads = c->hkv;
  k->desc.scale = c->scale1 ? 1.0f : 0.0f;
  if (c->hk) k->desc.flags = LINATTN_LA_ORT_CONTRIB;
  k->ws_bytes = 0;
  if (l->la_ws(l->ab.ctx, &k->desc, &t->q, &t->k, &t->v, c->mode == 2 ? NULL : &t->past, has_decay(c) ? &t->decay : NULL,
               has_beta(c) ? &t->beta : NULL, &t->out, &t->present, &k->ws_bytes) != LINATTN_SUCCESS) {
    fprintf(stderr, "la-ab: workspace: %s\n", l->ab.last_error());
    exit(2);
  }
  k->ws = xalloc(k->ws_bytes + 64);
}

static void call_run(const call* k, lib* l, const la_case* c, const la_bufs* t) {
  if (l->la(l->ab.ctx, &k->desc, &t->q, &t->k, &t->v, c->mode == 2 ? NULL : &t->past, has_decay(c) ? &t->decay : NULL,
            has_beta(c) ? &t->beta : NULL, &t->out, &t->present, k->ws, k->ws_bytes) != LINATTN_SUCCESS) {
    fprintf(stderr, "la-ab: call: %s\n", l->ab.last_error());
    exit(2);
  }
}

/* ------------------------------------------------------------------ phase 1: bits */

static int bits(lib* a, lib* b) {
  static const linattn_dtype sdts[3] = {LINATTN_DTYPE_F32, LINATTN_DTYPE_F16, LINATTN_DTYPE_BF16};
  static const linattn_update_rule rules[4] = {LINATTN_UPDATE_LINEAR, LINATTN_UPDATE_GATED, LINATTN_UPDATE_DELTA,
                                               LINATTN_UPDATE_GATED_DELTA};
  static const int64_t shapes[][2] = {{128, 128}, {64, 64}, {128, 64}, {32, 200}, {48, 96}, {16, 40}, {128, 256}};
  static const int64_t heads[][2] = {{1, 1}, {2, 2}, {4, 2}, {2, 4}, {16, 2}, {9, 1}};
  uint64_t seed = 1, hash = 0xcbf29ce484222325ull;
  int cases = 0, bad = 0;
  for (int prefill = 0; prefill < 2; prefill++)
  for (int si = 0; si < (prefill ? 1 : 3); si++)
    for (int ri = 0; ri < 4; ri++)
      for (size_t hi = 0; hi < sizeof shapes / sizeof shapes[0]; hi++)
        for (size_t gi = 0; gi < sizeof heads / sizeof heads[0]; gi++)
          for (int mode = 0; mode < 3; mode++) {
            const uint64_t r = rng_next(&seed);
            la_case c = {"bits", rules[ri], heads[gi][0], heads[gi][1], shapes[hi][0], shapes[hi][1],
                         prefill ? 8 + (int64_t)(r % 128) : 1 + (int64_t)(r % 3), (int)((r >> 8) & 1),
                         (int)((r >> 9) & 1), sdts[si], mode, 0, prefill && ((r >> 10) & 1),
                         prefill ? sdts[(r >> 11) % 3] : LINATTN_DTYPE_F32, 0};
            if (c.hq > c.hkv && c.hq % c.hkv) continue;
            if (c.hkv > c.hq && c.hkv % c.hq) continue;
            if (c.hkv > c.hq) c.hk = c.hq; /* inverse GQA needs the ORT contrib form: key heads as q's */
            la_bufs ta, tb;
            uint64_t sa = r, sb = r;
            bufs_make(&ta, &c, &sa, 1);
            bufs_make(&tb, &c, &sb, 1);
            call ka, kb;
            call_make(&ka, a, &c, &ta);
            call_make(&kb, b, &c, &tb);
            call_run(&ka, a, &c, &ta);
            call_run(&kb, b, &c, &tb);
            const size_t ss = dtype_size(c.sdt) * ta.ns + 16;
            const void* sa_out = c.mode == 1 ? ta.pb[0] : ta.sb[0];
            const void* sb_out = c.mode == 1 ? tb.pb[0] : tb.sb[0];
            const size_t os = dtype_size(act_dtype(&c)) * ta.no;
            if (memcmp(ta.ob, tb.ob, os) != 0 || memcmp(sa_out, sb_out, ss) != 0 ||
                memcmp(ta.sb[0], tb.sb[0], ss) != 0) {
              if (bad++ < 10)
                fprintf(stderr, "la-ab: bits differ: state %s act %s rule %d hq %lld hkv %lld dk %lld dv %lld T %lld mode %d\n",
                        dtype_name(c.sdt), dtype_name(act_dtype(&c)), (int)c.rule, (long long)c.hq, (long long)c.hkv, (long long)c.dk,
                        (long long)c.dv, (long long)c.T, c.mode);
            }
            hash = fnv(fnv(hash, ta.ob, os), sa_out, ss);
            ++cases;
            free(ka.ws), free(kb.ws);
            bufs_free(&ta), bufs_free(&tb);
          }
  printf("bits: %d cases, %d differ, hash of A's outputs %016llx\n", cases, bad, (unsigned long long)hash);
  return bad;
}

/* ------------------------------------------------------------------ phase 2: time */

static const char* mode_name(int m) { return m == 0 ? "inplace" : m == 1 ? "separate" : "nopast"; }

typedef struct timed_arg {
  lib* l[2]; /* A, B */
  const la_case* c;
  la_bufs t; /* shared by A and B */
  call k[2];
  int slot, nslots; /* cold: the state slot in use, of nslots */
} timed_arg;

static void run_one(void* arg, int use_b) {
  timed_arg* x = arg;
  call_run(&x->k[use_b], x->l[use_b], x->c, &x->t);
}

/* Cold: each call on the next state slot. */
static void next_slot(void* arg) {
  timed_arg* x = arg;
  x->slot = (x->slot + 1) % x->nslots;
  bufs_slot(&x->t, x->c, x->slot);
}

static void timed(lib* a, lib* b, const la_case* c, int max_pairs, double budget_s) {
  uint64_t seed = 7;
  const size_t slot = dtype_size(c->sdt) * (size_t)(c->hkv * c->dk * c->dv) * (c->mode == 1 ? 2 : 1);
  timed_arg x = {.l = {a, b}, .c = c, .nslots = c->cold ? (int)((64u << 20) / slot) + 1 : 1};
  bufs_make(&x.t, c, &seed, x.nslots);
  for (int i = 0; i < 2; ++i) call_make(&x.k[i], x.l[i], c, &x.t);
  printf("%-6s %-4s %-8s %-4s ", c->name, dtype_name(c->sdt), mode_name(c->mode), c->cold ? "cold" : "warm");
  if (c->T > 1) printf("T %lld ", (long long)c->T);
  if (c->adt) printf("act %s ", dtype_name(c->adt));
  ab_alternate(run_one, c->cold ? next_slot : NULL, thread_ns, &x, max_pairs, budget_s, 8);
  free(x.k[0].ws), free(x.k[1].ws);
  bufs_free(&x.t);
}

static int parse_case(const char* s, la_case* c) {
  char pre[16], dt[8], mode[16], rest[32] = "";
  const int got = sscanf(s, "%15[^,],%7[^,],%15[^,],%31s", pre, dt, mode, rest);
  if (got < 3) return -1;
  memset(c, 0, sizeof *c);
  if (!strcmp(pre, "qwen")) *c = (la_case){"qwen", LINATTN_UPDATE_GATED_DELTA, 16, 16, 128, 128, 1, 0, 0, 0, 0, 0, 0, 0, 0};
  else if (!strcmp(pre, "qwen9b")) *c = (la_case){"qwen9b", LINATTN_UPDATE_GATED_DELTA, 32, 32, 128, 128, 1, 0, 0, 0, 0, 0, 0, 0, 0};
  else if (!strcmp(pre, "qwen9bort")) *c = (la_case){"qwen9bort", LINATTN_UPDATE_GATED_DELTA, 16, 32, 128, 128, 1, 0, 0, 0, 0, 0, 0, 0, 16};
  else if (!strcmp(pre, "qwen27bort")) *c = (la_case){"qwen27bort", LINATTN_UPDATE_GATED_DELTA, 16, 48, 128, 128, 1, 0, 0, 0, 0, 0, 0, 0, 16};
  else if (!strcmp(pre, "kda")) *c = (la_case){"kda", LINATTN_UPDATE_GATED_DELTA, 32, 32, 128, 128, 1, 1, 0, 0, 0, 0, 0, 0, 0};
  else if (!strcmp(pre, "rwkv")) *c = (la_case){"rwkv", LINATTN_UPDATE_GATED, 64, 64, 64, 64, 1, 1, 1, 0, 0, 0, 0, 0, 0};
  else if (!strcmp(pre, "mamba")) *c = (la_case){"mamba", LINATTN_UPDATE_GATED, 80, 80, 128, 64, 1, 0, 1, 0, 0, 0, 0, 0, 0};
  else return -1;
  c->sdt = dtype_parse(dt);
  if (c->sdt == LINATTN_DTYPE_INVALID) return -1;
  c->mode = !strcmp(mode, "inplace") ? 0 : !strcmp(mode, "separate") ? 1 : -1;
  if (c->mode < 0) return -1;
  for (char* f = strtok(rest, ","); f; f = strtok(NULL, ",")) {
    if (!strcmp(f, "cold")) c->cold = 1;
    else if (f[0] == 't' && atoll(f + 1) > 0) c->T = atoll(f + 1);
    else if (!strcmp(f, "abf16")) c->adt = LINATTN_DTYPE_BF16;
    else if (!strcmp(f, "af16")) c->adt = LINATTN_DTYPE_F16;
    else return -1;
  }
  return 0;
}

static int parse_case_at(void* cases, int i, const char* s) { return parse_case(s, (la_case*)cases + i); }

int main(int argc, char** argv) {
  static const char* const defaults[] = {"qwen,f32,inplace", "qwen,f16,inplace", "qwen,bf16,inplace",
                                         "qwen,f32,separate", "qwen,f16,separate", "qwen,bf16,separate"};
  la_case cases[AB_MAX_CASES];
  const ab_opts o = ab_parse_args(argc, argv, "preset,dtype,mode[,cold][,tN]",
                                  "qwen|qwen9b|qwen9bort|qwen27bort|kda|rwkv|mamba,f32|f16|bf16,inplace|separate[,cold][,tN]", parse_case_at, cases,
                                  defaults, (int)(sizeof defaults / sizeof defaults[0]));
  lib a, b;
  lib_open(&a, argv[1], o.isa);
  lib_open(&b, argv[2], o.isa);
  printf("A %s\nB %s\nISA %s, 1 thread, B = 1, fp32 activations unless shown, thread CPU time (T = 1 unless shown)\n", argv[1], argv[2], o.isa);
  const int bad = o.bits_it ? bits(&a, &b) : 0;
  if (o.time_it)
    for (int i = 0; i < o.ncases; ++i) timed(&a, &b, &cases[i], o.max_pairs, o.budget);
  a.ab.context_destroy(a.ab.ctx), b.ab.context_destroy(b.ab.ctx);
  return bad ? 1 : 0;
}
