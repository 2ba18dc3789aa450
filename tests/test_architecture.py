"""The layout is the architecture: nothing imports upward, no import cycles, compute stays free of UI libraries.

The floors are written once, here (bottom first).  A module belongs to the floor of the longest prefix that
names it; it may import its own floor and any floor below, never one above.  Imports inside functions count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "explorer"

#: bottom first; a module may import only modules on its own floor or below
FLOORS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("explorer.version", "explorer._moved", "explorer.files", "explorer.io", "explorer.preprocess",
              "explorer.metrics", "explorer.shapley", "explorer.audio", "explorer.audio_playback", "explorer.depth", "explorer.video", "explorer.modalities",
              "explorer.attribution")),
    ("viz", ("explorer.viz",)),
    ("data", ("explorer.data",)),
    ("masking", ("explorer.masking",)),
    ("models", ("explorer.models",)),
    ("reconstruction", ("explorer.reconstruction", "explorer.multimodal")),
    ("attention", ("explorer.attention",)),
    ("fusion", ("explorer.fusion",)),
    ("analyze", ("explorer.analyze",)),
    ("export", ("explorer.export",)),
    ("widgets", ("explorer.widgets",)),
    ("training", ("explorer.training",)),
    ("api", ("explorer", "explorer.__main__")),
]

#: floors that compute: they never import plotly or ipywidgets (the figure and widget layers do)
COMPUTE = ("core", "data", "masking", "models", "reconstruction", "attention", "fusion")
UI_LIBS = ("plotly", "ipywidgets", "anywidget", "IPython")


def floor_of(module: str) -> int:
    """Index of the floor of ``module`` (longest matching prefix)."""
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(FLOORS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    if best is None:
        raise AssertionError(f"{module} is on no floor: add it to FLOORS in {__file__}")
    return best


def module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def node_targets(node, mod: str, is_pkg: bool) -> list[tuple[str, int]]:
    """Absolute names one ``import`` / ``from … import`` node of module ``mod`` reaches, with its line number."""
    if isinstance(node, ast.Import):
        return [(a.name, node.lineno) for a in node.names]
    if node.level:
        base = mod.split(".") if is_pkg else mod.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if node.module is None or target == "explorer":  # from . import x: x may be a submodule
        return [(f"{target}.{a.name}", node.lineno) for a in node.names]
    return [(target, node.lineno)]


def imports_of(path: Path, *, top_level_only: bool = False) -> list[tuple[str, int]]:
    """Absolute names of every module (or name in a module) ``path`` imports, with line numbers."""
    mod, is_pkg = module_name(path)
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    return [t for n in nodes if isinstance(n, (ast.Import, ast.ImportFrom)) for t in node_targets(n, mod, is_pkg)]


def known_module(name: str, modules: set[str]) -> str | None:
    """The longest prefix of ``name`` that is an explorer module (``a.b.func`` → ``a.b``)."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        cand = ".".join(parts[:k])
        if cand in modules:
            return cand
    return None


def all_modules() -> dict[str, Path]:
    return {module_name(p)[0]: p for p in ROOT.rglob("*.py")}


def test_every_module_has_a_floor():
    for mod in all_modules():
        floor_of(mod)


