"""Causal language model on transformers: the token step of the shared generation driver.

:class:`CausalLM` implements the backend protocol of :mod:`ragkit.models.driver` (one live
KV cache, dynamic or static as :mod:`ragkit.models.kv_cache` explains: ``eval_last``,
``eval_tokens``, ``truncate``) so the driver's single decoding loop (streaming, stop strings,
prefix-cache reuse, speculative decoding) runs on it as on llama.cpp, at ``model.generate``'s
speed (one forward per token, no extra host syncs beyond reading the chosen token). Batched
generation and the scoring forwards stay here: they are transformers-specific and measured
faster than the token loop.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragkit.atomic import ids_sha256
from ragkit.models.artifact import read_verified, write_verified
from ragkit.models.base import ChatMessageDict, GenerationResult
from ragkit.models.driver import DecoderLM, Decoding, PrefixState, check_sampling
from ragkit.models.errors import ModelLoadError, PrefixCacheError
from ragkit.models.registry import DEFAULT_CAUSAL_MODEL, ResolvedModel, resolve_model

if TYPE_CHECKING:
    import torch
    from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["CausalLM", "PrefixCache", "PREFIX_CACHE_FORMAT_VERSION"]

logger = logging.getLogger(__name__)

PREFIX_CACHE_FORMAT_VERSION = 1
_PREFIX_TENSORS = "kv.safetensors"


def _cache_argument(model: Any) -> str:
    """The forward keyword that takes the KV cache: ``cache`` since transformers 5.24, which
    deprecates ``past_key_values`` (a FutureWarning per call), ``past_key_values`` before."""
    import inspect

    forward = getattr(model, "forward", None)
    try:
        params = inspect.signature(forward).parameters if forward is not None else {}
    except (TypeError, ValueError):
        params = {}
    return "cache" if "cache" in params else "past_key_values"


@dataclass
class PrefixCache(PrefixState):
    """Per-layer key/value tensors for a prompt prefix, reusable across generations.

    The tensors are never mutated: every use builds a fresh ``DynamicCache`` whose first update
    concatenates (copies) them, so one prefix serves any number of questions.

    Attributes:
        token_ids: The prefix's token ids.
        keys: One ``[batch=1, kv_heads, len, head_dim]`` tensor per layer.
        values: Same shapes as ``keys``.
        model_id: Name of the model that computed it.
        model_fingerprint: Hash of the model's config and weights source.
        dtype: Tensor dtype name, e.g. ``float32``.
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    model_id: str
    model_fingerprint: str
    dtype: str

    @property
    def nbytes(self) -> int:
        """Memory held by the tensors."""
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))

    def to_dynamic_cache(self, config: Any, length: int | None = None) -> DynamicCache:
        """A fresh ``DynamicCache`` holding the first ``length`` tokens (all by default)."""
        from ragkit.models.kv_cache import copy_prefix, new_cache

        n = len(self) if length is None else length
        return copy_prefix(new_cache(config, "dynamic", 0), self.keys, self.values, n)

    def save(self, directory: str | Path) -> Path:
        """Write tensors + manifest atomically (temp dir, then rename) into ``directory``."""
        import torch
        from safetensors.torch import save_file

        tensors = {"token_ids": torch.tensor(self.token_ids, dtype=torch.int64)}
        for i, (k, v) in enumerate(zip(self.keys, self.values, strict=True)):
            tensors[f"k.{i}"] = k.detach().to("cpu").contiguous()
            tensors[f"v.{i}"] = v.detach().to("cpu").contiguous()
        manifest = {
            "format_version": PREFIX_CACHE_FORMAT_VERSION,
            "model_id": self.model_id,
            "model_fingerprint": self.model_fingerprint,
            "dtype": self.dtype,
            "num_tokens": len(self),
            "num_layers": len(self.keys),
            "token_ids_sha256": ids_sha256(self.token_ids),
        }
        return write_verified(
            directory, {_PREFIX_TENSORS: lambda path: save_file(tensors, str(path))}, manifest
        )

    @classmethod
    def load(cls, directory: str | Path, model: CausalLM) -> PrefixCache:
        """Load a saved prefix cache for ``model``, verifying manifest, checksums and owner.

        Raises:
            PrefixCacheError: Missing/corrupt files, another format version, or a cache built
                by a different model or dtype.
        """
        from safetensors.torch import load_file

        root = Path(directory)
        manifest = read_verified(
            root,
            what="prefix cache",
            format_version=PREFIX_CACHE_FORMAT_VERSION,
            error=PrefixCacheError,
            rebuild="rebuild it with prefill()",
        )
        if manifest.get("model_fingerprint") != model.fingerprint:
            raise PrefixCacheError(
                f"prefix cache {root} was built for model {manifest.get('model_id')!r}, not "
                f"{model.name!r} (fingerprint mismatch); rebuild it with this model's prefill()"
            )
        if manifest.get("dtype") != model.dtype_name:
            raise PrefixCacheError(
                f"prefix cache {root} holds {manifest.get('dtype')} tensors but the model runs "
                f"in {model.dtype_name}; load the model with that dtype or rebuild the cache"
            )
        try:
            tensors = load_file(str(root / _PREFIX_TENSORS), device=str(model.device))
        except Exception as exc:
            raise PrefixCacheError(f"prefix cache {root} is corrupt: {exc}") from exc
        token_ids = tensors.pop("token_ids").tolist()
        if ids_sha256(token_ids) != manifest.get("token_ids_sha256"):
            raise PrefixCacheError(f"prefix cache {root} is corrupt (token ids hash)")
        layers = int(manifest.get("num_layers", 0))
        try:
            keys = [tensors[f"k.{i}"] for i in range(layers)]
            values = [tensors[f"v.{i}"] for i in range(layers)]
        except KeyError as exc:
            raise PrefixCacheError(f"prefix cache {root} is corrupt: missing {exc}") from exc
        return cls(
            token_ids=token_ids,
            keys=keys,
            values=values,
            model_id=str(manifest.get("model_id")),
            model_fingerprint=model.fingerprint,
            dtype=model.dtype_name,
        )


