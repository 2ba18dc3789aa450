"""The model registry's table and loaders, read against hand-written expectations of the table's rules.

``find_family``: a family claiming one of the config's architectures wins; else one claiming none; else (no
architecture named) the first claiming family with its first class; else ``(None, the names they read)``.
"""

from __future__ import annotations

import numpy as np
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
    assert [f.tag for f in R.FAMILIES if not f.from_hub] == ["mini-fusion", "mini-multimae", "uniformer"]
    assert [f.tag for f in R.families(("hierarchical",))] == ["uniformer"]


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
                            "in transformers, so it cannot be loaded by id. Download the authors' ViT-B pretraining checkpoint "
                            "(pretrained.pth, linked from github.com/facebookresearch/AudioMAE) and pass its path to "
                            f"explorer.load_multimodal_model. Supported here: {shipped} (or a folder with the same format).")
    with pytest.raises(ModelLoadError) as e:
        R.load_model("EPFL-VILAB/multimae-b", device="cpu")
    assert str(e.value).startswith("'EPFL-VILAB/multimae-b': MultiMAE (RGB + depth + semantics) is implemented in "
                                   "EPFL-VILAB's own repository, not in transformers, so it cannot be loaded by id. "
                                   "Download the authors' multimae-b_98_rgb+-depth-semseg_1600e_multivit-afff3f8c.pth")
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


# ---------------------------------------------------------------------------------------------- the hub, in words


class _Session:
    def __init__(self, status=None, error=None):
        self.status, self.error, self.asked = status, error, []

    def head(self, url, timeout):
        self.asked.append((url, timeout))
        if self.error is not None:
            raise self.error

        class R:
            status_code = self.status

        return R()


@pytest.mark.parametrize("status, error, want", [
    (200, None, None),
    (404, None, None),  # an answer, even a refusal, means the hub is there
    (499, None, None),
    (500, None, "the hub at http://hub.test is not reachable right now (it answered HTTP 500)"),
    (503, None, "the hub at http://hub.test is not reachable right now (it answered HTTP 503)"),
    (None, ConnectionError("Name or service not known\nmore detail"),
     "the hub at http://hub.test is not reachable from this machine (ConnectionError: Name or service not known)"),
    (None, OSError(""), "the hub at http://hub.test is not reachable from this machine (OSError: )"),
])
def test_the_probe_says_why_the_hub_cannot_be_used(monkeypatch, status, error, want):
    import huggingface_hub.utils

    from explorer.models import hub

    s = _Session(status, error)
    monkeypatch.setattr(huggingface_hub.utils, "get_session", lambda: s)
    assert hub._probe("http://hub.test", 0.7) == want
    assert s.asked == [("http://hub.test", 0.7)]


def test_a_long_error_line_is_cut(monkeypatch):
    import huggingface_hub.utils

    from explorer.models import hub

    monkeypatch.setattr(huggingface_hub.utils, "get_session", lambda: _Session(error=ValueError("x" * 300)))
    assert hub._probe("http://hub.test", 0.5) == f"the hub at http://hub.test is not reachable from this machine (ValueError: {'x' * 160})"


def test_offline_settings_and_the_kept_answer(monkeypatch):
    import huggingface_hub.constants

    from explorer.models import hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://hub.test/")
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    assert hub._endpoint() == "http://hub.test" and not hub._env_offline()
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        for value, offline in (("1", True), ("yes", True), ("On", True), ("true", True), ("0", False), ("", False)):
            monkeypatch.setenv(var, value)
            assert hub._env_offline() is offline, (var, value)
            if offline:
                assert hub.offline_reason() == "this machine is set to work offline (HF_HUB_OFFLINE=1)"
        monkeypatch.delenv(var)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert hub._env_offline()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    answers = iter(["down", "down again", None, "never asked"])
    asked = []
    monkeypatch.setattr(hub, "_PROBES", {})
    monkeypatch.setattr(hub, "_probe", lambda e, t: asked.append((e, t)) or next(answers))
    clock = [1000.0]
    monkeypatch.setattr(hub.time, "monotonic", lambda: clock[0])
    assert hub.offline_reason() == "down" and asked == [("http://hub.test", hub.PROBE_TIMEOUT_S)]
    clock[0] += hub.RECHECK_S - 1
    assert hub.offline_reason() == "down" and len(asked) == 1  # an unreachable hub is kept for RECHECK_S
    clock[0] += 2
    assert hub.offline_reason() == "down again" and len(asked) == 2  # then asked again
    assert hub.offline_reason(refresh=True) is None and len(asked) == 3  # refresh asks now
    clock[0] += 10 * hub.RECHECK_S
    assert hub.offline_reason() is None and len(asked) == 3  # a reachable hub is not asked again


