"""ragkit.models.__all__ lists exactly what its lazy table serves, and each name resolves."""

from __future__ import annotations

import ragkit.models as models


def test_all_matches_the_lazy_table_and_resolves() -> None:
    assert models.__all__ == sorted(models._EXPORTS)
    for name in models.__all__:
        assert getattr(models, name) is not None, name
    assert "LlamaCppLM" in models.__all__ and "LlamaCppChatGenerator" in models.__all__


def test_generators_share_one_base_and_keep_their_yaml_type_paths() -> None:
    from ragkit.models.chat import ChatGeneratorBase
    from ragkit.models.components import LocalChatGenerator
    from ragkit.models.llamacpp_components import LlamaCppChatGenerator

    for cls, path in (
        (LocalChatGenerator, "ragkit.models.components.LocalChatGenerator"),
        (LlamaCppChatGenerator, "ragkit.models.llamacpp_components.LlamaCppChatGenerator"),
    ):
        assert issubclass(cls, ChatGeneratorBase)
        assert f"{cls.__module__}.{cls.__name__}" == path
        assert "run" not in cls.__dict__  # one run(), inherited