class _Sampler:
    """Greedy (temperature 0) or temperature/top-p sampling on the model's device, seedable."""

    def __init__(self, temperature: float, top_p: float, seed: int | None, device: str) -> None:
        import torch

        check_sampling(temperature, top_p)
        self.greedy = temperature == 0
        self.temperature = temperature
        self.top_p = top_p
        self.generator: torch.Generator | None = None
        if not self.greedy and seed is not None:
            self.generator = torch.Generator(device=device).manual_seed(seed)

    def __call__(self, logits: torch.Tensor) -> int:
        """Pick the token for one position's ``[vocab]`` logits."""
        return int(self.pick(logits))

    def pick(self, logits: torch.Tensor) -> torch.Tensor:
        """Pick one token per row of ``[batch, vocab]`` logits; returns ``[batch]``."""
        import torch

        if self.greedy:
            return torch.argmax(logits, dim=-1)
        probs = torch.softmax(logits.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
            drop = (torch.cumsum(sorted_probs, dim=-1) - sorted_probs) > self.top_p
            sorted_probs = sorted_probs.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(-1)


class CausalLM(DecoderLM):
    """A causal LM (transformers backend) implementing :class:`ragkit.models.LanguageModel`.

    Load with :meth:`load`; the constructor takes already-loaded objects (tests, custom setups).
    """

    def _encode_text(self, text: str) -> list[int]:
        return list(self.tokenizer(text)["input_ids"])

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        name: str,
        device: str,
        fingerprint: str | None = None,
        spec: ResolvedModel | None = None,
        kv_cache: str = "dynamic",
        max_cache_tokens: int | None = None,
        compile_step: bool = False,
    ) -> None:
        """Wrap loaded objects.

        Args:
            kv_cache: ``dynamic``, ``static`` (pre-allocated slots; what CUDA graphs need) or
                ``auto`` (static on CUDA); see :mod:`ragkit.models.kv_cache`.
            max_cache_tokens: Slots of a static cache (default: the model's context length).
            compile_step: ``torch.compile`` the one-token forward (the drafter's step and plain
                decoding; CUDA graphs on CUDA). Needs the static cache; the first calls pay
                the compilation.

        Raises:
            ModelLoadError: Unknown ``kv_cache``, ``compile_step`` without a static cache, or
                ``max_cache_tokens`` below 1.
        """
        from ragkit.models.kv_cache import resolve_kv_cache

        self.model = model
        self._cache_arg = _cache_argument(model)
        self.tokenizer = tokenizer
        self.name = name
        self.device = device
        self.spec = spec
        self.fingerprint = fingerprint or self._config_fingerprint(name, None)
        eos: set[int] = set()
        for source in (
            getattr(model.generation_config, "eos_token_id", None),
            tokenizer.eos_token_id,
        ):
            if isinstance(source, int):
                eos.add(source)
            elif isinstance(source, list | tuple):
                eos.update(int(x) for x in source)
        self.eos_token_ids = frozenset(eos)
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = getattr(model.generation_config, "pad_token_id", None)
        if pad is None:
            pad = min(eos) if eos else 0
        self.pad_token_id = int(pad)
        self.kv_cache = resolve_kv_cache(kv_cache, device)
        if compile_step and self.kv_cache != "static":
            raise ModelLoadError(
                "compile_step needs a pre-allocated KV cache; set kv_cache: static (or auto on CUDA)"
            )
        if max_cache_tokens is not None and max_cache_tokens < 1:
            raise ModelLoadError(f"max_cache_tokens must be >= 1, got {max_cache_tokens}")
        self.max_cache_tokens = max_cache_tokens
        self.compile_step = compile_step
        self._compiled: Any = None  # the compiled one-token forward, built on first use
        self._cache: Any = None  # the live sequence of the token protocol (Dynamic/StaticCache)
        self._cache_ids: list[int] = []

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(
        cls,
        name: str = DEFAULT_CAUSAL_MODEL,
        device: str = "auto",
        dtype: str = "auto",
        cache_dir: str | Path | None = None,
        *,
        kv_cache: str = "auto",
        max_cache_tokens: int | None = None,
        compile_step: bool = False,
    ) -> CausalLM:
        """Load a causal LM by packaged name, hub id, local directory or ``.gguf`` file.

        GGUF files are converted once into ``cache_dir`` (see :mod:`ragkit.models.gguf_cache`).
        Attention runs through transformers' default, PyTorch SDPA, where the model supports it.

        Args:
            name: Model name (see :func:`ragkit.models.resolve_model`).
            device: ``auto``, ``cpu``, ``cuda``...
            dtype: ``auto``, ``float32``, ``bfloat16``, ``float16``.
            cache_dir: Cache root for converted GGUF models.
            kv_cache: ``auto`` (static on CUDA, dynamic elsewhere), ``dynamic`` or ``static``.
            max_cache_tokens: Slots of a static cache (default: the context length).
            compile_step: ``torch.compile`` the one-token step (static cache only).

        Raises:
            ModelLoadError: The model cannot be found, converted or loaded.
        """
        from ragkit.models.device import resolve_device
        from ragkit.models.gguf_cache import ensure_converted, read_manifest

        spec = resolve_model(name, kind="causal")
        dev, torch_dtype = resolve_device(device, dtype)
        source_sha = None
        if spec.is_gguf:
            assert spec.path is not None
            location = str(ensure_converted(spec.path, cache_dir))
            source_sha = ((read_manifest(Path(location)) or {}).get("source") or {}).get("sha256")
        else:
            location = spec.location
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(location)
            model = AutoModelForCausalLM.from_pretrained(location, dtype=torch_dtype)
        except Exception as exc:
            raise ModelLoadError(
                f"cannot load causal model {name!r} from {location}: {exc}"
            ) from exc
        model.to(dev)
        model.eval()
        fingerprint = cls._config_fingerprint(source_sha or spec.location, model.config)
        return cls(
            model,
            tokenizer,
            name=name,
            device=dev,
            fingerprint=fingerprint,
            spec=spec,
            kv_cache=kv_cache,
            max_cache_tokens=max_cache_tokens,
            compile_step=compile_step,
        )

    @staticmethod
    def _config_fingerprint(source: str, config: Any) -> str:
        """Identify weights + architecture, independent of where the cache dir lives."""
        data = config.to_dict() if config is not None else {}
        for key in (
            "_name_or_path",
            "name_or_path",
            "transformers_version",
            "dtype",
            "torch_dtype",
        ):
            data.pop(key, None)
        blob = json.dumps({"source": source, "config": data}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def close(self) -> None:
        """Drop the weights so memory is returned (components call this in ``close()``)."""
        import gc

        self.model = None  # type: ignore[assignment]
        self._cache, self._cache_ids, self._compiled = None, [], None
        gc.collect()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    # ------------------------------------------------------------------ tokens

    @property
    def dtype_name(self) -> str:
        """The weights' dtype as a plain name (``float32``), for manifests."""
        return str(self.model.dtype).removeprefix("torch.")

    @property
    def context_length(self) -> int:
        """Maximum prompt + completion tokens the model was trained for."""
        config = self.model.config
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            value = getattr(config, key, None)
            if isinstance(value, int) and value > 0:
                return value
        limit = getattr(self.tokenizer, "model_max_length", 0)
        return int(limit) if 0 < limit < 10_000_000 else 2048

    @property
    def vocab_size(self) -> int:
        """Width of a logits row (the output layer's size; speculative decoding checks it)."""
        return int(self.model.config.vocab_size)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, token_ids: Sequence[int]) -> str:
        """Text of ``token_ids`` without special tokens; prefix-stable for streaming."""
        return self.tokenizer.decode(
            list(token_ids), skip_special_tokens=True, clean_up_tokenization_spaces=False
        )

    def _render_chat(self, messages: list[ChatMessageDict]) -> str | None:
        if not getattr(self.tokenizer, "chat_template", None):
            return None
        return self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )

    # ------------------------------------------------------------------ token protocol

    @property
    def kv_tokens(self) -> list[int]:
        """The tokens the live KV cache holds."""
        return list(self._cache_ids)

    @property
    def kv_length(self) -> int:
        """How many tokens the live cache holds."""
        return len(self._cache_ids)

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` tokens of the live cache (no copy on either cache kind).

        ``0`` drops a dynamic cache; a static cache keeps its slots (and their addresses, which
        compiled steps rely on) and only moves its write position to the start.
        """
        from ragkit.models.kv_cache import crop

        if self._cache is None:
            self._cache_ids = []
            return
        if n <= 0 and self.kv_cache != "static":
            self._cache, self._cache_ids = None, []
            return
        n = max(n, 0)
        if n < len(self._cache_ids):
            crop(self._cache, len(self._cache_ids), n)
            del self._cache_ids[n:]

    @property
    def cache_capacity(self) -> int | None:
        """Tokens a static cache holds at most (``None``: a dynamic cache grows)."""
        if self.kv_cache != "static":
            return None
        return self.max_cache_tokens or self.context_length

    def _live(self) -> Any:
        if self._cache is None:
            from ragkit.models.kv_cache import new_cache

            self._cache = new_cache(self.model.config, self.kv_cache, self.cache_capacity or 0)
        return self._cache

    def _check_room(self, adding: int) -> None:
        capacity = self.cache_capacity
        if capacity is not None and len(self._cache_ids) + adding > capacity:
            raise ValueError(
                f"{self.name}: {len(self._cache_ids) + adding} tokens do not fit the static KV "
                f"cache of {capacity} slots; raise max_cache_tokens or use kv_cache: dynamic"
            )

    def _step(self) -> Any:
        """The compiled one-token forward (CUDA graphs on CUDA), built on first use."""
        if self._compiled is None:
            import torch

            mode = "reduce-overhead" if self.device.startswith("cuda") else None
            self._compiled = torch.compile(self.model.forward, mode=mode, fullgraph=True)
        return self._compiled

    def _forward(self, ids: Sequence[int], keep: int) -> torch.Tensor:
        import torch

        self._check_room(len(ids))
        cache = self._live()
        tensor = torch.tensor([list(ids)], device=self.device)
        compiled = self.compile_step and len(ids) == 1
        forward = self._step() if compiled else self.model
        out = forward(
            input_ids=tensor, use_cache=True, logits_to_keep=keep, **{self._cache_arg: cache}
        )
        self._cache_ids.extend(int(t) for t in ids)
        # A CUDA-graph replay reuses its output buffer: a drafter keeps its q rows across steps.
        return out.logits[0].clone() if compiled else out.logits[0]

    def eval_last(self, ids: Sequence[int]) -> torch.Tensor:
        """Append ``ids`` to the live cache; logits ``[vocab]`` of the last position."""
        return self._forward(ids, 1)[-1]

    def eval_tokens(self, ids: Sequence[int]) -> torch.Tensor:
        """Append ``ids`` to the live cache; logits ``[len(ids), vocab]`` of every new position."""
        return self._forward(ids, len(ids))

    def eval_tree(self, ids: Sequence[int], parents: Sequence[int]) -> torch.Tensor:
        """Append a token tree in one forward pass; logits ``[len(ids), vocab]`` of every node.

        ``parents[i]`` is the index in ``ids`` of node ``i``'s parent, or ``-1`` for a node
        that follows the cached text directly. Each node attends to the cache and to its own
        ancestors (a tree attention mask) at position ``cached + depth``, so its logits equal
        those of the chain from the root to it. Follow with :meth:`keep_path`.
        """
        import torch

        from ragkit.models.kv_cache import tree_mask

        self._check_room(len(ids))
        cache = self._live()
        base = len(self._cache_ids)
        width = self.cache_capacity or base + len(ids)
        allowed = tree_mask(parents, base, width, device=self.device)
        # a node's depth is the number of its ancestors: what its mask row sees of the tree
        depth = allowed[0, 0, :, base : base + len(ids)].sum(-1) - 1
        if self.model.config._attn_implementation == "eager":  # additive float mask
            mask = torch.zeros(allowed.shape, dtype=self.model.dtype, device=self.device)
            mask.masked_fill_(~allowed, torch.finfo(self.model.dtype).min)
        else:
            mask = allowed  # SDPA: True attends
        out = self.model(
            input_ids=torch.tensor([list(ids)], device=self.device),
            attention_mask=mask,
            position_ids=(base + depth).view(1, -1),
            use_cache=True,
            logits_to_keep=len(ids),
            **{self._cache_arg: cache},
        )
        self._cache_ids.extend(int(t) for t in ids)
        return out.logits[0]

    def keep_path(self, base: int, nodes: Sequence[int]) -> None:
        """After :meth:`eval_tree` at cache length ``base``: keep only ``nodes`` (a root-to-node
        path, as indices into the tree's ids) after the first ``base`` tokens."""
        from ragkit.models.kv_cache import keep_positions

        tree_ids = self._cache_ids[base:]
        positions = [base + n for n in nodes]
        keep_positions(self._cache, len(self._cache_ids), base, positions)
        self._cache_ids[base:] = [tree_ids[n] for n in nodes]

    def make_sampler(self, temperature: float, top_p: float, seed: int | None) -> _Sampler:
        """A torch sampler on the model's device (greedy: ``argmax``)."""
        return _Sampler(temperature, top_p, seed, self.device)

    def inference(self) -> contextlib.AbstractContextManager[Any]:
        """``torch.inference_mode`` around token steps."""
        import torch

        return torch.inference_mode()

    def _end_call(self) -> None:
        self.truncate(0)  # a finished sequence's KV memory is not kept between calls

    def _as_float32(self, logits: Any) -> Any:
        return logits.float()

    def check_prefix_owner(self, prefix: PrefixCache) -> None:
        """Refuse a prefix cache computed by another model or in another dtype."""
        if prefix.model_fingerprint != self.fingerprint:
            raise PrefixCacheError(
                f"prefix cache was built by model {prefix.model_id!r}, not {self.name!r}; "
                "rebuild it with this model's prefill()"
            )
        if prefix.dtype != self.dtype_name:
            raise PrefixCacheError(
                f"prefix cache holds {prefix.dtype} tensors, the model runs in {self.dtype_name}"
            )

    def _load_prefix(self, prefix: PrefixCache, n: int) -> None:
        from ragkit.models.kv_cache import copy_prefix

        self.truncate(0)
        self._check_room(n)
        copy_prefix(self._live(), prefix.keys, prefix.values, n)
        self._cache_ids = list(prefix.token_ids[:n])

    def prefill(self, prefix_ids: list[int]) -> PrefixCache:
        """Compute the KV cache of a prompt prefix (e.g. a system prompt plus a document).

        Prompts that start with ``prefix_ids`` then skip that part of the prefill.
        """
        if not prefix_ids:
            raise ValueError("prefix_ids is empty")
        from ragkit.models.kv_cache import snapshot

        with self.inference():
            self.truncate(0)
            self.eval_last(prefix_ids)
            keys, values = snapshot(self._live(), len(prefix_ids), copy=self.kv_cache == "static")
        self.truncate(0)
        return PrefixCache(
            token_ids=list(prefix_ids),
            keys=keys,
            values=values,
            model_id=self.name,
            model_fingerprint=self.fingerprint,
            dtype=self.dtype_name,
        )

    def library_generate(
        self, ids: list[int], max_new_tokens: int, prefix_cache: PrefixCache | None = None
    ) -> list[int]:
        """Greedy token ids from transformers' own ``model.generate`` (EOS dropped).

        The baseline that the driver must match token for token (tests, ``ragkit bench``).
        With ``prefix_cache``, a fresh copy of it goes in as ``past_key_values``: transformers'
        own way of reusing a prefilled prompt (it then computes only the rest of ``ids``).
        """
        import torch

        tensor = torch.tensor([ids], device=self.device)
        extra: dict[str, Any] = {}
        if prefix_cache is not None:
            extra["past_key_values"] = prefix_cache.to_dynamic_cache(self.model.config)
        with torch.inference_mode():
            out = self.model.generate(
                tensor,
                attention_mask=torch.ones_like(tensor),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=self.pad_token_id,
                **extra,
            )
        return [t for t in out[0, len(ids) :].tolist() if t not in self.eos_token_ids]

    # ------------------------------------------------------------------ batches and scoring

    def _left_pad(self, batch: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded ``input_ids`` and ``attention_mask`` for a batch of id lists."""
        import torch

        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):
            if ids:
                input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
                mask[row, width - len(ids) :] = 1
        return input_ids.to(self.device), mask.to(self.device)

    def _padded_forward(
        self,
        input_ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        cache: DynamicCache | None = None,
    ) -> torch.Tensor:
        """Last-position logits ``[batch, vocab]`` of a left-padded batch."""
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=cache is not None,
            **{self._cache_arg: cache},
            logits_to_keep=1,
        )
        return out.logits[:, -1, :]

    def _generate_batch(
        self,
        jobs: list[tuple[list[int], int]],
        sampler: _Sampler,  # type: ignore[override]
        stop: Sequence[str] | None,
        started: float,
    ) -> list[GenerationResult]:
        """All prompts in one left-padded batch (greedy equals :meth:`generate` per prompt)."""
        import torch
        from transformers import DynamicCache

        rows = [
            Decoding(self.decode, self.eos_token_ids, limit, stop, None, started)
            for _, limit in jobs
        ]
        if not all(row.done for row in rows):
            cache = DynamicCache(config=self.model.config)
            input_ids, mask = self._left_pad([ids for ids, _ in jobs])
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode():
                logits = self._padded_forward(input_ids, mask, positions, cache)
                while True:
                    chosen = sampler.pick(logits).tolist()
                    for row, token in zip(rows, chosen, strict=True):
                        if not row.done:
                            row.add(token)
                    if all(row.done for row in rows):
                        break
                    feed = [
                        self.pad_token_id if r.done else t
                        for r, t in zip(rows, chosen, strict=True)
                    ]
                    mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
                    positions = positions[:, -1:] + 1
                    step = torch.tensor(feed, device=self.device).view(-1, 1)
                    logits = self._padded_forward(step, mask, positions, cache)
        return [row.result(len(ids)) for row, (ids, _) in zip(rows, jobs, strict=True)]

    def logprobs(self, prompt_ids: list[int], continuation_ids: list[int]) -> list[float]:
        """Log-probability of each continuation token given the prompt and the tokens before it.

        Args:
            prompt_ids: Conditioning tokens (at least one).
            continuation_ids: Tokens to score.

        Returns:
            One natural-log probability per continuation token.
        """
        import torch

        if not prompt_ids:
            raise ValueError("prompt_ids must contain at least one token")
        if not continuation_ids:
            return []
        ids = torch.tensor([list(prompt_ids) + list(continuation_ids)], device=self.device)
        with torch.inference_mode():
            out = self.model(
                input_ids=ids, use_cache=False, logits_to_keep=len(continuation_ids) + 1
            )
            logp = torch.log_softmax(out.logits[0, :-1, :].float(), dim=-1)
            target = torch.tensor(continuation_ids, device=self.device).view(-1, 1)
            return logp.gather(-1, target).squeeze(-1).tolist()

    def next_token_logprobs(
        self, prompts: Sequence[list[int]], candidate_ids: Sequence[int], *, batch_size: int = 8
    ) -> list[list[float]]:
        """Next-token log-probabilities of ``candidate_ids`` after each prompt (batched).

        Used by the yes/no relevance scorer: one left-padded forward per batch, only the last
        position's logits are computed.
        """
        import torch

        results: list[list[float]] = []
        cand = torch.tensor(list(candidate_ids), device=self.device)
        for start in range(0, len(prompts), max(1, batch_size)):
            chunk = list(prompts[start : start + batch_size])
            input_ids, mask = self._left_pad(chunk)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode():
                logits = self._padded_forward(input_ids, mask, positions)
                logp = torch.log_softmax(logits.float(), dim=-1)
                results.extend(logp.index_select(-1, cand).tolist())
        return results

    def __repr__(self) -> str:
        return f"CausalLM(name={self.name!r}, device={self.device!r}, dtype={self.dtype_name})"
