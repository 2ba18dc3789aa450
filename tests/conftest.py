"""Minimal shared test setup."""

import os
import sys

# Under pytest-xdist (`make test` runs one worker per core) every worker, and every kernel, JupyterLab or CLI it
# starts, computes on one thread: two workers with a full thread pool each would fight over the same cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[_var] = "1"
from pathlib import Path

import pytest

# Mutation testing (tools/mutate.py): while mutmut records which test reaches which function ("stats"), it would
# credit the code a module-scoped fixture runs to the first test that built it only, and later run only that test
# against a mutant of it, although later tests read the fixture's result. While stats are recorded, every fixture is
# therefore built per test. (Outside mutation runs nothing changes.)
if os.environ.get("MUTANT_UNDER_TEST") == "stats":
    _fixture = pytest.fixture

    def _per_test(fixture_function=None, **kwargs):
        kwargs["scope"] = "function"
        return _fixture(fixture_function, **kwargs) if fixture_function is not None else _fixture(**kwargs)

    pytest.fixture = _per_test

#: module-level caches of results (module, attribute): a forked mutant run must not be answered from what the parent
#: process computed with the unmutated code
_RESULT_CACHES = (("explorer.attention.faithfulness", "_REFERENCE"), ("explorer.attention.interventions", "_CACHE"),
                  ("explorer.export.figure", "_MODELS"), ("explorer.models.hub", "_PROBES"))
_CACHED_FUNCTIONS = (("explorer.data.samples", "load_sample"), ("explorer.audio", "_mel_filters"),
                     ("explorer.export.sidecar", "versions"))


@pytest.fixture(autouse=True)
def _no_results_from_unmutated_code():
    """In a mutant run (mutmut sets MUTANT_UNDER_TEST to the mutant's name), empty the caches first."""
    if os.environ.get("MUTANT_UNDER_TEST", "") not in ("", "stats", "list_all_tests", "fail", "mutant_generation"):
        for module, attr in _RESULT_CACHES:
            m = sys.modules.get(module)
            if m is not None and hasattr(m, attr):
                getattr(m, attr).clear()
        for module, attr in _CACHED_FUNCTIONS:
            f = getattr(sys.modules.get(module), attr, None)
            for g in (f, getattr(f, "__wrapped__", None)):
                if hasattr(g, "cache_clear"):
                    g.cache_clear()
    yield


# tests/browser_helpers.py is imported as a plain module, also under --import-mode=importlib.
_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)



@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    """A tiny random ViT classifier (tests/_tiny.py), loaded like any checkpoint folder."""
    import explorer
    from _tiny import save_tiny_vit

    return explorer.load_model(str(save_tiny_vit(tmp_path_factory.mktemp("vit"))), device="cpu")


@pytest.fixture(scope="module")
def mae(tmp_path_factory):
    """A tiny random ViTMAE (seed 2), loaded like any checkpoint folder."""
    import explorer
    from _tiny import save_tiny_mae

    return explorer.load_model(str(save_tiny_mae(tmp_path_factory.mktemp("mae"), seed=2)), device="cpu")
