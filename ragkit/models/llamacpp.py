"""Causal LM on llama.cpp (llama-cpp-python): GGUF speed on a CPU behind ragkit's model protocol.

transformers dequantizes GGUF weights to fp32 and runs the 1.5B Qwen reader at ~1.5 tok/s on
2 cores; llama.cpp runs the quantized weights directly at ~10x that. :class:`LlamaCppLM`
implements the token protocol of :mod:`ragkit.models.driver` (``eval_last``: ``Llama.eval``;
``eval_tokens`` and ``truncate`` through :mod:`ragkit.models.llamacpp_adapter`), so the same
driver as :class:`ragkit.models.CausalLM` gives it streaming text deltas, stop strings, greedy or
seeded sampling, the GGUF's own chat template and prefix KV state reuse (``Llama.load_state``,
persisted with a checked manifest); algorithms switch backends by configuration.

``llama_cpp`` is imported only inside functions: it is an optional extra
(``pip install 'ragkit[llamacpp]'``) and ``import ragkit`` must not need it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragkit.atomic import file_sha256, ids_sha256
from ragkit.models.artifact import read_verified, write_verified
from ragkit.models.base import ChatMessageDict
from ragkit.models.driver import DecoderLM, NumpySampler, PrefixState, Sampler
from ragkit.models.errors import ContextLengthError, ModelLoadError, PrefixCacheError
from ragkit.models.llamacpp_adapter import LlamaAdapter
from ragkit.models.registry import DEFAULT_CAUSAL_MODEL, ResolvedModel, resolve_model

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

LLAMACPP_INSTALL_HINT = "pip install 'ragkit[llamacpp]'"
LLAMA_PREFIX_FORMAT_VERSION = 1
_STATE = "state.bin"


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
class LlamaPrefixState(PrefixState):
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

    state: bytes
    model_id: str
    model_fingerprint: str
    n_ctx: int

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
        model.check_prefix_owner(self)
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
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        return write_verified(directory, {_STATE: self.state}, manifest)

    @classmethod
    def load(cls, directory: str | Path, model: LlamaCppLM) -> LlamaPrefixState:
        """Load a saved prefix state for ``model``, verifying manifest, checksums and owner.

        Raises:
            PrefixCacheError: Missing or corrupt files, another format or llama-cpp-python
                version, a different model file (sha256/size), or a prefix longer than the
                model's context.
        """
        root = Path(directory)
        rebuild = "rebuild it with this model's prefill() and save()"
        manifest = read_verified(
            root,
            what="prefix state",
            format_version=LLAMA_PREFIX_FORMAT_VERSION,
            error=PrefixCacheError,
            rebuild=rebuild,
            expect={"backend": "llama.cpp"},
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
        return cls(
            token_ids=[int(t) for t in token_ids],
            state=(root / _STATE).read_bytes(),
            model_id=str(manifest.get("model_id")),
            model_fingerprint=model.fingerprint,
            n_ctx=int(manifest.get("n_ctx") or model.context_length),
        )


class LlamaCppLM(DecoderLM):
    """A GGUF causal LM on llama.cpp implementing :class:`ragkit.models.LanguageModel`.

    Load with :meth:`load`. One model holds one llama.cpp context (one sequence): calls are
    sequential, and ``generate_batch`` loops. Between calls llama-cpp-python keeps the KV cache
    and reuses the longest common token prefix automatically (a shared system prompt or
    document is not recomputed); :meth:`prefill` + ``prefix_cache=`` makes that reuse explicit,
    exact and persistable.

    Not thread-safe: share one instance per thread, or guard it with a lock.
    """

    implicit_prefix_reuse = True

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
        spec: ResolvedModel | None = None,
        logits_all: bool = False,
        reuse_prefix: bool = True,
    ) -> None:
        """Wrap an already-constructed ``llama_cpp.Llama`` (use :meth:`load` normally)."""
        llama_cpp = import_llama_cpp()
        # False recomputes every prompt from scratch (see load's reuse_prefix)
        self.implicit_prefix_reuse = bool(reuse_prefix)  # type: ignore[misc]
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
        self._adapter = LlamaAdapter(llama_cpp, llm)
        self._n_vocab = self._adapter.n_vocab
        self._pieces: dict[int, bytes] = {}
        self._eog = self._adapter.eog_tokens()
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
        reuse_prefix: bool = True,
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
            logits_all: Make ``Llama.eval`` keep logits of every position (``n_ctx x vocab``
                floats). ragkit does not need it: :meth:`eval_tokens` and :meth:`logprobs`
                decode their own batches with per-position logits.
            seed: Default sampling seed.
            verbose: Let llama.cpp log to stderr.
            reuse_prefix: Keep the KV cache between calls and reuse the longest token prefix
                the next prompt shares with it (system prompt, fixed instruction); False
                empties it before every call, so an answer never depends on the previous
                call's prompt (where the prompt is split into batches), at the cost of
                recomputing the shared part.
            **llama_kwargs: Passed to ``llama_cpp.Llama`` (e.g. ``flash_attn``, ``n_ubatch``,
                ``n_threads_batch``, ``type_k``); they win over the settings above.

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
        return cls(
            llm,
            name=name,
            model_path=spec.path,
            spec=spec,
            logits_all=logits_all,
            reuse_prefix=reuse_prefix,
        )

    def _require(self) -> Llama:
        if self.llm is None:
            raise ModelLoadError(f"model {self.name!r} was closed")
        return self.llm

    def close(self) -> None:
        """Free the llama.cpp model and context now (instead of at garbage collection)."""
        if self.llm is not None:
            self._adapter.close()
            self.llm.close()
            self.llm = None

    @property
    def model_sha256(self) -> str:
        """sha256 of the GGUF file (computed once per model instance; for prefix-state manifests)."""
        if self._model_sha256 is None:
            self._model_sha256 = file_sha256(self.model_path)
        return self._model_sha256

    @property
    def train_context_length(self) -> int:
        """The context the model was trained with (``n_ctx`` may be set lower to save memory)."""
        self._require()
        return self._adapter.n_ctx_train()

    @property
    def context_length(self) -> int:
        """Maximum prompt + completion tokens: the allocated ``n_ctx``."""
        return int(self._require().n_ctx())

    @property
    def vocab_size(self) -> int:
        """Width of a logits row (``llama_n_vocab``; speculative decoding checks it)."""
        return self._n_vocab

    @property
    def n_threads(self) -> int:
        """Decoding threads in use."""
        return int(self._require().context_params.n_threads)

    @property
    def latency_settings(self) -> dict[str, Any]:
        """The llama.cpp context settings meant to change speed, as llama.cpp holds them.

        ``n_ubatch`` is what llama-cpp-python made of the request (it caps it at ``n_batch``);
        benchmarks and docs quote these rather than what was asked for. They are not meant to
        change answers, but flash attention and where a prompt is split into batches change the
        order of floating-point sums, which can flip a greedy near-tie.
        """
        params = self._require().context_params
        return {
            "n_ctx": int(params.n_ctx),
            "n_threads": int(params.n_threads),
            "n_threads_batch": int(params.n_threads_batch),
            "n_batch": int(params.n_batch),
            "n_ubatch": int(params.n_ubatch),
            "flash_attn": int(params.flash_attn_type) == 1,
            "reuse_prefix": bool(self.implicit_prefix_reuse),
        }

    @property
    def eos_token_ids(self) -> frozenset[int]:
        """End-of-generation tokens (EOS, ``<|im_end|>``, ``<|endoftext|>``...)."""
        return self._eog

    # ------------------------------------------------------------------ tokens

    def _piece(self, token: int) -> bytes:
        """Bytes of one token with special tokens rendered empty (memoized: vocab is static)."""
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self._adapter.piece(token)
        return piece

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; no BOS added, special-token strings parsed (like transformers)."""
        if not text:
            return []
        return self._require().tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def decode(self, token_ids: Sequence[int]) -> str:
        """Text of ``token_ids`` without special tokens; prefix-stable for streaming."""
        return b"".join(self._piece(int(t)) for t in token_ids).decode("utf-8", errors="replace")

    def _render_chat(self, messages: list[ChatMessageDict]) -> str | None:
        """The chat prompt rendered with the GGUF's own template (``tokenizer.chat_template``)."""
        if self._formatter is None:
            llm = self._require()
            template = llm.metadata.get("tokenizer.chat_template")
            if not template:
                self._formatter = False
            else:
                from llama_cpp.llama_chat_format import Jinja2ChatFormatter

                text = self._adapter.token_text
                self._formatter = Jinja2ChatFormatter(
                    template=template,
                    eos_token=text(llm.token_eos()),
                    bos_token=text(llm.token_bos()),
                    add_generation_prompt=True,
                )
        if not self._formatter:
            return None
        return self._formatter(messages=[dict(m) for m in messages]).prompt

    # ------------------------------------------------------------------ token protocol

    @property
    def kv_tokens(self) -> list[int]:
        """The tokens llama.cpp's KV cache holds (kept between calls and reused)."""
        self._require()
        return self._adapter.tokens()

    @property
    def kv_length(self) -> int:
        """How many tokens the KV cache holds."""
        self._require()
        return self._adapter.n_tokens

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` cached tokens (``llama_memory_seq_rm``); 0 empties the cache."""
        self._require()
        self._adapter.truncate(n)

    def eval_last(self, ids: Sequence[int]) -> np.ndarray:
        """Append ``ids`` (``Llama.eval``); float32 logits ``[vocab]`` of the last position."""
        self._require()
        return self._adapter.eval_last(ids)

    def eval_tokens(self, ids: Sequence[int]) -> np.ndarray:
        """Append ``ids``; float32 logits ``[len(ids), vocab]`` of every new position."""
        self._require()
        if self.kv_length + len(ids) > self.context_length:
            raise ContextLengthError(
                f"{self.kv_length + len(ids)} tokens do not fit the {self.context_length}-token "
                f"context; {self._context_hint}"
            )
        return self._adapter.eval_tokens(ids)

    def make_sampler(self, temperature: float, top_p: float, seed: int | None) -> Sampler:
        """Greedy ``argmax`` or seeded temperature/top-p sampling over the logits."""
        return NumpySampler(temperature, top_p, seed)

    def check_prefix_owner(self, prefix: LlamaPrefixState) -> None:
        """Refuse a prefix state computed by another model file."""
        if prefix.model_fingerprint != self.fingerprint:
            raise PrefixCacheError(
                f"prefix state was built by model {prefix.model_id!r}, not {self.name!r} "
                f"({self.model_path}); rebuild it with this model's prefill()"
            )

    def _load_prefix(self, prefix: LlamaPrefixState, n: int) -> None:
        """Restore the state (``Llama.load_state``), then drop tokens past ``n``."""
        self._require()
        if len(prefix) >= self.context_length:
            raise PrefixCacheError(
                f"prefix state holds {len(prefix)} tokens; the context holds {self.context_length}"
            )
        try:
            self._adapter.load_state(prefix.token_ids, prefix.state)
        except Exception as exc:
            self._require().reset()
            raise PrefixCacheError(f"llama.cpp refused the prefix state: {exc}") from exc
        self.truncate(n)

    def prefill(self, prefix_ids: list[int]) -> LlamaPrefixState:
        """Evaluate a prompt prefix (e.g. system prompt + document) and snapshot the KV state.

        Prompts that start with ``prefix_ids`` then skip that part of the prefill when passed
        ``prefix_cache=``; :meth:`LlamaPrefixState.save` persists it.
        """
        if not prefix_ids:
            raise ValueError("prefix_ids is empty")
        if len(prefix_ids) >= self.context_length:
            raise ContextLengthError(
                f"prefix has {len(prefix_ids)} tokens; the context holds {self.context_length}"
            )
        self.reset()
        self.eval_last(list(prefix_ids))
        return LlamaPrefixState(
            token_ids=[int(t) for t in prefix_ids],
            state=self._adapter.state_bytes(),
            model_id=self.name,
            model_fingerprint=self.fingerprint,
            n_ctx=self.context_length,
        )

    def library_generate(self, ids: list[int], max_new_tokens: int) -> list[int]:
        """Greedy token ids from llama-cpp-python's own ``Llama.generate`` (EOG dropped).

        The baseline the driver must match token for token (tests, ``ragkit bench``). Starts
        from an empty KV cache.
        """
        llm = self._require()
        llm.reset()
        out: list[int] = []
        tokens = llm.generate(
            ids, top_k=0, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True
        )
        try:
            for token in tokens:
                if int(token) in self._eog or len(out) >= max_new_tokens:
                    break
                out.append(int(token))
        finally:
            tokens.close()
        return out

    # ------------------------------------------------------------------ scoring

    @staticmethod
    def _log_softmax(logits: np.ndarray) -> np.ndarray:
        import numpy as np

        shifted = logits - np.max(logits, axis=-1, keepdims=True)
        return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))

    def logprobs(self, prompt_ids: list[int], continuation_ids: list[int]) -> list[float]:
        """Log-probability of each continuation token given the prompt and the tokens before it.

        One batched decode of the continuation (logits of every position), after the prompt
        (whose prefix still in the KV cache is reused).
        """
        if not prompt_ids:
            raise ValueError("prompt_ids must contain at least one token")
        if not continuation_ids:
            return []
        import numpy as np

        prompt = [int(t) for t in prompt_ids]
        cont = [int(t) for t in continuation_ids]
        first = self.next_token_logits(prompt)
        rows = [first[None, :]]
        if len(cont) > 1:
            rows.append(self.eval_tokens(cont[:-1]))
        logp = self._log_softmax(np.concatenate(rows).astype("float32"))
        return [float(logp[i, tok]) for i, tok in enumerate(cont)]

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
            logp = self._log_softmax(self.next_token_logits(list(prompt)))
            results.append([float(logp[c]) for c in cands])
        return results

    def __repr__(self) -> str:
        ctx = self.context_length if self.llm is not None else "closed"
        return f"LlamaCppLM(name={self.name!r}, path={str(self.model_path)!r}, n_ctx={ctx})"
