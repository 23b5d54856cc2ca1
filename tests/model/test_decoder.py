"""SEEM v1 decoder: official key names, parity with the reference fixtures, group isolation.

Parity tests replay the official decoder outputs stored in ``focalt_v1_tiny`` and
``samvitb_v1_tiny`` (random weights, hidden 64, 3 layers) from the stored pixel-decoder
features. The other tests use a tiny random decoder.
"""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pytest
import torch

from napari_seem.model.attention_groups import (
    memory_prompt_index,
    spatial_self_attention_mask,
)
from napari_seem.model.decoder import (
    DecoderOutput,
    SeemDecoder,
    SeemDecoderConfig,
)
from napari_seem.model.decoder_layers import MultiHeadAttention
from napari_seem.model.postprocess import vl_similarity
from napari_seem.model.prompt_encoder import VisualPromptTokens
from tests.model.reference import load_npz, load_weights, reference_dir, sub_state_dict

FIXTURES = ("focalt_v1_tiny", "samvitb_v1_tiny")
PREFIX = "sem_seg_head.predictor."
# decoder sizes of both reduced fixtures (README section 2.1)
TINY_FIXTURE_CONFIG = SeemDecoderConfig(
    hidden_dim=64, num_heads=4, dim_feedforward=128, num_layers=3, dim_proj=64, mask_dim=64
)
EMB_TOL = 1e-5  # embeddings (captions, mask embeddings)
MASK_TOL = 1e-4  # mask logits; also class logits (cosine x 121.5)


def _close(actual: torch.Tensor | None, expected: np.ndarray, atol: float) -> float:
    """Assert closeness (infinities must coincide) and return the max abs difference."""
    assert actual is not None
    a = actual.detach().cpu().numpy()
    assert a.shape == expected.shape
    np.testing.assert_array_equal(np.isinf(a), np.isinf(expected))
    finite = np.isfinite(expected)
    diff = float(np.abs(a[finite] - expected[finite]).max()) if finite.any() else 0.0
    assert diff <= atol, f"max abs diff {diff} > {atol}"
    return diff


# ------------------------------------------------------------------------ fixture loading


@cache
def _fixture_decoder(fixture: str) -> tuple[SeemDecoder, torch.Tensor]:
    """The fixture's decoder (strict load, lang_encoder keys left out) and logit_scale."""
    weights = load_weights(fixture)
    state = sub_state_dict(weights, PREFIX)
    decoder = SeemDecoder(TINY_FIXTURE_CONFIG).eval()
    decoder.load_state_dict(
        {k: v for k, v in state.items() if not k.startswith("lang_encoder.")}, strict=True
    )
    return decoder, state["lang_encoder.logit_scale"]


@cache
def _features(fixture: str, prefix: str = "") -> tuple[list[torch.Tensor], torch.Tensor]:
    data = load_npz(fixture, "backbone_pixel_decoder")
    levels = [torch.from_numpy(data[f"{prefix}multi_scale_features_{i}"]) for i in range(3)]
    return levels, torch.from_numpy(data[f"{prefix}mask_features"])


@cache
def _npz(fixture: str, name: str) -> dict[str, np.ndarray]:
    return load_npz(fixture, name)


def _decode(fixture: str, **kwargs: object) -> DecoderOutput:
    decoder, logit_scale = _fixture_decoder(fixture)
    levels, mask_features = _features(fixture)
    vocab = torch.from_numpy(_npz(fixture, "panoptic")["class_vocab_emb"])
    with torch.no_grad():
        return decoder(
            levels, mask_features, class_embeddings=vocab, logit_scale=logit_scale, **kwargs
        )


def _grounding_inputs(fixture: str) -> dict[str, torch.Tensor]:
    data = _npz(fixture, "grounding")
    return {
        "grounding_tokens": torch.from_numpy(data["grounding_tokens"]),
        "grounding_padding": torch.from_numpy(data["grounding_nonzero_mask"]),
    }


