"""A plain (non-editable) install works offline from any directory.

The shipped mini models live in the repository's ``data/models/``; a wheel carries them as package data
(``explorer/_shipped/models/``, see setup.py) and ``explorer.data.shipped.data_dir()`` finds them with
``importlib.resources``. The slow tests build a wheel and an sdist from a copy of the checkout, install the
wheel into a bare folder and run the quickstart's first cells, every shipped model and every notebook's
imports there, with the repository out of reach; weights must hash the same as the repository's files.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

from explorer.data import shipped

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "data" / "models"
PACKAGED = "explorer/_shipped/models"


# --------------------------------------------------------------------------- data_dir() order (fast)


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """Make a package on sys.path (optionally with ``_shipped/models/m/config.json``) and point shipped.py at it."""
    made = []

    def make(name: str, *, with_data: bool) -> Path:
        pkg = tmp_path / name
        pkg.mkdir()
        (pkg / "__init__.py").write_text("")
        if with_data:
            (pkg / "_shipped" / "models" / "m").mkdir(parents=True)
            (pkg / "_shipped" / "models" / "m" / "config.json").write_text("{}")
        made.append(name)
        monkeypatch.setattr(shipped, "_PACKAGE", name)
        return pkg

    monkeypatch.delenv("EXPLORER_DATA", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield make
    for name in made:
        sys.modules.pop(name, None)


def test_data_dir_prefers_explorer_data_then_the_packaged_folder(tmp_path, monkeypatch, fake_package):
    packaged = fake_package("fake_wheel_install", with_data=True) / "_shipped"

    assert shipped.packaged_data_dir() == packaged
    assert shipped.data_dir() == packaged  # the installed wheel's copy wins over the repository's data/
    assert shipped.shipped_models() == {"m": packaged / "models" / "m"}

    monkeypatch.setenv("EXPLORER_DATA", str(tmp_path / "elsewhere"))
    assert shipped.data_dir() == tmp_path / "elsewhere"  # $EXPLORER_DATA wins over both
    assert shipped.shipped_models() == {}


def test_data_dir_falls_back_to_the_repository_data_folder(monkeypatch, fake_package):
    fake_package("fake_source_checkout", with_data=False)
    assert shipped.packaged_data_dir() is None
    assert shipped.data_dir() == ROOT / "data"
    monkeypatch.setattr(shipped, "_PACKAGE", "no_such_package_here")
    assert shipped.data_dir() == ROOT / "data"


# --------------------------------------------------------------------------- a built wheel (slow)

# Left out of the copy that is built: environments, VCS data, build outputs and caches (a stale build/lib
# would otherwise leak deleted modules into the wheel, and an in-tree build would write into the checkout).
_SKIP = {".venv", ".git", "build", "dist", ".cache", ".pytest_cache", "test-artifacts", "runs", ".whl", ".gl",
         "notebooks/figures", "explorer/_shipped"}  # paths relative to the repository root
_SKIP_ANYWHERE = {"__pycache__", ".ipynb_checkpoints"}


def _ignore(folder: str, names: list[str]) -> set[str]:
    rel = Path(folder).resolve().relative_to(ROOT)
    return {n for n in names
            if n in _SKIP_ANYWHERE or n.endswith(".egg-info") or (rel / n).as_posix() in _SKIP}


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return out


def _pip(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    return _run([sys.executable, "-m", "pip", *args, "--no-cache-dir", "--disable-pip-version-check"], cwd=cwd, env=env)


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> dict[str, Path]:
    """Copy the checkout, then build a wheel from it (as ``pip install .`` does) and an sdist."""
    base = tmp_path_factory.mktemp("packaging")
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=_ignore)
    _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(base / "wheel"), str(src), cwd=base)
    (wheel,) = (base / "wheel").glob("explorer-*.whl")
    site = base / "site"
    _pip("install", "--no-deps", "--no-index", "--target", str(site), str(wheel), cwd=base)
    return {"base": base, "src": src, "wheel": wheel, "site": site}


def _repo_models() -> dict[str, int]:
    """Every file under data/models → its size (relative posix path)."""
    return {p.relative_to(MODELS).as_posix(): p.stat().st_size for p in MODELS.rglob("*") if p.is_file()}


def _packaged_models(names_sizes: dict[str, int], prefix: str) -> dict[str, int]:
    return {n[len(prefix):]: s for n, s in names_sizes.items() if n.startswith(prefix) and not n.endswith("/")}


@pytest.mark.slow
def test_wheel_carries_every_shipped_file_and_the_package(build):
    repo = _repo_models()
    assert len(repo) >= 5 * 3, "data/models/ looks empty"
    with zipfile.ZipFile(build["wheel"]) as z:
        listing = {i.filename: i.file_size for i in z.infolist()}
        meta = z.read(next(n for n in listing if n.endswith(".dist-info/METADATA"))).decode()
    assert _packaged_models(listing, PACKAGED + "/") == repo  # same names, same sizes, nothing more
    assert not [n for n in listing if n.startswith("data/")], "data/ must travel inside the package"
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "explorer").rglob("*.py") if "__pycache__" not in p.parts}
    assert modules <= set(listing), f"modules missing from the wheel: {sorted(modules - set(listing))}"
    from explorer.version import __version__

    assert re.search(rf"^Version: {re.escape(__version__)}$", meta, re.M), "wheel version != explorer/version.py"


@pytest.mark.slow
def test_sdist_carries_the_shipped_models_and_builds_the_same_wheel(build):
    base, src = build["base"], build["src"]
    out = _run([sys.executable, "-c", "import sys; from setuptools import build_meta as b; print(b.build_sdist(sys.argv[1]))",
                str(base / "sdist")], cwd=src)
    sdist = base / "sdist" / out.stdout.strip().splitlines()[-1]
    with tarfile.open(sdist) as t:
        members = {m.name: m.size for m in t.getmembers() if m.isfile()}
    top = sdist.name[: -len(".tar.gz")]
    assert _packaged_models(members, f"{top}/data/models/") == _repo_models()

    _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(base / "from-sdist"), str(sdist), cwd=base)
    (wheel,) = (base / "from-sdist").glob("explorer-*.whl")

    def listing(path):
        with zipfile.ZipFile(path) as z:
            return {i.filename: i.file_size for i in z.infolist() if ".dist-info/" not in i.filename}

    assert listing(wheel) == listing(build["wheel"])


def _notebook_imports() -> list[str]:
    """Every import statement of every notebook, as source lines (IPython magics and shell lines dropped)."""
    import nbformat

    found: list[str] = []
    for nb_path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in nbformat.read(nb_path, as_version=4).cells:
            if cell.cell_type != "code":
                continue
            code = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
            for node in ast.walk(ast.parse(code)):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    stmt = ast.unparse(node)
                    if stmt not in found:
                        found.append(stmt)
    return found


def _quickstart_cells() -> list[str]:
    """The quickstart's code cells before the first one that builds a widget / app."""
    import nbformat

    widget = re.compile(r"\b\w*App\(|\.show\(\)|\bdisplay\(")
    cells = []
    for cell in nbformat.read(ROOT / "notebooks" / "01_quickstart.ipynb", as_version=4).cells:
        if cell.cell_type != "code":
            continue
        if widget.search(cell.source):
            break
        cells.append(cell.source)
    return cells


