"""SEEM's CLIP-style text encoder and the text embeddings the decoder consumes.

A causal transformer over CLIP BPE ids (pre-LN blocks, TF-style LayerNorm with eps 1e-12
computed in float32, QuickGELU MLP, learned positions) followed by a linear projection
``lang_proj`` into the joint vision-language space. It produces:

- per-token and per-sentence embeddings (the sentence vector is read at the first EOT,
  i.e. at ``argmax(input_ids)`` because EOT is the largest id);
- the grounding token sequence of referring texts (all texts' SOT..EOT tokens concatenated);
- the class vocabulary: for each class name, the 81 prompt templates embedded, normalised,
  averaged and renormalised, with "background" appended as the no-object class.

State-dict names are the official ones under ``sem_seg_head.predictor.lang_encoder.``:
``lang_proj``, ``logit_scale`` and ``lang_encoder.{token_embedding, positional_embedding,
resblocks.{i}.{attn, ln_1, mlp.c_fc, mlp.c_proj, ln_2}, ln_final}``.

Because attention is causal, the output at a position never depends on later positions, so
helpers that only need positions up to the EOT run on sequences cut just after it; the
numbers are those of the full 77-token run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources

import torch
import torch.nn.functional as F
from torch import nn

from napari_seem.model.decoder_layers import MultiHeadAttention
from napari_seem.model.layers import l2_normalize
from napari_seem.model.tokenizer import TokenizedText

__all__ = [
    "BACKGROUND_CLASS",
    "LanguageEncoder",
    "TextEmbeddings",
    "TextEncoderConfig",
    "clean_class_name",
    "l2_normalize",
    "prompt_templates",
    "select_grounding_tokens",
]

BACKGROUND_CLASS = "background"
# Suffixes of COCO panoptic stuff names ("wall-other-merged") removed before prompting,
# in the official order.
_CLASS_NAME_SUFFIXES = ("-other", "-merged", "-stuff")
_NORM_EPS = 1e-7

Tokenizer = Callable[[Sequence[str]], TokenizedText]


@dataclass(frozen=True, kw_only=True)
class TextEncoderConfig:
    """Sizes of the text encoder; the defaults are those of every released SEEM model."""

    width: int = 512
    layers: int = 12
    heads: int = 8
    # Number of token positions (learned position embeddings); inputs may be shorter.
    context_length: int = 77
    vocab_size: int = 49408
    # Width of the joint vision-language space (the decoder's DIM_PROJ).
    dim_proj: int = 512
    # UniCL's TF-style LayerNorm; torch's default 1e-5 would change the numbers.
    layer_norm_eps: float = 1e-12


@dataclass(frozen=True)
class TextEmbeddings:
    """Output of :meth:`LanguageEncoder.encode_tokens` for ``N`` texts of ``L`` tokens.

    Attributes:
        last_hidden_state: ``(N, L, width)`` transformer output after ``ln_final``.
        token_emb: ``(N, L, D)`` every position projected by ``lang_proj`` (not normalised).
        class_emb: ``(N, D)`` the projected vector at the first EOT (not normalised).
    """

    last_hidden_state: torch.Tensor
    token_emb: torch.Tensor
    class_emb: torch.Tensor


def clean_class_name(name: str) -> str:
    """Remove the COCO stuff suffixes ``-other``, ``-merged``, ``-stuff`` from a class name."""
    for suffix in _CLASS_NAME_SUFFIXES:
        name = name.replace(suffix, "")
    return name


def prompt_templates() -> tuple[str, ...]:
    """The 81 prompt templates (``"{}."`` then the 80 CLIP ImageNet ones), each with one ``{}``."""
    text = resources.files("napari_seem.model").joinpath("data/prompt_templates.json")
    return tuple(json.loads(text.read_text(encoding="utf-8")))


def select_grounding_tokens(
    token_emb: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate the SOT..EOT token embeddings of all texts into one grounding sequence.

    Args:
        token_emb: ``(N, L, D)`` token embeddings (not normalised), ``L`` covering at least
            every position where ``attention_mask`` is 1.
        attention_mask: ``(N, L')`` with ``L' >= L``; nonzero on each text's SOT..EOT.

    Returns:
        ``tokens`` ``(T, 1, D)``: text 0's tokens in order, then text 1's, ... (batch 1);
        ``padding_mask`` ``(1, T)`` bool, all False (no padding).
    """
    keep = attention_mask[:, : token_emb.shape[1]].to(device=token_emb.device).bool()
    tokens = token_emb[keep].unsqueeze(1)
    padding_mask = torch.zeros((1, tokens.shape[0]), dtype=torch.bool, device=tokens.device)
    return tokens, padding_mask


