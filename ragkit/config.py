"""Typed configuration: store and indexing profiles read from YAML with precise errors.

Profiles live in ``configs/*.yaml``. Every model here forbids unknown keys, so a typo in a
profile is reported with its YAML path instead of being silently ignored.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from ragkit.errors import ConfigError, clip  # ConfigError stays importable from here
from ragkit.terminal import printable

DEFAULT_STORE_DIR = ".ragkit"
DEFAULT_COLLECTION = "ragkit"
# pipelines and profiles are a few KB; a cap keeps a wrong or hostile file from taking minutes and
# hundreds of MB to parse and validate (a 20 MB pipeline took 28 s and 546 MB before the cap)
MAX_YAML_BYTES = 1024 * 1024
# aliases expand after parsing: nine nested `[*a, *a, ...]` lists in a 434-byte file stand for
# 9**9 strings, which took 8.5 GB to validate; a real pipeline or profile has a few hundred nodes
MAX_YAML_NODES = 50_000
# ``scheme://`` at the start of a --store value: a URL, never a directory name (RFC 3986 scheme)
_URL_SHAPE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
SERVER_SCHEMES = ("http", "https")


def normalize_server_url(url: str) -> str:
    """A Qdrant server URL with its scheme checked and lower-cased (schemes ignore case).

    Raises:
        ValueError: the URL is not ``http(s)://host...``; the message never shows credentials.
    """
    from ragkit.redact import redact_url

    match = _URL_SHAPE.match(url)
    scheme = url[: match.end() - 3].lower() if match else ""
    if scheme not in SERVER_SCHEMES:
        raise ValueError(
            f"{redact_url(url)!r} is not a Qdrant server URL; use http://HOST:PORT or "
            "https://HOST:PORT"
        )
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port  # .port raises on a port that is not a number
    except ValueError:
        raise ValueError(f"{redact_url(url)!r} is not a valid URL (bad host or port)") from None
    if not host:
        raise ValueError(f"{redact_url(url)!r} has no host; use http://HOST:PORT")
    return scheme + url[len(scheme) :]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def check_expandable(path: str) -> str:
    """``path`` unchanged, after checking that a leading ``~user`` names a real user.

    ``Path.expanduser`` raises ``RuntimeError`` for ``~nosuchuser``, deep inside whichever
    command first touches the path; this turns it into a validation error up front.
    """
    try:
        Path(path).expanduser()
    except RuntimeError:
        user = path.split("/", 1)[0]
        raise ValueError(f"cannot expand {user!r}: no such user's home directory") from None
    return path


class EmbeddedStore(_Strict):
    """An on-disk store for one process, no server: Qdrant local mode or Qdrant Edge."""

    kind: Literal["embedded"] = "embedded"
    path: Annotated[str, AfterValidator(check_expandable)] = DEFAULT_STORE_DIR
    collection: str = DEFAULT_COLLECTION
    engine: Literal["local", "edge"] | None = Field(
        default=None,
        description="'local': Qdrant local mode (exact, Python); 'edge': Qdrant Edge (HNSW). "
        "None: the engine an existing store was built with, else edge.",
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
    url: Annotated[str, AfterValidator(lambda url: normalize_server_url(url))]
    api_key_env: str | None = Field(
        default="QDRANT_API_KEY", description="Environment variable holding the API key."
    )
    collection: str = DEFAULT_COLLECTION
    shard_number: int | None = None
    replication_factor: int | None = None
    write_consistency_factor: int | None = None
    prefer_grpc: bool = False
    timeout: int | None = None
    state_dir: Annotated[str, AfterValidator(check_expandable)] = Field(
        default=DEFAULT_STORE_DIR,
        description="Local directory for the indexing manifest of this server collection.",
    )


StoreConfig = Annotated[EmbeddedStore | MemoryStore | ServerStore, Field(discriminator="kind")]


class EmbeddingConfig(_Strict):
    """Which embedding model indexes and queries use; both must agree, so a store records it.

    ``model`` left out (the shipped profiles leave it out) means: an existing store's recorded
    model, and for a new store the default, int8 MiniLM on a CPU with onnxruntime installed and
    MiniLM on torch elsewhere (:func:`ragkit.defaults.default_embedding_model`). Naming a
    model pins it: a store built with another one is refused rather than mixed.
    """

    model: str | None = None
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
    # the file this profile was read from, so an error in one of its values names that file
    _source: str | None = PrivateAttr(default=None)

    @property
    def source(self) -> str | None:
        """The YAML file this profile was loaded from (None when built in code)."""
        return self._source

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
        # (the origin of each of these keys in the profile: indexing_override_origins)
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

    def indexing_override_origins(self) -> dict[str, str]:
        """Where each key of :meth:`indexing_overrides` is set in the profile, by pipeline path.

        ``split.split_overlap`` lands on ``components.splitter.init_parameters.split_overlap``;
        an error there must name the profile key, not the indexer file.
        """
        origins: dict[str, str] = {}
        pairs = [
            ("splitter", "split", self.split.model_fields_set, {}),
            (
                "loader",
                "indexing",
                self.indexing.model_fields_set & {"max_file_mb", "jsonl_text_field"},
                {"jsonl_text_field": "text_field"},
            ),
            ("embedder", "embedding", self.embedding.model_fields_set, {}),
        ]
        for component, section, keys, renamed in pairs:
            for key in keys:
                param = renamed.get(key, key)
                origins[f"components.{component}.init_parameters.{param}"] = f"{section}.{key}"
        if "model" in self.embedding.model_fields_set:
            origins["components.writer.init_parameters.embedding_model"] = "embedding.model"
        return origins


def format_validation_error(
    source: str, err: ValidationError, prefix: str = "", data: Any = None
) -> str:
    """Render the first pydantic error as ``file: yaml.path: message`` on one line.

    ``data`` (the parsed YAML) lets the path drop what pydantic adds that is not in the file,
    such as a union's tag (``store.server.url`` is ``store.url`` in the YAML). An echoed value
    is cut short, and a URL in it loses its credentials.
    """
    from ragkit.redact import redact_url

    first = err.errors()[0]
    loc = ".".join(_yaml_loc([p for p in first["loc"] if not str(p).startswith("function-")], data))
    if prefix:
        loc = f"{prefix}.{loc}" if loc else prefix
    got = first.get("input")
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key (remove it or check the spelling)"
    elif first["type"] == "value_error":
        msg = msg.removeprefix("Value error, ")  # ragkit's own validators say what they got
    elif got is not None and not isinstance(got, dict | list):
        if isinstance(got, str) and _URL_SHAPE.match(got):
            got = redact_url(got)
        msg = f"{msg}, got {clip(got)}"
    return f"{source}: {loc}: {msg}" if loc else f"{source}: {msg}"


def _yaml_loc(loc: list[Any], data: Any) -> list[str]:
    """The parts of a pydantic error location that are keys in the YAML (``data``)."""
    out: list[str] = []
    cur = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(cur, dict) and part not in cur and not last and loc[i + 1] in cur:
            continue  # a tag pydantic put in the path (a discriminated union's variant)
        out.append(str(part))
        if isinstance(cur, dict):
            cur = cur.get(part)
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            cur = cur[part]
        else:
            cur = None
    return out


def _expanded_nodes(root: yaml.Node, budget: int) -> int:
    """How many nodes ``root`` stands for once every alias is expanded, counting up to ``budget``.

    An alias is the same node object reached twice, so each node's expanded size is computed
    once (bottom-up) and shared; a node that contains itself expands without end.
    """
    sizes: dict[int, int] = {}
    # iterative post-order walk: a deep file must not exhaust Python's recursion limit
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    on_path: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            total = 1
            for child in _children(node):
                total += sizes[id(child)]
                if total > budget:
                    break
            sizes[key] = min(total, budget + 1)
            continue
        if key in sizes:
            continue
        if key in on_path:  # a recursive alias (``&a [*a]``): infinitely large once expanded
            return budget + 1
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _load_bounded(text: str, path: Path) -> Any:
    """``yaml.safe_load`` that refuses documents whose aliases expand past :data:`MAX_YAML_NODES`."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_nodes(node, MAX_YAML_NODES) > MAX_YAML_NODES:
            raise ConfigError(
                f"{path}: YAML aliases expand to more than {MAX_YAML_NODES:,} values (an alias "
                "bomb, or a file that is not a pipeline or profile); write the values out or "
                "use fewer nested aliases"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


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
        return _load_bounded(raw.decode("utf-8"), path)
    except RecursionError:
        raise ConfigError(f"{path}: YAML nested too deeply; is it the right file?") from None
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
PROFILE_POINTER = "same_as"


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

    def locate(name: str | Path) -> Path:
        path = Path(name)
        if path.suffix:
            return path
        try:
            return resolve_yaml(path, "configs")
        except ResourceNotFoundError:
            known = ", ".join(p.stem for p in shipped_files("configs"))
            raise ConfigError(f"unknown profile {str(name)!r}; known profiles: {known}") from None

    path = locate(name_or_path)
    seen = [path.resolve()]
    data = read_yaml(path) or {}
    # A profile that is only `same_as: NAME` points at another profile (configs/default.yaml ->
    # cpu-quality), so the default is not a copy that can drift from the profile it names.
    while isinstance(data, dict) and set(data) == {PROFILE_POINTER}:
        target = data[PROFILE_POINTER]
        if not isinstance(target, str) or not target.strip():
            raise ConfigError(f"{path}: {PROFILE_POINTER} must name a profile, got {clip(target)}")
        pointer, path = path, locate(target.strip())
        if path.resolve() in seen:
            raise ConfigError(f"{pointer}: {PROFILE_POINTER}: {target} points back at itself")
        seen.append(path.resolve())
        data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(path), exc, data=data)) from None
    profile._source = str(path)
    return profile


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
    """How errors about a profile's values name it: ``profile FILE`` (or ``profile NAME``)."""
    if isinstance(profile, Profile):
        return f"profile {profile.source}" if profile.source else "profile"
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
    if "://" in location:  # a URL, whatever its case or scheme: never a directory name
        try:
            url = normalize_server_url(location)
        except ValueError as exc:
            raise ConfigError(
                f"--store: {exc} (a directory name cannot contain '://'; a Qdrant server is "
                "reached over http or https)"
            ) from None
        if isinstance(profile.store, ServerStore):
            return profile.store.model_copy(update={"url": url})
        return ServerStore(url=url, collection=collection)
    try:
        check_expandable(location)
    except ValueError as exc:
        raise ConfigError(f"--store: {printable(str(exc))}") from None
    if isinstance(profile.store, EmbeddedStore):  # keeps the profile's engine settings
        return profile.store.model_copy(update={"path": location})
    return EmbeddedStore(path=location, collection=collection)
