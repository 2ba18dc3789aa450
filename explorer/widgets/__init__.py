"""ipywidgets apps (compose io / models / viz; no math here)."""