def test_hub_messages_name_the_id_the_cause_and_the_way_out(tmp_path):
    from explorer.models import hub

    hint = ("To use it without the hub, download it where you have internet with `hf download org/model-x --local-dir "
            "./model-x`, copy that folder to this machine and pass its path instead of the id; or pick a shipped mini "
            "model, which works offline: mini-mae, mini-fusion.")
    assert hub._fetch_hint("org/model-x", ["mini-mae", "mini-fusion"]) == hint
    assert hub._fetch_hint("org/m", []).endswith("which works offline: none found.")
    err = hub.hub_error("org/model-x", OSError("404 Client Error\nsecond line"), shipped=["mini-mae", "mini-fusion"])
    assert str(err) == ("Could not load 'org/model-x' from the Hugging Face hub (OSError: 404 Client Error). Check the id "
                        "(and `hf auth login` for a gated or private checkpoint). " + hint)
    assert "(RuntimeError: " + "y" * 200 + ")" in str(hub.hub_error("org/model-x", RuntimeError("y" * 300)))
    off = hub.offline_error("org/model-x", "no network", cache_dir=tmp_path, shipped=["mini-mae", "mini-fusion"])
    assert str(off) == (f"Could not load 'org/model-x' from the Hugging Face hub: no network, and the checkpoint is not in "
                        f"the local Hugging Face cache ({tmp_path}). " + hint)
    assert off.brief == ("offline: skipped 'org/model-x' (the hub is not reachable and it is not in the local cache); "
                         "to get it: `hf download org/model-x --local-dir ./model-x` where there is internet, then pass "
                         "that folder instead of the id")
    assert "this machine is set to work offline and" in hub.offline_error("o/m", "this machine is set to work offline").brief
    assert err.brief == str(err) and hub.ModelLoadError().brief == ""  # no shorter line given: the whole message
    import huggingface_hub.constants

    default = hub.offline_error("org/model-x", "no network")
    assert f"not in the local Hugging Face cache ({huggingface_hub.constants.HF_HUB_CACHE})." in str(default)
    ck = hub.Checkpoint("org/model-x", {})
    assert str(ck.error(OSError("gone"), shipped=["mini-mae", "mini-fusion"])) == str(
        hub.hub_error("org/model-x", OSError("gone"), shipped=["mini-mae", "mini-fusion"]))
    local = hub.Checkpoint("here", {"model_type": "vit"}, tmp_path)
    assert str(local.error(KeyError("w"), "the tokenizer")) == f"Could not load the tokenizer in {tmp_path}: KeyError: 'w'"
    assert str(local.error(ValueError("bad"))) == f"Could not load the model in {tmp_path}: ValueError: bad"
    assert (local.model_type, local.architectures, local.source, local.hub_kwargs) == ("vit", [], str(tmp_path), {})
    assert hub.Checkpoint("a/b", {}, None, tmp_path, True).hub_kwargs == {"cache_dir": tmp_path, "local_files_only": True}
    assert hub.Checkpoint("a/b", {}).model_type == "?"


@pytest.mark.parametrize("name, hub_like", [("org/name", True), ("org/name.v2-x_y", True), ("org", False),
                                            ("a/b/c", False), ("/abs/path", False), ("./rel", False), ("~/x", False),
                                            ("org/with space", False), (".org/x", False)])
def test_what_looks_like_a_hub_id(name, hub_like):
    from explorer.models import hub

    assert hub._looks_like_hub_id(name) is hub_like


def test_long_names_are_shown_shortened():
    from explorer.models import hub

    assert hub.show("x" * 100) == repr("x" * 100)
    assert hub.show("y" * 101) == f"{'y' * 60!r}… (101 characters)"