def _stored_prompt_index(pos: np.ndarray, neg: np.ndarray) -> torch.Tensor:
    """``(1, T)`` prompt of each stored token: positive points prompt-major, then negative.

    The stored interactive tokens carry no prompt index; with at most 512 points (all
    stored cases) every mask pixel is a token, so the layout follows from pixel counts.
    """
    owners = [p for masks in (pos[0], neg[0]) for p, m in enumerate(masks) for _ in range(m.sum())]
    return torch.tensor(owners, dtype=torch.long)[None]


def _interactive_prompts(fixture: str, case: str) -> VisualPromptTokens:
    """Tokens of an interactive case: stored ones when present, else the visual sampler."""
    data = _npz(fixture, "interactive")
    pre = f"{case}_tok_"
    pos, neg = data[f"{case}_pos_mask"], data[f"{case}_neg_mask"]
    if f"{pre}spatial_query_pos" in data:
        index = _stored_prompt_index(pos, neg)
        tokens = tuple(torch.from_numpy(data[f"{pre}src_spatial_queries_{i}"]) for i in range(3))
        assert tokens[0].shape[0] == index.shape[1]
        return VisualPromptTokens(
            tokens=tokens,
            padding=tuple(
                torch.from_numpy(data[f"{pre}src_spatial_maskings_{i}"]) for i in range(3)
            ),
            prompt_index=(index,) * 3,
            pooled_pos=torch.from_numpy(data[f"{pre}spatial_query_pos"]),
            pooled_neg=torch.from_numpy(data[f"{pre}spatial_query_neg"]),
        )
    decoder, _ = _fixture_decoder(fixture)
    levels, mask_features = _features(fixture)
    return decoder.encode_visual_prompts(
        torch.from_numpy(pos), torch.from_numpy(neg), levels, mask_features
    )


def _refimg_prompts(fixture: str) -> VisualPromptTokens:
    data = _npz(fixture, "referring_image")
    return VisualPromptTokens(
        tokens=tuple(torch.from_numpy(data[f"refimg_src_spatial_queries_{i}"]) for i in range(3)),
        padding=tuple(torch.from_numpy(data[f"refimg_src_spatial_maskings_{i}"]) for i in range(3)),
        prompt_index=tuple(
            torch.from_numpy(data[f"refimg_src_spatial_indices_{i}"][..., 0]).long()
            for i in range(3)
        ),
        pooled_pos=torch.from_numpy(data["refimg_spatial_query_pos"]),
        pooled_neg=torch.from_numpy(data["refimg_spatial_query_neg"]),
    )


INTERACTIVE_CASES = [
    ("focalt_v1_tiny", "single_r1"),
    ("focalt_v1_tiny", "single_r2"),
    ("focalt_v1_tiny", "multi_r1"),
    ("focalt_v1_tiny", "multi_r2"),
    ("focalt_v1_tiny", "big_r1"),
    ("samvitb_v1_tiny", "single_r1"),
    ("samvitb_v1_tiny", "single_r2"),
]


# -------------------------------------------------------------------------------- keys


def _expected_keys(entries: list[tuple[str, list[int], str]]) -> dict[str, list[int]]:
    """Decoder keys (prefix removed, ``lang_encoder.*`` left out) -> shape, in order."""
    return {
        name[len(PREFIX) :]: shape
        for name, shape, _ in entries
        if name.startswith(PREFIX) and not name.startswith(PREFIX + "lang_encoder.")
    }


def test_state_dict_matches_tiny_fixture_keys() -> None:
    keys = json.loads((reference_dir() / "focalt_v1_tiny" / "keys.json").read_text())["keys"]
    state = SeemDecoder(TINY_FIXTURE_CONFIG).state_dict()
    assert {k: list(v.shape) for k, v in state.items()} == _expected_keys(keys)


