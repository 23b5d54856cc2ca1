"""The own-error click simulator of the v2 recipe: corrective clicks come from the answer's
errors (positive in a false negative, negative in a false positive or on a swallowed
touching neighbour), from masks and from a model's logits alike."""

from __future__ import annotations

import numpy as np
import pytest

from napari_seem.train.own_errors import add_click, merged_neighbour_click, own_error_clicks
from napari_seem.train.prompts_sim import Click


def _pair() -> np.ndarray:
    """Two touching squares (ids 1 and 2) and a far one (id 3) in a 64 x 64 map."""
    seg = np.zeros((64, 64), np.int32)
    seg[10:30, 10:30] = 1
    seg[10:30, 30:50] = 2  # touches id 1 along column 29/30
    seg[45:60, 45:60] = 3
    return seg


def test_a_missing_half_gets_a_positive_click_inside_the_false_negative() -> None:
    seg = _pair()
    pred = np.zeros((1, 64, 64), bool)
    pred[0, 10:30, 10:20] = True  # only the left half of object 1
    pos = np.zeros_like(pred)
    neg = np.zeros_like(pred)
    (click,) = own_error_clicks(pred, seg, [1], pos, neg, merged_fraction=0.3)
    assert click is not None and click.positive
    fn = (seg == 1) & ~pred[0]
    assert fn[click.row, click.col]
    assert pos[0].any() and not neg[0].any()
    assert np.all(seg[pos[0]] == 1)  # the stamped blob stays inside the target


def test_a_swallowed_neighbour_gets_a_negative_click_on_it() -> None:
    seg = _pair()
    pred = ((seg == 1) | (seg == 2))[None]  # the two touching objects answered as one
    pos = np.zeros_like(pred)
    neg = np.zeros_like(pred)
    for merged in (0.3, None):  # the neighbour rule and the plain largest-error rule agree
        neg[:] = False
        (click,) = own_error_clicks(pred, seg, [1], pos, neg, merged_fraction=merged)
        assert click is not None and not click.positive
        assert seg[click.row, click.col] == 2
        assert neg[0].any() and set(np.unique(seg[neg[0]])) == {2}
    assert not pos[0].any()


def test_a_false_positive_blob_in_the_background_gets_a_negative_click() -> None:
    seg = _pair()
    pred = (seg == 1)[None].copy()
    pred[0, 35:44, 2:12] = True  # a spurious blob on background
    pos = np.zeros_like(pred)
    neg = np.zeros_like(pred)
    (click,) = own_error_clicks(pred, seg, [1], pos, neg, merged_fraction=0.3)
    assert click is not None and not click.positive
    assert pred[0, click.row, click.col] and seg[click.row, click.col] == 0
    assert not (neg[0] & (seg == 1)).any()


def test_an_exact_answer_adds_no_click() -> None:
    seg = _pair()
    pred = (seg == 3)[None]
    pos = np.zeros_like(pred)
    neg = np.zeros_like(pred)
    assert own_error_clicks(pred, seg, [3], pos, neg) == [None]
    assert not pos.any() and not neg.any()


def test_merged_neighbour_needs_enough_of_the_neighbour() -> None:
    seg = _pair()
    pred = seg == 1
    pred[10:30, 30:33] = True  # 15 % of object 2
    assert merged_neighbour_click(pred, seg, 1, min_fraction=0.3) is None
    click = merged_neighbour_click(pred, seg, 1, min_fraction=0.1)
    assert click is not None and not click.positive and seg[click.row, click.col] == 2
    # the far object 3 is never a neighbour, however much of it the answer covers
    far = pred | (seg == 3)
    assert merged_neighbour_click(far, seg, 1, min_fraction=0.5) is None


def test_add_click_keeps_the_centre_even_at_a_thin_border() -> None:
    target = np.zeros((8, 8), bool)
    target[3, 3] = True  # one-pixel object
    pos = np.zeros_like(target)
    neg = np.zeros_like(target)
    add_click(pos, neg, target, Click(3, 3, True))
    assert pos.sum() == 1 and pos[3, 3]
    add_click(pos, neg, target, Click(3, 4, False))
    assert neg[3, 4] and not neg[3, 3] and neg.sum() == 8  # 3 x 3 minus the target pixel


def test_the_trainer_clicks_from_model_logits(fresh_lite) -> None:  # type: ignore[no-untyped-def]
    """``StreamTrainer.correct`` turns (1, P, h, w) stride-4 logits into the answer and adds
    the protocol's clicks: here a logit map that covers both touching objects."""
    torch = pytest.importorskip("torch")
    from tests.train.test_stream import tiny_trainer

    trainer = tiny_trainer(fresh_lite)
    seg = _pair()
    answer = torch.from_numpy(((seg == 1) | (seg == 2)).astype(np.float32))
    logits = torch.nn.functional.avg_pool2d(answer[None, None], 4) * 20 - 10  # (1, 1, 16, 16)
    pos = np.zeros((1, 64, 64), bool)
    neg = np.zeros_like(pos)
    trainer.correct(logits, seg, [1], pos, neg, np.random.default_rng(0))
    assert neg.any() and not pos.any()
    assert set(np.unique(seg[neg[0]])) == {2}
    # the other way round: an empty answer for object 2 gets a positive click inside it
    pos[:] = False
    neg[:] = False
    trainer.correct(torch.full((1, 1, 16, 16), -10.0), seg, [2], pos, neg, np.random.default_rng(0))
    assert pos.any() and not neg.any() and set(np.unique(seg[pos[0]])) == {2}
