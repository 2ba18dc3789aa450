"""explorer: look inside masked autoencoders and multimodal fusion transformers.

The public API, short on purpose::

    import explorer
    model = explorer.load_model("mini-mae")                 # or "facebook/vit-mae-base", or a folder
    rec = explorer.reconstruct(model, "chelsea", ratio=0.75, seed=0, strategy="random")
    fig = explorer.viz.reconstruction_figure(rec)            # a plotly Figure
    explorer.MAEApp()                                        # the interactive widget (in Jupyter)
    maps = explorer.attention_maps(model, "coffee")          # every layer's and head's attention
    explorer.explain(model, "coffee", "relevance")           # rollout / relevance / integrated gradients
    explorer.align(explorer.load_fusion_model("mini-fusion"), "scene:10000011", "a large orange triangle")

    from explorer import export                              # paper figures: PDF/SVG/PNG + sidecars
    export.export_recipe("reconstruction", "figs/cat", model=model, inputs=["chelsea"], preset="double-column")
"""

from .version import __version__  # noqa: E402
from . import _moved  # noqa: E402,F401  (old module paths keep working, with a DeprecationWarning)

from .io import ImageLoadError, LoadedImage, load_image  # noqa: E402
from .masking import SWEEP_RATIOS, MaskError, MaskSpec, make_mask  # noqa: E402
from .models import DeviceError, ModelLoadError, list_models, load_model  # noqa: E402
from .reconstruction import (  # noqa: E402
    Reconstruction,
    ReconstructionSweep,
    SweepCache,
    reconstruct,
    reconstruct_sweep,
)
from .data.samples import SAMPLES, load_sample  # noqa: E402


def __getattr__(name):
    # Lazy: importing the compute layer must not import plotly or ipywidgets.
    if name == "viz":
        import importlib

        return importlib.import_module(".viz", __name__)
    if name == "MAEApp":
        from .widgets.mae_app import MAEApp

        return MAEApp
    if name == "AttentionApp":
        from .widgets.attention_app import AttentionApp

        return AttentionApp
    if name == "FusionApp":
        from .widgets.fusion_app import FusionApp

        return FusionApp
    if name == "VideoMAEApp":
        from .widgets.video_app import VideoMAEApp

        return VideoMAEApp
    if name == "MultiMAEApp":
        from .widgets.multimodal_app import MultiMAEApp

        return MultiMAEApp
    if name in ("attention_maps", "explain"):
        from . import attention

        return getattr(attention, name)
    if name in ("align", "load_fusion_model"):
        from . import fusion

        return getattr(fusion, name)
    if name == "UniFormerApp":
        from .widgets.uniformer_app import UniFormerApp

        return UniFormerApp
    if name == "load_uniformer_model":
        from .models import load_uniformer_model

        return load_uniformer_model
    if name in ("load_multimodal_model", "reconstruct_multimodal"):
        from . import multimodal

        return getattr(multimodal, name)
    raise AttributeError(name)


__all__ = [
    "DeviceError", "ImageLoadError", "LoadedImage", "MaskError", "MaskSpec", "ModelLoadError", "Reconstruction",
    "ReconstructionSweep", "SAMPLES", "SWEEP_RATIOS", "SweepCache", "list_models", "load_image", "load_model",
    "load_sample", "make_mask", "reconstruct", "reconstruct_sweep",
]
