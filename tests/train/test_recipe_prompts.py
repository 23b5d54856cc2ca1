"""Prompt simulation details of the seem-lite recipe: neighbour negatives, absent phrases."""

from __future__ import annotations

import numpy as np

from napari_seem.train.loop import Trainer
from napari_seem.train.rounds import neighbour_click


def test_neighbour_negative_lands_inside_the_touching_object_only() -> None:
    seg = np.zeros((64, 64), np.int32)
    seg[10:30, 10:30] = 1  # the prompted object
    seg[10:30, 31:50] = 2  # touching it (1 px gap)
    seg[50:60, 50:60] = 3  # far away: never the neighbour
    neg = np.zeros((64, 64), bool)
    neighbour_click(seg, seg == 1, neg, np.random.default_rng(0))
    assert neg.any()
    assert set(np.unique(seg[neg])) == {2}
    rows, cols = np.nonzero(neg)
    assert abs(rows.mean() - 19.5) <= 1 and abs(cols.mean() - 40) <= 1  # its deepest point
    # an isolated object gets no neighbour click
    alone = np.zeros((64, 64), bool)
    neighbour_click(seg, seg == 3, alone, np.random.default_rng(0))
    assert not alone.any()


def test_absent_phrases_teach_an_empty_answer(fresh_lite) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    import torch

    from napari_seem.train.data import labelled_image
    from tests.train.conftest import tiny_scenes
    from tests.train.test_loop import TINY

    nuclei, other = tiny_scenes([5, 6])
    cells = labelled_image(other.image, other.labels, "cell", name="cells")
    cfg = replace(TINY, steps=15, tasks=("grounding",), grounding_absent=1.0, lr=2e-3)
    trainer = Trainer(fresh_lite, [nuclei, cells], cfg, progress=False)
    trainer.build_cache()
    crop = next(c for c in trainer.crops if set(c.segment_classes.values()) == {0})  # nuclei

    def absent_answer() -> float:
        """Mean probability of the mask the absent phrase "cell" picks on a nuclei crop."""
        with torch.no_grad():
            feats = trainer.features([crop])
            tokens, padding, sentence = trainer.text.phrase("cell")
            out = trainer.model.decode(
                feats, grounding_tokens=tokens, grounding_padding=padding, tasks=("grounding",)
            )
            sim = torch.nn.functional.normalize(out.pred_gtexts[0], dim=-1) @ sentence
            return float(out.pred_gmasks[0, int(sim.argmax())].sigmoid().mean())

    before = absent_answer()
    trainer.train()
    after = absent_answer()
    assert after < 0.5 * before, (before, after)


def test_a_decoder_only_fine_tune_exports_a_complete_loadable_file(fresh_lite, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    import torch

    from napari_seem.model.build import build_seem
    from napari_seem.train.loop import default_trainable
    from tests.train.conftest import tiny_scenes
    from tests.train.test_loop import TINY

    decoder = tuple(
        k for k in default_trainable(fresh_lite) if k.startswith("sem_seg_head.predictor.")
    )
    pixel = "sem_seg_head.pixel_decoder.layer_1.weight"
    frozen_before = fresh_lite.state_dict()[pixel].clone()
    cfg = replace(TINY, steps=2, tasks=("spatial",), trainable=decoder)
    trainer = Trainer(fresh_lite, tiny_scenes([7]), cfg, progress=False)
    trainer.train()
    path = trainer.export(tmp_path / "decoder-only.safetensors")
    loaded = build_seem("seem-lite", checkpoint=path)  # strict: every trained part is there
    assert loaded.load_report is not None
    torch.testing.assert_close(loaded.state_dict()[pixel], frozen_before)
    key = next(k for k in decoder if k.endswith("weight"))
    torch.testing.assert_close(loaded.state_dict()[key], fresh_lite.state_dict()[key])