def test_nothing_imports_upward():
    modules = all_modules()
    bad = []
    for mod, path in modules.items():
        here = floor_of(mod)
        for name, line in imports_of(path):
            target = known_module(name, set(modules)) if name.startswith("explorer") else None
            if target is None or target == mod:
                continue
            there = floor_of(target)
            # a package's __init__ may re-export its own submodules; a module may import its parent package's API
            if there > here:
                bad.append(f"{path.relative_to(ROOT.parent)}:{line} ({FLOORS[here][0]}) imports {target} ({FLOORS[there][0]})")
    assert not bad, "imports that run upward:\n" + "\n".join(bad)


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Cycles of a directed graph (module → modules it imports), each as a closed path."""
    seen, stack, cycles = set(), [], []

    def visit(m):
        if m in stack:
            cycles.append(stack[stack.index(m):] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            visit(d)
        stack.pop()

    for m in sorted(graph):
        visit(m)
    return cycles


def test_find_cycles_sees_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_no_import_cycles_at_module_level():
    """Top-level imports between explorer modules form no cycle (imports inside functions are allowed to close one)."""
    modules = all_modules()
    graph: dict[str, set[str]] = {}
    for mod, path in modules.items():
        found = (known_module(n, set(modules)) for n, _ in imports_of(path, top_level_only=True) if n.startswith("explorer"))
        graph[mod] = {k for k in found if k and k != mod}
    # packages import their submodules by construction; drop edges from a module to its ancestor packages
    for mod in graph:
        graph[mod] = {d for d in graph[mod] if not mod.startswith(d + ".")}
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_compute_never_imports_ui_libraries():
    bad = []
    for mod, path in all_modules().items():
        if FLOORS[floor_of(mod)][0] not in COMPUTE:
            continue
        for name, line in imports_of(path):
            if name.split(".")[0] in UI_LIBS:
                bad.append(f"{path.relative_to(ROOT.parent)}:{line} imports {name}")
    assert not bad, "compute modules importing UI libraries:\n" + "\n".join(bad)


def test_viz_runs_no_model():
    """viz is pure: results in, figures out; it imports no model, compute or torch."""
    bad = []
    for mod, path in all_modules().items():
        if not (mod == "explorer.viz" or mod.startswith("explorer.viz.")):
            continue
        for name, line in imports_of(path):
            if name.split(".")[0] == "torch" or (name.startswith("explorer.") and floor_of(known_module(name, set(all_modules())) or "explorer.viz") > floor_of("explorer.viz")):
                bad.append(f"{path.relative_to(ROOT.parent)}:{line} imports {name}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("src,expected", [
    ("from ..widgets.mae_app import MAEApp\n", "imports explorer.widgets.mae_app"),
])
def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch, src, expected):
    """The rule is not vacuous: a fake compute module that imports a widget is reported."""
    fake = ROOT / "attention" / "_fake_upward_probe.py"
    import sys

    monkeypatch.setattr(sys.modules[__name__], "all_modules",
                        lambda: {**{module_name(p)[0]: p for p in ROOT.rglob("*.py")}, "explorer.attention._fake_upward_probe": fake})
    real_read = Path.read_text

    def read_text(self, *a, **k):
        return src if self == fake else real_read(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", read_text)
    with pytest.raises(AssertionError, match=expected):
        test_nothing_imports_upward()


def test_moved_modules_keep_working_with_a_deprecation_warning():
    """Every old module path still imports, warns once, and gives the same objects as the new path."""
    import importlib
    import subprocess
    import sys

    from explorer._moved import MOVED

    code = (
        "import importlib, warnings, sys\n"
        "from explorer._moved import MOVED\n"
        "for old, new in MOVED.items():\n"
        "    with warnings.catch_warnings(record=True) as w:\n"
        "        warnings.simplefilter('always')\n"
        "        m = importlib.import_module(old)\n"
        "    msgs = [str(x.message) for x in w if issubclass(x.category, DeprecationWarning)]\n"
        "    assert any(old in s and new in s for s in msgs), (old, msgs)\n"
        "    target = importlib.import_module(new)\n"
        "    public = [n for n in dir(target) if not n.startswith('__')]\n"
        "    assert public, new\n"
        "    for n in public:\n"
        "        assert getattr(m, n) is getattr(target, n), (old, n)\n"
        "print(len(MOVED))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.strip()) == len(MOVED)
    for old, new in MOVED.items():
        assert importlib.util.find_spec(new) is not None, new
        assert not (ROOT.parent / (old.replace(".", "/") + ".py")).exists(), f"{old} is both moved and present"


def test_public_api_is_flat_and_lazy():
    """``explorer.<name>`` reaches every entry point the notebooks teach; importing explorer loads no UI library."""
    import subprocess
    import sys

    code = (
        "import sys, explorer\n"
        "assert not {'plotly', 'ipywidgets'} & set(sys.modules), 'import explorer pulled in a UI library'\n"
        "from explorer.attention import attention_maps, explain\n"
        "from explorer.fusion import align, load_fusion_model\n"
        "from explorer.models.registry import load_multimodal_model\n"
        "assert explorer.attention_maps is attention_maps and explorer.explain is explain\n"
        "assert explorer.align is align and explorer.load_fusion_model is load_fusion_model\n"
        "assert explorer.load_multimodal_model is load_multimodal_model\n"
        "for n in ('MAEApp', 'AttentionApp', 'FusionApp', 'VideoMAEApp', 'MultiMAEApp'):\n"
        "    assert isinstance(getattr(explorer, n), type), n\n"
        "try:\n"
        "    explorer.no_such_name\n"
        "except AttributeError:\n"
        "    print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
