"""Causal LM on llama.cpp (llama-cpp-python): GGUF speed on a CPU behind ragkit's model protocol.

transformers dequantizes GGUF weights to fp32 and runs the 1.5B Qwen reader at ~1.5 tok/s on
2 cores; llama.cpp runs the quantized weights directly at ~10x that. :class:`LlamaCppLM`
implements :class:`ragkit.models.base.LanguageModel` like :class:`ragkit.models.CausalLM`, so
algorithms switch backends by configuration: streaming text deltas, stop strings, greedy or
seeded sampling, the GGUF's own chat template, prefix KV state reuse (``llama_state_get_data`` /
``Llama.load_state``, persisted with a checked manifest) and log-probabilities through ``eval``.

``llama_cpp`` is imported only inside functions: it is an optional extra
(``pip install 'ragkit[llamacpp]'``) and ``import ragkit`` must not need it.
"""

from __future__ import annotations

import ctypes
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

from ragkit.atomic import file_sha256, ids_sha256
from ragkit.models.base import (
    ChatMessageDict,
    GenerationResult,
    PromptHelpers,
    StopReason,
)
from ragkit.models.errors import ContextLengthError, ModelLoadError, PrefixCacheError
from ragkit.models.registry import DEFAULT_CAUSAL_MODEL, ModelSpec, resolve_model

if TYPE_CHECKING:
    import numpy as np
    from llama_cpp import Llama

__all__ = [
    "LLAMACPP_INSTALL_HINT",
    "LLAMA_PREFIX_FORMAT_VERSION",
    "LlamaCppLM",
    "LlamaCppNotInstalledError",
    "LlamaPrefixState",
    "import_llama_cpp",
]

logger = logging.getLogger(__name__)

LLAMACPP_INSTALL_HINT = "pip install 'ragkit[llamacpp]'"
LLAMA_PREFIX_FORMAT_VERSION = 1
_MANIFEST = "manifest.json"
_STATE = "state.bin"

Prompt = list[int] | list[ChatMessageDict] | str


class LlamaCppNotInstalledError(ModelLoadError, ImportError):
    """llama-cpp-python is missing; also an ``ImportError`` so optional-import code catches it."""


