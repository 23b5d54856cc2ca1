"""Text encoder: parity with the official fixtures, class vocabulary, full-size keys."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_seem.model.text_encoder import (
    LanguageEncoder,
    TextEncoderConfig,
    clean_class_name,
    l2_normalize,
    prompt_templates,
    select_grounding_tokens,
)
from napari_seem.model.tokenizer import ClipTokenizer, load_clip_tokenizer
from tests.model.reference import load_npz, load_weights, reference_dir, sub_state_dict
from tests.model.test_tokenizer import open_clip_merges_path

FIXTURES = ("focalt_v1_tiny", "samvitb_v1_tiny")
PREFIX = "sem_seg_head.predictor.lang_encoder."
TINY = TextEncoderConfig(width=64, layers=2, heads=4, dim_proj=64)
ATOL = 1e-5


def _close(actual: torch.Tensor, expected: np.ndarray) -> None:
    torch.testing.assert_close(actual, torch.from_numpy(expected), atol=ATOL, rtol=0)


@pytest.fixture(scope="module")
def tok() -> ClipTokenizer:
    return load_clip_tokenizer(open_clip_merges_path())


@pytest.fixture(scope="module", params=FIXTURES)
def case(request: pytest.FixtureRequest) -> tuple[LanguageEncoder, dict[str, np.ndarray], str]:
    fixture = request.param
    model = LanguageEncoder(TINY).eval()
    model.load_state_dict(sub_state_dict(load_weights(fixture), PREFIX), strict=True)
    return model, load_npz(fixture, "text_encoder"), fixture


@torch.no_grad()
def test_token_and_sentence_embeddings(
    case: tuple[LanguageEncoder, dict[str, np.ndarray], str],
) -> None:
    model, ref, _ = case
    assert model.logit_scale.shape == () and float(model.logit_scale) == float(ref["logit_scale"])
    _close(model.lang_proj, ref["lang_proj"])
    out = model.encode_tokens(torch.from_numpy(ref["input_ids"]))
    _close(out.last_hidden_state, ref["last_hidden_state"])
    _close(out.token_emb, ref["token_emb"])
    _close(out.class_emb, ref["class_emb"])
    _close(l2_normalize(out.token_emb), ref["token_emb_normalized"])
    _close(l2_normalize(out.class_emb), ref["class_emb_normalized"])
    _close(l2_normalize(out.class_emb), ref["sentence_emb_normalized"])


@torch.no_grad()
def test_template_embeddings_and_vocabulary_from_stored_ids(
    case: tuple[LanguageEncoder, dict[str, np.ndarray], str],
) -> None:
    model, ref, _ = case
    ids = torch.from_numpy(ref["template_input_ids"].astype(np.int64))
    k, t, length = ids.shape
    per_prompt = l2_normalize(model.encode_tokens(ids.view(k * t, length)).class_emb)
    per_prompt = per_prompt.view(k, t, -1)
    _close(per_prompt, ref["template_emb_normalized"])
    mean = per_prompt.mean(dim=1)
    _close(mean / mean.norm(dim=-1, keepdim=True), ref["class_vocab_emb"])


def test_end_to_end_from_text(
    case: tuple[LanguageEncoder, dict[str, np.ndarray], str], tok: ClipTokenizer
) -> None:
    model, ref, _ = case
    names = [str(n) for n in ref["class_names"]]
    assert names[-1] == "background"
    vocab = model.class_vocabulary(names[:-1], tok)
    assert vocab.shape == (len(names), TINY.dim_proj) and not vocab.requires_grad
    _close(vocab, ref["class_vocab_emb"])
    _close(model.class_vocabulary(names[:-1], tok, batch_size=7), ref["class_vocab_emb"])
    with torch.no_grad():
        _close(model.sentence_embeddings(list(ref["texts"]), tok), ref["sentence_emb_normalized"])


@torch.no_grad()
def test_grounding_tokens(
    case: tuple[LanguageEncoder, dict[str, np.ndarray], str], tok: ClipTokenizer
) -> None:
    model, _, fixture = case
    ref = load_npz(fixture, "grounding")
    tokens, padding = model.grounding_tokens(list(ref["texts"]), tok)
    assert tokens.shape == ref["grounding_tokens"].shape
    _close(tokens, ref["grounding_tokens"])
    np.testing.assert_array_equal(padding.numpy(), ref["grounding_nonzero_mask"])
    # the same from stored ids through the lower-level helper
    full = model.encode_tokens(torch.from_numpy(ref["input_ids"]))
    again, _ = select_grounding_tokens(full.token_emb, torch.from_numpy(ref["attention_mask"]))
    _close(again, ref["grounding_tokens"])
    _close(full.class_emb, ref["class_emb"])


def test_class_name_cleaning() -> None:
    assert clean_class_name("wall-other-merged") == "wall"
    assert clean_class_name("tree-merged") == "tree"
    assert clean_class_name("floor-other-stuff") == "floor"
    assert clean_class_name("traffic light") == "traffic light"
    templates = prompt_templates()
    assert len(templates) == 81 and templates[0] == "{}."


def test_full_size_keys_and_shapes_on_meta() -> None:
    entries = json.loads((reference_dir() / "keys" / "seem_focalt_v1.json").read_text())["keys"]
    expected = {
        name[len(PREFIX) :]: tuple(shape) for name, shape, _ in entries if name.startswith(PREFIX)
    }
    with torch.device("meta"):
        model = LanguageEncoder(TextEncoderConfig())
    ours = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert ours == expected
    assert len(ours) == 150


def test_dtype_and_length_handling() -> None:
    torch.manual_seed(0)
    model = LanguageEncoder(TINY).eval()
    ids = torch.full((2, 77), 49407)
    ids[:, 0] = 49406
    ids[0, 1:3] = torch.tensor([320, 1929])
    with torch.no_grad():
        out = model.encode_tokens(ids)
        short = model.encode_tokens(ids[:, :5])
        half = model.to(torch.bfloat16).encode_tokens(ids)
    assert out.token_emb.shape == (2, 77, 64) and out.class_emb.shape == (2, 64)
    # causal attention: cutting after the EOT leaves the earlier positions unchanged
    torch.testing.assert_close(short.token_emb, out.token_emb[:, :5], atol=1e-6, rtol=0)
    torch.testing.assert_close(short.class_emb, out.class_emb, atol=1e-6, rtol=0)
    assert half.token_emb.dtype == half.class_emb.dtype == torch.bfloat16
    torch.testing.assert_close(half.class_emb.float(), out.class_emb, atol=0.05, rtol=0.05)
    with pytest.raises(ValueError, match="context length"):
        model.encode_tokens(torch.full((1, 78), 49407))
