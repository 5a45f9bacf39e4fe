"""The live KV cache of a transformers model: growable on a CPU, pre-allocated on a GPU.

A ``DynamicCache`` concatenates every step's keys and values onto tensors that grow: cheap on
a CPU, where attention only reads the tokens held. A ``StaticCache`` allocates
``max_tokens`` slots once and writes each step in place: on a GPU that removes the per-step
allocation and gives the fixed tensor addresses that CUDA graphs (``torch.compile`` with
``mode="reduce-overhead"``) need, at the price of attending over all slots (masked) on every
step, which is why it is not the CPU default. Both roll back the same way: the static cache
only moves its write position back (stale slots are masked by the causal mask until they are
overwritten), so a rejected draft costs no copy on either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ragkit.models.errors import ModelLoadError

if TYPE_CHECKING:
    import torch

__all__ = [
    "KV_CACHE_KINDS",
    "copy_prefix",
    "crop",
    "keep_positions",
    "new_cache",
    "resolve_kv_cache",
    "snapshot",
    "tree_mask",
]

KV_CACHE_KINDS = ("auto", "dynamic", "static")


def resolve_kv_cache(kind: str, device: str) -> str:
    """``auto`` is ``static`` on CUDA and ``dynamic`` elsewhere; other values are checked.

    Raises:
        ModelLoadError: ``kind`` is not one of :data:`KV_CACHE_KINDS`.
    """
    value = (kind or "auto").strip().lower()
    if value not in KV_CACHE_KINDS:
        raise ModelLoadError(f"unknown kv_cache {kind!r}; use {', '.join(KV_CACHE_KINDS)}")
    if value == "auto":
        return "static" if device.startswith("cuda") else "dynamic"
    return value


def new_cache(config: Any, kind: str, max_tokens: int) -> Any:
    """An empty cache of ``kind`` (``dynamic`` or ``static``; ``max_tokens`` sizes a static one)."""
    if kind == "static":
        from transformers import StaticCache

        return StaticCache(config=config, max_cache_len=max_tokens)
    from transformers import DynamicCache

    return DynamicCache(config=config)


def copy_prefix(
    cache: Any, keys: Sequence[torch.Tensor], values: Sequence[torch.Tensor], n: int
) -> Any:
    """Write the first ``n`` tokens of saved per-layer tensors into an empty ``cache``.

    Both cache kinds copy on ``update`` (concatenation or an in-place slot write), so the saved
    tensors are never aliased and one saved prefix serves any number of questions. Runs in
    inference mode, like the token steps: a static cache's slots are inference tensors, which
    torch only lets inference mode update in place.
    """
    import torch

    with torch.inference_mode():
        for i, (k, v) in enumerate(zip(keys, values, strict=True)):
            cache.update(k[..., :n, :], v[..., :n, :], i)
    return cache


def crop(cache: Any, held: int, length: int) -> None:
    """Roll ``cache`` (holding ``held`` tokens) back to its first ``length`` tokens.

    ``crop`` takes a negative count of tokens to remove on both kinds (transformers 5.x refuses
    a positive length), and a static cache then only moves its write position (in inference
    mode, see :func:`copy_prefix`).
    """
    import torch

    remove = held - length
    if remove > 0:
        with torch.inference_mode():
            cache.crop(-remove)


def snapshot(cache: Any, n: int, *, copy: bool) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-layer keys and values of the first ``n`` tokens, owned by the caller.

    With ``copy`` (a static cache, whose slots the next sequence reuses) the tensors are
    cloned; without it (a dynamic cache that is dropped after) they are handed over as views.
    """
    keys: list[torch.Tensor] = []
    values: list[torch.Tensor] = []
    for layer in cache.layers:
        k, v = layer.keys[..., :n, :], layer.values[..., :n, :]
        keys.append(k.clone() if copy else k)
        values.append(v.clone() if copy else v)
    return keys, values


def tree_mask(
    parents: Sequence[int], base: int, width: int, *, device: str = "cpu"
) -> torch.Tensor:
    """Boolean ``[1, 1, len(parents), width]`` attention mask of a token tree after ``base``
    cached tokens: each node sees the cache, its ancestors and itself (True attends)."""
    import torch

    n = len(parents)
    mask = torch.zeros((n, width), dtype=torch.bool)
    mask[:, :base] = True
    for i, parent in enumerate(parents):
        if parent >= 0:
            mask[i, base : base + n] = mask[parent, base : base + n]
        mask[i, base + i] = True
    return mask.view(1, 1, n, width).to(device)


def keep_positions(cache: Any, held: int, base: int, positions: Sequence[int]) -> None:
    """Keep the first ``base`` tokens of ``cache`` plus the entries at ``positions`` (each
    ``>= base``, increasing), moved to follow them: a tree's accepted path after verification.

    The kept entries are gathered first, the cache is cropped to ``base`` and they are written
    back with ``update``, so both cache kinds end as if the path had been evaluated as a chain
    (the positions were already encoded with the path's depths).
    """
    import torch

    if list(positions) == list(range(base, base + len(positions))):
        crop(cache, held, base + len(positions))  # the path is a prefix: no copy at all
        return
    with torch.inference_mode():
        index = torch.tensor(list(positions), dtype=torch.long)
        kept = []
        for layer in cache.layers:
            where = index.to(layer.keys.device)
            # index_select copies, so cropping and rewriting the cache cannot alias them
            kept.append((layer.keys.index_select(-2, where), layer.values.index_select(-2, where)))
        crop(cache, held, base)
        for i, (k, v) in enumerate(kept):
            cache.update(k, v, i)
