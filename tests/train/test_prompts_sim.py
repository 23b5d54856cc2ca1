"""Simulated prompts and the official click protocol."""

from __future__ import annotations

import numpy as np
import pytest

from napari_seem.train.prompts_sim import (
    PROMPT_KINDS,
    first_click,
    next_click,
    simulate_prompt,
)


def _disc(r: int = 10) -> np.ndarray:
    rows, cols = np.mgrid[0:40, 0:40]
    return (rows - 20) ** 2 + (cols - 18) ** 2 <= r * r


def test_first_click_is_the_deepest_point() -> None:
    click = first_click(_disc())
    assert (click.row, click.col, click.positive) == (20, 18, True)


def test_next_click_targets_the_larger_error() -> None:
    target = _disc()
    assert next_click(target, target) is None
    missed = next_click(np.zeros_like(target), target)
    assert missed is not None and missed.positive and (missed.row, missed.col) == (20, 18)
    too_big = _disc(16)
    extra = next_click(too_big, target)
    assert extra is not None and not extra.positive and not target[extra.row, extra.col]


@pytest.mark.parametrize("kind", PROMPT_KINDS)
def test_every_prompt_kind_marks_the_object(kind: str) -> None:
    target = _disc()
    mask = simulate_prompt(target, kind, np.random.default_rng(0))  # type: ignore[arg-type]
    assert mask.shape == target.shape and mask.any()
    # most of the prompt lies on the object (a polygon may overshoot a little)
    assert (mask & target).sum() >= 0.7 * mask.sum()


def test_empty_target_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        simulate_prompt(np.zeros((8, 8), bool), "click", np.random.default_rng(0))
