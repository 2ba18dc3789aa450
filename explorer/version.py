"""The package version (one place; ``explorer.__version__`` reads it)."""

__version__ = "0.1.0"
