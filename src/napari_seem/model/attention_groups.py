"""Who attends whom in the SEEM v1 decoder: attention masks and the spatial answer.

The official v1 decoder concatenates every query and token type into one sequence and
blocks attention between types with masks. Those masks make the types fall apart into
*independent groups*; nothing ever crosses between groups:

- **object group**: the 101 object queries; they self-attend among themselves only.
- **grounding group**: 101 grounding queries (copies of the initial object queries) plus
  the text tokens; queries and non-padded tokens attend each other freely.
- **spatial group**: per visual prompt ``p``, ``Q`` spatial queries (copies of the initial
  object queries ``0..Q-1``), the prompt's visual tokens and, from round 2, the memory
  tokens assigned to ``p``. Spatial queries attend queries, tokens and memories of their
  own prompt; tokens attend only tokens of their prompt; memories only memories of their
  prompt. Nothing attends another prompt.

Cross-attention is row-wise (each query attends the image alone), so the decoder runs
each group as its own sequence: prompts cannot change object outputs, and a spatial-only
decode may skip the object queries without changing a single spatial number.

This module builds each group's initial state (:class:`QueryGroup`) and its masks; the
decoder owns the parameters and runs the layers. All masks here are *allowed* masks:
bool, True where row ``i`` may attend column ``j``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from napari_seem.model.prompt_encoder import VisualPromptTokens

__all__ = [
    "QueryGroup",
    "allowed_from_mask_logits",
    "grounding_group",
    "grounding_self_attention_mask",
    "memory_prompt_index",
    "object_group",
    "select_spatial_answer",
    "spatial_group",
    "spatial_self_attention_mask",
    "unblock_empty_rows",
]


@dataclass(eq=False)
class QueryGroup:
    """Running state of one independent query group during a decoder forward pass.

    Its self-attention sequence is ``[queries, tokens]``. ``queries`` cross-attend the
    image; the first ``num_predicted`` of them get prediction heads (memory tokens follow
    and get none). Tokens either persist and evolve from layer to layer (grounding:
    ``tokens``) or are replaced by the level's visual tokens in every layer (spatial:
    ``level_tokens``). ``D`` is the hidden width, ``S_l = h_l * w_l`` the size of level ``l``.

    Attributes:
        queries: ``(B, Nq, D)`` content, updated by every layer.
        query_pos: ``(B, Nq, D)`` fixed position embedding.
        num_predicted: leading rows of ``queries`` that get prediction heads.
        self_allowed: per level, ``(B, Nq + Nt, Nq + Nt)`` bool self-attention mask, or None
            (everything allowed).
        tokens: ``(B, Nt, D)`` persistent self-attention-only tokens, or None.
        token_pos: ``(B, Nt, D)`` their fixed position embedding.
        level_tokens: per level, ``(B, Nt, D)`` tokens that replace ``tokens`` in the layers
            attending that level (their own detached copy is their position), or None.
        memory_allowed: per level, ``(B, M, S_l)`` cross-attention mask of the memory rows
            (the last ``M = Nq - num_predicted`` queries), or None.
        cross_allowed: ``(B, Nq, S_l)`` cross-attention mask for the next layer, set from
            the latest prediction; None lets every query attend everywhere.
    """

    queries: torch.Tensor
    query_pos: torch.Tensor
    num_predicted: int
    self_allowed: tuple[torch.Tensor | None, ...]
    tokens: torch.Tensor | None = None
    token_pos: torch.Tensor | None = None
    level_tokens: tuple[torch.Tensor, ...] | None = None
    memory_allowed: tuple[torch.Tensor, ...] | None = None
    cross_allowed: torch.Tensor | None = None


def object_group(
    query_feat: torch.Tensor, query_pos: torch.Tensor, *, batch: int, num_levels: int
) -> QueryGroup:
    """The object queries: ``query_feat``/``query_pos (N, D)`` learned, no masks."""
    return QueryGroup(
        query_feat.expand(batch, -1, -1),
        query_pos.expand(batch, -1, -1),
        query_feat.shape[0],
        (None,) * num_levels,
    )


def grounding_group(
    query_feat: torch.Tensor,
    query_pos: torch.Tensor,
    tokens: torch.Tensor,
    padding: torch.Tensor | None,
    *,
    num_levels: int,
) -> QueryGroup:
    """Grounding queries (copies of the object queries) with the text tokens.

    Args:
        query_feat: ``(N, D)`` initial object-query content.
        query_pos: ``(N, D)`` object-query position embedding.
        tokens: ``(L, B, D)`` text token embeddings; their initial value stays their
            position embedding while their content evolves through the layers.
        padding: ``(B, L)`` bool, True for padding tokens; None for none.
        num_levels: number of feature levels.
    """
    length, batch, width = tokens.shape
    if width != query_feat.shape[1]:
        # text tokens join the queries' self-attention, so they need the hidden width
        # (every released model has dim_proj == hidden_dim)
        raise ValueError(f"grounding tokens are {width} wide, the queries {query_feat.shape[1]}")
    if padding is None:
        padding = torch.zeros(batch, length, dtype=torch.bool, device=tokens.device)
    mask = grounding_self_attention_mask(query_feat.shape[0], padding)
    tokens = tokens.transpose(0, 1)  # (B, L, D)
    return QueryGroup(
        query_feat.expand(batch, -1, -1),
        query_pos.expand(batch, -1, -1),
        query_feat.shape[0],
        (mask,) * num_levels,
        tokens=tokens,
        token_pos=tokens.detach(),
    )


def spatial_group(
    query_feat: torch.Tensor,
    query_pos: torch.Tensor,
    memory_feat: torch.Tensor,
    memory_pos: torch.Tensor,
    prompts: VisualPromptTokens,
    prev_mask: torch.Tensor | None,
    *,
    level_sizes: list[tuple[int, int]],
) -> tuple[QueryGroup, torch.Tensor | None]:
    """Spatial queries of ``P`` visual prompts, their tokens and (round 2+) memory tokens.

    Spatial query ``Q*p + j`` starts as a copy of object query ``j`` (the official code
    draws random object queries). Memory ``m`` belongs to prompt
    ``memory_prompt_index(M, P)[m]`` and cross-attends inside that prompt's ``prev_mask``.

    Args:
        query_feat: ``(Q, D)`` content of object queries ``0..Q-1``.
        query_pos: ``(Q, D)`` their position embedding.
        memory_feat: ``(M, D)`` memory content (``spatial_featured``).
        memory_pos: ``(M, D)`` memory position embedding (``spatial_embed``).
        prompts: visual prompt tokens, one ``(T, B, D)`` tensor per level.
        prev_mask: ``(B, P, H/4, W/4)`` previous-round mask logits, or None (round 1).
        level_sizes: ``(h_l, w_l)`` of every feature level.

    Returns:
        The group and the ``(M,)`` memory prompt index (None without ``prev_mask``).
    """
    num_prompts = prompts.num_prompts
    batch = prompts.pooled_pos.shape[1]
    if len(prompts.tokens) != len(level_sizes):
        raise ValueError(f"visual prompts need tokens for {len(level_sizes)} levels")
    queries = query_feat.repeat(num_prompts, 1).expand(batch, -1, -1)  # (B, P*Q, D)
    pos = query_pos.repeat(num_prompts, 1).expand(batch, -1, -1)
    memory_index = None
    memory_allowed = None
    if prev_mask is not None:
        if prev_mask.shape[:2] != (batch, num_prompts):
            raise ValueError(f"prev_mask must be (B={batch}, P={num_prompts}, h, w)")
        memory_index = memory_prompt_index(memory_feat.shape[0], num_prompts, prev_mask.device)
        queries = torch.cat([queries, memory_feat.expand(batch, -1, -1)], dim=1)
        pos = torch.cat([pos, memory_pos.expand(batch, -1, -1)], dim=1)
        memory_allowed = tuple(
            allowed_from_mask_logits(prev_mask, size)[:, memory_index] for size in level_sizes
        )
    self_allowed = tuple(
        spatial_self_attention_mask(
            num_prompts=num_prompts,
            queries_per_prompt=query_feat.shape[0],
            token_prompt_index=index.masked_fill(padding, -1),
            memory_index=memory_index,
        )
        for index, padding in zip(prompts.prompt_index, prompts.padding, strict=True)
    )
    group = QueryGroup(
        queries,
        pos,
        num_prompts * query_feat.shape[0],
        self_allowed,
        level_tokens=tuple(t.transpose(0, 1) for t in prompts.tokens),  # (B, T, D)
        memory_allowed=memory_allowed,
    )
    return group, memory_index


def allowed_from_mask_logits(mask_logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Cross-attention mask from mask logits: attend where ``sigmoid >= 0.5`` at ``size``.

    Args:
        mask_logits: ``(B, N, H, W)`` float mask logits (stride 4 of the padded input).
        size: ``(h, w)`` of the feature level to be attended.

    Returns:
        ``(B, N, h * w)`` bool, row-major over ``h x w``; the logits are resized bilinearly
        with ``align_corners=False`` first.
    """
    resized = F.interpolate(mask_logits, size=size, mode="bilinear", align_corners=False)
    # sigmoid rather than `>= 0` so that float rounding near 0 decides as officially
    return (resized.sigmoid() >= 0.5).flatten(2)


