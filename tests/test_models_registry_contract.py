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


def test_the_table_in_kinds_and_model_types():
    assert [f.tag for f in R.families(("image",))] == ["mae", "vit", "clip", "deit", "dinov2-registers", "dinov2"]
    assert [f.tag for f in R.families(("video",))] == ["videomae", "videomae-pretraining"]
    assert [f.tag for f in R.families(("fusion", "multimodal"))] == ["mini-fusion", "clip-fusion", "blip-itm", "vilt",
                                                                      "mini-multimae"]
    assert R.model_types(("image", "video")) == ["vit_mae", "vit", "clip", "deit", "dinov2_with_registers", "dinov2",
                                                 "videomae"]  # videomae once
    assert R.model_types(("fusion",)) == ["mini_fusion", "clip", "blip", "vilt"]
    assert len({f.tag for f in R.FAMILIES}) == len(R.FAMILIES)
    assert [f.tag for f in R.FAMILIES if not f.from_hub] == ["mini-fusion", "mini-multimae"]


def test_family_of_a_config_dict():
    assert R.family_of({"model_type": "vit_mae"}).tag == "mae"
    assert R.family_of({"model_type": "videomae", "architectures": ["VideoMAEForPreTraining"]}).tag == "videomae-pretraining"
    assert R.family_of({"model_type": "videomae", "architectures": None}).tag == "videomae"
    assert R.family_of({"model_type": "clip"}, ("fusion",)).tag == "clip-fusion"
    assert R.family_of({"architectures": ["ViTMAEForPreTraining"]}) is None  # no model_type: nobody claims it
    assert R.family_of({"model_type": "deit", "architectures": ["DeiTForMaskedImageModeling"]}) is None
    assert R.family_of({"model_type": "vit_mae"}, ("fusion",)) is None


