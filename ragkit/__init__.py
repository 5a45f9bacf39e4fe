"""ragkit: retrieval-augmented generation toolkit built from Haystack components.

Importing ragkit does no heavy work: public names load on first access, and ragkit's modules
are added to Haystack's deserialization allowlist (through the environment variable Haystack
reads at load time, so that importing ragkit does not import Haystack and torch).
"""

from __future__ import annotations

import os

from ragkit._lazy import lazy_exports

__version__ = "0.1.0"

_ALLOWLIST_ENV = "HAYSTACK_DESERIALIZATION_ALLOWLIST"


def _register_allowlist() -> None:
    current = [p.strip() for p in os.environ.get(_ALLOWLIST_ENV, "").split(",") if p.strip()]
    if "ragkit" not in current:
        os.environ[_ALLOWLIST_ENV] = ",".join([*current, "ragkit"])


_register_allowlist()

_EXPORTS: dict[str, str] = {
    "AdaptiveNoteAnswerer": "ragkit.notes.components",
    "CausalLM": "ragkit.models.causal_lm",
    "ChunkSelector": "ragkit.selection.components",
    "ClueRetriever": "ragkit.memory.components",
    "MemoryRecall": "ragkit.memory.components",
    "ContextFitter": "ragkit.answering.components",
    "EmbeddingSimilarityScorer": "ragkit.models.components",
    "LLMRelevanceScorer": "ragkit.models.components",
    "LlamaCppChatGenerator": "ragkit.models.llamacpp_components",
    "LocalChatGenerator": "ragkit.models.components",
    "answer_question": "ragkit.answering.run",
    "ask": "ragkit.answering.ask",
    "index_files": "ragkit.indexing.run",
    "delete_files": "ragkit.indexing.run",
    "repair_store": "ragkit.indexing.run",
    "inspect_store": "ragkit.indexing.run",
    "build_store_memory": "ragkit.memory.run",
    "add_to_memory": "ragkit.memory.run",
    "store_memory_info": "ragkit.memory.run",
    "drop_store_memory": "ragkit.memory.run",
    "evaluate": "ragkit.evaluation.evaluate",
    "load_dataset": "ragkit.evaluation.datasets",
    "resolve_model": "ragkit.models.registry",
    "run_eval": "ragkit.evaluation.runner",
    "BM25Index": "ragkit.stores.bm25",
    "BM25Retriever": "ragkit.retrieval.components",
    "DenseRetriever": "ragkit.retrieval.components",
    "LinkedPassages": "ragkit.retrieval.links",
    "DocumentEmbedder": "ragkit.retrieval.embedders",
    "FileLoader": "ragkit.indexing.loaders",
    "Indexer": "ragkit.indexing.indexer",
    "PipelineError": "ragkit.pipeline",
    "Reorderer": "ragkit.ordering.components",
    "SpeculativeGenerator": "ragkit.decoding.components",
    "RapidReader": "ragkit.decoding.components",
    # the nested settings the method components take (YAML: nested mappings)
    "ModelSpec": "ragkit.models.spec",
    "MCTSSettings": "ragkit.selection.settings",
    "UtilitySettings": "ragkit.selection.settings",
    "ScorerSettings": "ragkit.selection.settings",
    "SpeculativeSettings": "ragkit.decoding.settings",
    "NgramSpec": "ragkit.decoding.settings",
    "RapidContext": "ragkit.decoding.settings",
    "MemoryOptions": "ragkit.memory.components",
    "NoteSettings": "ragkit.notes.loop",
    "Profile": "ragkit.config",
    "RagkitStore": "ragkit.stores.store",
    "StoreWriter": "ragkit.indexing.writer",
    "StoreConsumer": "ragkit.stores.components",
    "TextEmbedder": "ragkit.retrieval.embedders",
    "TextSplitter": "ragkit.indexing.splitter",
    "load_pipeline": "ragkit.pipeline",
    "load_profile": "ragkit.config",
    "open_store": "ragkit.stores.store",
    "release_store": "ragkit.stores.store",
    "validate_pipeline_file": "ragkit.pipeline",
    # what users receive or pass, and every error class (all derive from RagkitError)
    "QueryResult": "ragkit.answering.run",
    "IndexResult": "ragkit.indexing.run",
    "IndexReport": "ragkit.indexing.indexer",
    "RepairResult": "ragkit.indexing.run",
    "StoreStats": "ragkit.indexing.run",
    "MemoryAddResult": "ragkit.memory.run",
    "Dataset": "ragkit.evaluation.datasets",
    "EmbeddedStore": "ragkit.config",
    "MemoryStore": "ragkit.config",
    "ServerStore": "ragkit.config",
    "RagkitError": "ragkit.errors",
    "InvalidInputError": "ragkit.errors",
    "ConfigError": "ragkit.errors",
    "DatasetError": "ragkit.evaluation.datasets",
    "ManifestError": "ragkit.indexing.manifest",
    "LoadError": "ragkit.indexing.loaders",
    "BM25IndexError": "ragkit.stores.bm25",
    "StoreError": "ragkit.stores.store",
    "StoreInUseError": "ragkit.stores.lock",
    "EdgeFilterError": "ragkit.stores.edge",
    "CapabilityError": "ragkit.models.errors",
    "ContextLengthError": "ragkit.models.errors",
    "ModelLoadError": "ragkit.models.errors",
    "PrefixCacheError": "ragkit.models.errors",
    "UnknownModelError": "ragkit.models.errors",
    "InvalidParameter": "ragkit.errors",
    "GlobalMemoryError": "ragkit.memory.backend",
    "ResourceNotFoundError": "ragkit.resources",
    "PipelineNotFoundError": "ragkit.resources",
    "RunSettingsError": "ragkit.evaluation.evaluate",
    "MissingPartError": "ragkit.models.chunked_gguf",
    "ChecksumMismatchError": "ragkit.models.chunked_gguf",
    "LlamaCppNotInstalledError": "ragkit.models.llamacpp",
    "EmptyCorpusError": "ragkit.memory.backend",
    "RayMissingError": "ragkit.scale.cluster",
    "RayUnavailableError": "ragkit.scale.cluster",
    "NoMemoryError": "ragkit.memory.backend",
    "CorruptMemoryError": "ragkit.memory.backend",
    "MemoryMismatchError": "ragkit.memory.backend",
    "StaleMemoryError": "ragkit.memory.backend",
    "BM25BenchError": "ragkit.bench.bm25_bench",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