@pytest.mark.parametrize("name", ["seem_focalt_v1", "seem_focall_v1", "seem_samvitb_v1"])
def test_full_size_state_dict_matches_official_keys(name: str) -> None:
    keys = json.loads((reference_dir() / "keys" / f"{name}.json").read_text())["keys"]
    with torch.device("meta"):
        state = SeemDecoder(SeemDecoderConfig()).state_dict()
    expected = _expected_keys(keys)
    assert {k: list(v.shape) for k, v in state.items()} == expected
    # same order as the official state dict (lang_encoder.* sits between level_embed and
    # mask_embed there and is injected by the builder)
    assert list(state) == list(expected)


def test_late_lang_encoder_keeps_official_key_order() -> None:
    decoder = SeemDecoder(TINY_FIXTURE_CONFIG)
    decoder.lang_encoder = torch.nn.Linear(2, 2)
    prefixes = list(dict.fromkeys(k.split(".")[0] for k in decoder.state_dict()))
    assert prefixes.index("lang_encoder") == prefixes.index("level_embed") + 1


# ------------------------------------------------------------------------------ parity


@pytest.mark.parametrize("fixture", FIXTURES)
def test_panoptic_matches_official(fixture: str) -> None:
    ref = _npz(fixture, "panoptic")
    out = _decode(fixture)
    _close(out.pred_logits, ref["pred_logits"], MASK_TOL)
    _close(out.pred_masks, ref["pred_masks"], MASK_TOL)
    _close(out.pred_captions, ref["pred_captions"], EMB_TOL)
    assert len(out.aux) == 3
    per_layer = [*(a.pred_captions for a in out.aux), out.pred_captions]
    for i, captions in enumerate(per_layer):
        _close(captions, ref["pred_captions_per_layer"][i], EMB_TOL)
    for i, aux in enumerate(out.aux):
        if f"aux{i}_pred_masks" in ref:  # focalt only
            _close(aux.pred_logits, ref[f"aux{i}_pred_logits"], MASK_TOL)
            _close(aux.pred_masks, ref[f"aux{i}_pred_masks"], MASK_TOL)
    assert out.pred_gmasks is None and out.pred_smasks is None and out.prev_mask is None


@pytest.mark.parametrize("fixture", FIXTURES)
def test_grounding_matches_official(fixture: str) -> None:
    ref = _npz(fixture, "grounding")
    _, logit_scale = _fixture_decoder(fixture)
    out = _decode(fixture, **_grounding_inputs(fixture))
    _close(out.pred_gmasks, ref["pred_gmasks"], MASK_TOL)
    _close(out.pred_gtexts, ref["pred_gtexts"], EMB_TOL)
    _close(out.pred_captions, ref["pred_captions"], EMB_TOL)
    for i, aux in enumerate(out.aux):
        if f"aux{i}_pred_gmasks" in ref:
            _close(aux.pred_gmasks, ref[f"aux{i}_pred_gmasks"], MASK_TOL)
            _close(aux.pred_gtexts, ref[f"aux{i}_pred_gtexts"], EMB_TOL)
    assert out.pred_gtexts is not None
    prob = vl_similarity(out.pred_gtexts[0], torch.from_numpy(ref["class_emb"]), logit_scale)
    _close(prob, ref["out_prob"], MASK_TOL)
    assert prob.argmax(dim=0).tolist() == ref["matched_query"].tolist()
    # grounding queries and text tokens leave the object queries alone, exactly
    plain = _decode(fixture)
    assert out.pred_logits is not None and plain.pred_logits is not None
    assert torch.equal(out.pred_logits, plain.pred_logits)
    assert out.pred_masks is not None and plain.pred_masks is not None
    assert torch.equal(out.pred_masks, plain.pred_masks)


