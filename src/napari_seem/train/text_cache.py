"""Frozen text features of a training run's vocabulary and grounding phrases."""

from __future__ import annotations

from typing import Any

import torch

from napari_seem.model.minilm_text import MINILM_TEMPLATES, MiniLMTextEncoder
from napari_seem.model.seem import SeemModel
from napari_seem.model.text_encoder import BACKGROUND_CLASS, LanguageEncoder

__all__ = ["TextCache"]


class TextCache:
    """Frozen text features of the vocabulary and of the grounding phrases.

    For MiniLM the frozen sentence-encoder outputs are cached and the trainable projection
    runs every step; the CLIP encoder is frozen entirely, so its final embeddings are cached.
    """

    def __init__(self, model: SeemModel, vocabulary: list[str], phrases: list[str]) -> None:
        self.encoder = model.text_encoder
        self.vocabulary = vocabulary
        self.tokenizer: Any
        if isinstance(self.encoder, MiniLMTextEncoder):
            self.tokenizer = self.encoder.bundled_tokenizer()
            prompts = [
                t.format(n) for n in [*vocabulary, BACKGROUND_CLASS] for t in MINILM_TEMPLATES
            ]
            self._vocab_pooled = self.encoder.encode_frozen(self.tokenizer(prompts)).pooled
            self._phrases = {p: self.encoder.encode_frozen(self.tokenizer([p])) for p in phrases}
        else:
            from napari_seem.model.tokenizer import load_clip_tokenizer

            assert isinstance(self.encoder, LanguageEncoder)
            self.tokenizer = load_clip_tokenizer()
            with torch.no_grad():
                self._vocab = self.encoder.class_vocabulary(vocabulary, self.tokenizer)
                self._official = {
                    p: (
                        *self.encoder.grounding_tokens([p], self.tokenizer),
                        self.encoder.sentence_embeddings([p], self.tokenizer)[0],
                    )
                    for p in phrases
                }

    def vocab(self) -> torch.Tensor:
        """``(K+1, D)`` unit class embeddings (background last)."""
        if isinstance(self.encoder, MiniLMTextEncoder):
            return self.encoder.vocabulary_from_frozen(self._vocab_pooled, len(MINILM_TEMPLATES))
        return self._vocab

    def phrase(self, text: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Grounding ``tokens (T, 1, D)``, ``padding (1, T)`` and unit ``sentence (D,)``."""
        if isinstance(self.encoder, MiniLMTextEncoder):
            frozen = self._phrases[text]
            tokens, padding = self.encoder.grounding_from_frozen(frozen)
            sentence = self.encoder.project(frozen.pooled[0])
            return tokens, padding, sentence / sentence.norm().clamp(min=1e-7)
        return self._official[text]