_CHECK = textwrap.dedent('''
    import hashlib, json, sys
    from pathlib import Path

    site = Path(sys.argv[1]).resolve()
    job = json.loads(Path(sys.argv[2]).read_text())

    import explorer
    assert Path(explorer.__file__).resolve().is_relative_to(site), f"explorer imported from {explorer.__file__}"
    from explorer.data.shipped import data_dir, shipped_models
    assert data_dir().resolve() == site / "explorer" / "_shipped", f"data_dir() = {data_dir()}"

    ns = {}
    for cell in job["cells"]:
        exec(compile(cell, "<01_quickstart>", "exec"), ns)

    import explorer.fusion
    import explorer.models
    loaders = getattr(explorer.models, "load_fusion_model", None) or explorer.fusion.load_fusion_model
    models = {
        "mini-mae": explorer.load_model("mini-mae"),
        "mini-fusion": loaders("mini-fusion"),
        "mini-rgbd-mae": explorer.load_multimodal_model("mini-rgbd-mae"),
        "mini-av-mae": explorer.load_multimodal_model("mini-av-mae"),
        "mini-video-mae": explorer.load_model("mini-video-mae"),
    }
    samples = {name: hashlib.sha256(explorer.load_sample(name).pixels.tobytes()).hexdigest() for name in explorer.SAMPLES}
    for stmt in job["imports"]:
        exec(stmt, {})

    outside = sorted(m.__name__ for m in list(sys.modules.values())
                     if getattr(m, "__name__", "").split(".")[0] == "explorer" and getattr(m, "__file__", None)
                     and not Path(m.__file__).resolve().is_relative_to(site))
    assert not outside, f"explorer modules imported from outside the install: {outside}"
    print("RESULT " + json.dumps({
        "shipped": {n: str(p) for n, p in shipped_models().items()},
        "weights": {n: m.weights_sha256 for n, m in models.items()},
        "samples": samples,
        "quickstart_psnr": float(ns["rec"].psnr_masked),
    }))
''')


@pytest.mark.slow
def test_installed_wheel_runs_offline_from_another_directory(build, tmp_path, monkeypatch):
    import hashlib

    import explorer
    import explorer.fusion
    from explorer.multimodal import load_multimodal_model

    site = build["site"].resolve()
    assert (site / "explorer" / "_shipped" / "models" / "mini-mae" / "model.safetensors").is_file()
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"cells": _quickstart_cells(), "imports": _notebook_imports()}))
    script = tmp_path / "check.py"
    script.write_text(_CHECK)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "EXPLORER_DATA", "PYTHONHOME"}}
    env.update(PYTHONPATH=str(site), HF_HUB_OFFLINE="1", PYTHONNOUSERSITE="1", MPLBACKEND="Agg")
    out = _run([sys.executable, str(script), str(site), str(job)], cwd=cwd, env=env, timeout=300)
    result = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[len("RESULT "):])

    # The installed copy serves every shipped model from inside the install, none from the repository.
    assert set(result["shipped"]) == {p.name for p in MODELS.iterdir() if (p / "config.json").is_file()}
    assert all(Path(p).resolve().is_relative_to(site) for p in result["shipped"].values())

    # Same weights as the repository's files (loaded here by folder, so no name lookup can hide a mix-up).
    monkeypatch.delenv("EXPLORER_DATA", raising=False)
    repo = {
        "mini-mae": explorer.load_model(MODELS / "mini-mae", device="cpu"),
        "mini-fusion": explorer.fusion.load_fusion_model(str(MODELS / "mini-fusion")),
        "mini-rgbd-mae": load_multimodal_model(str(MODELS / "mini-rgbd-mae")),
        "mini-av-mae": load_multimodal_model(str(MODELS / "mini-av-mae")),
        "mini-video-mae": explorer.load_model(MODELS / "mini-video-mae", device="cpu"),
    }
    assert result["weights"] == {n: m.weights_sha256 for n, m in repo.items()}
    assert result["samples"] == {
        n: hashlib.sha256(explorer.load_sample(n).pixels.tobytes()).hexdigest() for n in explorer.SAMPLES}
    assert result["quickstart_psnr"] > 0
