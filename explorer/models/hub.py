"""Finding and opening checkpoints: a shipped name, a folder or a Hugging Face id → a :class:`Checkpoint`.

The plumbing every loader in :mod:`explorer.models.registry` shares, kept apart from the family table:

* :func:`locate` — a shipped mini model's folder, an existing folder, or ``None`` for a name shaped like a hub
  id (anything else is a :class:`ModelLoadError` saying what names are accepted);
* :func:`open_checkpoint` — its ``config.json`` as a dict, from the folder, the local Hugging Face cache or the hub;
* :func:`load_weights`, :func:`load_tokenizer`, :func:`normalisation` — ``from_pretrained`` (progress bar hidden
  for local files), the tokenizer, the image mean / std of ``preprocessor_config.json``.

Offline, fast: before a hub id goes near the network, :func:`offline_reason` says whether the hub can be used —
``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` first, otherwise one short request to the endpoint (the answer is
kept for the session; a failed one is asked again after :data:`RECHECK_S` seconds).  A checkpoint already in the
local Hugging Face cache then loads with ``local_files_only=True``; one that is not fails at once with a message
saying how to fetch it elsewhere.  The hub client's own retry loop (about 25 s of "Retrying in 8s") never runs.
"""

from __future__ import annotations

import json
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from .device import pick_device, pick_dtype
from ..data.shipped import shipped_models

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Seconds the reachability probe waits for the hub's endpoint (name lookup included).
PROBE_TIMEOUT_S = 1.5
#: Seconds after which an endpoint found unreachable is asked again (a reachable one is not asked again).
RECHECK_S = 60.0

_TRUE = {"1", "ON", "YES", "TRUE"}
_PROBES: dict[str, tuple[float, str | None]] = {}  # endpoint → (monotonic time, why unreachable or None)


class ModelLoadError(RuntimeError):
    """The model could not be found, reached or understood; the message says what to do.

    Attributes:
        brief: the same in one short line for a notebook cell or a status line (``"offline: skipped
            'org/name' …; to get it: `hf download …`"``); the full message where no shorter one was given.
    """

    def __init__(self, *args, brief: str | None = None):
        super().__init__(*args)
        self.brief = brief or (str(args[0]) if args else "")


def device_and_dtype(device, dtype) -> tuple[torch.device, torch.dtype]:
    """``("auto", "float32")`` → ``(torch.device("cpu"), torch.float32)``; raises ``DeviceError`` when unavailable."""
    dev = pick_device(device)
    return dev, pick_dtype(dtype, dev)


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"Cannot read {path}: {e}") from e


def show(name: str) -> str:
    """``repr(name)``, shortened for very long names."""
    return repr(name) if len(name) <= 100 else f"{name[:60]!r}… ({len(name)} characters)"


# ---------------------------------------------------------------------------------------------- where the hub is
def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT.rstrip("/")