def test_safetensors_weights_refuse_in_words(tmp_path):
    import torch
    from safetensors.torch import save_file

    from explorer.models import ModelLoadError
    from explorer.models.hub import load_safetensors_into

    m = torch.nn.Linear(3, 2)
    with pytest.raises(ModelLoadError) as e:
        load_safetensors_into(m, tmp_path)
    assert str(e.value) == f"{tmp_path} has no model.safetensors (only safetensors weights are loaded; nothing is unpickled)."
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 7)
    with pytest.raises(ModelLoadError) as e:
        load_safetensors_into(m, tmp_path)
    assert str(e.value).startswith(f"The weights in {tmp_path / 'model.safetensors'} are damaged: not a readable safetensors file (")
    save_file({"weight": torch.zeros(5, 3), "bias": torch.zeros(5)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ModelLoadError) as e:
        load_safetensors_into(m, tmp_path)
    assert str(e.value).startswith(f"The weights in {tmp_path / 'model.safetensors'} do not fit its config.json: ")
    save_file({"weight": torch.ones(2, 3), "bias": torch.full((2,), 2.0)}, str(tmp_path / "model.safetensors"))
    assert load_safetensors_into(m, tmp_path) is m and float(m.weight.detach().sum()) == 6.0 and \
        float(m.bias.detach().sum()) == 4.0


def test_image_text_folders_need_a_usable_tokenizer(tmp_path):
    import shutil

    from _tiny import save_tiny_clip_pair

    from explorer.models import ModelLoadError
    from explorer.models.hub import TOKENIZER_FILES

    good = save_tiny_clip_pair(tmp_path / "good")
    ad = R.load_fusion_model(good, device="cpu")
    assert len(ad.tokenizer) == 593 and ad.model_id == str(good)
    assert tuple(round(v, 6) for v in ad._mean.flatten().tolist()) == (0.481455, 0.457828, 0.408211)  # its processor's
    bare = tmp_path / "bare"
    shutil.copytree(good, bare)
    for f in TOKENIZER_FILES + ("merges.txt", "special_tokens_map.json"):
        (bare / f).unlink(missing_ok=True)
    with pytest.raises(ModelLoadError) as e:
        R.load_fusion_model(bare, device="cpu")
    assert str(e.value) == (f"{bare} has a model but no tokenizer files ({', '.join(TOKENIZER_FILES)}): save the "
                            "checkpoint's tokenizer into the same folder with tokenizer.save_pretrained(folder).")
    broken = tmp_path / "broken"
    shutil.copytree(good, broken)
    for f in ("vocab.json", "tokenizer.json"):
        if (broken / f).exists():
            (broken / f).write_text("{not json")
    with pytest.raises(ModelLoadError) as e:
        R.load_fusion_model(broken, device="cpu")
    assert str(e.value).startswith(f"{broken} has a model but no usable tokenizer (")
    assert str(e.value).endswith("): save the checkpoint's tokenizer into the same folder with tokenizer.save_pretrained(folder).")


def test_available_devices_best_first(monkeypatch):
    import torch

    from explorer.models import device as D

    class Mps:
        def __init__(self, ok):
            self.ok = ok

        def is_available(self):
            return self.ok

    for cuda, mps, want in ((False, False, ["cpu"]), (True, False, ["cuda", "cpu"]), (False, True, ["mps", "cpu"]),
                            (True, True, ["cuda", "mps", "cpu"])):
        monkeypatch.setattr(torch.cuda, "is_available", lambda c=cuda: c)
        monkeypatch.setattr(torch.backends, "mps", Mps(mps))
        assert D.available_devices() == want
        assert D.pick_device("auto") == torch.device(want[0])
    monkeypatch.setattr(torch.backends, "mps", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert D.available_devices() == ["cuda", "cpu"] and D.pick_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(D.DeviceError) as e:
        D.pick_device("cuda:1")
    assert str(e.value) == "GPU 1 requested but only 1 visible."


# ---------------------------------------------------------------------------------------------- token layouts


def test_token_lookup_and_its_refusals():
    from explorer.models.layout import AttentionError, TokenLayout

    lay = TokenLayout(2, (3, 4), ("cls", "dist"))
    assert lay.token("CLS") == 0 and lay.token("Dist") == 1 and lay.token((1, 2)) == 2 + 6 and lay.token([2, 3]) == 13
    assert lay.token(0) == 2 and lay.token(11) == 13 and lay.token(np.int64(5)) == 7
    cases = [("reg0", "Unknown query token 'reg0'; this model's prefix tokens are ['cls', 'dist']."),
             ((1, 2, 3), "A patch of this model has 2 coordinates (3, 4), got (1, 2, 3)."),
             ((3, 0), "Patch (3, 0) is outside the 3x4 patch grid."),
             ((0, -1), "Patch (0, -1) is outside the 3x4 patch grid."),
             (12, "Patch index 12 is outside 0..11."),
             (-1, "Patch index -1 is outside 0..11.")]
    for q, msg in cases:
        with pytest.raises(AttentionError) as e:
            lay.token(q)
        assert str(e.value) == msg, q
    bare = TokenLayout(0, (2, 2, 2), ())
    with pytest.raises(AttentionError) as e:
        bare.token("cls")
    assert str(e.value) == ("Unknown query token 'cls'; this model's prefix tokens are none. Use query='mean' (all tokens) "
                            "or a patch.")
    assert bare.token((1, 0, 1)) == 5
    m = np.arange(4 * 8 * 8, dtype=float).reshape(4, 8, 8)
    np.testing.assert_array_equal(bare.row(m, "MEAN"), m.mean(-2))
    np.testing.assert_array_equal(bare.row(m, 3), m[..., 3, :])


def test_patch_maps_and_pixel_masks():
    import torch

    from explorer.models.layout import AttentionError, TokenLayout

    lay = TokenLayout(1, (2, 3), ("cls",), image_size=(8, 12), patch_size=4)
    row = np.arange(7, dtype=np.float64)
    pm = lay.patch_map(row)
    assert pm.dtype == np.float32 and pm.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert lay.patch_map(np.stack([row, row + 1])).shape == (2, 2, 3)
    with pytest.raises(AttentionError) as e:
        lay.patch_map(np.arange(6))
    assert str(e.value) == "A row of 6 tokens does not fit this layout (1 prefix + 6 patches)."
    keep = torch.tensor([[True, False, True, False, False, True]])
    px = lay.pixel_mask(keep)
    assert px.shape == (1, 1, 8, 12) and px.dtype == torch.float32
    want = np.kron(keep.numpy().reshape(2, 3), np.ones((4, 4)))
    np.testing.assert_array_equal(px[0, 0].numpy(), want)
    vid = TokenLayout(0, (2, 2, 3), (), image_size=(8, 12), patch_size=4, tubelet=2)
    keep_v = torch.zeros(1, 12, dtype=torch.bool)
    keep_v[0, 7] = True  # time step 1, row 0, column 1
    pv = vid.pixel_mask(keep_v)
    assert pv.shape == (1, 4, 1, 8, 12)
    assert pv[0, :2].sum() == 0 and pv[0, 2:, 0, 0:4, 4:8].min() == 1 and pv[0, 2:].sum() == 2 * 16
    with pytest.raises(AttentionError) as e:
        TokenLayout(0, (5,), ()).pixel_mask(torch.ones(1, 5, dtype=torch.bool))
    assert str(e.value) == "This layout has no image: patches cannot be turned into pixels."


def test_checkpoint_files_from_a_folder_the_cache_or_the_hub(tmp_path, monkeypatch):
    import huggingface_hub

    from explorer.models import hub

    (tmp_path / "preprocessor_config.json").write_text("{}")
    local = hub.Checkpoint("here", {}, tmp_path)
    assert local.file("preprocessor_config.json") == tmp_path / "preprocessor_config.json"
    assert local.file("tokenizer.json") is None
    asked = []

    def download(repo, filename, cache_dir=None):
        asked.append((repo, filename, cache_dir))
        if filename == "missing.json":
            raise FileNotFoundError(filename)
        return str(tmp_path / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    remote = hub.Checkpoint("org/m", {}, None, tmp_path / "cache")
    assert remote.file("preprocessor_config.json") == tmp_path / "preprocessor_config.json"
    assert remote.file("missing.json") is None
    assert asked == [("org/m", "preprocessor_config.json", tmp_path / "cache"), ("org/m", "missing.json", tmp_path / "cache")]
    monkeypatch.setattr(hub, "_cached", lambda repo, f, cache: tmp_path / f"{repo.replace('/', '-')}-{f}-{cache}")
    cached = hub.Checkpoint("org/m", {}, None, "C", local_only=True)
    assert cached.file("x.json") == tmp_path / "org-m-x.json-C" and len(asked) == 2  # the network is not asked


def test_loading_passes_its_options_and_names_what_failed(tmp_path, monkeypatch):
    import torch
    from transformers.utils import logging as hf_logging

    from _tiny import save_tiny_mae, save_tiny_mini_fusion

    from explorer.models import ModelLoadError

    folder = save_tiny_mae(tmp_path / "mae")
    states = []
    real_from = __import__("transformers").ViTMAEForPreTraining.from_pretrained

    def spy(*a, **k):
        states.append(hf_logging.is_progress_bar_enabled())
        return real_from(*a, **k)

    hf_logging.enable_progress_bar()
    monkeypatch.setattr(__import__("transformers").ViTMAEForPreTraining, "from_pretrained", spy)
    eager = R.load_model(folder, device="cpu", attn_implementation="eager")
    assert eager.model.config._attn_implementation == "eager" and states == [False]  # no bar for a local folder
    assert hf_logging.is_progress_bar_enabled()  # and the bar is back afterwards
    assert R.load_model(folder, device="cpu").model.config._attn_implementation == "sdpa"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((folder / "config.json").read_text())
    (bad / "model.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(ModelLoadError) as e:
        R.load_model(bad, device="cpu")
    assert str(e.value).startswith(f"Could not load the model in {bad}: ") and "NoneType" not in str(e.value)
    fusion = save_tiny_mini_fusion(tmp_path / "fusion")
    half = R.load_fusion_model(fusion, device="cpu", dtype="bfloat16")
    assert half.dtype == torch.bfloat16 and next(half.model.parameters()).dtype == torch.bfloat16
    import json

    cfg = json.loads((fusion / "config.json").read_text())
    cfg["dim"] = "wide"
    (fusion / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError) as e:
        R.load_fusion_model(fusion, device="cpu")
    assert str(e.value).startswith(f"Could not load the model in {fusion}: TypeError: ")


def test_hub_ids_open_from_the_hub_the_cache_or_not_at_all(tmp_path, monkeypatch):
    import json

    import huggingface_hub

    from explorer.models import ModelLoadError, hub

    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"model_type": "vit_mae"}))
    asked = []

    def download(repo, filename, cache_dir=None):
        asked.append((repo, filename, cache_dir))
        if repo == "org/missing":
            raise OSError("404 Client Error: Not Found\nfor url")
        return str(cfg)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(hub, "offline_reason", lambda **k: None)
    monkeypatch.setattr(hub, "_cached", lambda *a: None)
    ck = hub.open_checkpoint("org/model", None, cache_dir=tmp_path / "c", shipped=["mini-mae"])
    assert (ck.name, ck.config, ck.folder, ck.cache_dir, ck.local_only) == ("org/model", {"model_type": "vit_mae"}, None,
                                                                             tmp_path / "c", False)
    assert asked == [("org/model", "config.json", tmp_path / "c")]
    with pytest.raises(ModelLoadError) as e:
        hub.open_checkpoint("org/missing", None, shipped=["mini-mae"])
    assert str(e.value) == str(hub.hub_error("org/missing", OSError("404 Client Error: Not Found"), shipped=["mini-mae"]))
    monkeypatch.setattr(hub, "offline_reason", lambda **k: "no network")
    monkeypatch.setattr(hub, "_cached", lambda repo, f, c: cfg if repo == "org/cached" else None)
    ck = hub.open_checkpoint("org/cached", None, cache_dir="C")
    assert (ck.config, ck.folder, ck.cache_dir, ck.local_only) == ({"model_type": "vit_mae"}, None, "C", True)
    with pytest.raises(ModelLoadError) as e:
        hub.open_checkpoint("org/model", None, cache_dir=tmp_path, shipped=["mini-mae"])
    assert str(e.value) == str(hub.offline_error("org/model", "no network", cache_dir=tmp_path, shipped=["mini-mae"]))
    assert len(asked) == 2  # offline: the hub is never asked


def test_hub_tokenizers_load_with_the_checkpoints_options_and_refuse_empty_ones(tmp_path, monkeypatch):
    import transformers
    from transformers.utils import logging as hf_logging

    from explorer.models import ModelLoadError, hub

    calls = []

    class Tok:
        def __init__(self, n):
            self.n = n

        def __len__(self):
            return self.n

    size = {"org/ten": 10, "org/nine": 9}

    def fake(source, **kw):
        calls.append((source, kw, hf_logging.is_progress_bar_enabled()))
        if source == "org/gone":
            raise OSError("gated repo\nmore")
        return Tok(size[source])

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fake)
    hf_logging.enable_progress_bar()
    assert len(hub.load_tokenizer(hub.Checkpoint("org/ten", {}, None, "C", local_only=True))) == 10
    assert len(hub.load_tokenizer(hub.Checkpoint("org/ten", {}, None, "C"))) == 10
    assert calls == [("org/ten", {"cache_dir": "C", "local_files_only": True}, False),  # cached: no progress bar
                     ("org/ten", {"cache_dir": "C", "local_files_only": False}, True)]  # a real download shows one
    with pytest.raises(ModelLoadError) as e:
        hub.load_tokenizer(hub.Checkpoint("org/nine", {}))
    assert str(e.value) == ("The tokenizer of 'org/nine' has only 9 tokens (an empty vocabulary): save the checkpoint's "
                            "tokenizer into the same folder with tokenizer.save_pretrained(folder).")
    with pytest.raises(ModelLoadError) as e:
        hub.load_tokenizer(hub.Checkpoint("org/gone", {}), shipped=["mini-fusion"])
    assert str(e.value) == str(hub.hub_error("org/gone", OSError("gated repo"), shipped=["mini-fusion"]))
    (tmp_path / "vocab.txt").write_text("[PAD]\n")
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained",
                        lambda *a, **k: (_ for _ in ()).throw(ValueError("first line " + "z" * 300 + "\nsecond")))
    with pytest.raises(ModelLoadError) as e:
        hub.load_tokenizer(hub.Checkpoint("here", {}, tmp_path))
    assert str(e.value) == (f"{tmp_path} has a model but no usable tokenizer (ValueError: {('first line ' + 'z' * 300)[:200]}): "
                            "save the checkpoint's tokenizer into the same folder with tokenizer.save_pretrained(folder).")


