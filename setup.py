"""Packaging glue that pyproject.toml cannot say on its own.

The shipped mini models live in the repository's top-level ``data/models/`` (the repository layout
keeps them there). A wheel carries them as package data of ``explorer._shipped``, a data-only
subpackage whose source folder *is* ``data/``: nothing is copied into ``explorer/`` and no file is
duplicated in git. ``explorer.data.shipped.data_dir()`` finds them with ``importlib.resources``.
Everything else (metadata, dependencies, version) is in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["explorer", "explorer.*"]) + ["explorer._shipped"],
    package_dir={"explorer._shipped": "data"},
    package_data={"explorer._shipped": ["models/**/*"]},
)