def _env_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or any(
        os.environ.get(v, "").upper() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _probe(endpoint: str, timeout: float) -> str | None:
    """One request to ``endpoint`` through the hub client's own session (its proxies, certificates); no retries.

    Returns why it is unreachable, or ``None``.  Runs in a thread so that a hanging name lookup cannot block.
    """
    answer: dict = {}

    def ask():
        try:
            from huggingface_hub.utils import get_session

            answer["status"] = get_session().head(endpoint, timeout=timeout).status_code
        except Exception as e:  # noqa: BLE001 - any failure to get an answer means "not reachable"
            answer["error"] = e

    worker = threading.Thread(target=ask, name="explorer-hub-probe", daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    if worker.is_alive():
        return f"the hub at {endpoint} is not reachable from this machine (no answer within {timeout:g} s)"
    if "error" in answer:
        e = answer["error"]
        first = (str(e).splitlines() or [""])[0][:160]
        return f"the hub at {endpoint} is not reachable from this machine ({type(e).__name__}: {first})"
    if answer["status"] >= 500:
        return f"the hub at {endpoint} is not reachable right now (it answered HTTP {answer['status']})"
    return None


def offline_reason(*, refresh: bool = False) -> str | None:
    """Why the Hugging Face hub cannot be used now (``"this machine is set to work offline …"``), or ``None``.

    ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` are read at every call; otherwise the endpoint
    (``$HF_ENDPOINT``) is probed once with a :data:`PROBE_TIMEOUT_S` timeout and the answer kept for the
    session (an unreachable one for :data:`RECHECK_S` seconds; ``refresh=True`` asks again now).
    """
    if _env_offline():
        return "this machine is set to work offline (HF_HUB_OFFLINE=1)"
    endpoint = _endpoint()
    known = _PROBES.get(endpoint)
    if known is not None and not refresh and (known[1] is None or time.monotonic() - known[0] < RECHECK_S):
        return known[1]
    reason = _probe(endpoint, PROBE_TIMEOUT_S)
    _PROBES[endpoint] = (time.monotonic(), reason)
    return reason


def _cached(repo_id: str, filename: str, cache_dir) -> Path | None:
    """``filename`` of ``repo_id`` in the local Hugging Face cache (``None`` if absent); never touches the network."""
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir)
    except (OSError, ValueError):
        return None
    return Path(hit) if isinstance(hit, str) else None


def _cache_folder(cache_dir) -> str:
    if cache_dir is not None:
        return str(cache_dir)
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _fetch_hint(model_id: str, shipped: list[str]) -> str:
    short = model_id.split("/")[-1]
    return (f"To use it without the hub, download it where you have internet with `hf download {model_id} --local-dir "
            f"./{short}`, copy that folder to this machine and pass its path instead of the id; or pick a shipped mini "
            "model, which works offline: " + (", ".join(shipped) or "none found") + ".")


def offline_error(model_id: str, reason: str, *, cache_dir=None, shipped: list[str] = ()) -> ModelLoadError:
    """The hub cannot be used and the checkpoint is not cached: say so, and how to get it here.

    Its ``brief`` is one line: ``offline: skipped 'org/name' (…); to get it: `hf download org/name --local-dir
    ./name` where there is internet, then pass that folder instead of the id``.
    """
    short = model_id.split("/")[-1]
    why = "this machine is set to work offline" if "set to work offline" in reason else "the hub is not reachable"
    return ModelLoadError(
        f"Could not load {model_id!r} from the Hugging Face hub: {reason}, and the checkpoint is not in the local "
        f"Hugging Face cache ({_cache_folder(cache_dir)}). " + _fetch_hint(model_id, list(shipped)),
        brief=(f"offline: skipped {model_id!r} ({why} and it is not in the local cache); to get it: "
               f"`hf download {model_id} --local-dir ./{short}` where there is internet, then pass that folder "
               "instead of the id"))


def hub_error(model_id: str, err: Exception, *, shipped: list[str] = ()) -> ModelLoadError:
    """The hub was reachable but refused or failed (404, gated, interrupted download…)."""
    first = (str(err).splitlines() or [""])[0][:200]
    return ModelLoadError(
        f"Could not load {model_id!r} from the Hugging Face hub ({type(err).__name__}: {first}). Check the id (and "
        "`hf auth login` for a gated or private checkpoint). " + _fetch_hint(model_id, list(shipped)))


# ---------------------------------------------------------------------------------------------- names → checkpoints
def _looks_like_hub_id(name: str) -> bool:
    return name.count("/") == 1 and not name.startswith(("/", ".", "~")) and " " not in name


def locate(name: str, *, example: str, shipped: list[str]) -> Path | None:
    """A shipped model's or an existing folder's path; ``None`` for a valid hub id (``"organisation/name"``).

    Args:
        name: what the user typed.
        example: a hub id to show in the message for a name that is none of the three.
        shipped: shipped model names to suggest in that message.
    Raises:
        ModelLoadError: a path that is not a model folder, a name the OS cannot open as a path and that is no
            valid hub id (e.g. 300 characters), or a name that is none of the three.
    """
    folders = shipped_models()
    if name in folders:
        return folders[name]
    path = Path(name).expanduser()
    try:
        exists = path.exists()
    except (OSError, ValueError):  # "File name too long", embedded NUL…: not a path here
        exists = False
    if exists:
        folder = path.resolve()
        if not folder.is_dir() or not (folder / "config.json").is_file():
            raise ModelLoadError(f"{folder} is not a model folder (it has no config.json written by save_pretrained).")
        return folder
    if not _looks_like_hub_id(name):
        raise ModelLoadError(
            f"Unknown model {show(name)}: not a shipped model ({', '.join(shipped) or 'none found'}), not an existing "
            f"folder, and not a Hugging Face id of the form 'organisation/name' (e.g. {example}).")
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError as e:
        raise ModelLoadError(f"Unknown model {show(name)}: not an existing folder, and not a valid Hugging Face id "
                             "('organisation/name', at most 96 characters: letters, digits, '-', '_', '.'; e.g. "
                             f"{example}).") from e
    return None


@dataclass(frozen=True)
class Checkpoint:
    """A model ready to load: where its files are and what its ``config.json`` says.

    Attributes:
        name: what the user passed (becomes the adapter's ``model_id``).
        config: ``config.json`` as a dict.
        folder: the local folder (shipped or saved); ``None`` for a hub id.
        cache_dir: the Hugging Face cache for a hub id (``None``: the hub's default).
        local_only: a hub id served from the local cache alone (the hub is offline or unreachable).
    """

    name: str
    config: dict
    folder: Path | None = None
    cache_dir: str | os.PathLike | None = None
    local_only: bool = False

    @property
    def model_type(self) -> str:
        return str(self.config.get("model_type", "?"))

    @property
    def architectures(self) -> list[str]:
        return list(self.config.get("architectures") or [])

    @property
    def source(self) -> str:
        """What ``from_pretrained`` is given: the folder, or the hub id."""
        return str(self.folder) if self.folder is not None else self.name

    @property
    def hub_kwargs(self) -> dict:
        """Keyword arguments for ``from_pretrained`` (cache, no network when offline)."""
        if self.folder is not None:
            return {}
        return {"cache_dir": self.cache_dir, "local_files_only": self.local_only}

    def file(self, filename: str) -> Path | None:
        """A file of the checkpoint on local disk (downloaded for a hub id when the hub is usable), or ``None``."""
        if self.folder is not None:
            return self.folder / filename if (self.folder / filename).is_file() else None
        if self.local_only:
            return _cached(self.name, filename, self.cache_dir)
        try:
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download(self.name, filename, cache_dir=self.cache_dir))
        except Exception:  # noqa: BLE001 - optional files (processor config…) may be absent
            return None

    def error(self, err: Exception, what: str = "the model", *, shipped: list[str] = ()) -> ModelLoadError:
        """``err`` raised while loading, as a :class:`ModelLoadError` that names the folder or the hub id."""
        if self.folder is None:
            return hub_error(self.name, err, shipped=shipped)
        return ModelLoadError(f"Could not load {what} in {self.folder}: {type(err).__name__}: {err}")


