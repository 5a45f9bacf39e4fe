"""Typed configuration: store and indexing profiles read from YAML with precise errors.

Profiles live in ``configs/*.yaml``. Every model here forbids unknown keys, so a typo in a
profile is reported with its YAML path instead of being silently ignored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ragkit.errors import InvalidInputError

DEFAULT_STORE_DIR = ".ragkit"
DEFAULT_COLLECTION = "ragkit"
# pipelines and profiles are a few KB; a cap keeps a wrong or hostile file from taking minutes and
# hundreds of MB to parse and validate (a 20 MB pipeline took 28 s and 546 MB before the cap)
MAX_YAML_BYTES = 1024 * 1024


class ConfigError(InvalidInputError, ValueError):
    """A configuration file or value is invalid; the message names the file and the YAML path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmbeddedStore(_Strict):
    """An on-disk store for one process, no server: Qdrant local mode or Qdrant Edge."""

    kind: Literal["embedded"] = "embedded"
    path: str = DEFAULT_STORE_DIR
    collection: str = DEFAULT_COLLECTION
    engine: Literal["local", "edge"] | None = Field(
        default=None,
        description="'local': Qdrant local mode (exact, Python); 'edge': Qdrant Edge (HNSW, "
        "needs the edge extra). None: the engine an existing store was built with, else local.",
    )
    hnsw_ef: int | None = Field(
        default=None, ge=1, description="Edge only: HNSW beam width per query (None: 512)."
    )


class MemoryStore(_Strict):
    """Qdrant ``:memory:`` mode: nothing persists; for tests and throwaway experiments."""

    kind: Literal["memory"] = "memory"
    collection: str = DEFAULT_COLLECTION
    bm25: Literal["local", "sparse"] = Field(
        default="local",
        description="'sparse' runs BM25 on Qdrant sparse vectors, exactly as server stores do.",
    )


class ServerStore(_Strict):
    """A Qdrant server or cluster reached by URL; BM25 runs on Qdrant sparse vectors with IDF."""

    kind: Literal["server"] = "server"
    url: str
    api_key_env: str | None = Field(
        default="QDRANT_API_KEY", description="Environment variable holding the API key."
    )
    collection: str = DEFAULT_COLLECTION
    shard_number: int | None = None
    replication_factor: int | None = None
    write_consistency_factor: int | None = None
    prefer_grpc: bool = False
    timeout: int | None = None
    state_dir: str = Field(
        default=DEFAULT_STORE_DIR,
        description="Local directory for the indexing manifest of this server collection.",
    )


StoreConfig = Annotated[EmbeddedStore | MemoryStore | ServerStore, Field(discriminator="kind")]


class EmbeddingConfig(_Strict):
    """Which embedding model indexes and queries use; both must agree, so it is recorded."""

    model: str = "minilm"
    batch_size: int = Field(default=64, ge=1)
    device: str = "auto"


class SplitConfig(_Strict):
    """How files are cut into chunks."""

    split_by: Literal["word", "sentence", "token"] = "sentence"
    split_length: int = Field(default=120, ge=1, description="Chunk size in split_by units.")
    split_overlap: int = Field(default=20, ge=0)


class IndexingConfig(_Strict):
    """Indexing knobs that are not part of the pipeline graph."""

    max_file_mb: float = Field(default=20.0, gt=0, description="Larger files are skipped.")
    batch_bytes: int = Field(
        default=400_000,
        ge=1,
        description="File bytes per durable write batch (less is redone after a crash).",
    )
    jsonl_text_field: str = "text"


class ComponentOverride(_Strict):
    """Replace (with ``type``) or adjust (``init_parameters`` only) a named pipeline component."""

    type: str | None = None
    init_parameters: dict[str, Any] = Field(default_factory=dict)


class Profile(_Strict):
    """A named bundle of store, embedding and indexing settings (``configs/<name>.yaml``)."""

    store: StoreConfig = Field(default_factory=EmbeddedStore)
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    indexing: IndexingConfig = Field(default_factory=IndexingConfig)
    components: dict[str, ComponentOverride] = Field(
        default_factory=dict,
        description="Per component name, applied to every pipeline that has a component of that name.",
    )

    def component_overrides(self) -> dict[str, dict[str, Any]]:
        """Overrides as plain dicts for :func:`ragkit.pipeline.load_pipeline`."""
        return {name: o.model_dump(exclude_none=True) for name, o in self.components.items()}

    def indexing_overrides(self) -> dict[str, dict[str, Any]]:
        """Overrides for the indexing pipeline from the keys this profile sets explicitly.

        Unset keys leave the indexer YAML's own values alone, so editing ``indexers/*.yaml``
        keeps working; ``components:`` overrides apply on top.
        """
        out: dict[str, dict[str, Any]] = {}

        def put(component: str, params: dict[str, Any]) -> None:
            if params:
                out.setdefault(component, {"init_parameters": {}})["init_parameters"].update(params)

        put("splitter", self.split.model_dump(exclude_unset=True))
        loader = self.indexing.model_dump(
            exclude_unset=True, include={"max_file_mb", "jsonl_text_field"}
        )
        if "jsonl_text_field" in loader:
            loader["text_field"] = loader.pop("jsonl_text_field")
        put("loader", loader)
        emb = self.embedding.model_dump(
            exclude_unset=True, include={"model", "batch_size", "device"}
        )
        put("embedder", emb)
        if "model" in emb:
            put("writer", {"embedding_model": emb["model"]})
        for name, override in self.component_overrides().items():
            if override.get("type"):
                out[name] = override
            else:
                put(name, override.get("init_parameters") or {})
        return out


