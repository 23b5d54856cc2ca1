"""Transformer blocks of the SEEM decoder: masked attention and the feed-forward block.

All three blocks are post-norm (``x = norm(x + f(x))``) with dropout 0, as in every released
SEEM config. Their parameter names are the official ones, so that the decoder's state-dict
keys read ``transformer_self_attention_layers.{i}.self_attn.in_proj_weight``,
``transformer_cross_attention_layers.{i}.multihead_attn.out_proj.bias``,
``transformer_ffn_layers.{i}.linear1.weight``, ...

Tensors are batch-first here, ``(B, N, D)``; the official code is sequence-first.

Attention masks are *allowed* masks: bool, True where query ``i`` may attend key ``j``
(the opposite of ``nn.MultiheadAttention``'s ``attn_mask``). A query row with no allowed key
gets a zero attention output (then only ``out_proj.bias`` survives), never NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CrossAttentionLayer", "FFNLayer", "MultiHeadAttention", "SelfAttentionLayer"]


class MultiHeadAttention(nn.Module):
    """Multi-head attention with ``nn.MultiheadAttention``'s parameter layout.

    Keys: ``in_proj_weight`` ``[3D, D]`` (query, key, value rows stacked), ``in_proj_bias``
    ``[3D]``, ``out_proj.weight`` ``[D, D]``, ``out_proj.bias`` ``[D]``.

    The projections are exposed separately so that a caller can project a long key/value
    sequence (an image level) once and attend to it from several query sets.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.xavier_uniform_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def _project(self, x: torch.Tensor, part: int) -> torch.Tensor:
        """``(B, N, D)`` -> ``(B, nh, N, hs)`` with rows ``part*D:(part+1)*D`` of in_proj."""
        dim = x.shape[-1]
        rows = slice(part * dim, (part + 1) * dim)
        y = F.linear(x, self.in_proj_weight[rows], self.in_proj_bias[rows])
        b, n, _ = y.shape
        return y.view(b, n, self.num_heads, dim // self.num_heads).transpose(1, 2)

    def project_query(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, D)`` queries -> ``(B, nh, N, hs)``."""
        return self._project(x, 0)

    def project_key(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, S, D)`` keys -> ``(B, nh, S, hs)``."""
        return self._project(x, 1)

    def project_value(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, S, D)`` values -> ``(B, nh, S, hs)``."""
        return self._project(x, 2)

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        allowed: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Scaled dot-product attention of projected tensors, then ``out_proj``.

        Args:
            q: ``(B, nh, N, hs)`` projected queries.
            k: ``(B, nh, S, hs)`` projected keys.
            v: ``(B, nh, S, hs)`` projected values.
            allowed: ``(B, N, S)`` bool, True where query ``i`` may attend key ``j``; None
                lets every query attend every key. A row without any True gives zeros.

        Returns:
            ``(B, N, D)``.
        """
        if allowed is None:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            has_key = allowed.any(dim=-1, keepdim=True)  # (B, N, 1)
            # An all-False row would give NaN in the softmax: let it attend everything and
            # zero its result afterwards (the official softmax(...).nan_to_num()).
            mask = (allowed | ~has_key).unsqueeze(1)  # (B, 1, N, S), shared by heads
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            out = out * has_key.unsqueeze(1).to(out.dtype)
        b, nh, n, hs = out.shape
        out = out.transpose(1, 2).reshape(b, n, nh * hs)  # (B, N, D)
        return self.out_proj(out)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        allowed: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``query (B, N, D)``, ``key``/``value (B, S, D)``, ``allowed (B, N, S)`` -> ``(B, N, D)``.

        The three inputs are projected separately (keys and values may differ).
        """
        q = self.project_query(query)
        k = self.project_key(key)
        v = self.project_value(value)
        return self.attend(q, k, v, allowed)


class SelfAttentionLayer(nn.Module):
    """Post-norm masked self-attention: ``norm(x + attn(q=k=x+pos, v=x))``.

    Keys: ``self_attn.*`` (:class:`MultiHeadAttention`), ``norm.weight``, ``norm.bias``.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(dim, num_heads)
        self.norm = nn.LayerNorm(dim)

    def forward(
        self, x: torch.Tensor, pos: torch.Tensor, allowed: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x``, ``pos (B, N, D)``; ``allowed (B, N, N)`` bool or None -> ``(B, N, D)``."""
        qk = x + pos
        return self.norm(x + self.self_attn(qk, qk, x, allowed))


class CrossAttentionLayer(nn.Module):
    """Post-norm masked cross-attention from queries to one image level.

    ``norm(x + attn(q=x+query_pos, k=memory+memory_pos, v=memory))``.
    Keys: ``multihead_attn.*`` (:class:`MultiHeadAttention`), ``norm.weight``, ``norm.bias``.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.multihead_attn = MultiHeadAttention(dim, num_heads)
        self.norm = nn.LayerNorm(dim)

    def project_memory(
        self, memory: torch.Tensor, memory_pos: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Project an image level once for every query set that attends it.

        Args:
            memory: ``(B, S, D)`` flattened level features (row-major over ``h x w``).
            memory_pos: ``(B, S, D)`` their sine position encoding.

        Returns:
            Keys and values, each ``(B, nh, S, hs)``.
        """
        attn = self.multihead_attn
        return attn.project_key(memory + memory_pos), attn.project_value(memory)

    def forward(
        self,
        x: torch.Tensor,
        query_pos: torch.Tensor,
        memory_kv: tuple[torch.Tensor, torch.Tensor],
        allowed: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x``, ``query_pos (B, N, D)``; ``memory_kv`` from :meth:`project_memory`;
        ``allowed (B, N, S)`` bool or None -> ``(B, N, D)``."""
        attn = self.multihead_attn
        q = attn.project_query(x + query_pos)
        return self.norm(x + attn.attend(q, *memory_kv, allowed))


class FFNLayer(nn.Module):
    """Post-norm feed-forward block: ``norm(x + linear2(relu(linear1(x))))``.

    Keys: ``linear1.*`` ``[F, D]``, ``linear2.*`` ``[D, F]``, ``norm.*``.
    """

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden_dim)
        self.linear2 = nn.Linear(hidden_dim, dim)
        self.norm = nn.LayerNorm(dim)
        nn.init.xavier_uniform_(self.linear1.weight)
        nn.init.xavier_uniform_(self.linear2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, D)`` -> ``(B, N, D)``."""
        return self.norm(x + self.linear2(F.relu(self.linear1(x))))