@pytest.mark.parametrize(("fixture", "case"), INTERACTIVE_CASES)
def test_interactive_matches_official(fixture: str, case: str) -> None:
    ref = {
        k[len(case) + 1 :]: v for k, v in _npz(fixture, "interactive").items() if k.startswith(case)
    }
    prev_mask = torch.from_numpy(ref["prev_mask_in"]) if "prev_mask_in" in ref else None
    out = _decode(fixture, visual_prompts=_interactive_prompts(fixture, case), prev_mask=prev_mask)
    _close(out.prev_mask, ref["prev_mask"], MASK_TOL)
    _close(out.pred_smasks, ref["pred_smasks"], MASK_TOL)
    _close(out.pred_stexts, ref["pred_stexts"], EMB_TOL)
    _close(out.pred_smaskembs, ref["pred_smaskembs"], EMB_TOL)
    _close(out.pred_pspatials, ref["pred_pspatials"], EMB_TOL)
    _close(out.pred_nspatials, ref["pred_nspatials"], EMB_TOL)
    _close(out.spatial_logits, ref["spatial_logits"], MASK_TOL)
    assert out.selected_spatial_query is not None
    assert out.selected_spatial_query.tolist() == ref["selected_spatial_query"].tolist()
    if prev_mask is None:
        assert out.memory_indices is None
    else:
        assert out.memory_indices is not None
        assert out.memory_indices.tolist() == ref["memory_indices"].tolist()
    for i, aux in enumerate(out.aux):
        if f"aux{i}_pred_smasks" in ref:
            _close(aux.pred_smasks, ref[f"aux{i}_pred_smasks"], MASK_TOL)
    _close(out.pred_masks, ref["pred_masks"], MASK_TOL)
    _close(out.pred_logits, ref["pred_logits"], MASK_TOL)


@pytest.mark.parametrize("fixture", FIXTURES)
def test_referring_image_matches_official(fixture: str) -> None:
    ref = _npz(fixture, "referring_image")
    out = _decode(fixture, visual_prompts=_refimg_prompts(fixture), tasks={"spatial"})
    for name in ("prev_mask", "pred_smasks", "spatial_logits"):
        _close(getattr(out, name), ref[f"target_{name}"], MASK_TOL)
    for name in ("pred_stexts", "pred_smaskembs", "pred_pspatials", "pred_nspatials"):
        _close(getattr(out, name), ref[f"target_{name}"], EMB_TOL)
    assert out.selected_spatial_query is not None
    assert out.selected_spatial_query.tolist() == ref["target_selected_spatial_query"].tolist()


def test_referring_tokens_from_sampler_match_stored() -> None:
    """The example prompt encoded from the other image's features gives the same answer."""
    fixture = "focalt_v1_tiny"
    decoder, _ = _fixture_decoder(fixture)
    ref = _npz(fixture, "referring_image")
    levels, mask_features = _features(fixture, "ref_")
    stroke = torch.from_numpy(ref["ref_stroke_imgsize"])
    padded = torch.zeros(tuple(int(s) for s in ref["ref_padded_shape"][-2:]), dtype=torch.bool)
    padded[: stroke.shape[0], : stroke.shape[1]] = stroke
    prompts = decoder.encode_visual_prompts(padded[None, None], None, levels, mask_features)
    out = _decode(fixture, visual_prompts=prompts, tasks={"spatial"})
    _close(out.prev_mask, ref["target_prev_mask"], MASK_TOL)


# ------------------------------------------------------------------ isolation and tasks


def test_prompts_never_change_object_outputs() -> None:
    fixture = "focalt_v1_tiny"
    plain = _decode(fixture)
    prompts = _interactive_prompts(fixture, "multi_r2")
    prev = torch.from_numpy(_npz(fixture, "interactive")["multi_r2_prev_mask_in"])
    mixed = _decode(fixture, visual_prompts=prompts, prev_mask=prev, **_grounding_inputs(fixture))
    for name in ("pred_logits", "pred_masks", "pred_captions"):
        assert torch.equal(getattr(mixed, name), getattr(plain, name)), name
    for aux_mixed, aux_plain in zip(mixed.aux, plain.aux, strict=True):
        assert aux_mixed.pred_masks is not None and aux_plain.pred_masks is not None
        assert torch.equal(aux_mixed.pred_masks, aux_plain.pred_masks)


