"""Old module paths that moved in the 0.2 restructuring keep working, with a :class:`DeprecationWarning`.

``import explorer.training.scenes`` gives a thin module that forwards every attribute to
:mod:`explorer.data.scenes`.  New code imports the new path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings

#: old dotted path → new dotted path
MOVED = {
    "explorer.samples": "explorer.data.samples",
    "explorer.training.photos": "explorer.data.photos",
    "explorer.training.procedural": "explorer.data.procedural",
    "explorer.training.scenes": "explorer.data.scenes",
    "explorer.training.clips": "explorer.data.clips",
    "explorer.training.rgbd": "explorer.data.rgbd",
    "explorer.training.av_clips": "explorer.data.av_clips",
    "explorer.export.files": "explorer.files",
    "explorer.export.presets": "explorer.viz.presets",
    "explorer.video_masking": "explorer.masking.video",
    "explorer.video_reconstruction": "explorer.reconstruction.video",
    "explorer.baselines": "explorer.reconstruction.baselines",
    "explorer.multimodal.modalities": "explorer.modalities",
    "explorer.multimodal.masking": "explorer.masking.budgets",
    "explorer.multimodal.model": "explorer.models.registry",  # its loader moved there, its adapter to models.multimae
    "explorer.multimodal.reconstruction": "explorer.reconstruction.multimodal",
    "explorer.multimodal.evaluate": "explorer.training.multimodal_evaluate",
    "explorer.multimodal.tasks": "explorer.training.tasks",
    "explorer.fusion.base": "explorer.models.fusion_base",
    "explorer.fusion.hf": "explorer.models.fusion_hf",
    "explorer.fusion.clip": "explorer.models.fusion_clip",
    "explorer.fusion.blip": "explorer.models.blip",
    "explorer.fusion.vilt": "explorer.models.vilt",
    "explorer.fusion.mini": "explorer.models.fusion_mini",
    "explorer.fusion.registry": "explorer.models.fusion_registry",
}


class _Forwarder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old names; each becomes a module whose attributes are read from the new one."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec):
        return types.ModuleType(spec.name)

    def exec_module(self, module):
        new = MOVED[module.__name__]
        warnings.warn(f"{module.__name__} moved to {new}; the old path will be removed in a later release.",
                      DeprecationWarning, stacklevel=2)
        target = importlib.import_module(new)
        module.__doc__ = f"Deprecated alias of :mod:`{new}`."
        module.__getattr__ = lambda name: getattr(target, name)
        module.__dir__ = lambda: dir(target)


if not any(isinstance(f, _Forwarder) for f in sys.meta_path):
    sys.meta_path.append(_Forwarder())
