"""One hub loader, one family table: offline failures are fast and say what to do; a cached checkpoint loads
offline; every loader refuses the other kinds with a pointer to the right one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import explorer
from explorer.models import hub, registry
from explorer.models.registry import (FAMILIES, ModelLoadError, load_fusion_model, load_model, load_multimodal_model,
                                     load_uniformer_model)

from _tiny import save_tiny_mae

ROOT = Path(__file__).resolve().parents[1]
LOADERS = {"load_model": load_model, "load_fusion_model": load_fusion_model, "load_multimodal_model": load_multimodal_model,
           "load_uniformer_model": load_uniformer_model}
#: the shipped models each hub-capable loader should suggest when the hub cannot be used
OFFLINE_SUGGESTS = {"load_model": "mini-mae", "load_fusion_model": "mini-fusion"}


def _offline(monkeypatch):
    """Offline for real: huggingface_hub reads $HF_HUB_OFFLINE once, at import."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def _hub_cache(root: Path, repo_id: str, files_from: Path) -> Path:
    """``root`` laid out like the hub's cache, holding ``repo_id`` at one revision (refs/main → snapshot)."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    commit = "1" * 40
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in files_from.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return root


# ---------------------------------------------------------------------------------------------- offline, fast
@pytest.mark.parametrize("loader", ["load_model", "load_fusion_model"])
def test_offline_unknown_id_fails_fast_and_says_what_to_do(loader, monkeypatch, capfd, tmp_path):
    _offline(monkeypatch)

    def no_network(*a, **k):
        raise AssertionError("the hub client was asked while offline")

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    monkeypatch.setattr(hub, "_probe", no_network)  # HF_HUB_OFFLINE is enough: no probe either
    t = time.perf_counter()
    with pytest.raises(ModelLoadError) as e:
        LOADERS[loader]("someone/not-a-model", cache_dir=tmp_path)
    took = time.perf_counter() - t
    msg = str(e.value)
    assert took < 3.0, f"{loader} took {took:.1f} s to fail offline"
    assert msg.startswith("Could not load 'someone/not-a-model' from the Hugging Face hub")
    assert "offline" in msg and "hf download someone/not-a-model --local-dir" in msg and str(tmp_path) in msg
    assert OFFLINE_SUGGESTS[loader] in msg
    assert "Retrying" not in capfd.readouterr().err


_SUBPROCESS = textwrap.dedent("""
    import json, sys, time
    import explorer
    from explorer.fusion import load_fusion_model
    out = {}
    for name, f in (("load_model", explorer.load_model), ("load_fusion_model", load_fusion_model)):
        t = time.perf_counter()
        try:
            f("someone/not-a-model")
            out[name] = {"error": None}
        except explorer.ModelLoadError as e:
            out[name] = {"error": str(e), "s": time.perf_counter() - t}
    t = time.perf_counter()
    adapter = explorer.load_model("test-org/tiny-mae", device="cpu", cache_dir=sys.argv[1])
    out["cached"] = {"s": time.perf_counter() - t, "model_id": adapter.model_id, "family": adapter.family}
    print(json.dumps(out))