def test_spatial_only_decode_is_identical() -> None:
    fixture = "focalt_v1_tiny"
    prompts = _interactive_prompts(fixture, "multi_r2")
    prev = torch.from_numpy(_npz(fixture, "interactive")["multi_r2_prev_mask_in"])
    full = _decode(fixture, visual_prompts=prompts, prev_mask=prev, **_grounding_inputs(fixture))
    fast = _decode(fixture, visual_prompts=prompts, prev_mask=prev, tasks=["spatial"])
    assert fast.pred_masks is None and fast.pred_logits is None and fast.pred_gmasks is None
    for name in ("prev_mask", "pred_smasks", "pred_stexts", "spatial_logits"):
        assert torch.equal(getattr(fast, name), getattr(full, name)), name


def test_cached_image_memory_gives_identical_results() -> None:
    fixture = "focalt_v1_tiny"
    decoder, _ = _fixture_decoder(fixture)
    levels, _ = _features(fixture)
    with torch.no_grad():
        memory = decoder.project_image(levels)
    prompts = _interactive_prompts(fixture, "multi_r2")
    prev = torch.from_numpy(_npz(fixture, "interactive")["multi_r2_prev_mask_in"])
    kwargs = {"visual_prompts": prompts, "prev_mask": prev, **_grounding_inputs(fixture)}
    plain = _decode(fixture, **kwargs)
    cached = _decode(fixture, image_memory=memory, **kwargs)
    for name in ("pred_logits", "pred_masks", "pred_gmasks", "pred_smasks", "prev_mask"):
        assert torch.equal(getattr(cached, name), getattr(plain, name)), name


def test_task_validation() -> None:
    with pytest.raises(ValueError, match="needs visual_prompts"):
        _decode("focalt_v1_tiny", tasks=["spatial"])
    with pytest.raises(ValueError, match="unknown tasks"):
        _decode("focalt_v1_tiny", tasks=["panoptic"])
    with pytest.raises(ValueError, match="prev_mask needs"):
        _decode("focalt_v1_tiny", prev_mask=torch.zeros(1, 1, 32, 40))


# ---------------------------------------------------------------- tiny random decoder

TINY = SeemDecoderConfig(
    hidden_dim=32,
    num_heads=4,
    dim_feedforward=48,
    num_layers=4,
    num_object_queries=7,
    num_memories=6,
    dim_proj=16,
    mask_dim=32,
)


