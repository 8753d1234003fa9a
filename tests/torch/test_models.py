"""Tiny random Qwen3-Next and Qwen3.5 models (hand-written configs, no downloads): forward and
16-token greedy generation with and without linattn.torch.patch_transformers()."""

import pytest
import torch

import linattn.torch as lt

PROMPT_LEN = 24
NEW_TOKENS = 16


def _randomise(model, seed):
    """Random but not degenerate weights: A_log / dt_bias in a trained model's range."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("A_log"):
                p.copy_(torch.log(torch.empty(p.shape).uniform_(1.0, 16.0, generator=g)))
            elif name.endswith("dt_bias"):
                p.copy_(torch.empty(p.shape).uniform_(-1.0, 1.0, generator=g))
            elif p.dim() >= 2:
                p.copy_(torch.empty(p.shape).normal_(0.0, 0.05, generator=g))
    return model


def _qwen3_5():
    from transformers import Qwen3_5ForCausalLM, Qwen3_5TextConfig

    config = Qwen3_5TextConfig(
        vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, linear_conv_kernel_dim=4, linear_key_head_dim=32,
        linear_value_head_dim=32, linear_num_key_heads=2, linear_num_value_heads=4, full_attention_interval=4,
        max_position_embeddings=256, tie_word_embeddings=False)
    return _randomise(Qwen3_5ForCausalLM(config), 5).eval()


def _qwen3_next():
    from transformers import Qwen3NextConfig, Qwen3NextForCausalLM

    config = Qwen3NextConfig(
        vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, linear_conv_kernel_dim=4, linear_key_head_dim=32,
        linear_value_head_dim=32, linear_num_key_heads=2, linear_num_value_heads=4, full_attention_interval=4,
        num_experts=4, num_experts_per_tok=2, moe_intermediate_size=64, shared_expert_intermediate_size=64,
        max_position_embeddings=256, tie_word_embeddings=False)
    return _randomise(Qwen3NextForCausalLM(config), 6).eval()


MODELS = {"qwen3_5": _qwen3_5, "qwen3_next": _qwen3_next}
_cache = {}


def _model(name, dtype):
    if name not in _cache:
        _cache[name] = MODELS[name]()
    return _cache[name].to(dtype)


def _prompt(vocab):
    g = torch.Generator().manual_seed(7)
    return torch.randint(0, vocab, (2, PROMPT_LEN), generator=g)


def _linear_layers(model):
    return [m for m in model.modules() if type(m).__name__.endswith("GatedDeltaNet")]


def _rel(a, b):
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


# fp32: 1e-5 relative. bf16: the two paths round the same fp32 values to bf16 at different
# points; a few bf16 ulps (2^-8 relative each) of the largest logit.
TOL = {torch.float32: 1e-5, torch.bfloat16: 4 * 2.0**-8}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_matches(name, dtype):
    model = _model(name, dtype)
    ids = _prompt(model.config.vocab_size)
    with torch.no_grad():
        ref = model(ids).logits
        assert lt.patch_transformers()
        calls = _count_calls()
        got = model(ids).logits
    assert calls["gdn"] == len(_linear_layers(model)), "the patched layers did not call linattn"
    assert torch.isfinite(got).all()
    assert _rel(got, ref) <= TOL[dtype], (name, dtype, _rel(got, ref))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_generate_matches(name, dtype):
    model = _model(name, dtype)
    ids = _prompt(model.config.vocab_size)
    kw = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False, output_logits=True,
              return_dict_in_generate=True, pad_token_id=0)
    with torch.no_grad():
        ref = model.generate(ids, **kw)
        lt.patch_transformers()
        calls = _count_calls()
        got = model.generate(ids, **kw)
    # prefill once plus one decode step per new token after the first, in every linear layer
    assert calls["gdn"] == NEW_TOKENS * len(_linear_layers(model))
    assert calls["conv_update"] == (NEW_TOKENS - 1) * len(_linear_layers(model))
    assert torch.equal(got.sequences, ref.sequences)
    for a, b in zip(got.logits, ref.logits):
        assert _rel(a, b) <= TOL[dtype], (name, dtype, _rel(a, b))


def test_unpatch_restores():
    import transformers.models.qwen3_5.modeling_qwen3_5 as m

    original = m.torch_chunk_gated_delta_rule
    lt.patch_transformers()
    assert m.torch_chunk_gated_delta_rule is not original
    lt.patch_transformers()  # idempotent
    lt.unpatch()
    assert m.torch_chunk_gated_delta_rule is original


def _count_calls():
    """Counts the linattn ops the patched functions run (wraps them until unpatch)."""
    import transformers.models.qwen3_5.modeling_qwen3_5 as m35
    import transformers.models.qwen3_next.modeling_qwen3_next as mn

    calls = {"gdn": 0, "conv_update": 0}
    for m in (m35, mn):
        for attr, key in (("torch_chunk_gated_delta_rule", "gdn"), ("torch_recurrent_gated_delta_rule", "gdn"),
                          ("causal_conv1d_update", "conv_update")):
            fn = getattr(m, attr)
            assert hasattr(fn, "linattn_original"), f"{m.__name__}.{attr} is not patched"

            def counted(*a, _fn=fn, _key=key, **k):
                calls[_key] += 1
                return _fn(*a, **k)

            counted.linattn_original = fn.linattn_original
            setattr(m, attr, counted)
    return calls


def test_patch_leaves_other_devices_to_transformers():
    """The patched functions send non-CPU tensors (here: meta) to transformers' own functions."""
    import transformers.models.qwen3_5.modeling_qwen3_5 as m

    lt.patch_transformers()
    q = torch.empty(1, 3, 2, 16, device="meta")
    v = torch.empty(1, 3, 2, 16, device="meta")
    g = torch.empty(1, 3, 2, device="meta")
    o, s = m.torch_chunk_gated_delta_rule(q, q, v, g=g, beta=g, output_final_state=True, use_qk_l2norm_in_kernel=True)
    assert o.device.type == "meta" and s.shape == (1, 2, 16, 16)
    with pytest.raises(Exception, match="CPU tensor"):
        lt.chunk_gated_delta_rule(q, q, v, g, g)