def import_llama_cpp() -> Any:
    """Import ``llama_cpp`` or raise an error that says which extra to install."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise LlamaCppNotInstalledError(
            "the llama.cpp backend needs llama-cpp-python, which is not installed; run: "
            f"{LLAMACPP_INSTALL_HINT} (pip builds llama.cpp from source, ~11 minutes on 2 cores)"
        ) from exc
    return llama_cpp


@dataclass
class LlamaPrefixState:
    """llama.cpp context state (KV cache) after evaluating a prompt prefix.

    Restoring it into a model skips that part of the prefill. The bytes are the output of
    ``llama_state_get_data`` (what ``Llama.save_state`` stores), without ``save_state``'s copy
    of the score matrix, which is never needed here and is ~300 MB for Qwen's vocabulary.

    Attributes:
        token_ids: The prefix's token ids.
        state: Raw llama.cpp context state.
        model_id: Name of the model that computed it.
        model_fingerprint: Cheap identity of the model file (path, size, mtime).
        n_ctx: Context size of the model that computed it.
    """

    token_ids: list[int]
    state: bytes
    model_id: str
    model_fingerprint: str
    n_ctx: int

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def nbytes(self) -> int:
        """Size of the state blob."""
        return len(self.state)

    def save(self, directory: str | Path, model: LlamaCppLM) -> Path:
        """Write the state and a manifest atomically (temp dir, then rename) into ``directory``.

        The manifest records the format version, llama-cpp-python version, the model's path,
        size and sha256, ``n_ctx`` and the token ids (with their hash), so :meth:`load` can
        refuse a state built by another model or llama.cpp version instead of misusing it.
        """
        from ragkit.atomic import publish_dir

        model.check_prefix_owner(self)
        target = Path(directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            (tmp / _STATE).write_bytes(self.state)
            manifest = {
                "format_version": LLAMA_PREFIX_FORMAT_VERSION,
                "backend": "llama.cpp",
                "llama_cpp_python_version": model.llama_cpp_version,
                "model_id": self.model_id,
                "model_path": str(model.model_path),
                "model_size": model.model_path.stat().st_size,
                "model_sha256": model.model_sha256,
                "n_ctx": self.n_ctx,
                "num_tokens": len(self),
                "token_ids_sha256": ids_sha256(self.token_ids),
                "token_ids": list(self.token_ids),
                "files": {
                    _STATE: {
                        "size": len(self.state),
                        "sha256": hashlib.sha256(self.state).hexdigest(),
                    }
                },
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            (tmp / _MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
            publish_dir(tmp, target)  # the whole directory appears at once, or not at all
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    @classmethod
    def load(cls, directory: str | Path, model: LlamaCppLM) -> LlamaPrefixState:
        """Load a saved prefix state for ``model``, verifying manifest, checksums and owner.

        Raises:
            PrefixCacheError: Missing or corrupt files, another format or llama-cpp-python
                version, a different model file (sha256/size), or a prefix longer than the
                model's context.
        """
        root = Path(directory)
        try:
            manifest = json.loads((root / _MANIFEST).read_text(encoding="utf-8"))
            if not isinstance(manifest, dict):
                raise ValueError("manifest is not an object")
        except (OSError, ValueError) as exc:
            raise PrefixCacheError(f"prefix state {root} is missing or corrupt: {exc}") from exc
        rebuild = "rebuild it with this model's prefill() and save()"
        version = manifest.get("format_version")
        if version != LLAMA_PREFIX_FORMAT_VERSION or manifest.get("backend") != "llama.cpp":
            raise PrefixCacheError(
                f"prefix state {root} has format {manifest.get('backend')!r} version {version}, "
                f"expected llama.cpp version {LLAMA_PREFIX_FORMAT_VERSION}; {rebuild}"
            )
        if manifest.get("llama_cpp_python_version") != model.llama_cpp_version:
            raise PrefixCacheError(
                f"prefix state {root} was written by llama-cpp-python "
                f"{manifest.get('llama_cpp_python_version')}, running {model.llama_cpp_version} "
                f"(the state format is version-specific); {rebuild}"
            )
        size = model.model_path.stat().st_size
        if manifest.get("model_size") != size or manifest.get("model_sha256") != model.model_sha256:
            raise PrefixCacheError(
                f"prefix state {root} was built for model {manifest.get('model_id')!r} "
                f"({manifest.get('model_path')}, sha256 {str(manifest.get('model_sha256'))[:12]}), "
                f"not {model.name!r} ({model.model_path}, sha256 {model.model_sha256[:12]}); "
                f"{rebuild}"
            )
        token_ids = manifest.get("token_ids")
        if not isinstance(token_ids, list) or ids_sha256(token_ids) != manifest.get(
            "token_ids_sha256"
        ):
            raise PrefixCacheError(f"prefix state {root} is corrupt (token ids hash)")
        if len(token_ids) >= model.context_length:
            raise PrefixCacheError(
                f"prefix state {root} holds {len(token_ids)} tokens, which does not fit the "
                f"model's {model.context_length}-token context; load the model with a larger n_ctx"
            )
        expected = (manifest.get("files") or {}).get(_STATE) or {}
        try:
            blob = (root / _STATE).read_bytes()
        except OSError as exc:
            raise PrefixCacheError(f"prefix state {root} is missing {_STATE}: {exc}") from exc
        if len(blob) != expected.get("size") or hashlib.sha256(blob).hexdigest() != expected.get(
            "sha256"
        ):
            raise PrefixCacheError(f"prefix state {root} is corrupt ({_STATE} checksum)")
        return cls(
            token_ids=[int(t) for t in token_ids],
            state=blob,
            model_id=str(manifest.get("model_id")),
            model_fingerprint=model.fingerprint,
            n_ctx=int(manifest.get("n_ctx") or model.context_length),
        )


class LlamaCppLM(PromptHelpers):
    """A GGUF causal LM on llama.cpp implementing :class:`ragkit.models.LanguageModel`.

    Load with :meth:`load`. One model holds one llama.cpp context (one sequence): calls are
    sequential, and ``generate_batch`` loops. Between calls llama-cpp-python keeps the KV cache
    and reuses the longest common token prefix automatically (a shared system prompt or
    document is not recomputed); :meth:`prefill` + ``prefix_cache=`` makes that reuse explicit,
    exact and persistable.

    Not thread-safe: share one instance per thread, or guard it with a lock.
    """

    supports_logits = True
    supports_prefix_cache = True

    _context_hint = "raise n_ctx or use fewer or shorter passages (see truncate_passages_to_fit)"

    def _encode_text(self, text: str) -> list[int]:
        # BOS only when the vocabulary asks for it (llama_tokenize's add_special).
        return self._require().tokenize(text.encode("utf-8"), add_bos=True, special=True)

    def __init__(
        self,
        llm: Llama,
        *,
        name: str,
        model_path: Path,
        spec: ModelSpec | None = None,
        logits_all: bool = False,
    ) -> None:
        """Wrap an already-constructed ``llama_cpp.Llama`` (use :meth:`load` normally)."""
        llama_cpp = import_llama_cpp()
        self._llama_cpp = llama_cpp
        self.llm: Llama | None = llm
        self.name = name
        self.model_path = Path(model_path)
        self._model_sha256: str | None = None
        self.spec = spec
        self.logits_all = logits_all
        self.llama_cpp_version = str(getattr(llama_cpp, "__version__", "unknown"))
        stat = self.model_path.stat()
        self.fingerprint = hashlib.sha256(
            f"{self.model_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()
        ).hexdigest()[:32]
        self._vocab = llm._model.vocab
        self._n_vocab = int(llm.n_vocab())
        self._pieces: dict[int, bytes] = {}
        self._piece_buf = (ctypes.c_char * 64)()
        self._eog = frozenset(
            t for t in range(self._n_vocab) if llama_cpp.llama_vocab_is_eog(self._vocab, t)
        )
        self._formatter: Any = None

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(
        cls,
        name: str = DEFAULT_CAUSAL_MODEL,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        *,
        n_batch: int = 512,
        n_gpu_layers: int = 0,
        logits_all: bool = False,
        seed: int | None = None,
        verbose: bool = False,
        **llama_kwargs: Any,
    ) -> LlamaCppLM:
        """Load a GGUF by packaged short name or path.

        Args:
            name: Packaged name (``smollm2-135m-instruct``, ``qwen2.5-coder-1.5b-instruct``...)
                or a ``.gguf`` path.
            n_ctx: Context window to allocate (prompt + completion); ``0`` uses the model's
                training context (32k for Qwen: large KV memory).
            n_threads: CPU threads for decoding and prompt processing; ``None`` lets llama.cpp
                choose (half the cores for decoding, all for prompts).
            n_batch: Prompt tokens per llama.cpp decode call.
            n_gpu_layers: Layers to offload when llama.cpp was built with GPU support.
            logits_all: Keep logits of every evaluated position, so :meth:`logprobs` scores a
                continuation in one batched ``eval`` instead of one token at a time (costs
                ``n_ctx x vocab`` floats of memory).
            seed: Default sampling seed.
            verbose: Let llama.cpp log to stderr.
            **llama_kwargs: Passed to ``llama_cpp.Llama`` (e.g. ``flash_attn``, ``type_k``).

        Raises:
            LlamaCppNotInstalledError: llama-cpp-python is missing (names the extra).
            ModelLoadError: The name is not a GGUF, or llama.cpp cannot load it.
        """
        llama_cpp = import_llama_cpp()
        spec = resolve_model(name, kind="causal")
        if spec.path is None or not spec.is_gguf:
            raise ModelLoadError(
                f"model {name!r} resolves to {spec.location}, not a .gguf file; the llama.cpp "
                "backend needs GGUF weights (use ragkit.models.CausalLM for transformers models)"
            )
        kwargs: dict[str, Any] = {
            "n_ctx": n_ctx,
            "n_batch": n_batch,
            "n_gpu_layers": n_gpu_layers,
            "logits_all": logits_all,
            "verbose": verbose,
            **llama_kwargs,
        }
        if n_threads is not None:
            if n_threads < 1:
                raise ValueError(f"n_threads must be >= 1, got {n_threads}")
            kwargs.setdefault("n_threads", n_threads)
            kwargs.setdefault("n_threads_batch", n_threads)
        if seed is not None:
            kwargs["seed"] = seed
        try:
            llm = llama_cpp.Llama(str(spec.path), **kwargs)
        except Exception as exc:
            raise ModelLoadError(f"llama.cpp cannot load {name!r} from {spec.path}: {exc}") from exc
        return cls(llm, name=name, model_path=spec.path, spec=spec, logits_all=logits_all)

    def _require(self) -> Llama:
        if self.llm is None:
            raise ModelLoadError(f"model {self.name!r} was closed")
        return self.llm

    def close(self) -> None:
        """Free the llama.cpp model and context now (instead of at garbage collection)."""
        if self.llm is not None:
            self.llm.close()
            self.llm = None

    def reset(self) -> None:
        """Forget the KV cache, so the next call computes its prompt from scratch (benchmarks)."""
        self._require().reset()

    @property
    def model_sha256(self) -> str:
        """sha256 of the GGUF file (computed once per model instance; for prefix-state manifests)."""
        if self._model_sha256 is None:
            self._model_sha256 = file_sha256(self.model_path)
        return self._model_sha256

    @property
    def train_context_length(self) -> int:
        """The context the model was trained with (``n_ctx`` may be set lower to save memory)."""
        return int(self._require()._model.n_ctx_train())

    @property
    def context_length(self) -> int:
        """Maximum prompt + completion tokens: the allocated ``n_ctx``."""
        return int(self._require().n_ctx())

    @property
    def n_threads(self) -> int:
        """Decoding threads in use."""
        return int(self._require().context_params.n_threads)

    @property
    def eos_token_ids(self) -> frozenset[int]:
        """End-of-generation tokens (EOS, ``<|im_end|>``, ``<|endoftext|>``...)."""
        return self._eog

    # ------------------------------------------------------------------ tokens

    def _piece(self, token: int) -> bytes:
        """Bytes of one token with special tokens rendered empty (memoized: vocab is static)."""
        piece = self._pieces.get(token)
        if piece is None:
            llama_cpp = self._llama_cpp
            buf = self._piece_buf
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
            if n < 0:
                buf = (ctypes.c_char * -n)()
                n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
            piece = bytes(buf[:n])
            self._pieces[token] = piece
        return piece

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; no BOS added, special-token strings parsed (like transformers)."""
        if not text:
            return []
        return self._require().tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def decode(self, token_ids: Sequence[int]) -> str:
        """Text of ``token_ids`` without special tokens; prefix-stable for streaming."""
        return b"".join(self._piece(int(t)) for t in token_ids).decode("utf-8", errors="replace")

    def count_tokens(self, text: str) -> int:
        """Number of tokens in ``text`` (no special tokens added)."""
        return len(self.encode(text))

    def _chat_formatter(self) -> Any:
        if self._formatter is None:
            llm = self._require()
            template = llm.metadata.get("tokenizer.chat_template")
            if not template:
                self._formatter = False
            else:
                from llama_cpp.llama_chat_format import Jinja2ChatFormatter

                def text(token: int) -> str:
                    return llm._model.token_get_text(token) if token >= 0 else ""

                self._formatter = Jinja2ChatFormatter(
                    template=template,
                    eos_token=text(llm.token_eos()),
                    bos_token=text(llm.token_bos()),
                    add_generation_prompt=True,
                )
        return self._formatter

    def chat_template_text(self, messages: list[ChatMessageDict]) -> str:
        """The chat prompt rendered with the GGUF's own template (``tokenizer.chat_template``)."""
        formatter = self._chat_formatter()
        if formatter:
            return formatter(messages=[dict(m) for m in messages]).prompt
        lines = [f"{m['role']}: {m['content']}" for m in messages]
        return "\n".join([*lines, "assistant:"])

    def apply_chat_template(self, messages: list[ChatMessageDict]) -> list[int]:
        """Prompt token ids for a chat, ending with the assistant header."""
        return self.encode(self.chat_template_text(messages))

    # ------------------------------------------------------------------ state

    def check_prefix_owner(self, prefix: LlamaPrefixState) -> None:
        """Refuse a prefix state computed by another model file."""
        if prefix.model_fingerprint != self.fingerprint:
            raise PrefixCacheError(
                f"prefix state was built by model {prefix.model_id!r}, not {self.name!r} "
                f"({self.model_path}); rebuild it with this model's prefill()"
            )

    def prefill(self, prefix_ids: list[int]) -> LlamaPrefixState:
        """Evaluate a prompt prefix (e.g. system prompt + document) and snapshot the KV state.

        Prompts that start with ``prefix_ids`` then skip that part of the prefill when passed
        ``prefix_cache=``; :meth:`LlamaPrefixState.save` persists it.
        """
        llm = self._require()
        if not prefix_ids:
            raise ValueError("prefix_ids is empty")
        if len(prefix_ids) >= self.context_length:
            raise ContextLengthError(
                f"prefix has {len(prefix_ids)} tokens; the context holds {self.context_length}"
            )
        llm.reset()
        llm.eval(list(prefix_ids))
        return LlamaPrefixState(
            token_ids=[int(t) for t in prefix_ids],
            state=self._state_bytes(),
            model_id=self.name,
            model_fingerprint=self.fingerprint,
            n_ctx=self.context_length,
        )

    def _state_bytes(self) -> bytes:
        llama_cpp = self._llama_cpp
        ctx = self._require().ctx
        size = int(llama_cpp.llama_state_get_size(ctx))
        buf = (ctypes.c_uint8 * size)()
        written = int(llama_cpp.llama_state_get_data(ctx, buf, size))
        if written > size:
            raise PrefixCacheError("llama.cpp failed to copy its state")
        return bytes(memoryview(buf)[:written])

    def _restore(self, prefix: LlamaPrefixState) -> None:
        """Load a prefix state into the context (``Llama.load_state``)."""
        import numpy as np

        llama_cpp = self._llama_cpp
        llm = self._require()
        self.check_prefix_owner(prefix)
        n = len(prefix)
        if n >= self.context_length:
            raise PrefixCacheError(
                f"prefix state holds {n} tokens; the context holds {self.context_length}"
            )
        input_ids = np.zeros((self.context_length,), dtype=np.intc)
        input_ids[:n] = prefix.token_ids
        state = llama_cpp.LlamaState(
            input_ids=input_ids,
            scores=np.zeros((1, self._n_vocab), dtype=np.single),  # broadcast; never read
            n_tokens=n,
            llama_state=prefix.state,
            llama_state_size=len(prefix.state),
            seed=llm._seed,
        )
        try:
            llm.load_state(state)
        except Exception as exc:
            llm.reset()
            raise PrefixCacheError(f"llama.cpp refused the prefix state: {exc}") from exc

    def _use_prefix(self, ids: list[int], prefix: LlamaPrefixState | None, depth: int) -> int:
        """Restore ``prefix`` when ``ids`` starts with it; returns the prompt tokens it covers."""
        if prefix is None:
            return 0
        self.check_prefix_owner(prefix)
        n = len(prefix)
        if n == 0 or len(ids) < n or ids[:n] != prefix.token_ids:
            message = (
                "prompt does not start with the prefix state's tokens; generating without it "
                "(build prompt ids as prefix ids + suffix ids to reuse the state)"
            )
            warnings.warn(message, RuntimeWarning, stacklevel=depth + 1)
            logger.warning(message)
            return 0
        self._restore(prefix)
        return n if len(ids) > n else n - 1  # one token is re-fed to get fresh logits

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
        prefix_cache: LlamaPrefixState | None = None,
    ) -> GenerationResult:
        """Generate a completion with llama.cpp's sampler (greedy when ``temperature == 0``).

        Args:
            prompt: Token ids, chat messages (the GGUF's chat template is applied) or raw text.
            max_new_tokens: Upper bound on new tokens (also capped by ``n_ctx``).
            temperature: 0 for greedy decoding; > 0 samples (top-k and min-p disabled, so
                only ``temperature`` and ``top_p`` shape the distribution, as in ``CausalLM``).
            top_p: Nucleus sampling mass (sampling only).
            seed: Makes sampling reproducible.
            stop: Strings that end generation; the returned text stops before them.
            on_token: Receives text deltas as they are decoded; they concatenate to ``text``.
            prefix_cache: From :meth:`prefill` (or :meth:`LlamaPrefixState.load`); restored
                when the prompt starts with its tokens, else ignored with a warning.

        Returns:
            The text, token ids, counts, timings and stop reason.
        """
        from ragkit.models.causal_lm import _TextStream

        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        llm = self._require()
        started = time.perf_counter()
        ids = self._prompt_ids(prompt)
        if not ids:
            raise ValueError("empty prompt")
        limit = self._max_new(len(ids), max_new_tokens)
        stream = _TextStream(self.decode, stop, on_token)
        generated: list[int] = []
        reason: StopReason = "length"
        first = 0.0
        reused = self._use_prefix(ids, prefix_cache, depth=2)
        if not reused:
            reused = self._implicit_reuse(ids)
        llm.set_seed(seed if seed is not None else self._llama_cpp.LLAMA_DEFAULT_SEED)
        eog = self._eog
        if limit > 0:
            tokens = llm.generate(
                ids,
                top_k=0,
                top_p=top_p,
                min_p=0.0,
                typical_p=1.0,
                temp=temperature,
                repeat_penalty=1.0,
                reset=True,
            )
            try:
                for token in tokens:
                    tok = int(token)
                    if not generated:
                        first = time.perf_counter() - started
                    if tok in eog:
                        reason = "eos"
                        break
                    generated.append(tok)
                    if stream.active and stream.push(generated):
                        reason = "stop"
                        break
                    if len(generated) >= limit:
                        break
            finally:
                tokens.close()
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

    def _implicit_reuse(self, ids: list[int]) -> int:
        """Prompt tokens llama-cpp-python will keep from the previous call's KV cache."""
        llm = self._require()
        held = int(llm.n_tokens)
        if held == 0:
            return 0
        common = 0
        for a, b in zip(llm.input_ids[:held].tolist(), ids, strict=False):
            if a != b:
                break
            common += 1
        return common - 1 if common == len(ids) else common

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
        """Generate for several prompts one after another (one llama.cpp sequence per model)."""
        return [
            self.generate(
                p,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                top_p=top_p,
                seed=seed,
                stop=stop,
            )
            for p in prompts
        ]

    # ------------------------------------------------------------------ scoring

    def _sync(self, ids: list[int]) -> None:
        """Make the context hold exactly ``ids`` with fresh logits for the last one.

        Keeps the longest common prefix already in the KV cache (at most ``len(ids) - 1``
        tokens, so at least one token is evaluated and its logits are current).
        """
        llm = self._require()
        if len(ids) > self.context_length:
            raise ContextLengthError(
                f"{len(ids)} tokens do not fit the {self.context_length}-token context"
            )
        held = int(llm.n_tokens)
        keep = 0
        if held and not (getattr(llm, "_is_recurrent", False) or getattr(llm, "_is_hybrid", False)):
            for a, b in zip(llm.input_ids[:held].tolist(), ids, strict=False):
                if a != b:
                    break
                keep += 1
            keep = min(keep, len(ids) - 1)
        if keep == 0:
            llm.reset()
        else:
            llm.n_tokens = keep  # eval() drops the KV cells from here on
        llm.eval(ids[keep:])

    def _last_logits(self) -> np.ndarray:
        import numpy as np

        ptr = self._llama_cpp.llama_get_logits_ith(self._require().ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self._n_vocab,)).astype(np.float32, copy=True)

    @staticmethod
    def _log_softmax(logits: np.ndarray) -> np.ndarray:
        import numpy as np

        shifted = logits - np.max(logits, axis=-1, keepdims=True)
        return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))

    def next_token_logits(
        self, ids: list[int], cache: LlamaPrefixState | None = None
    ) -> np.ndarray:
        """Logits (float32 numpy ``[vocab]``) for the token after ``ids``.

        Args:
            ids: The full sequence so far.
            cache: A :class:`LlamaPrefixState` that ``ids`` starts with (restored first);
                without it the longest prefix still held in the KV cache is reused, so
                extending ``ids`` one token at a time (speculative decoding) costs one token.
        """
        if not ids:
            raise ValueError("ids is empty")
        ids = [int(t) for t in ids]
        if cache is not None and self._use_prefix(ids, cache, depth=2):
            pass
        self._sync(ids)
        return self._last_logits()

    def logprobs(self, prompt_ids: list[int], continuation_ids: list[int]) -> list[float]:
        """Log-probability of each continuation token given the prompt and the tokens before it.

        With ``logits_all=True`` the continuation is scored in one batched ``eval``; otherwise
        one token at a time (llama.cpp keeps only the last position's logits).
        """
        if not prompt_ids:
            raise ValueError("prompt_ids must contain at least one token")
        if not continuation_ids:
            return []
        prompt = [int(t) for t in prompt_ids]
        cont = [int(t) for t in continuation_ids]
        llm = self._require()
        if self.logits_all:
            full = prompt + cont[:-1]
            self._sync(full)
            start = len(prompt) - 1
            rows = llm.scores[start : start + len(cont), :]
            logp = self._log_softmax(rows.astype("float32"))
            return [float(logp[i, tok]) for i, tok in enumerate(cont)]
        self._sync(prompt)
        out: list[float] = []
        for i, tok in enumerate(cont):
            out.append(float(self._log_softmax(self._last_logits())[tok]))
            if i < len(cont) - 1:
                llm.eval([tok])
        return out

    def next_token_logprobs(
        self, prompts: Sequence[list[int]], candidate_ids: Sequence[int], *, batch_size: int = 8
    ) -> list[list[float]]:
        """Next-token log-probabilities of ``candidate_ids`` after each prompt.

        Prompts run one after another (``batch_size`` is accepted for interface parity); a
        prefix shared with the previous prompt (the scorer's system prompt) is not recomputed.
        """
        cands = [int(c) for c in candidate_ids]
        results: list[list[float]] = []
        for prompt in prompts:
            if not prompt:
                raise ValueError("empty prompt")
            self._sync([int(t) for t in prompt])
            logp = self._log_softmax(self._last_logits())
            results.append([float(logp[c]) for c in cands])
        return results

    def __repr__(self) -> str:
        ctx = self.context_length if self.llm is not None else "closed"
        return f"LlamaCppLM(name={self.name!r}, path={str(self.model_path)!r}, n_ctx={ctx})"
