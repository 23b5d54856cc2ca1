"""Names of the model variants, for listings that must not import torch.

The builders themselves live in :mod:`napari_seem.model.build`; a test checks that both
modules name the same variants.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

__all__ = ["DEFAULT_VARIANT", "VARIANT_SUMMARIES", "VariantSummary", "seem_lite_shipped"]


@dataclass(frozen=True)
class VariantSummary:
    backbone: str
    weights: str


VARIANT_SUMMARIES: dict[str, VariantSummary] = {
    "seem-lite": VariantSummary(
        "EfficientNet-Lite0 + MiniLM",
        "trained, shipped in the package (6 MB; model card: model/data/SEEM_LITE_CARD.md)",
    ),
    "seem-focalt-v1": VariantSummary("FocalNet-T", "official"),
    "seem-focall-v1": VariantSummary("FocalNet-L", "official"),
    "seem-samvitb-v1": VariantSummary("SAM ViT-B + simple FPN", "official"),
    "seem-samvitl-v1": VariantSummary("SAM ViT-L + simple FPN", "official"),
    "seem-tiny-focal": VariantSummary("FocalNet (reduced)", "random, seeded: tests and demos only"),
}


def seem_lite_shipped() -> bool:
    """Whether this installation carries the trained seem-lite weights."""
    path = resources.files("napari_seem.model").joinpath("data", "seem_lite.safetensors")
    return path.is_file()


# The embedded default model: seem-lite, whose trained weights ship in the package; an
# installation without them (a stripped build) falls back to the reduced random
# configuration, and the commands that use it say so.
DEFAULT_VARIANT = "seem-lite" if seem_lite_shipped() else "seem-tiny-focal"
