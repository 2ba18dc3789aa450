"""Dataset-scale analysis: one row per input × setting in a Parquet file, on Ray Data or in one process.

    from explorer import analyze
    s = analyze.run("photos/", "mini-mae", "mae-sweep", "sweep.parquet", options={"ratios": [0.5, 0.75]}, workers=2)
    s = analyze.run("photos/", "mini-mae", "heads", "heads.parquet", in_process=True)   # same stages, no Ray

    python -m explorer analyze photos/ --model mini-mae --analysis mae-sweep --out sweep.parquet --workers 2

A floor above compute (reconstruction, attention) and below export / widgets: it runs the same functions as the
interactive API and writes rows, never figures.
"""

from .analyses import ANALYSES, Analysis, masked_ssim, resolve_options, schema
from .inputs import AnalyzeError, list_inputs
from .pipeline import AnalyzeSummary, read_metadata, run

__all__ = ["ANALYSES", "Analysis", "AnalyzeError", "AnalyzeSummary", "list_inputs", "masked_ssim", "read_metadata",
           "resolve_options", "run", "schema"]
