"""``ModelSpec``: which causal LM a component loads and how, in one typed YAML mapping.

Every component that loads a causal LM itself (the speculative generator, the RAPID reader, the
MemoRAG memory) takes its model as a ``ModelSpec`` instead of repeating ``model``, ``backend``,
``device``, ``n_ctx``... as flat parameters. A component has its own defaults (the RAPID reader
defaults to llama.cpp with a 16k context), so :func:`resolve_spec` lays the keys a user gave over
the component's default spec: ``target: {name: qwen2.5-coder-1.5b-instruct}`` keeps the rest.

No torch here: the spec only names and checks; :meth:`ModelSpec.load` imports the backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from ragkit.errors import InvalidParameter, clip
from ragkit.models.registry import DEFAULT_CAUSAL_MODEL
from ragkit.settings import Settings, coerce

if TYPE_CHECKING:
    from ragkit.models.base import LanguageModel

__all__ = ["Backend", "ModelSpec", "resolve_spec"]

Backend = Literal["transformers", "llama.cpp"]
_BACKEND_ALIASES = {"llamacpp": "llama.cpp", "llama_cpp": "llama.cpp"}


class ModelSpec(Settings):
    """A causal LM and how to load it.

    A plain string is shorthand for ``{name: STRING}``.

    Attributes:
        name: Packaged name, hub id, local directory or ``.gguf`` file (default: the
            registry's packaged default, :data:`ragkit.models.registry.DEFAULT_CAUSAL_MODEL`).
        backend: ``transformers`` or ``llama.cpp`` (``llamacpp`` is read as ``llama.cpp``).
        device: transformers device: ``auto``, ``cpu`` or ``cuda``.
        n_ctx: llama.cpp context to allocate (bounds what the model reads).
        n_threads: llama.cpp threads (``None``: llama.cpp's choice).
        dtype: transformers dtype: ``auto``, ``float32``, ``bfloat16`` or ``float16``.
    """

    name: str = Field(default=DEFAULT_CAUSAL_MODEL, min_length=1)
    backend: Backend = "transformers"
    device: str = "auto"
    n_ctx: int = Field(default=8192, ge=256)
    n_threads: int | None = Field(default=None, ge=1)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        return value

    @field_validator("backend", mode="before")
    @classmethod
    def _alias(cls, value: Any) -> Any:
        return _BACKEND_ALIASES.get(value, value) if isinstance(value, str) else value

    def load(self, **transformers_options: Any) -> LanguageModel:
        """Load the model on its backend (seconds to minutes; call it from ``warm_up``).

        Args:
            **transformers_options: Extra ``CausalLM.load`` keywords (``kv_cache``,
                ``compile_step``); ignored by llama.cpp.
        """
        if self.backend == "llama.cpp":
            from ragkit.models.llamacpp import LlamaCppLM

            return LlamaCppLM.load(self.name, n_ctx=self.n_ctx, n_threads=self.n_threads)
        from ragkit.models.causal_lm import CausalLM

        return CausalLM.load(self.name, self.device, self.dtype, **transformers_options)


def resolve_spec(
    value: ModelSpec | Mapping[str, Any] | str | None, default: ModelSpec, parameter: str
) -> ModelSpec:
    """The keys the user gave (a spec, a mapping or a name) laid over a component's default.

    Args:
        value: What the user passed; ``None`` gives ``default``.
        default: The component's own default spec.
        parameter: The init parameter's name, for errors (``target``).

    Raises:
        InvalidParameter: Naming the bad key (``target.n_ctx``).
    """
    if value is None:
        return default
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, ModelSpec | Mapping):
        raise InvalidParameter(
            parameter, f"expected a model name or a mapping (name, backend, ...), got {clip(value)}"
        )
    given = coerce(ModelSpec, value, parameter)
    return default.model_copy(update={k: getattr(given, k) for k in given.model_fields_set})
