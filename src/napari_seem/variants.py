"""Names of the model variants, for listings that must not import torch.

The builders themselves live in :mod:`napari_seem.model.build`; a test checks that both
modules name the same variants.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_VARIANT", "VARIANT_SUMMARIES", "VariantSummary"]


@dataclass(frozen=True)
class VariantSummary:
    backbone: str
    weights: str


VARIANT_SUMMARIES: dict[str, VariantSummary] = {
    "seem-focalt-v1": VariantSummary("FocalNet-T", "official"),
    "seem-focall-v1": VariantSummary("FocalNet-L", "official"),
    "seem-samvitb-v1": VariantSummary("SAM ViT-B + simple FPN", "official"),
    "seem-samvitl-v1": VariantSummary("SAM ViT-L + simple FPN", "official"),
    "seem-tiny-focal": VariantSummary("FocalNet (reduced)", "random, seeded: tests and demos only"),
}

# The embedded default model (seem-lite) is not trained yet; until it ships, scripts that need
# a model without a download use the reduced random configuration and say so.
DEFAULT_VARIANT = "seem-tiny-focal"