""")


def test_unreachable_hub_fails_fast_and_a_cached_checkpoint_still_loads(tmp_path):
    """No HF_HUB_OFFLINE, but the endpoint refuses connections: one probe, no retry loop, the cache still serves."""
    _hub_cache(tmp_path / "cache", "test-org/tiny-mae", save_tiny_mae(tmp_path / "tiny"))
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_CACHE=str(tmp_path / "empty-cache"), PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-c", _SUBPROCESS, str(tmp_path / "cache")], env=env, capture_output=True,
                         text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    for loader in ("load_model", "load_fusion_model"):
        msg = out[loader]["error"]
        assert msg is not None and out[loader]["s"] < 3.0, out[loader]
        assert "not reachable" in msg and "http://127.0.0.1:9" in msg and "hf download" in msg
        assert OFFLINE_SUGGESTS[loader] in msg
    assert out["cached"]["model_id"] == "test-org/tiny-mae" and out["cached"]["family"] == "mae"
    assert out["cached"]["s"] < 30
    assert "Retrying" not in run.stderr, run.stderr[-2000:]


def test_a_cached_checkpoint_loads_offline(tmp_path, monkeypatch):
    tiny = save_tiny_mae(tmp_path / "tiny")
    (tiny / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.25] * 3}))
    cache = _hub_cache(tmp_path / "cache", "org/name", tiny)
    _offline(monkeypatch)
    adapter = load_model("org/name", cache_dir=cache, device="cpu")
    assert adapter.model_id == "org/name" and type(adapter).__name__ == "MAEAdapter"
    assert adapter.weights_sha256 == load_model(tiny, device="cpu").weights_sha256
    assert adapter._mean.flatten().tolist() == [0.5] * 3  # the cached processor config was read
    with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache"):
        load_model("org/other-name", cache_dir=cache)


def test_the_probe_runs_once_per_session_and_never_hangs(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://probe.invalid")
    monkeypatch.setattr(hub, "_PROBES", {})
    calls = []
    monkeypatch.setattr(hub, "_probe", lambda endpoint, timeout: calls.append(endpoint) or "the hub is not reachable (test)")
    for _ in range(3):
        with pytest.raises(ModelLoadError, match="not reachable"):
            load_model("someone/not-a-model")
    assert calls == ["http://probe.invalid"]
    monkeypatch.undo()

    class Hanging:  # a name lookup or a connection that never answers
        def head(self, *a, **k):
            time.sleep(30)

    import huggingface_hub.utils

    monkeypatch.setattr(huggingface_hub.utils, "get_session", lambda: Hanging())
    t = time.perf_counter()
    reason = hub._probe("http://probe.invalid", 0.2)
    assert time.perf_counter() - t < 2 and "no answer within 0.2 s" in reason


# ---------------------------------------------------------------------------------------------- odd names
@pytest.mark.parametrize("loader", list(LOADERS))
@pytest.mark.parametrize("name", ["x" * 300, "org/" + "x" * 296, "/tmp/" + "x" * 300, "a/" + "b" * 300 + "/c"])
def test_a_name_too_long_for_the_os_is_a_model_load_error(loader, name):
    with pytest.raises(ModelLoadError, match="Unknown model|cannot be loaded|looks like a Hugging Face id") as e:
        LOADERS[loader](name)
    assert len(str(e.value)) < 1000


# ---------------------------------------------------------------------------------------------- one registry
SHIPPED_FAMILIES = {"mini-mae": "mae", "mini-video-mae": "videomae-pretraining", "mini-fusion": "mini-fusion",
                    "mini-rgbd-mae": "mini-multimae", "mini-av-mae": "mini-multimae", "mini-uniformer": "uniformer"}
LOADER_OF_KIND = {"image": "load_model", "video": "load_model", "fusion": "load_fusion_model", "multimodal": "load_multimodal_model",
                  "hierarchical": "load_uniformer_model"}


def test_one_entry_per_family():
    tags = [f.tag for f in FAMILIES]
    assert len(tags) == len(set(tags))
    assert len({f.adapter for f in FAMILIES}) == len(FAMILIES)  # one adapter class, one entry
    assert {f.kind for f in FAMILIES} == {"image", "video", "fusion", "multimodal", "hierarchical"}
    claims = [(f.kind, t, a) for f in FAMILIES for t in f.model_types for a in (f.architectures or ("*",))]
    assert len(claims) == len(set(claims))  # no two entries claim the same checkpoints
    for f in FAMILIES:
        if f.kind in ("image", "video"):
            assert f.adapter.family == f.tag  # what sidecars record is the registry's tag
        if f.build is registry._hf_fusion:
            assert f.architectures == f.adapter.architectures
        assert f.architectures or f.model_class or not f.from_hub  # a hub family knows the class it loads


@pytest.mark.parametrize("name", sorted(SHIPPED_FAMILIES))
def test_every_shipped_model_resolves_to_its_family(name):
    folder = explorer.models.shipped_models()[name]
    family = registry.family_of(json.loads((folder / "config.json").read_text()))
    assert family.tag == SHIPPED_FAMILIES[name]
    adapter = LOADERS[LOADER_OF_KIND[family.kind]](name, device="cpu")
    assert type(adapter) is family.adapter and adapter.model_id == name
    listed = {"load_model": explorer.list_models(), "load_fusion_model": registry.list_fusion_models(),
              "load_multimodal_model": registry.list_multimodal_models(),
              "load_uniformer_model": registry.list_uniformer_models()}
    assert [k for k, names in listed.items() if name in names] == [LOADER_OF_KIND[family.kind]]


@pytest.mark.parametrize("loader,name,pointer", [
    ("load_model", "mini-rgbd-mae", "explorer.load_multimodal_model"),
    ("load_model", "mini-fusion", "explorer.fusion.load_fusion_model"),
    ("load_fusion_model", "mini-mae", "image-only model"),
    ("load_fusion_model", "mini-video-mae", "video-only model"),
    ("load_fusion_model", "mini-av-mae", "explorer.load_multimodal_model"),
    ("load_multimodal_model", "mini-mae", "explorer.load_model"),
    ("load_multimodal_model", "mini-fusion", "explorer.fusion.load_fusion_model"),
    ("load_multimodal_model", "mini-video-mae", "explorer.VideoMAEApp"),
])
def test_each_loader_points_a_model_of_another_kind_to_its_loader(loader, name, pointer):
    with pytest.raises(ModelLoadError) as e:
        LOADERS[loader](name, device="cpu")
    assert pointer in str(e.value)
    if loader == "load_fusion_model" and "only" in pointer:
        assert "explorer.load_model" in str(e.value) and "no text input" in str(e.value)


def test_old_module_paths_keep_their_names():
    import warnings

    from explorer.models import fusion_registry

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from explorer.multimodal import model as multimae  # the old home of the multimodal loader
    from explorer.fusion import load_fusion_model as from_fusion

    assert fusion_registry.load_fusion_model is load_fusion_model
    with pytest.raises(ModelLoadError, match="explorer.load_multimodal_model"):
        from_fusion("mini-av-mae", device="cpu")
    assert multimae.load_multimodal_model is load_multimodal_model and explorer.load_multimodal_model is load_multimodal_model
    assert set(fusion_registry.FUSION_ADAPTERS) == {"mini_fusion", "clip", "blip", "vilt"}
    assert fusion_registry.FUSION_HUB_MODELS and "EPFL-VILAB/multimae-b" in multimae.UNSUPPORTED_HUB
    assert multimae.list_multimodal_models() == ["mini-av-mae", "mini-rgbd-mae"]
    assert {"mini-mae", "facebook/vit-mae-base"} <= set(explorer.models.list_models())
    assert explorer.models.HUB_MODELS and explorer.models.ModelLoadError is hub.ModelLoadError


def test_a_checkpoint_with_a_head_no_family_reads_is_named(tmp_path):
    """A family that claims architectures refuses others by name (before any weights are read)."""
    folder = tmp_path / "deit-mim"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "deit", "architectures": ["DeiTForMaskedImageModeling"]}))
    with pytest.raises(ModelLoadError, match="with head DeiTForMaskedImageModeling; the explorer reads "
                                             "DeiTForImageClassificationWithTeacher or .* only"):
        load_model(folder, device="cpu")
    with pytest.raises(ModelLoadError, match="image-only model .*'deit'"):
        load_fusion_model(folder, device="cpu")