def open_checkpoint(name: str, folder: Path | None, *, cache_dir=None, shipped: list[str] = ()) -> Checkpoint:
    """The :class:`Checkpoint` of a folder from :func:`locate`, or of the hub id ``name`` when ``folder`` is ``None``.

    A hub id is looked up in the local cache first; the network is used only when :func:`offline_reason` says
    the hub is usable.

    Raises:
        ModelLoadError: unreadable config, hub offline / unreachable with nothing cached, unknown hub id.
    """
    if folder is not None:
        return Checkpoint(name, read_json(folder / "config.json"), folder)
    reason = offline_reason()
    cached = _cached(name, "config.json", cache_dir)
    if reason is not None:
        if cached is None:
            raise offline_error(name, reason, cache_dir=cache_dir, shipped=shipped)
        return Checkpoint(name, read_json(cached), None, cache_dir, local_only=True)
    try:
        from huggingface_hub import hf_hub_download

        path = Path(hf_hub_download(name, "config.json", cache_dir=cache_dir))
    except Exception as e:  # noqa: BLE001 - 404, gated, network dropped: explained
        raise hub_error(name, e, shipped=shipped) from e
    return Checkpoint(name, read_json(path), None, cache_dir)


# ---------------------------------------------------------------------------------------------- loading
@contextmanager
def _quiet_progress(quiet: bool):
    """Hide transformers' progress bars while local weights load (they load in a blink; no bar in the notebook)."""
    from transformers.utils import logging as hf_logging

    bars = quiet and hf_logging.is_progress_bar_enabled()
    if bars:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def load_weights(ckpt: Checkpoint, class_name: str, *, device: torch.device, dtype: torch.dtype,
                 shipped: list[str] = (), **kwargs):
    """``transformers.<class_name>.from_pretrained`` of the checkpoint, in float32, then moved to ``device`` / ``dtype``.

    Weights load only from safetensors or through ``torch.load(weights_only=True)`` (transformers' default).
    """
    import transformers

    cls = getattr(transformers, class_name)
    with _quiet_progress(ckpt.folder is not None or ckpt.local_only):
        try:
            model = cls.from_pretrained(ckpt.source, dtype=torch.float32, **ckpt.hub_kwargs, **kwargs)
        except Exception as e:  # noqa: BLE001 - network, missing or mismatched files: explained
            raise ckpt.error(e, shipped=shipped) from e
    return model.to(device, dtype)


