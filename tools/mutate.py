"""Mutation testing of one core module with mutmut: ``make mutate MODULE=masking`` (``--list`` names them).

Each module gets its own workspace ``.mutants/<module>/`` (gitignored) with a generated ``pyproject.toml`` whose
``[tool.mutmut]`` mutates only that module's files and runs only its test files, so a run takes minutes and is
resumed where it stopped (mutmut keeps its results there).  The score printed at the end is
``killed / (mutants - skipped)``, timeouts counting as killed, as ``tests/MUTATION.md`` records it.

    python tools/mutate.py masking                # run (or resume) and print the score and the survivors
    python tools/mutate.py masking --show         # print the diff of every surviving mutant
    python tools/mutate.py --list
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: module → (files to mutate, test files that exercise them, plus any pytest selection such as ``-k``). Slow
#: end-to-end files (browser, notebooks, packaging) stay out: a mutant must be killed by a test that reads the
#: module's results.
MODULES: dict[str, tuple[list[str], list[str]]] = {
    "masking": (["explorer/masking/image.py", "explorer/masking/video.py", "explorer/masking/budgets.py"],
                ["tests/test_masking.py", "tests/test_properties.py", "tests/test_video_mae.py", "tests/test_multimodal.py"]),
    "metrics": (["explorer/metrics.py"], ["tests/test_metrics.py", "tests/test_reconstruction.py"]),
    "baselines": (["explorer/reconstruction/baselines.py", "explorer/multimodal/baselines.py"],
                  ["tests/test_baselines.py", "tests/test_reconstruction.py", "tests/test_multimodal.py"]),
    "sidecar": (["explorer/export/sidecar.py"],
                ["tests/test_sidecar_readers.py", "tests/test_sidecar_schema.py", "tests/test_sidecar_untrusted.py",
                 # the two export runs are skipped:
                 "-k", "not users_word and not cli_reproduce_errors"]),  # 6 s per mutant, nothing new read
    "reproduce": (["explorer/export/reproduce.py"], ["tests/test_reproduce_negative.py", "tests/test_sidecar_untrusted.py"]),
    "attention-methods": (["explorer/attention/methods.py"],
                          ["tests/test_attention_analytic.py", "tests/test_attention.py"]),
    "alignment": (["explorer/fusion/alignment.py", "explorer/fusion/propagation.py"],
                  ["tests/test_alignment_reference.py", "tests/test_fusion.py", "tests/test_fusion_adapters.py"]),
    "io": (["explorer/io.py"], ["tests/test_io_contract.py", "tests/test_io.py", "tests/test_properties.py", "tests/test_io_headers.py"]),
    "multimodal": (["explorer/multimodal/inputs.py", "explorer/modalities.py"],
                   ["tests/test_multimodal.py", "tests/test_properties.py", "tests/test_multimodal_data.py", "tests/test_multimodal_inputs_contract.py"]),
    # attention, fusion and models are split by file group, so each workspace runs in minutes to an hour; the
    # module's score in tests/MUTATION.md is the sum of its groups.
    "attention-capture": (["explorer/attention/capture.py", "explorer/attention/registry.py",
                           "explorer/attention/provenance.py", "explorer/attention/maps.py"],
                          ["tests/test_attention.py", "tests/test_token_layout.py", "tests/test_attention_analytic.py",
                           "tests/test_captum_methods.py", "tests/test_provenance_reference.py",
                           "tests/test_attention_capture_contract.py"]),
    "attention-faithfulness": (["explorer/attention/faithfulness.py"],
                               ["tests/test_faithfulness.py", "tests/test_faithfulness_contract.py", "tests/test_faithfulness_curves.py"]),
    "attention-interventions": (["explorer/attention/interventions.py"],
                                ["tests/test_interventions.py", "tests/test_interventions_contract.py"]),
    "fusion-methods": (["explorer/fusion/capture.py", "explorer/fusion/methods.py", "explorer/fusion/word_methods.py"],
                       ["tests/test_fusion.py", "tests/test_alignment_reference.py", "tests/test_fusion_adapters.py",
                        "tests/test_fusion_methods_contract.py", "tests/test_captum_methods.py"]),
    "fusion-attribution": (["explorer/fusion/attribution.py", "explorer/fusion/faithfulness.py",
                            "explorer/fusion/interventions.py"],
                           ["tests/test_captum_methods.py", "tests/test_fusion.py", "tests/test_interventions.py",
                            "tests/test_fusion_attribution_contract.py"]),
    "models-registry": (["explorer/models/registry.py", "explorer/models/hub.py", "explorer/models/device.py",
                         "explorer/models/layout.py", "explorer/models/base.py"],
                        ["tests/test_models.py", "tests/test_hub.py", "tests/test_token_layout.py",
                         "tests/test_models_registry_contract.py", "tests/test_model_adapters_contract.py",
                         # a fresh interpreter cannot import the mutated package outside mutmut's runner:
                         "-k", "not unreachable_hub_fails_fast"]),
    "models-adapters": (["explorer/models/mae.py", "explorer/models/vit.py", "explorer/models/deit.py",
                         "explorer/models/dinov2.py", "explorer/models/clip.py", "explorer/models/videomae.py",
                         "explorer/models/multimae.py"],
                        ["tests/test_models.py", "tests/test_mini_mae_positions.py", "tests/test_token_layout.py",
                         "tests/test_provenance_reference.py", "tests/test_video_mae.py", "tests/test_reconstruction_contract.py",
                         "tests/test_model_adapters_contract.py"]),
    "models-fusion": (["explorer/models/fusion_base.py", "explorer/models/fusion_hf.py", "explorer/models/fusion_mini.py",
                       "explorer/models/fusion_clip.py", "explorer/models/blip.py", "explorer/models/vilt.py",
                       "explorer/models/fusion_registry.py"],
                      ["tests/test_fusion_adapters.py", "tests/test_fusion.py", "tests/test_alignment_reference.py",
                       "tests/test_fusion_adapters_contract.py"]),
    "models-mini": (["explorer/models/mini/fusion.py", "explorer/models/mini/multimae.py"],
                    ["tests/test_mini_fusion.py", "tests/test_multimodal.py", "tests/test_fusion.py",
                     "tests/test_mini_models_reference.py"]),
    "reconstruction": (["explorer/reconstruction/image.py", "explorer/reconstruction/video.py",
                        "explorer/reconstruction/multimodal.py"],
                       ["tests/test_reconstruction_contract.py", "tests/test_video_reconstruction_contract.py",
                        "tests/test_multimodal_reconstruction_contract.py", "tests/test_reconstruction.py", "tests/test_video_mae.py",
                        "tests/test_video_app.py", "tests/test_multimodal.py", "tests/test_baselines.py"]),
}

_PYTEST_CONFIG = """
[tool.pytest.ini_options]
testpaths = ["tests"]
addopts = "-p no:cacheprovider -p no:xdist -p no:randomly"
markers = [
    "browser: drives a real JupyterLab in headless chromium",
    "notebook: executes a notebook end to end",
    "slow: takes more than a few seconds",
]
"""


def workspace(module: str) -> Path:
    """``.mutants/<module>/``: links to the package, the tests and data/, and a pyproject that configures mutmut."""
    files, tests = MODULES[module]
    ws = ROOT / ".mutants" / module
    ws.mkdir(parents=True, exist_ok=True)
    for name in ("explorer", "tests", "data"):
        link = ws / name
        if not link.exists():
            link.symlink_to(ROOT / name, target_is_directory=True)
    missing = [t for t in tests if t.endswith(".py") and not (ROOT / t).is_file()]
    tests = [t for t in tests if t not in missing]
    conf = (f"[tool.mutmut]\nsource_paths = [\"explorer\"]\nonly_mutate = {json.dumps(files)}\n"
            f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
            "also_copy = [\"data\"]\n"  # tests that read data/models next to tests/
            "pytest_add_cli_args = [\"-q\", \"-x\"]\n" + _PYTEST_CONFIG)
    (ws / "pyproject.toml").write_text(conf)
    if missing:
        print(f"note: test files not found (skipped): {', '.join(missing)}", file=sys.stderr)
    return ws


def _env() -> dict:
    env = dict(os.environ)
    # forked children must not inherit a busy OpenMP pool; the shipped models are read from the checkout
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", EXPLORER_DATA=str(ROOT / "data"), HF_HUB_OFFLINE="1",
               MPLBACKEND="Agg")
    return env


def _mutmut(ws: Path, *args: str, capture: bool = False) -> subprocess.CompletedProcess:
    exe = shutil.which("mutmut", path=str(Path(sys.executable).parent)) or "mutmut"
    return subprocess.run([exe, *args], cwd=ws, env=_env(), text=True, capture_output=capture)


def results(ws: Path) -> dict[str, list[str]]:
    """status → mutant names, read from ``mutmut results --all true``."""
    out = _mutmut(ws, "results", "--all", "true", capture=True).stdout
    by: dict[str, list[str]] = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+):\s*(.+?)\s*$", line)
        if m and "__mutmut_" in m.group(1):
            by.setdefault(m.group(2), []).append(m.group(1))
    return by


_KILLED = ("killed", "timeout", "segfault", "caught by type check")
_UNTESTED = ("skipped", "not checked", "check was interrupted by user")


def score(by: dict[str, list[str]]) -> tuple[int, int, float]:
    """(killed incl. timeouts, tested, percent)."""
    killed = sum(len(v) for k, v in by.items() if k in _KILLED)
    tested = sum(len(v) for k, v in by.items() if k not in _UNTESTED)  # "no tests": a survivor
    return killed, tested, (100.0 * killed / tested if tested else 0.0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("module", nargs="?", help="one of --list")
    ap.add_argument("--list", action="store_true", help="name the modules and their files")
    ap.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--show", action="store_true", help="print the diff of every survivor")
    ap.add_argument("--fresh", action="store_true", help="forget earlier results of this module")
    ap.add_argument("--restat", action="store_true",
                    help="record again which test reaches which function before the survivors are re-checked")
    ap.add_argument("--table", action="store_true", help="a markdown row per module that has results (tests/MUTATION.md)")
    a = ap.parse_args(argv)
    if a.table:
        for k, (files, _tests) in MODULES.items():
            ws = ROOT / ".mutants" / k
            if not (ws / "mutants").is_dir():
                continue
            by = results(ws)
            killed, tested, pct = score(by)
            survived = tested - killed
            print(f"| {k} | {', '.join(f.removeprefix('explorer/') for f in files)} | {tested} | {killed} | {survived} | "
                  f"{pct:.1f}% |")
        return 0
    if a.list or not a.module:
        for k, (files, tests) in MODULES.items():
            print(f"{k:18s} {' '.join(files)}\n{'':18s} tests: {' '.join(tests)}")
        return 0 if a.list else 2
    if a.module not in MODULES:
        print(f"unknown module {a.module!r}; one of: {', '.join(MODULES)}", file=sys.stderr)
        return 2
    ws = workspace(a.module)
    if a.fresh:
        shutil.rmtree(ws / "mutants", ignore_errors=True)
    if not a.show:
        run = _mutmut(ws, "run", "--max-children", str(a.max_children))
        if run.returncode not in (0, 1):
            print(f"mutmut stopped with status {run.returncode}", file=sys.stderr)
            return run.returncode
        # mutmut keeps earlier verdicts; survivors are checked again against today's tests
        old = [n for k, v in results(ws).items() if k not in _KILLED + _UNTESTED for n in v]
        if old and a.restat:
            (ws / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
        if old:
            _mutmut(ws, "run", "--max-children", str(a.max_children), *old)
    by = results(ws)
    killed, tested, pct = score(by)
    survivors = [n for k, v in by.items() if k not in _KILLED + _UNTESTED for n in v]
    print(f"\n{a.module}: {killed}/{tested} mutants killed = {pct:.1f}%  ({', '.join(f'{k} {len(v)}' for k, v in sorted(by.items()))})")
    for n in survivors:
        if a.show:
            print(_mutmut(ws, "show", n, capture=True).stdout)
        else:
            print("  survived:", n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