class Float32LayerNorm(nn.Module):
    """LayerNorm whose statistics are computed in float32 whatever the input dtype.

    The normalised values are cast back to the input dtype before the affine part, as in
    UniCL/X-Decoder, so half-precision runs keep the official rounding.
    """

    def __init__(self, dim: int, *, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = F.layer_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype)
        return self.weight * normed + self.bias


class CausalSelfAttention(MultiHeadAttention):
    """Multi-head causal self-attention (``nn.MultiheadAttention`` parameter names).

    The parameters are those of the decoder's :class:`MultiHeadAttention`; only the
    attention pattern differs. Input and output are batch-first ``(N, L, W)``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        q, k, v = self.project_query(x), self.project_key(x), self.project_value(x)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (N, heads, L, hd)
        n, heads, length, head_dim = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(n, length, heads * head_dim))


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``, the GELU approximation CLIP was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class TextMLP(nn.Module):
    """``c_proj(QuickGELU(c_fc(x)))`` with a 4x hidden width."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.act = QuickGELU()
        self.c_proj = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.act(self.c_fc(x)))


class TextBlock(nn.Module):
    """Pre-LN transformer block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, *, width: int, heads: int, eps: float) -> None:
        super().__init__()
        self.attn = CausalSelfAttention(width, heads)
        self.ln_1 = Float32LayerNorm(width, eps=eps)
        self.mlp = TextMLP(width)
        self.ln_2 = Float32LayerNorm(width, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TextTransformer(nn.Module):
    """Token ids ``(N, L)`` to hidden states ``(N, L, width)`` after ``ln_final``.

    ``L`` may be anything up to ``context_length``: position ``i`` uses position embedding
    ``i`` and, attention being causal, sees only positions ``<= i``.
    """

    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.empty(config.context_length, config.width))
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        self.resblocks = nn.ModuleList(
            TextBlock(width=config.width, heads=config.heads, eps=config.layer_norm_eps)
            for _ in range(config.layers)
        )
        self.ln_final = Float32LayerNorm(config.width, eps=config.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        length = input_ids.shape[1]
        if length > self.positional_embedding.shape[0]:
            raise ValueError(
                f"{length} tokens exceed the context length {self.positional_embedding.shape[0]}"
            )
        x = self.token_embedding(input_ids) + self.positional_embedding[:length]
        for block in self.resblocks:
            x = block(x)
        return self.ln_final(x)


class LanguageEncoder(nn.Module):
    """SEEM's text encoder (``sem_seg_head.predictor.lang_encoder``).

    Parameters: ``lang_proj`` ``(width, dim_proj)``, ``logit_scale`` (0-d, the log of the
    class-logit temperature) and the transformer ``lang_encoder``. The model is stateless:
    class vocabularies are returned, never stored on the module. Inputs are moved to the
    device of the parameters; outputs have the parameters' dtype.
    """

    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.lang_encoder = TextTransformer(config)
        self.lang_proj = nn.Parameter(torch.empty(config.width, config.dim_proj))
        self.logit_scale = nn.Parameter(torch.ones(()))
        self._init_weights()

    def _init_weights(self) -> None:
        """Random initialisation as in the official code (checkpoints overwrite it)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, CausalSelfAttention):
                nn.init.xavier_uniform_(module.in_proj_weight)
                nn.init.zeros_(module.in_proj_bias)
        nn.init.trunc_normal_(self.lang_encoder.positional_embedding, std=0.02)
        nn.init.trunc_normal_(self.lang_encoder.token_embedding.weight, std=0.02)
        nn.init.trunc_normal_(self.lang_proj, std=0.02)

    @property
    def _device(self) -> torch.device:
        return self.lang_proj.device

    def forward(self, input_ids: torch.Tensor) -> TextEmbeddings:
        """See :meth:`encode_tokens`."""
        input_ids = input_ids.to(device=self._device, dtype=torch.long)
        hidden = self.lang_encoder(input_ids)
        # EOT (49407) is the largest id, so argmax finds the first EOT of each row.
        eot = input_ids.argmax(dim=-1)
        sentence = hidden[torch.arange(hidden.shape[0], device=hidden.device), eot]
        return TextEmbeddings(
            last_hidden_state=hidden,
            token_emb=hidden @ self.lang_proj,
            class_emb=sentence @ self.lang_proj,
        )

    def encode_tokens(self, input_ids: torch.Tensor) -> TextEmbeddings:
        """Embed tokenized texts.

        Args:
            input_ids: ``(N, L)`` integer CLIP ids, ``L <= context_length`` (77 as produced
                by the tokenizer); each row must contain an EOT (49407). Padding is not
                masked: the causal mask keeps it from affecting SOT..EOT.

        Returns:
            :class:`TextEmbeddings` (unnormalised ``token_emb`` ``(N, L, D)`` and
            ``class_emb`` ``(N, D)``, plus ``last_hidden_state`` ``(N, L, width)``).
        """
        return self(input_ids)

    def _encode_up_to(self, input_ids: torch.Tensor, last: torch.Tensor) -> TextEmbeddings:
        """Encode only the first ``max(last) + 1`` positions of every row."""
        length = int(last.max()) + 1 if last.numel() else input_ids.shape[1]
        return self(input_ids[:, :length])

    def sentence_embeddings(self, texts: Sequence[str], tokenizer: Tokenizer) -> torch.Tensor:
        """Sentence vectors of ``N`` texts.

        Returns:
            ``(N, D)`` ``class_emb / (||class_emb|| + 1e-7)`` (the official ``norm=True``).
        """
        ids = tokenizer(texts).input_ids
        return l2_normalize(self._encode_up_to(ids, ids.argmax(dim=-1)).class_emb)

    def grounding_tokens(
        self, texts: Sequence[str], tokenizer: Tokenizer
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The grounding token sequence of referring texts, fed together to the decoder.

        Returns:
            ``tokens`` ``(T, 1, D)``: unnormalised token embeddings at every SOT..EOT
            position of text 0, then text 1, ... (``T`` = total attended tokens);
            ``padding_mask`` ``(1, T)`` bool, all False.
        """
        tokenized = tokenizer(texts)
        ids, mask = tokenized.input_ids, tokenized.attention_mask
        positions = torch.arange(ids.shape[1], device=ids.device)
        last = torch.maximum((mask.bool() * positions).amax(dim=-1), ids.argmax(dim=-1))
        return select_grounding_tokens(self._encode_up_to(ids, last).token_emb, mask)

    @torch.no_grad()
    def class_vocabulary(
        self,
        names: Sequence[str],
        tokenizer: Tokenizer,
        *,
        templates: Sequence[str] | None = None,
        batch_size: int = 256,
    ) -> torch.Tensor:
        """Class embeddings of a vocabulary, with "background" appended as the no-object class.

        Each name is cleaned (:func:`clean_class_name`), put into every template, and the
        ``l2_normalize``-d sentence vectors of its prompts are averaged; the mean is divided
        by its norm (no epsilon). Computed without gradients, as in the official evaluation.

        Args:
            names: ``K`` class names (without "background").
            tokenizer: a CLIP tokenizer (:class:`~napari_seem.model.tokenizer.ClipTokenizer`).
            templates: prompt templates with one ``{}``; default :func:`prompt_templates`.
            batch_size: prompts encoded per forward pass.

        Returns:
            ``(K + 1, D)`` unit vectors; row ``K`` is "background".
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        templates = prompt_templates() if templates is None else tuple(templates)
        if not templates:
            raise ValueError("at least one prompt template is needed")
        classes = [clean_class_name(name) for name in [*names, BACKGROUND_CLASS]]
        prompts = [template.format(name) for name in classes for template in templates]
        ids = tokenizer(prompts).input_ids
        chunks = []
        for start in range(0, len(prompts), batch_size):
            chunk = ids[start : start + batch_size]
            chunks.append(l2_normalize(self._encode_up_to(chunk, chunk.argmax(dim=-1)).class_emb))
        per_prompt = torch.cat(chunks).view(len(classes), len(templates), -1)
        mean = per_prompt.mean(dim=1)
        return mean / mean.norm(dim=-1, keepdim=True)
