"""The SEEM v1 decoder (official ``sem_seg_head.predictor``): queries -> masks and embeddings.

Three independent query groups run through the same transformer layers (see
:mod:`napari_seem.model.attention_groups` for why they are independent):

- 101 learned **object queries** -> generic masks, class logits against a vocabulary and
  caption embeddings (panoptic / instance / semantic);
- 101 **grounding queries** (copies of the initial object queries) that self-attend with
  text tokens -> referring-text masks;
- ``Q = 3`` **spatial queries** per visual prompt (copies of object queries ``0..Q-1``) that
  self-attend with the prompt's visual tokens and, from round 2, with 32 **memory tokens**
  that cross-attend inside the previous round's mask -> one interactive mask per prompt.

Layer ``i`` cross-attends feature level ``i % 3`` (strides 32, 16, 8) inside the previous
prediction's mask, then self-attends inside its group, then applies the FFN. A prediction
is made from the initial queries and after every layer.

Text enters as tensors (class embeddings, grounding token embeddings); visual prompts enter
as :class:`~napari_seem.model.prompt_encoder.VisualPromptTokens`. The decoder is stateless:
round-to-round memory is the caller's ``prev_mask``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Literal, NamedTuple, cast, get_args

import torch
from torch import nn

from napari_seem.model.attention_groups import (
    QueryGroup,
    allowed_from_mask_logits,
    grounding_group,
    object_group,
    select_spatial_answer,
    spatial_group,
    unblock_empty_rows,
)
from napari_seem.model.decoder_layers import CrossAttentionLayer, FFNLayer, SelfAttentionLayer
from napari_seem.model.decoder_outputs import (
    DecoderOutput,
    DecoderPrediction,
    ImageMemory,
    class_logits,
)
from napari_seem.model.layers import MLP, sine_position_encoding
from napari_seem.model.prompt_encoder import VisualPromptTokens, encode_visual_prompts

__all__ = [
    "DecoderOutput",
    "DecoderPrediction",
    "ImageMemory",
    "SeemDecoder",
    "SeemDecoderConfig",
    "Task",
    "class_logits",
]

Task = Literal["object", "grounding", "spatial"]
_TASKS: frozenset[str] = frozenset(get_args(Task))


@dataclass(frozen=True, kw_only=True)
class SeemDecoderConfig:
    """Sizes of the SEEM decoder; the defaults are those of every released v1 checkpoint."""

    hidden_dim: int = 512
    num_heads: int = 8
    dim_feedforward: int = 2048
    # transformer layers; predictions = num_layers + 1 (official DEC_LAYERS = 10 counts those)
    num_layers: int = 9
    num_object_queries: int = 101
    # memory tokens, switched on by a previous-round mask (official SPATIAL_MEMORIES)
    num_memories: int = 32
    # spatial queries per visual prompt (official QUERY_NUMBER)
    queries_per_prompt: int = 3
    # width of the joint vision-language space (caption embeddings, class embeddings)
    dim_proj: int = 512
    # levels at strides 32, 16, 8; the official code hard-codes 3
    num_feature_levels: int = 3
    # channels of mask_features (the pixel decoder's MASK_DIM)
    mask_dim: int = 512
    # points sampled per prompt and level (official MAX_SPATIAL_LEN); read by the visual
    # sampler in prompt_encoder, listed here because it is part of the decoder's config
    max_prompt_points: int = 512


class _Heads(NamedTuple):
    captions: torch.Tensor  # (B, N, dim_proj)
    mask_embeddings: torch.Tensor  # (B, N, mask_dim)
    masks: torch.Tensor  # (B, N, h, w)


class SeemDecoder(nn.Module):
    """SEEM v1 decoder with the official parameter names (``sem_seg_head.predictor.*``).

    Args:
        config: sizes.
        lang_encoder: the text encoder, registered as child ``lang_encoder`` only so that
            checkpoint keys ``sem_seg_head.predictor.lang_encoder.*`` line up (it may also be
            assigned later); ``forward`` never calls it.
    """

    lang_encoder: nn.Module | None

    def __init__(self, config: SeemDecoderConfig, lang_encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.config = c = config
        if c.mask_dim != c.hidden_dim:
            # the visual sampler projects level features (hidden_dim) with square
            # mask_sptial_embed matrices, and pooled vectors live in mask_dim
            raise ValueError("SEEM v1 needs mask_dim == hidden_dim")
        self.class_embed = nn.Parameter(torch.empty(c.hidden_dim, c.dim_proj))
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(c.hidden_dim, c.num_heads) for _ in range(c.num_layers)
        )
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(c.hidden_dim, c.num_heads) for _ in range(c.num_layers)
        )
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(c.hidden_dim, c.dim_feedforward) for _ in range(c.num_layers)
        )
        self.decoder_norm = nn.LayerNorm(c.hidden_dim)
        self.query_feat = nn.Embedding(c.num_object_queries, c.hidden_dim)
        self.query_embed = nn.Embedding(c.num_object_queries, c.hidden_dim)
        self.level_embed = nn.Embedding(c.num_feature_levels, c.hidden_dim)
        # registered even when None so that a text encoder assigned later keeps the
        # official state-dict position (between level_embed and mask_embed)
        self.register_module("lang_encoder", lang_encoder)
        self.mask_embed = MLP(c.hidden_dim, c.hidden_dim, c.mask_dim, 3)
        self.mask_sptial_embed = nn.ParameterList(
            nn.Parameter(torch.empty(c.hidden_dim, c.hidden_dim))
            for _ in range(c.num_feature_levels)
        )
        self.spatial_embed = nn.Embedding(c.num_memories, c.hidden_dim)
        self.spatial_featured = nn.Embedding(c.num_memories, c.hidden_dim)
        self.pn_indicator = nn.Embedding(2, c.hidden_dim)
        nn.init.trunc_normal_(self.class_embed, std=0.02)
        for weight in self.mask_sptial_embed:
            nn.init.trunc_normal_(weight, std=0.02)

    def forward(
        self,
        multi_scale_features: Sequence[torch.Tensor],
        mask_features: torch.Tensor,
        *,
        class_embeddings: torch.Tensor | None = None,
        logit_scale: torch.Tensor | None = None,
        grounding_tokens: torch.Tensor | None = None,
        grounding_padding: torch.Tensor | None = None,
        visual_prompts: VisualPromptTokens | None = None,
        prev_mask: torch.Tensor | None = None,
        tasks: Iterable[Task] | None = None,
        return_aux: bool = True,
        image_memory: ImageMemory | None = None,
    ) -> DecoderOutput:
        """Decode object, grounding and spatial queries against one batch of images.

        All maps are in the padded model frame (input ``H x W`` padded bottom/right).

        Args:
            multi_scale_features: ``num_feature_levels`` maps ``(B, D, h_i, w_i)`` at strides
                32, 16, 8 (pixel decoder output, before ``level_embed``).
            mask_features: ``(B, mask_dim, H/4, W/4)``.
            class_embeddings: ``(K+1, dim_proj)`` unit-norm vocabulary embeddings (last =
                background); None skips ``pred_logits``.
            logit_scale: 0-d tensor, required with ``class_embeddings``.
            grounding_tokens: ``(L, B, hidden_dim)`` text token embeddings in the joint space
                (``dim_proj`` wide, equal to ``hidden_dim`` in released models; the valid
                tokens of all texts, concatenated); switches on the grounding queries.
            grounding_padding: ``(B, L)`` bool, True for padding tokens; default none.
            visual_prompts: tokens and pooled vectors of ``P`` visual prompts, from this
                image or (referring example) another image; switches on the spatial queries.
                Spatial query ``Q*p + j`` starts as a copy of object query ``j``.
            prev_mask: ``(B, P, H/4, W/4)`` mask logits of the previous round per prompt
                (``DecoderOutput.prev_mask``); switches on the memory tokens, memory ``m``
                belonging to prompt ``memory_prompt_index(M, P)[m]``.
            tasks: groups to run, a subset of ``{"object", "grounding", "spatial"}``;
                default: object plus every group whose inputs are given. Dropping
                ``"object"`` speeds up interactive decoding and changes nothing else.
            return_aux: keep the earlier predictions in ``DecoderOutput.aux``.
            image_memory: :meth:`project_image` of these ``multi_scale_features``, to skip
                projecting the image in every layer (identical results).

        Returns:
            :class:`DecoderOutput`.
        """
        c = self.config
        run = self._resolve_tasks(tasks, grounding_tokens, visual_prompts, prev_mask)
        sizes = self._check_inputs(
            multi_scale_features,
            mask_features,
            class_embeddings=class_embeddings,
            logit_scale=logit_scale,
            grounding_tokens=grounding_tokens,
            visual_prompts=visual_prompts,
            image_memory=image_memory,
        )
        groups, memory_index = self._build_groups(
            run,
            batch=mask_features.shape[0],
            sizes=sizes,
            grounding_tokens=grounding_tokens,
            grounding_padding=grounding_padding,
            visual_prompts=visual_prompts,
            prev_mask=prev_mask,
        )

        def predict(next_level: int | None) -> DecoderPrediction:
            return self._predict(
                groups, mask_features, class_embeddings, logit_scale, next_level, sizes
            )

        aux: list[DecoderPrediction] = []
        final = predict(0)
        for i in range(c.num_layers):
            level = i % c.num_feature_levels
            if image_memory is not None:
                memory_kv = image_memory.keys_values[i]
            else:
                # one layer at a time keeps only one level's keys and values alive
                memory_kv = self._project_layer(i, multi_scale_features[level], level)
            for group in groups.values():
                self._layer(i, level, group, memory_kv)
            if return_aux:
                aux.append(final)
            last = i == c.num_layers - 1
            final = predict(None if last else (i + 1) % c.num_feature_levels)

        outputs = {f.name: getattr(final, f.name) for f in fields(final)}
        if visual_prompts is not None and "spatial" in run:
            assert final.pred_smaskembs is not None and final.pred_smasks is not None
            pooled_pos = visual_prompts.pooled_pos.transpose(0, 1)  # (B, P, C)
            logits, selected, answer = select_spatial_answer(
                mask_embeddings=final.pred_smaskembs,
                pooled_pos=pooled_pos,
                masks=final.pred_smasks,
                queries_per_prompt=c.queries_per_prompt,
            )
            outputs.update(
                pred_pspatials=pooled_pos,
                pred_nspatials=visual_prompts.pooled_neg.transpose(0, 1),
                spatial_logits=logits,
                selected_spatial_query=selected,
                prev_mask=answer,
                memory_indices=memory_index,
            )
        return DecoderOutput(**outputs, aux=tuple(aux))

    def _check_inputs(
        self,
        multi_scale_features: Sequence[torch.Tensor],
        mask_features: torch.Tensor,
        *,
        class_embeddings: torch.Tensor | None,
        logit_scale: torch.Tensor | None,
        grounding_tokens: torch.Tensor | None,
        visual_prompts: VisualPromptTokens | None,
        image_memory: ImageMemory | None,
    ) -> list[tuple[int, int]]:
        """Validate :meth:`forward`'s inputs; returns the ``(h_i, w_i)`` of each feature level."""
        c = self.config
        if len(multi_scale_features) != c.num_feature_levels:
            raise ValueError(f"expected {c.num_feature_levels} feature levels")
        if class_embeddings is not None and logit_scale is None:
            raise ValueError("class_embeddings need logit_scale")
        sizes = [(f.shape[-2], f.shape[-1]) for f in multi_scale_features]
        batch = mask_features.shape[0]
        if image_memory is not None and list(image_memory.level_sizes) != sizes:
            raise ValueError("image_memory was projected from features of another size")
        if grounding_tokens is not None and grounding_tokens.shape[1] != batch:
            raise ValueError(f"grounding_tokens batch {grounding_tokens.shape[1]} != {batch}")
        if visual_prompts is not None and visual_prompts.pooled_pos.shape[1] != batch:
            raise ValueError(f"visual prompt batch {visual_prompts.pooled_pos.shape[1]} != {batch}")
        return sizes

    def _build_groups(
        self,
        run: frozenset[str],
        *,
        batch: int,
        sizes: list[tuple[int, int]],
        grounding_tokens: torch.Tensor | None,
        grounding_padding: torch.Tensor | None,
        visual_prompts: VisualPromptTokens | None,
        prev_mask: torch.Tensor | None,
    ) -> tuple[dict[Task, QueryGroup], torch.Tensor | None]:
        """The query groups of the tasks in ``run`` (object, grounding, spatial, in that
        order) and the spatial group's memory-to-prompt index (None without spatial)."""
        c = self.config
        num_levels = c.num_feature_levels
        groups: dict[Task, QueryGroup] = {}
        if "object" in run:
            groups["object"] = object_group(
                self.query_feat.weight, self.query_embed.weight, batch=batch, num_levels=num_levels
            )
        if "grounding" in run:
            assert grounding_tokens is not None
            groups["grounding"] = grounding_group(
                self.query_feat.weight,
                self.query_embed.weight,
                grounding_tokens,
                grounding_padding,
                num_levels=num_levels,
            )
        memory_index = None
        if "spatial" in run:
            assert visual_prompts is not None
            first = slice(0, c.queries_per_prompt)
            groups["spatial"], memory_index = spatial_group(
                self.query_feat.weight[first],
                self.query_embed.weight[first],
                self.spatial_featured.weight,
                self.spatial_embed.weight,
                visual_prompts,
                prev_mask,
                level_sizes=sizes,
            )
        return groups, memory_index

    def encode_visual_prompts(
        self,
        pos_masks: torch.Tensor,
        neg_masks: torch.Tensor | None,
        multi_scale_features: Sequence[torch.Tensor],
        mask_features: torch.Tensor,
    ) -> VisualPromptTokens:
        """Visual prompt tokens from prompt masks, with this decoder's sampler parameters.

        A thin wrapper of :func:`~napari_seem.model.prompt_encoder.encode_visual_prompts`
        passing ``level_embed``, ``mask_sptial_embed``, ``pn_indicator`` and
        ``config.max_prompt_points``.

        Args:
            pos_masks: ``(B, P, H_pad, W_pad)`` bool positive pixels per prompt, padded frame.
            neg_masks: same shape, negative pixels, or None.
            multi_scale_features: as for :meth:`forward` (of the image the prompts were
                drawn on: for a referring example, the example image's features).
            mask_features: ``(B, mask_dim, H_pad/4, W_pad/4)`` of the same image.
        """
        return encode_visual_prompts(
            pos_masks,
            neg_masks,
            multi_scale_features,
            mask_features,
            level_embed=self.level_embed.weight,
            mask_spatial_embed=list(self.mask_sptial_embed),
            pn_indicator=self.pn_indicator.weight,
            max_points=self.config.max_prompt_points,
        )

    # ----------------------------------------------------------------------------- setup

    @staticmethod
    def _resolve_tasks(
        tasks: Iterable[Task] | None,
        grounding_tokens: torch.Tensor | None,
        visual_prompts: VisualPromptTokens | None,
        prev_mask: torch.Tensor | None,
    ) -> frozenset[str]:
        if prev_mask is not None and visual_prompts is None:
            raise ValueError("prev_mask needs visual_prompts")
        if tasks is None:
            run = {"object"}
            if grounding_tokens is not None:
                run.add("grounding")
            if visual_prompts is not None:
                run.add("spatial")
            return frozenset(run)
        chosen = frozenset(tasks)
        if not chosen:
            raise ValueError("tasks is empty: nothing to decode")
        if unknown := chosen - _TASKS:
            raise ValueError(f"unknown tasks {sorted(unknown)}; choose from {sorted(_TASKS)}")
        if "grounding" in chosen and grounding_tokens is None:
            raise ValueError("task 'grounding' needs grounding_tokens")
        if "spatial" in chosen and visual_prompts is None:
            raise ValueError("task 'spatial' needs visual_prompts")
        return chosen

    def project_image(self, multi_scale_features: Sequence[torch.Tensor]) -> ImageMemory:
        """Keys and values of every layer's cross-attention, to reuse across decodes.

        Args:
            multi_scale_features: as for :meth:`forward`.
        """
        c = self.config
        if len(multi_scale_features) != c.num_feature_levels:
            raise ValueError(f"expected {c.num_feature_levels} feature levels")
        keys_values = []
        for i in range(c.num_layers):
            level = i % c.num_feature_levels
            keys_values.append(self._project_layer(i, multi_scale_features[level], level))
        sizes = tuple((f.shape[-2], f.shape[-1]) for f in multi_scale_features)
        return ImageMemory(keys_values=tuple(keys_values), level_sizes=sizes)

    def _project_layer(
        self, i: int, feature: torch.Tensor, level: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values ``(B, nh, h*w, hs)`` of layer ``i`` from its ``(B, D, h, w)`` level."""
        d = feature.shape[1]
        src = feature.flatten(2).transpose(1, 2) + self.level_embed.weight[level]  # (B, hw, D)
        pos = sine_position_encoding(feature, d // 2).flatten(2).transpose(1, 2)  # (B, hw, D)
        return self._cross_layer(i).project_memory(src, pos)

    # --------------------------------------------------------------------------- running

    def _layer(
        self,
        i: int,
        level: int,
        group: QueryGroup,
        memory_kv: tuple[torch.Tensor, torch.Tensor],
    ) -> None:
        """Cross-attention, self-attention and FFN of layer ``i`` on one group, in place."""
        cross = self._cross_layer(i)
        queries = cross(group.queries, group.query_pos, memory_kv, group.cross_allowed)
        tokens: torch.Tensor | None
        token_pos: torch.Tensor | None
        if group.level_tokens is not None:
            tokens = group.level_tokens[level]
            # visual tokens use a frozen copy of themselves as position
            token_pos = tokens.detach()
        else:
            tokens, token_pos = group.tokens, group.token_pos
        x, pos = queries, group.query_pos
        if tokens is not None and token_pos is not None:
            x = torch.cat([x, tokens], dim=1)
            pos = torch.cat([pos, token_pos], dim=1)
        x = self.transformer_self_attention_layers[i](x, pos, group.self_allowed[level])
        x = self.transformer_ffn_layers[i](x)
        num_queries = queries.shape[1]
        group.queries = x[:, :num_queries]
        if group.level_tokens is None and tokens is not None:
            group.tokens = x[:, num_queries:]

    def _cross_layer(self, i: int) -> CrossAttentionLayer:
        return cast(CrossAttentionLayer, self.transformer_cross_attention_layers[i])

    def _heads(self, x: torch.Tensor, mask_features: torch.Tensor) -> _Heads:
        """Prediction heads on ``(B, N, D)`` queries with ``(B, C, h, w)`` mask features."""
        y = self.decoder_norm(x)
        embeddings = self.mask_embed(y)
        masks = torch.einsum("bqc,bchw->bqhw", embeddings, mask_features)
        return _Heads(y @ self.class_embed, embeddings, masks)

    def _predict(
        self,
        groups: dict[Task, QueryGroup],
        mask_features: torch.Tensor,
        class_embeddings: torch.Tensor | None,
        logit_scale: torch.Tensor | None,
        next_level: int | None,
        sizes: list[tuple[int, int]],
    ) -> DecoderPrediction:
        """Heads of every group; also sets each group's cross-attention mask for the
        layer that attends ``next_level`` (None after the last layer)."""
        heads: dict[Task, _Heads] = {}
        for name, group in groups.items():
            heads[name] = h = self._heads(group.queries[:, : group.num_predicted], mask_features)
            if next_level is None:
                continue
            allowed = allowed_from_mask_logits(h.masks, sizes[next_level])
            if group.memory_allowed is not None:
                allowed = torch.cat([allowed, group.memory_allowed[next_level]], dim=1)
            group.cross_allowed = unblock_empty_rows(allowed)
        obj, ground, spatial = heads.get("object"), heads.get("grounding"), heads.get("spatial")
        logits = None
        if obj is not None and class_embeddings is not None and logit_scale is not None:
            logits = class_logits(obj.captions, class_embeddings, logit_scale)
        return DecoderPrediction(
            pred_logits=logits,
            pred_masks=obj.masks if obj is not None else None,
            pred_captions=obj.captions if obj is not None else None,
            pred_gmasks=ground.masks if ground is not None else None,
            pred_gtexts=ground.captions if ground is not None else None,
            pred_smasks=spatial.masks if spatial is not None else None,
            pred_stexts=spatial.captions if spatial is not None else None,
            pred_smaskembs=spatial.mask_embeddings if spatial is not None else None,
        )
