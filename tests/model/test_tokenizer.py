"""CLIP BPE tokenizer: fixture ids, both vocabulary formats, source lookup and its errors."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from napari_seem.model import tokenizer as tokenizer_module
from napari_seem.model.text_encoder import clean_class_name, prompt_templates
from napari_seem.model.tokenizer import (
    ClipTokenizer,
    TokenizerNotFound,
    clean_text,
    load_clip_tokenizer,
)
from tests.model.reference import load_npz, reference_dir

FIXTURES = ("focalt_v1_tiny", "samvitb_v1_tiny")
SOT, EOT = 49406, 49407


def open_clip_merges_path() -> Path:
    """open_clip's ``bpe_simple_vocab_16e6.txt.gz`` from the installed wheel (not imported)."""
    try:
        dist = importlib.metadata.distribution("open_clip_torch")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("open_clip_torch is not installed (it provides the CLIP BPE merges)")
    path = Path(str(dist.locate_file("open_clip/bpe_simple_vocab_16e6.txt.gz")))
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    return path


@pytest.fixture(scope="module")
def tok() -> ClipTokenizer:
    return load_clip_tokenizer(open_clip_merges_path())


@pytest.mark.parametrize("fixture", FIXTURES)
def test_texts_match_fixture_ids(tok: ClipTokenizer, fixture: str) -> None:
    for name in ("text_encoder", "grounding"):
        ref = load_npz(fixture, name)
        out = tok(list(ref["texts"]))
        assert out.input_ids.dtype == out.attention_mask.dtype == torch.int64
        np.testing.assert_array_equal(out.input_ids.numpy(), ref["input_ids"])
        np.testing.assert_array_equal(out.attention_mask.numpy(), ref["attention_mask"])


@pytest.mark.parametrize("fixture", FIXTURES)
def test_template_prompts_match_fixture_ids(tok: ClipTokenizer, fixture: str) -> None:
    ref = load_npz(fixture, "text_encoder")
    templates = prompt_templates()
    assert len(templates) == int(ref["num_templates"]) == 81
    names = [clean_class_name(str(n)) for n in ref["class_names"]]
    out = tok([t.format(n) for n in names for t in templates])
    shape = ref["template_input_ids"].shape
    np.testing.assert_array_equal(out.input_ids.view(shape).numpy(), ref["template_input_ids"])
    np.testing.assert_array_equal(
        out.attention_mask.view(shape).numpy(), ref["template_attention_mask"]
    )


def test_packaged_templates_equal_fixture_templates() -> None:
    stored = json.loads((reference_dir() / FIXTURES[0] / "prompt_templates.json").read_text())
    assert list(prompt_templates()) == stored
    assert prompt_templates()[0] == "{}."
    assert all(t.count("{}") == 1 for t in stored)


def test_layout_truncation_and_padding(tok: ClipTokenizer) -> None:
    out = tok(["word " * 200, "", "a dog"])
    ids, mask = out.input_ids, out.attention_mask
    assert ids.shape == mask.shape == (3, 77)
    # long text: SOT, 75 BPE ids, EOT, no room for padding
    assert ids[0, 0] == SOT and ids[0, -1] == EOT and (ids[0, 1:-1] != EOT).all()
    assert mask[0].sum() == 77
    # empty text: SOT EOT then EOT padding
    assert ids[1, :2].tolist() == [SOT, EOT] and (ids[1, 2:] == EOT).all()
    assert mask[1].tolist() == [1, 1] + [0] * 75
    assert ids[2, :4].tolist() == [SOT, *tok.encode("a dog"), EOT]


def test_cleaning_whitespace_case_and_html(tok: ClipTokenizer) -> None:
    assert clean_text("  A\tDog&amp;amp;\n\n Cat ") == "a dog& cat"
    assert tok.encode("  The   PERSON\ton the LEFT ") == tok.encode("the person on the left")
    assert tok.encode("fish &amp; chips") == tok.encode("fish & chips")
    # non-ASCII bytes go through the byte alphabet, never an unknown token
    assert all(0 <= i < tok.vocab_size for i in tok.encode("naïve café ☃ 東京 🐱"))


