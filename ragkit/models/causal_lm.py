"""Causal language model on transformers with an explicit KV-cache decoding loop.

The loop is written here rather than delegated to ``model.generate`` so that streaming, stop
strings, prefix-cache reuse and (later) speculative decoding share one cache-aware code path,
while staying as fast as ``model.generate`` (one forward per token, no extra host syncs beyond
reading the chosen token).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragkit.atomic import file_sha256, ids_sha256, publish_dir
from ragkit.models.base import (
    ChatMessageDict,
    GenerationResult,
    PromptHelpers,
    StopReason,
)
from ragkit.models.errors import ModelLoadError, PrefixCacheError
from ragkit.models.registry import DEFAULT_CAUSAL_MODEL, ModelSpec, resolve_model

if TYPE_CHECKING:
    import torch
    from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["CausalLM", "PrefixCache", "PREFIX_CACHE_FORMAT_VERSION"]

logger = logging.getLogger(__name__)

PREFIX_CACHE_FORMAT_VERSION = 1
_PREFIX_MANIFEST = "manifest.json"
_PREFIX_TENSORS = "kv.safetensors"

Prompt = list[int] | list[ChatMessageDict] | str


@dataclass
class PrefixCache:
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

    token_ids: list[int]
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    model_id: str
    model_fingerprint: str
    dtype: str

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def nbytes(self) -> int:
        """Memory held by the tensors."""
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))

    def to_dynamic_cache(self, config: Any, length: int | None = None) -> DynamicCache:
        """A fresh ``DynamicCache`` holding the first ``length`` tokens (all by default)."""
        from transformers import DynamicCache

        n = len(self) if length is None else length
        cache = DynamicCache(config=config)
        for i, (k, v) in enumerate(zip(self.keys, self.values, strict=True)):
            cache.update(k[..., :n, :], v[..., :n, :], i)
        return cache

    def save(self, directory: str | Path) -> Path:
        """Write tensors + manifest atomically (temp dir, then rename) into ``directory``."""
        import torch
        from safetensors.torch import save_file

        target = Path(directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            tensors = {"token_ids": torch.tensor(self.token_ids, dtype=torch.int64)}
            for i, (k, v) in enumerate(zip(self.keys, self.values, strict=True)):
                tensors[f"k.{i}"] = k.detach().to("cpu").contiguous()
                tensors[f"v.{i}"] = v.detach().to("cpu").contiguous()
            save_file(tensors, str(tmp / _PREFIX_TENSORS))
            path = tmp / _PREFIX_TENSORS
            manifest = {
                "format_version": PREFIX_CACHE_FORMAT_VERSION,
                "model_id": self.model_id,
                "model_fingerprint": self.model_fingerprint,
                "dtype": self.dtype,
                "num_tokens": len(self),
                "num_layers": len(self.keys),
                "token_ids_sha256": ids_sha256(self.token_ids),
                "files": {
                    _PREFIX_TENSORS: {"size": path.stat().st_size, "sha256": file_sha256(path)}
                },
            }
            (tmp / _PREFIX_MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
            publish_dir(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    @classmethod
    def load(cls, directory: str | Path, model: CausalLM) -> PrefixCache:
        """Load a saved prefix cache for ``model``, verifying manifest, checksums and owner.

        Raises:
            PrefixCacheError: Missing/corrupt files, another format version, or a cache built
                by a different model or dtype.
        """
        from safetensors.torch import load_file

        root = Path(directory)
        try:
            manifest = json.loads((root / _PREFIX_MANIFEST).read_text(encoding="utf-8"))
            if not isinstance(manifest, dict):
                raise ValueError("manifest is not an object")
        except (OSError, ValueError) as exc:
            raise PrefixCacheError(f"prefix cache {root} is missing or corrupt: {exc}") from exc
        version = manifest.get("format_version")
        if version != PREFIX_CACHE_FORMAT_VERSION:
            raise PrefixCacheError(
                f"prefix cache {root} has format version {version}, expected "
                f"{PREFIX_CACHE_FORMAT_VERSION}; rebuild it with prefill()"
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
        path = root / _PREFIX_TENSORS
        expected = (manifest.get("files") or {}).get(_PREFIX_TENSORS) or {}
        try:
            ok = path.stat().st_size == expected.get("size") and file_sha256(path) == expected.get(
                "sha256"
            )
        except OSError:
            ok = False
        if not ok:
            raise PrefixCacheError(f"prefix cache {root} is corrupt ({_PREFIX_TENSORS} checksum)")
        try:
            tensors = load_file(str(path), device=str(model.device))
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
    """Greedy (temperature 0) or temperature/top-p sampling with an optional seeded generator."""

    def __init__(self, temperature: float, top_p: float, seed: int | None, device: str) -> None:
        import torch

        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        self.greedy = temperature == 0
        self.temperature = temperature
        self.top_p = top_p
        self.generator: torch.Generator | None = None
        if not self.greedy and seed is not None:
            self.generator = torch.Generator(device=device).manual_seed(seed)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
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


class _TextStream:
    """Incremental detokenization for stop strings and streaming deltas.

    Text that could be the start of a stop string is held back, so what was streamed always
    equals a prefix of the final text and the deltas concatenate to it exactly.
    """

    def __init__(
        self,
        decode: Callable[[Sequence[int]], str],
        stop: Sequence[str] | None,
        on_token: Callable[[str], None] | None,
    ) -> None:
        self.decode = decode
        self.stop = [s for s in (stop or []) if s]
        self.max_stop = max((len(s) for s in self.stop), default=0)
        self.on_token = on_token
        self.active = bool(self.stop) or on_token is not None
        self.emitted = 0
        self.checked = 0
        self.final: str | None = None

    def _holdback(self, text: str) -> int:
        for size in range(min(self.max_stop - 1, len(text)), 0, -1):
            tail = text[-size:]
            if any(s.startswith(tail) for s in self.stop):
                return size
        return 0

    def push(self, generated: Sequence[int]) -> bool:
        """Feed the tokens so far; returns True when a stop string was produced."""
        text = self.decode(generated)
        if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for the next token
            return False
        if self.stop:
            start = max(0, self.checked - self.max_stop + 1)
            hits = [i for i in (text.find(s, start) for s in self.stop) if i != -1]
            if hits:
                self.final = text[: min(hits)]
                return True
            self.checked = len(text)
        if self.on_token is not None:
            safe = len(text) - self._holdback(text) if self.stop else len(text)
            if safe > self.emitted:
                self.on_token(text[self.emitted : safe])
                self.emitted = safe
        return False

    def finish(self, generated: Sequence[int]) -> str:
        """Final text; streams whatever was held back."""
        text = self.final if self.final is not None else self.decode(generated)
        if self.on_token is not None and len(text) > self.emitted:
            self.on_token(text[self.emitted :])
            self.emitted = len(text)
        return text


class CausalLM(PromptHelpers):
    """A causal LM (transformers backend) implementing :class:`ragkit.models.LanguageModel`.

    Load with :meth:`load`; the constructor takes already-loaded objects (tests, custom setups).
    """

    supports_logits = True
    supports_prefix_cache = True

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
        spec: ModelSpec | None = None,
    ) -> None:
        self.model = model
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

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(
        cls,
        name: str = DEFAULT_CAUSAL_MODEL,
        device: str = "auto",
        dtype: str = "auto",
        cache_dir: str | Path | None = None,
    ) -> CausalLM:
        """Load a causal LM by packaged name, hub id, local directory or ``.gguf`` file.

        GGUF files are converted once into ``cache_dir`` (see :mod:`ragkit.models.gguf_cache`).

        Args:
            name: Model name (see :func:`ragkit.models.resolve_model`).
            device: ``auto``, ``cpu``, ``cuda``...
            dtype: ``auto``, ``float32``, ``bfloat16``, ``float16``.
            cache_dir: Cache root for converted GGUF models.

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
        return cls(model, tokenizer, name=name, device=dev, fingerprint=fingerprint, spec=spec)

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

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, token_ids: Sequence[int]) -> str:
        """Text of ``token_ids`` without special tokens; prefix-stable for streaming."""
        return self.tokenizer.decode(
            list(token_ids), skip_special_tokens=True, clean_up_tokenization_spaces=False
        )

    def count_tokens(self, text: str) -> int:
        """Number of tokens in ``text`` (no special tokens)."""
        return len(self.encode(text))

    def chat_template_text(self, messages: list[ChatMessageDict]) -> str:
        """The rendered chat prompt as text (useful to split off a cacheable prefix)."""
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            )
        lines = [f"{m['role']}: {m['content']}" for m in messages]
        return "\n".join([*lines, "assistant:"])

    def apply_chat_template(self, messages: list[ChatMessageDict]) -> list[int]:
        """Prompt token ids for a chat, ending with the assistant header."""
        text = self.chat_template_text(messages)
        return self.encode(text)

    # ------------------------------------------------------------------ caches

    def _new_cache(self) -> DynamicCache:
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    def _forward(self, ids: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
        """Run ``[1, n]`` ids through the model, extending ``cache``; returns last logits."""
        out = self.model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1, :]

    def _check_owner(self, prefix: PrefixCache) -> None:
        if prefix.model_fingerprint != self.fingerprint:
            raise PrefixCacheError(
                f"prefix cache was built by model {prefix.model_id!r}, not {self.name!r}; "
                "rebuild it with this model's prefill()"
            )
        if prefix.dtype != self.dtype_name:
            raise PrefixCacheError(
                f"prefix cache holds {prefix.dtype} tensors, the model runs in {self.dtype_name}"
            )

    def _start(self, ids: list[int], prefix: PrefixCache | None) -> tuple[DynamicCache, int]:
        """A cache and how many prompt tokens it already holds."""
        if prefix is None:
            return self._new_cache(), 0
        self._check_owner(prefix)
        n = len(prefix)
        if n == 0 or len(ids) < n or ids[:n] != prefix.token_ids:
            message = (
                "prompt does not start with the prefix cache's tokens; generating without it "
                "(build prompt ids as prefix ids + suffix ids to reuse the cache)"
            )
            warnings.warn(message, RuntimeWarning, stacklevel=3)
            logger.warning(message)
            return self._new_cache(), 0
        use = n if len(ids) > n else n - 1  # at least one token must be fed to get logits
        return prefix.to_dynamic_cache(self.model.config, use), use

    @staticmethod
    def crop_cache(cache: DynamicCache, length: int) -> None:
        """Roll a live cache back to its first ``length`` tokens (rejected draft tokens).

        transformers 5.x ``crop`` only accepts a negative count of tokens to remove (a positive
        argument raises); a negative count also worked in 4.x, so this is portable.
        """
        remove = cache.get_seq_length() - length
        if remove > 0:
            cache.crop(-remove)

    def prefill(self, prefix_ids: list[int]) -> PrefixCache:
        """Compute the KV cache of a prompt prefix (e.g. a system prompt plus a document).

        Prompts that start with ``prefix_ids`` then skip that part of the prefill.
        """
        import torch

        if not prefix_ids:
            raise ValueError("prefix_ids is empty")
        cache = self._new_cache()
        with torch.inference_mode():
            self._forward(torch.tensor([prefix_ids], device=self.device), cache)
        keys = [layer.keys for layer in cache.layers]
        values = [layer.values for layer in cache.layers]
        return PrefixCache(
            token_ids=list(prefix_ids),
            keys=keys,
            values=values,
            model_id=self.name,
            model_fingerprint=self.fingerprint,
            dtype=self.dtype_name,
        )

    # ------------------------------------------------------------------ generation

    def generate(
        self,
        prompt: Prompt,
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
        on_token: Callable[[str], None] | None = None,
        prefix_cache: PrefixCache | None = None,
    ) -> GenerationResult:
        """Generate a completion with an explicit KV cache.

        Args:
            prompt: Token ids, chat messages (chat template applied) or raw text.
            max_new_tokens: Upper bound on new tokens (also capped by the context).
            temperature: 0 for greedy decoding; > 0 samples.
            top_p: Nucleus sampling mass (sampling only).
            seed: Makes sampling reproducible.
            stop: Strings that end generation; the returned text stops before them.
            on_token: Receives text deltas as they are decoded; they concatenate to ``text``.
            prefix_cache: From :meth:`prefill`; used when the prompt starts with its tokens,
                otherwise ignored with a warning. It is never modified.

        Returns:
            The text, token ids, counts, timings and stop reason.
        """
        import torch

        started = time.perf_counter()
        ids = self._prompt_ids(prompt)
        if not ids:
            raise ValueError("empty prompt")
        limit = self._max_new(len(ids), max_new_tokens)
        sampler = _Sampler(temperature, top_p, seed, self.device)
        stream = _TextStream(self.decode, stop, on_token)
        generated: list[int] = []
        reason: StopReason = "length"
        first = 0.0
        cache, reused = self._start(ids, prefix_cache)
        eos = self.eos_token_ids
        if limit > 0:
            with torch.inference_mode():
                logits = self._forward(torch.tensor([ids[reused:]], device=self.device), cache)
                while True:
                    token = sampler(logits)
                    tok = int(token)
                    if not generated:
                        first = time.perf_counter() - started
                    if tok in eos:
                        reason = "eos"
                        break
                    generated.append(tok)
                    if stream.active and stream.push(generated):
                        reason = "stop"
                        break
                    if len(generated) >= limit:
                        break
                    logits = self._forward(token.view(1, 1), cache)
        text = stream.finish(generated)
        seconds = time.perf_counter() - started
        return GenerationResult(
            text=text,
            token_ids=generated,
            prompt_tokens=len(ids),
            completion_tokens=len(generated),
            seconds=seconds,
            first_token_seconds=first or seconds,
            stop_reason=reason,
            prefix_tokens_reused=reused,
        )

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

    def generate_batch(
        self,
        prompts: Sequence[Prompt],
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> list[GenerationResult]:
        """Generate for several prompts in one left-padded batch (greedy equals :meth:`generate`).

        ``seconds`` and ``first_token_seconds`` are those of the whole batch.
        """
        import torch

        started = time.perf_counter()
        batch = [self._prompt_ids(p) for p in prompts]
        if not batch:
            return []
        if any(not ids for ids in batch):
            raise ValueError("empty prompt in batch")
        limits = [self._max_new(len(ids), max_new_tokens) for ids in batch]
        sampler = _Sampler(temperature, top_p, seed, self.device)
        streams = [_TextStream(self.decode, stop, None) for _ in batch]
        generated: list[list[int]] = [[] for _ in batch]
        reasons: list[StopReason] = ["length"] * len(batch)
        done = [limit == 0 for limit in limits]
        first = 0.0
        input_ids, mask = self._left_pad(batch)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = self._new_cache()
        eos = self.eos_token_ids
        with torch.inference_mode():
            out = self.model(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            logits = out.logits[:, -1, :]
            while not all(done):
                tokens = sampler(logits)
                chosen = tokens.tolist()
                if not first:
                    first = time.perf_counter() - started
                for row, tok in enumerate(chosen):
                    if done[row]:
                        continue
                    if tok in eos:
                        reasons[row], done[row] = "eos", True
                        continue
                    generated[row].append(tok)
                    if streams[row].active and streams[row].push(generated[row]):
                        reasons[row], done[row] = "stop", True
                    elif len(generated[row]) >= limits[row]:
                        done[row] = True
                if all(done):
                    break
                feed = torch.tensor(
                    [self.pad_token_id if d else t for d, t in zip(done, chosen, strict=True)],
                    device=self.device,
                ).view(-1, 1)
                mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
                positions = positions[:, -1:] + 1
                out = self.model(
                    input_ids=feed,
                    attention_mask=mask,
                    position_ids=positions,
                    past_key_values=cache,
                    use_cache=True,
                )
                logits = out.logits[:, -1, :]
        seconds = time.perf_counter() - started
        return [
            GenerationResult(
                text=streams[row].finish(generated[row]),
                token_ids=generated[row],
                prompt_tokens=len(batch[row]),
                completion_tokens=len(generated[row]),
                seconds=seconds,
                first_token_seconds=first or seconds,
                stop_reason=reasons[row],
            )
            for row in range(len(batch))
        ]

    # ------------------------------------------------------------------ scoring

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

    def next_token_logits(
        self, ids: list[int], cache: PrefixCache | DynamicCache | None = None
    ) -> torch.Tensor:
        """Logits (float32, ``[vocab]``) for the token after ``ids``.

        Args:
            ids: The full sequence so far.
            cache: ``None`` (compute from scratch); a :class:`PrefixCache` that ``ids`` starts
                with (reused, not modified); or a live ``DynamicCache`` holding the first
                ``cache.get_seq_length()`` tokens of ``ids``, extended in place (for speculative
                decoding; roll back with :meth:`crop_cache`).
        """
        import torch
        from transformers import DynamicCache

        if not ids:
            raise ValueError("ids is empty")
        if isinstance(cache, DynamicCache):
            live, held = cache, cache.get_seq_length()
            if held >= len(ids):
                raise ValueError(f"cache already holds {held} tokens; ids has only {len(ids)}")
        else:
            live, held = self._start(ids, cache)
        with torch.inference_mode():
            logits = self._forward(torch.tensor([ids[held:]], device=self.device), live)
        return logits[0].float()

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
                out = self.model(
                    input_ids=input_ids,
                    attention_mask=mask,
                    position_ids=positions,
                    use_cache=False,
                    logits_to_keep=1,
                )
                logp = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)
                results.extend(logp.index_select(-1, cand).tolist())
        return results

    def __repr__(self) -> str:
        return f"CausalLM(name={self.name!r}, device={self.device!r}, dtype={self.dtype_name})"