def test_normalisation_reads_what_the_processor_gives(tmp_path):
    import json

    from explorer.models import hub

    ck = hub.Checkpoint("here", {}, tmp_path)
    assert hub.normalisation(ck) == (hub.IMAGENET_MEAN, hub.IMAGENET_STD)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5, 0.5, 0.5]}))
    assert hub.normalisation(ck) == ((0.5, 0.5, 0.5), hub.IMAGENET_STD)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_std": [0.2, 0.3, 0.4]}))
    assert hub.normalisation(ck) == (hub.IMAGENET_MEAN, (0.2, 0.3, 0.4))


def test_image_text_models_load_on_the_device_and_dtype_asked(tmp_path):
    import torch

    from _tiny import save_tiny_blip_itm, save_tiny_clip_pair

    clip = R.load_fusion_model(save_tiny_clip_pair(tmp_path / "c"), device="cpu", dtype="bfloat16")
    assert clip.dtype == torch.bfloat16 and next(clip.model.parameters()).dtype == torch.bfloat16
    assert clip.model.config._attn_implementation == "sdpa"
    blip = R.load_fusion_model(save_tiny_blip_itm(tmp_path / "b"), device="cpu")
    assert blip.dtype == torch.float32 and blip.device == torch.device("cpu")


def test_sizes_default_prefix_names_and_config_refusals():
    from types import SimpleNamespace

    from explorer.models import hub
    from explorer.models.layout import TokenLayout, pair

    assert pair(7) == (7, 7) and pair([5]) == (5, 5) and pair((3, 4)) == (3, 4)
    with pytest.raises(ValueError) as e:
        pair((1, 2, 3))
    assert str(e.value) == "Expected a size or an (height, width) pair, got (1, 2, 3)."
    assert TokenLayout(1, (2, 2)).names == ("cls",) and TokenLayout(2, (2, 2)).names == ("prefix0", "prefix1")
    with pytest.raises(ValueError) as e:
        TokenLayout.from_config(SimpleNamespace(image_size=32, patch_size=(8, 4)), ("cls",))
    assert str(e.value) == "Non-square patches (8x4) are not supported."
    with pytest.raises(ValueError) as e:
        TokenLayout.from_config(SimpleNamespace(image_size=32, patch_size=8), (), frames=5, tubelet=2)
    assert str(e.value) == "5 frames do not split into tubelets of 2."
    assert not hub._looks_like_hub_id("/name") and not hub._looks_like_hub_id("~name/x")
    assert str(hub.hub_error("org/m", OSError(""))).startswith("Could not load 'org/m' from the Hugging Face hub (OSError: ). ")