def format_validation_error(source: str, err: ValidationError, prefix: str = "") -> str:
    """Render the first pydantic error as ``file: yaml.path: message`` on one line."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-"))
    if prefix:
        loc = f"{prefix}.{loc}" if loc else prefix
    got = first.get("input")
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key (remove it or check the spelling)"
    elif got is not None and not isinstance(got, dict | list):
        msg = f"{msg}, got {got!r}"
    return f"{source}: {loc}: {msg}" if loc else f"{source}: {msg}"


def read_yaml(path: Path) -> Any:
    """Read a YAML file, turning every failure into a one-line ConfigError naming the file."""
    if not path.exists():
        raise ConfigError(f"{path}: file not found")
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, expected a YAML file")
    try:
        with path.open("rb") as fh:  # bounded read: also safe on /dev/zero or a FIFO
            raw = fh.read(MAX_YAML_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(raw) > MAX_YAML_BYTES:
        raise ConfigError(
            f"{path}: larger than the {MAX_YAML_BYTES // 1024} KiB limit for pipeline and profile "
            "YAML; is it the right file? (keep large data in files the components read)"
        )
    try:
        return yaml.safe_load(raw.decode("utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}:{where}: malformed YAML: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None


def configs_dir() -> Path:
    """The directory of shipped profiles (the installed package's copy, else ``configs/``)."""
    from ragkit.resources import shipped_dir

    return shipped_dir("configs")


DEFAULT_PROFILE_ENV = "RAGKIT_PROFILE"


def default_profile_name() -> str:
    """The profile the CLI uses without ``--profile``: ``$RAGKIT_PROFILE``, else ``default``.

    The variable lets a test suite or a machine without the llama.cpp reader pick another
    default (the tests use ``cpu-small``) without repeating ``--profile`` on every command.
    """
    return os.environ.get(DEFAULT_PROFILE_ENV) or "default"


def load_profile(name_or_path: str | Path | None) -> Profile:
    """Load a profile by name or by file path; None gives defaults.

    A name (no suffix) is looked up as ``<cwd>/configs/<name>.yaml``, then among the shipped
    profiles; a path with a suffix is read as given.
    """
    from ragkit.resources import ResourceNotFoundError, resolve_yaml, shipped_files

    if name_or_path is None:
        return Profile()
    path = Path(name_or_path)
    if not path.suffix:
        try:
            path = resolve_yaml(path, "configs")
        except ResourceNotFoundError:
            known = ", ".join(p.stem for p in shipped_files("configs"))
            raise ConfigError(
                f"unknown profile {str(name_or_path)!r}; known profiles: {known}"
            ) from None
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(path), exc)) from None


def resolve_profile(profile: str | Path | Profile | None) -> Profile:
    """The profile a command or library call runs with: a loaded one, a name/path, or the default.

    None means :func:`default_profile_name` (``$RAGKIT_PROFILE``, else ``default``), the same
    choice the CLI makes without ``--profile``, so library calls and commands agree.

    Raises:
        ConfigError: Unknown profile name or invalid profile file (exit status 2).
    """
    if isinstance(profile, Profile):
        return profile
    return load_profile(profile if profile is not None else default_profile_name())


def profile_label(profile: str | Path | Profile | None) -> str:
    """How errors about a profile's ``components:`` name it (``profile NAME`` when named)."""
    return f"profile {profile}" if isinstance(profile, str | Path) and str(profile) else "profile"


def store_from_location(
    location: str | None, base: Profile | None = None
) -> EmbeddedStore | MemoryStore | ServerStore:
    """Turn a ``--store`` value into a store config: a directory, ``:memory:`` or a URL.

    Without a location the profile's store is used, so ``--store`` always wins over the profile.
    """
    profile = base or Profile()
    if location is None:
        return profile.store
    if not location.strip():
        raise ConfigError(
            "--store is empty; give a store directory, ':memory:' or a Qdrant URL "
            "(or leave it out to use the profile's store)"
        )
    collection = profile.store.collection
    if location == ":memory:":
        return MemoryStore(collection=collection)
    if location.startswith(("http://", "https://")):
        if isinstance(profile.store, ServerStore):
            return profile.store.model_copy(update={"url": location})
        return ServerStore(url=location, collection=collection)
    if isinstance(profile.store, EmbeddedStore):  # keeps the profile's engine settings
        return profile.store.model_copy(update={"path": location})
    return EmbeddedStore(path=location, collection=collection)