def test_single_string_is_refused(tok: ClipTokenizer) -> None:
    with pytest.raises(TypeError, match="sequence of strings"):
        tok("a dog")


def _write_hf_files(tok: ClipTokenizer, folder: Path) -> None:
    """Write the vocabulary as a Hugging Face ``vocab.json`` + ``merges.txt`` pair."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(tok.encoder), encoding="utf-8")
    merges = sorted(tok.ranks, key=tok.ranks.__getitem__)
    body = "\n".join(f"{a} {b}" for a, b in merges)
    (folder / "merges.txt").write_text(f"#version: 0.2\n{body}\n", encoding="utf-8")


def test_hugging_face_format_gives_the_same_tokenizer(tok: ClipTokenizer, tmp_path: Path) -> None:
    assert tok.vocab_size == 49408 and len(tok.ranks) == 48894
    assert (tok.sot_id, tok.eot_id) == (SOT, EOT)
    _write_hf_files(tok, tmp_path)
    texts = ["red rose in a glass vase.", "wall", "a photo of the hard to see tree."]
    for source in (tmp_path, tmp_path / "vocab.json", tmp_path / "merges.txt"):
        hf = load_clip_tokenizer(source)
        assert hf.encoder == tok.encoder
        assert torch.equal(hf(texts).input_ids, tok(texts).input_ids)


def test_explicit_bad_path_does_not_fall_back(tmp_path: Path) -> None:
    with pytest.raises(TokenizerNotFound, match="not a CLIP BPE vocabulary"):
        load_clip_tokenizer(tmp_path)


class _FakeHub:
    """Stand-in for ``huggingface_hub.hf_hub_download`` that records how it was called."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self.calls: list[tuple[str, str, bool]] = []

    def __call__(self, repo_id: str, filename: str, **kwargs: Any) -> str:
        self.calls.append((repo_id, filename, bool(kwargs.get("local_files_only"))))
        if self.folder is None:
            raise FileNotFoundError(f"{filename} is not in the cache")
        return str(self.folder / filename)


def _hide_open_clip(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.metadata.distribution

    def distribution(name: str) -> importlib.metadata.Distribution:
        if name == "open_clip_torch":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)


def test_no_source_offline_raises_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    hub = _FakeHub()
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _hide_open_clip(monkeypatch)
    with pytest.raises(TokenizerNotFound) as info:
        load_clip_tokenizer()
    message = str(info.value)
    for needle in (
        "three ways",
        "load_clip_tokenizer(",
        "vocab.json + merges.txt",
        "openai/clip-vit-base-patch32",
        "HF_HUB_OFFLINE",
        "open_clip_torch",
        "not installed",
    ):
        assert needle in message
    # offline: the cache only, asked once, never the network
    assert hub.calls == [("openai/clip-vit-base-patch32", "vocab.json", True)]


def test_online_asks_the_hub_last(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    hub = _FakeHub()
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    _hide_open_clip(monkeypatch)
    with pytest.raises(TokenizerNotFound):
        load_clip_tokenizer()
    assert [local for *_, local in hub.calls] == [True, False]


def test_cached_hub_files_come_first(
    tok: ClipTokenizer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    _write_hf_files(tok, tmp_path)
    hub = _FakeHub(tmp_path)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub)
    monkeypatch.setattr(
        tokenizer_module,
        "_open_clip_merges_file",
        lambda: pytest.fail("open_clip must not be consulted when the cache has the files"),
    )
    loaded = load_clip_tokenizer()
    assert loaded.encoder == tok.encoder
    assert all(local for *_, local in hub.calls)


def test_open_clip_wheel_is_used_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    open_clip_merges_path()
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _FakeHub())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert load_clip_tokenizer()(["a dog"]).input_ids[0, :4].tolist() == [SOT, 320, 1929, EOT]


def test_word_cache_is_per_instance(tok: ClipTokenizer) -> None:
    other = load_clip_tokenizer(open_clip_merges_path())
    other.encode("zebra crossing")
    assert "zebra" in other._word_cache
    assert "zebra" not in tok._word_cache
