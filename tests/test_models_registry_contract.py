"""The model registry's table and loaders, read against hand-written expectations of the table's rules.

``find_family``: a family claiming one of the config's architectures wins; else one claiming none; else (no
architecture named) the first claiming family with its first class; else ``(None, the names they read)``.
"""

from __future__ import annotations

import pytest

from explorer.models import registry as R


@pytest.mark.parametrize("model_type, archs, kinds, tag, cls", [
    ("vit_mae", (), R.KINDS, "mae", "ViTMAEForPreTraining"),
    ("vit", ("ViTForImageClassification",), R.KINDS, "vit", "ViTForImageClassification"),
    ("deit", (), R.KINDS, "deit", "DeiTForImageClassificationWithTeacher"),
    ("deit", ("DeiTModel",), R.KINDS, "deit", "DeiTModel"),
    ("dinov2", ("Dinov2ForImageClassification",), R.KINDS, "dinov2", "Dinov2ForImageClassification"),
    ("dinov2_with_registers", (), R.KINDS, "dinov2-registers", "Dinov2WithRegistersModel"),
    ("videomae", (), R.KINDS, "videomae", "VideoMAEModel"),
    ("videomae", ("VideoMAEForPreTraining",), R.KINDS, "videomae-pretraining", "VideoMAEForPreTraining"),
    ("videomae", ("Other", "VideoMAEForPreTraining"), R.KINDS, "videomae-pretraining", "VideoMAEForPreTraining"),
    ("clip", (), R.KINDS, "clip", "CLIPModel"),  # the image family claims no architecture: it wins for a bare config
    ("clip", (), ("fusion",), "clip-fusion", "CLIPModel"),
    ("mini_fusion", (), R.KINDS, "mini-fusion", None),
    ("mini-multimae", (), ("multimodal",), "mini-multimae", None),
])
def test_find_family_follows_the_table(model_type, archs, kinds, tag, cls):
    fam, name = R.find_family(model_type, archs, kinds)
    assert fam.tag == tag and name == cls


def test_find_family_misses_and_unread_heads():
    assert R.find_family("swin", (), R.KINDS) is None
    assert R.find_family("vit_mae", (), ("fusion",)) is None
    fam, names = R.find_family("deit", ("DeiTForMaskedImageModeling",), R.KINDS)
    assert fam is None and names == "DeiTForImageClassificationWithTeacher or DeiTForImageClassification or DeiTModel"