def unblock_empty_rows(allowed: torch.Tensor) -> torch.Tensor:
    """Let a row that may attend nothing attend everything instead (official rule).

    ``allowed (..., N, S)`` bool -> same shape.
    """
    return allowed | ~allowed.any(dim=-1, keepdim=True)


def memory_prompt_index(
    num_memories: int, num_prompts: int, device: torch.device | None = None
) -> torch.Tensor:
    """The prompt each memory token belongs to: ``sorted(arange(M) % P)``.

    Contiguous blocks, the same in every layer (the official code redraws a random
    assignment in every layer): with 32 memories, 1 prompt owns all 32; 2 prompts own
    0-15 and 16-31; 3 prompts own blocks of 11, 11, 10.

    Returns:
        ``(M,)`` int64 prompt indices in ``[0, P)``, non-decreasing.
    """
    if num_prompts < 1:
        raise ValueError("memory tokens need at least one prompt")
    index = torch.arange(num_memories, device=device) % num_prompts
    return index.sort().values


def grounding_self_attention_mask(num_queries: int, token_padding: torch.Tensor) -> torch.Tensor:
    """Self-attention mask of the grounding group, sequence ``[queries (N), tokens (L)]``.

    Queries and valid tokens attend each other; a padding token is attended by nobody and
    attends nothing itself (its row is empty and gives zeros).

    Args:
        num_queries: ``N`` grounding queries.
        token_padding: ``(B, L)`` bool, True for padding tokens.

    Returns:
        ``(B, N + L, N + L)`` bool.
    """
    b = token_padding.shape[0]
    query_valid = token_padding.new_ones((b, num_queries))
    valid = torch.cat([query_valid, ~token_padding], dim=1)  # (B, N + L)
    return valid[:, :, None] & valid[:, None, :]