def _random_inputs(batch: int, seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sizes = [(2, 3), (4, 6), (8, 12)]
    levels = [torch.randn(batch, 32, h, w, generator=g) for h, w in sizes]
    return levels, torch.randn(batch, 32, 16, 24, generator=g)


def _tiny_decoder() -> SeemDecoder:
    torch.manual_seed(0)
    return SeemDecoder(TINY).eval()


def _take(x: torch.Tensor, b: int) -> torch.Tensor:
    return x[b : b + 1]


def test_batched_spatial_and_grounding_equal_single_runs() -> None:
    """Per-element padding of visual and text tokens must not leak into real outputs."""
    decoder = _tiny_decoder()
    levels, mask_features = _random_inputs(2)
    pos = torch.zeros(2, 2, 64, 96, dtype=torch.bool)
    neg = torch.zeros_like(pos)
    pos[0, 0, 5:9, 10:20] = True  # 40 px
    pos[0, 1, 40:42, 60:62] = True  # 4 px
    neg[0, 0, 30:32, 5:7] = True
    pos[1, 0, 20:23, 30:33] = True  # 9 px: element 1 has far fewer tokens -> padding
    pos[1, 1, 50:52, 80:81] = True
    prev = torch.randn(2, 2, 16, 24)
    g = torch.Generator().manual_seed(3)
    text = torch.randn(5, 2, 32, generator=g)  # tokens have the hidden width
    text_padding = torch.tensor([[False] * 5, [False, False, False, True, True]])

    with torch.no_grad():
        prompts = decoder.encode_visual_prompts(pos, neg, levels, mask_features)
        assert prompts.padding[0].any()
        both = decoder(
            levels,
            mask_features,
            visual_prompts=prompts,
            prev_mask=prev,
            grounding_tokens=text,
            grounding_padding=text_padding,
        )
        for b in range(2):
            lv = [_take(x, b) for x in levels]
            mf = _take(mask_features, b)
            single_prompts = decoder.encode_visual_prompts(_take(pos, b), _take(neg, b), lv, mf)
            valid = int((~text_padding[b]).sum())
            one = decoder(
                lv,
                mf,
                visual_prompts=single_prompts,
                prev_mask=_take(prev, b),
                grounding_tokens=text[:valid, b : b + 1],
            )
            for name in ("prev_mask", "pred_smasks", "pred_gmasks", "pred_masks"):
                torch.testing.assert_close(
                    _take(getattr(both, name), b), getattr(one, name), atol=1e-5, rtol=1e-5
                )


def test_gradients_are_finite_with_padding() -> None:
    """Fully masked rows (padding tokens) give zeros, not NaN, also in the backward pass."""
    decoder = _tiny_decoder().train()
    levels, mask_features = _random_inputs(1)
    pos = torch.zeros(1, 1, 64, 96, dtype=torch.bool)
    pos[0, 0, 10:12, 10:12] = True
    text = torch.randn(4, 1, 32)
    prompts = decoder.encode_visual_prompts(pos, None, levels, mask_features)
    out = decoder(
        levels,
        mask_features,
        class_embeddings=torch.nn.functional.normalize(torch.randn(3, 16), dim=-1),
        logit_scale=torch.tensor(2.0),
        visual_prompts=prompts,
        prev_mask=torch.full((1, 1, 16, 24), -5.0),  # memory rows fully masked -> unmasked
        grounding_tokens=text,
        grounding_padding=torch.tensor([[False, False, True, True]]),
    )
    assert out.pred_logits is not None and out.pred_gmasks is not None
    assert out.prev_mask is not None
    loss = out.pred_logits.sum() + out.pred_gmasks.sum() + out.prev_mask.sum()
    loss.backward()
    for name, p in decoder.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name


def test_fully_blocked_attention_row_gives_zeros() -> None:
    attn = MultiHeadAttention(8, 2)
    x = torch.randn(1, 3, 8)
    allowed = torch.tensor([[[True, True, False], [False, False, False], [True, True, True]]])
    out = attn(x, x, x, allowed)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0, 1], attn.out_proj.bias, rtol=0, atol=0)


@pytest.mark.parametrize(("prompts", "counts"), [(1, [32]), (2, [16, 16]), (3, [11, 11, 10])])
def test_memory_prompt_index(prompts: int, counts: list[int]) -> None:
    index = memory_prompt_index(32, prompts)
    assert torch.bincount(index).tolist() == counts
    assert torch.equal(index, index.sort().values)


def test_spatial_self_attention_mask_groups() -> None:
    # 2 prompts x 2 queries, memories [0, 1], tokens [0, 1, -1]
    allowed = spatial_self_attention_mask(
        num_prompts=2,
        queries_per_prompt=2,
        token_prompt_index=torch.tensor([[0, 1, -1]]),
        memory_index=torch.tensor([0, 1]),
    )[0]
    query0, memory0, token0, padding = 0, 4, 6, 8
    assert allowed[query0].tolist() == [1, 1, 0, 0, 1, 0, 1, 0, 0]
    assert allowed[memory0].tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 0]
    assert allowed[token0].tolist() == [0, 0, 0, 0, 0, 0, 1, 0, 0]
    assert not allowed[padding].any() and not allowed[:, padding].any()