#: Files of which a local folder must hold at least one for its tokenizer to load.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "spiece.model", "sentencepiece.bpe.model")


def load_tokenizer(ckpt: Checkpoint, *, shipped: list[str] = ()):
    """The checkpoint's own tokenizer (``AutoTokenizer``); refuses a folder without one or an empty vocabulary."""
    from transformers import AutoTokenizer

    fix = "save the checkpoint's tokenizer into the same folder with tokenizer.save_pretrained(folder)."
    if ckpt.folder is not None and not any((ckpt.folder / f).is_file() for f in TOKENIZER_FILES):
        # transformers 5 would build an empty tokenizer from the config's class and read every word as unknown
        raise ModelLoadError(f"{ckpt.folder} has a model but no tokenizer files ({', '.join(TOKENIZER_FILES)}): " + fix)
    try:
        with _quiet_progress(ckpt.folder is not None or ckpt.local_only):
            tokenizer = AutoTokenizer.from_pretrained(ckpt.source, **ckpt.hub_kwargs)
    except Exception as e:  # noqa: BLE001
        if ckpt.folder is None:
            raise hub_error(ckpt.name, e, shipped=shipped) from e
        raise ModelLoadError(f"{ckpt.folder} has a model but no usable tokenizer ({type(e).__name__}: "
                             f"{(str(e).splitlines() or [''])[0][:200]}): " + fix) from e
    if len(tokenizer) < 10:
        raise ModelLoadError(f"The tokenizer of {ckpt.name!r} has only {len(tokenizer)} tokens (an empty vocabulary): " + fix)
    return tokenizer


def normalisation(ckpt: Checkpoint) -> tuple[tuple, tuple]:
    """Image mean / std from the checkpoint's ``preprocessor_config.json`` (ImageNet's if it has none)."""
    path = ckpt.file("preprocessor_config.json")
    if path is None:
        return IMAGENET_MEAN, IMAGENET_STD
    pp = read_json(path)
    return tuple(pp.get("image_mean", IMAGENET_MEAN)), tuple(pp.get("image_std", IMAGENET_STD))


def read_folder_weights(folder: "str | os.PathLike") -> dict:
    """``folder/model.safetensors`` as ``{key: tensor}`` (nothing is unpickled).

    Raises:
        ModelLoadError: no weights file, or a damaged one (not a readable safetensors file).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = Path(folder) / "model.safetensors"
    if not weights.is_file():
        raise ModelLoadError(f"{folder} has no model.safetensors (only safetensors weights are loaded; nothing is unpickled).")
    try:
        return load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelLoadError(f"The weights in {weights} are damaged: not a readable safetensors file ({e}).") from None


def load_safetensors_into(model: torch.nn.Module, folder: "str | os.PathLike") -> torch.nn.Module:
    """Fill ``model`` with ``folder/model.safetensors`` (:func:`read_folder_weights`) and return it.

    Raises:
        ModelLoadError: no weights file, a damaged one (not a readable safetensors file), or weights that do not fit
            the model built from the folder's config.json.
    """
    weights = Path(folder) / "model.safetensors"
    state = read_folder_weights(folder)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ModelLoadError(f"The weights in {weights} do not fit its config.json: {str(e)[:300]}") from None
    return model