def spatial_self_attention_mask(
    *,
    num_prompts: int,
    queries_per_prompt: int,
    token_prompt_index: torch.Tensor,
    memory_index: torch.Tensor | None,
) -> torch.Tensor:
    """Self-attention mask of the spatial group, sequence ``[queries, memories, tokens]``.

    Queries: ``P * Q`` rows, query ``Q*p + j`` owned by prompt ``p``. Memories: ``M`` rows
    owned by ``memory_index`` (absent in round 1). Tokens: ``T`` visual prompt tokens
    owned by ``token_prompt_index`` (-1 = padding, attends and is attended by nobody).

    A row may attend a column only if both belong to the same prompt, and then a query
    may attend anything while a token attends tokens and a memory attends memories.

    Args:
        num_prompts: ``P``.
        queries_per_prompt: ``Q``.
        token_prompt_index: ``(B, T)`` int64.
        memory_index: ``(M,)`` int64 or None.

    Returns:
        ``(B, P*Q + M + T, P*Q + M + T)`` bool.
    """
    b = token_prompt_index.shape[0]
    device = token_prompt_index.device
    query_owner = torch.arange(num_prompts, device=device).repeat_interleave(queries_per_prompt)
    memory_owner = memory_index if memory_index is not None else query_owner[:0]
    owners = [query_owner.expand(b, -1), memory_owner.expand(b, -1), token_prompt_index]
    owner = torch.cat(owners, dim=1)  # (B, N)
    kind = torch.cat(
        [torch.full_like(o, k) for k, o in enumerate(owners)], dim=1
    )  # (B, N): 0 query, 1 memory, 2 token
    same_prompt = (owner[:, :, None] == owner[:, None, :]) & (owner >= 0)[:, :, None]
    kind_ok = (kind[:, :, None] == 0) | (kind[:, :, None] == kind[:, None, :])
    return same_prompt & kind_ok


def select_spatial_answer(
    *,
    mask_embeddings: torch.Tensor,
    pooled_pos: torch.Tensor,
    masks: torch.Tensor,
    queries_per_prompt: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pick, for every prompt, the own spatial query whose mask embedding matches best.

    Args:
        mask_embeddings: ``(B, P*Q, C)`` ``mask_embed(decoder_norm(q))`` of the spatial
            queries.
        pooled_pos: ``(B, P, C)`` mean ``mask_features`` at each prompt's positive points.
        masks: ``(B, P*Q, H, W)`` mask logits of the spatial queries.
        queries_per_prompt: ``Q``.

    Returns:
        ``logits (B, P*Q, P)``: ``mask_embeddings @ pooled_pos^T``, -inf where the query
        does not belong to the prompt; ``selected (B, P)`` int64: index into the ``P*Q``
        spatial queries; ``answer (B, P, H, W)``: the selected mask logits.
    """
    num_prompts = pooled_pos.shape[1]
    logits = mask_embeddings @ pooled_pos.transpose(1, 2)  # (B, P*Q, P)
    owner = torch.arange(num_prompts, device=logits.device).repeat_interleave(queries_per_prompt)
    foreign = owner[:, None] != torch.arange(num_prompts, device=logits.device)[None, :]
    logits = logits.masked_fill(foreign, float("-inf"))
    selected = logits.argmax(dim=1)  # (B, P)
    _, _, h, w = masks.shape
    answer = masks.gather(1, selected[:, :, None, None].expand(-1, -1, h, w))
    return logits, selected, answer
