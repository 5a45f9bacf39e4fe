"""Build hook: ship the top-level pipelines/, indexers/ and configs/ inside the wheel.

The product layout keeps these folders at the repository root, outside the ``ragkit`` package,
so package data cannot name them. ``build_py`` copies their YAML files into the built package as
``ragkit/data/<folder>/``, where ``ragkit.resources`` finds them with ``importlib.resources``.
Editable installs skip the copy: they read the checkout's folders directly. Everything else about
the build is in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = ("pipelines", "indexers", "configs")


class BuildPyWithShippedYaml(build_py):
    """``build_py`` plus the top-level YAML folders copied into ``ragkit/data/``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for folder in SHIPPED:
            files = sorted((ROOT / folder).glob("*.yaml"))
            if not files:
                raise SystemExit(f"setup.py: no {folder}/*.yaml to ship; is the checkout complete?")
            dest = Path(self.build_lib) / "ragkit" / "data" / folder
            self.mkpath(str(dest))
            for src in files:
                self.copy_file(str(src), str(dest / src.name))


setup(cmdclass={"build_py": BuildPyWithShippedYaml})