def _shipped_by_type():
    """Shipped model folders and their model_type, read here from data/models/*/config.json."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "data" / "models"
    return {d.name: json.loads((d / "config.json").read_text())["model_type"] for d in sorted(root.iterdir())
            if (d / "config.json").is_file()}


def test_the_lists_offer_shipped_models_of_their_kind_then_hub_ids():
    by_type = _shipped_by_type()
    image_types = {"vit_mae", "vit", "clip", "deit", "dinov2_with_registers", "dinov2", "videomae"}
    assert R.list_models() == [n for n, t in by_type.items() if t in image_types] + list(R.HUB_MODELS)
    assert R.list_fusion_models() == [n for n, t in by_type.items() if t in {"mini_fusion", "clip", "blip", "vilt"}] + \
        list(R.FUSION_HUB_MODELS)
    assert R.list_multimodal_models() == [n for n, t in by_type.items() if t == "mini-multimae"]
    assert "mini-mae" in R.list_models() and "mini-fusion" in R.list_fusion_models()
    assert R.HUB_MODELS == ("facebook/vit-mae-base", "facebook/vit-mae-large", "facebook/vit-mae-huge")


def test_published_checkpoints_without_an_implementation_are_refused_with_the_reason():
    from explorer.models import ModelLoadError

    shipped = ", ".join(n for n, t in _shipped_by_type().items() if t == "mini-multimae")
    with pytest.raises(ModelLoadError) as e:
        R.load_multimodal_model("facebook/audiomae", device="cpu")
    assert str(e.value) == ("'facebook/audiomae': Audio-MAE is released as a PyTorch checkpoint for its own repository, not "
                            f"in transformers, so it cannot be loaded here. Supported here: {shipped} (or a folder with the "
                            "same format).")
    with pytest.raises(ModelLoadError) as e:
        R.load_model("EPFL-VILAB/multimae-b", device="cpu")
    assert str(e.value).startswith("'EPFL-VILAB/multimae-b': MultiMAE (RGB + depth + semantics) is implemented in "
                                   "EPFL-VILAB's own repository, not in transformers, so it cannot be loaded here. "
                                   "Supported here: mini-mae, mini-video-mae")
    with pytest.raises(ModelLoadError) as e:
        R.load_multimodal_model("someone/rgbd-mae", device="cpu")
    assert str(e.value) == ("'someone/rgbd-mae' looks like a Hugging Face id, but transformers has no multimodal (RGB-D or "
                            f"audio-visual) MAE class; supported here: {shipped} or a folder in their format. Video-only "
                            "MAEs (VideoMAEForPreTraining, e.g. MCG-NJU/videomae-base) open in explorer.VideoMAEApp.")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from _tiny import save_tiny_mae, save_tiny_mini_fusion, save_tiny_videomae

    root = tmp_path_factory.mktemp("kinds")
    return {"mae": save_tiny_mae(root / "mae"), "video": save_tiny_videomae(root / "video"),
            "fusion": save_tiny_mini_fusion(root / "fusion")}


def test_each_loader_says_what_a_model_of_another_kind_is_and_what_opens_it(folders):
    from explorer.models import ModelLoadError

    mae, video, fusion = (str(folders[k]) for k in ("mae", "video", "fusion"))
    image_types = "vit_mae, vit, clip, deit, dinov2_with_registers, dinov2, videomae"
    fusion_types = ("mini_fusion, clip, blip, vilt (e.g. openai/clip-vit-base-patch16, Salesforce/blip-itm-base-coco, "
                    "dandelin/vilt-b32-finetuned-vqa)")
    with pytest.raises(ModelLoadError) as e:
        R.load_fusion_model(mae, device="cpu")
    assert str(e.value) == (f"{mae!r}: this is an image-only model (model_type 'vit_mae'); it has no text input; the "
                            f"image+text explorer supports {fusion_types}. Open it in the image explorer "
                            "(explorer.load_model or explorer.MAEApp / explorer.AttentionApp) instead.")
    with pytest.raises(ModelLoadError) as e:
        R.load_fusion_model(video, device="cpu")
    assert str(e.value) == (f"{video!r}: this is a video-only model (model_type 'videomae'); it has no text input; the "
                            f"image+text explorer supports {fusion_types}. Open it in the video explorer "
                            "(explorer.load_model or explorer.VideoMAEApp) instead.")
    with pytest.raises(ModelLoadError) as e:
        R.load_model(fusion, device="cpu")
    assert str(e.value) == (f"{fusion!r} is a 'mini_fusion' model; the explorer supports these model types: {image_types}. "
                            "It is an image+text model: open it with explorer.fusion.load_fusion_model or explorer.FusionApp.")
    with pytest.raises(ModelLoadError) as e:
        R.load_multimodal_model(video, device="cpu")
    assert str(e.value) == f"{video!r} is a 'videomae' model, not a multimodal MAE; open it with explorer.load_model or explorer.VideoMAEApp."
    with pytest.raises(ModelLoadError) as e:
        R.load_multimodal_model(fusion, device="cpu")
    assert str(e.value) == (f"{fusion!r} is a 'mini_fusion' model, not a multimodal MAE; open it with "
                            "explorer.fusion.load_fusion_model or explorer.FusionApp.")


def test_unknown_model_types_are_named_with_what_each_loader_reads(tmp_path):
    import json

    from explorer.models import ModelLoadError

    for t in ("swin", "bert"):
        (tmp_path / t).mkdir()
        (tmp_path / t / "config.json").write_text(json.dumps({"model_type": t}))
    swin, bert = str(tmp_path / "swin"), str(tmp_path / "bert")
    with pytest.raises(ModelLoadError) as e:
        R.load_fusion_model(swin, device="cpu")
    assert str(e.value).startswith(f"{swin!r}: this is an image-only model (model_type 'swin'); it has no text input;")
    with pytest.raises(ModelLoadError) as e:
        R.load_fusion_model(bert, device="cpu")
    assert str(e.value) == (f"{bert!r} is a 'bert' model; the image+text explorer supports these model types: mini_fusion, "
                            "clip, blip, vilt (e.g. openai/clip-vit-base-patch16, Salesforce/blip-itm-base-coco, "
                            "dandelin/vilt-b32-finetuned-vqa).")
    with pytest.raises(ModelLoadError) as e:
        R.load_multimodal_model(bert, device="cpu")
    assert str(e.value) == (f"{bert!r} is a 'bert' model, not a multimodal MAE; open it with explorer.load_model (images), "
                            "explorer.VideoMAEApp (video) or explorer.load_fusion_model (image+text).")


def test_a_checkpoint_with_a_head_no_family_reads(tmp_path):
    import json

    from explorer.models import ModelLoadError

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "config.json").write_text(json.dumps({"model_type": "blip", "architectures": ["BlipForQuestionAnswering"]}))
    with pytest.raises(ModelLoadError) as e:
        R.load_fusion_model(str(tmp_path / "d"), device="cpu")
    assert str(e.value) == (f"{str(tmp_path / 'd')!r} is a 'blip' checkpoint with head BlipForQuestionAnswering; the "
                            "image+text explorer reads BlipForImageTextRetrieval only (e.g. an image-text matching or VQA "
                            "checkpoint).")


def test_devices_and_dtypes():
    import torch

    from explorer.models.device import DeviceError, available_devices, pick_device, pick_dtype

    assert available_devices()[-1] == "cpu" and pick_device() == torch.device(available_devices()[0])
    assert pick_device("cpu") == torch.device("cpu") and pick_device(torch.device("cpu")) == torch.device("cpu")
    assert pick_dtype("bfloat16", torch.device("cpu")) is torch.bfloat16 and pick_dtype(torch.float16, None) is torch.float16
    with pytest.raises(DeviceError) as e:
        pick_dtype("float16", torch.device("cpu"))
    assert str(e.value) == "float16 is not supported on the CPU; use float32 or bfloat16."
    with pytest.raises(DeviceError) as e:
        pick_dtype("int8", torch.device("cpu"))
    assert str(e.value) == "Unknown dtype 'int8'; choose one of float32, bfloat16, float16."
    with pytest.raises(DeviceError) as e:
        pick_device("xla")
    assert str(e.value) == "Unsupported device 'xla'; use 'auto', 'cuda', 'mps' or 'cpu'."
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError) as e:
            pick_device("cuda:0")
        assert str(e.value).startswith("A CUDA GPU was requested but torch sees none (torch.cuda.is_available() is False; "
                                       f"torch {torch.__version__}).")
    if "mps" not in available_devices():
        with pytest.raises(DeviceError) as e:
            pick_device("mps")
        assert str(e.value) == "Apple MPS was requested but is not available here. Use device='auto' or 'cpu'."
