"""Variants, full-size key layouts, and strict checkpoint loading of the whole model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from napari_seem.core.variants import VARIANT_SUMMARIES
from napari_seem.model.build import VARIANTS, build_seem, get_config
from napari_seem.model.checkpoint import CheckpointError, guess_variant, read_state_dict
from tests.model.reference import load_weights, official_keys, reference_dir

OFFICIAL = {
    "seem-focalt-v1": "seem_focalt_v1",
    "seem-focall-v1": "seem_focall_v1",
    "seem-samvitb-v1": "seem_samvitb_v1",
    "seem-samvitl-v1": "seem_samvitl_v1",
}


def test_variant_listing_matches_builders() -> None:
    assert set(VARIANT_SUMMARIES) <= set(VARIANTS)
    assert set(OFFICIAL) <= set(VARIANT_SUMMARIES)


@pytest.mark.parametrize(("variant", "key_file"), sorted(OFFICIAL.items()))
def test_full_size_state_dict_equals_official_key_list(variant: str, key_file: str) -> None:
    model = build_seem(variant, device="meta")
    ours = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    official = [(k, s) for k, s in official_keys(key_file) if not k.startswith("criterion.")]
    # names and shapes must match; the order of the official file is not needed to load
    assert sorted(ours) == sorted(official)


def test_v0_and_demo_key_lists_fit_v1_models() -> None:
    """v0 weights share every name with v1 (README section 1): the same model loads them."""
    v1 = official_keys("seem_focalt_v1")
    assert official_keys("seem_focalt_v0") == v1
    demo = official_keys("seem_focalt_demo")
    assert sorted(demo) == sorted(k for k in v1 if not k[0].startswith("criterion."))


@pytest.mark.parametrize(
    ("variant", "fixture"),
    [("seem-tiny-focal", "focalt_v1_tiny"), ("seem-tiny-sam", "samvitb_v1_tiny")],
)
def test_tiny_variants_load_fixture_weights_strictly(variant: str, fixture: str) -> None:
    path = reference_dir() / fixture / "weights.safetensors"
    model = build_seem(variant, checkpoint=path)
    assert model.load_report is not None
    assert model.load_report.dropped == ("criterion.empty_weight",)
    state = load_weights(fixture)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, state[name], rtol=0, atol=0, msg=name)


def test_wrong_variant_is_named() -> None:
    sam_weights = load_weights("samvitb_v1_tiny")
    with pytest.raises(CheckpointError) as info:
        build_seem("seem-tiny-focal", checkpoint=sam_weights)
    message = str(info.value)
    assert "missing" in message and "unexpected" in message
    assert "backbone.blocks.0" in message or "backbone.pos_embed" in message


def test_guess_variant_of_full_size_layouts() -> None:
    for variant in OFFICIAL:
        assert guess_variant(build_seem(variant, device="meta").state_dict()) == variant


def test_stray_and_missing_keys_are_listed() -> None:
    state = dict(load_weights("focalt_v1_tiny"))
    state["sem_seg_head.predictor.extra_head.weight"] = torch.zeros(3)
    del state["backbone.norm3.bias"]
    with pytest.raises(CheckpointError, match=r"1 missing: backbone\.norm3\.bias") as info:
        build_seem("seem-tiny-focal", checkpoint=state)
    assert "1 unexpected: sem_seg_head.predictor.extra_head.weight" in str(info.value)


def test_shape_mismatch_is_listed() -> None:
    state = dict(load_weights("focalt_v1_tiny"))
    state["sem_seg_head.predictor.query_feat.weight"] = torch.zeros(100, 64)
    with pytest.raises(CheckpointError, match=r"query_feat\.weight \(file \(100, 64\) vs model"):
        build_seem("seem-tiny-focal", checkpoint=state)


def test_truncated_and_missing_files(tmp_path: Path) -> None:
    good = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in load_weights("focalt_v1_tiny").items()}, str(good))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated, corrupt"):
        build_seem("seem-tiny-focal", checkpoint=truncated)
    pt = tmp_path / "broken.pt"
    pt.write_bytes(b"\x80\x02not a pickle at all")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_state_dict(pt)
    with pytest.raises(CheckpointError, match="does not exist"):
        build_seem("seem-tiny-focal", checkpoint=tmp_path / "nope.pt")


def test_pt_files_and_wrappers_load(tmp_path: Path) -> None:
    state = load_weights("focalt_v1_tiny")
    path = tmp_path / "wrapped.pt"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}}, path)
    model = build_seem("seem-tiny-focal", checkpoint=path)
    torch.testing.assert_close(
        model.backbone.norm3.bias, state["backbone.norm3.bias"], rtol=0, atol=0
    )


def test_unknown_variant_message() -> None:
    with pytest.raises(ValueError, match="known variants: seem-focalt-v1"):
        get_config("seem-giant")
