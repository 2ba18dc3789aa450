"""Writing files safely: atomically, never overwriting without being asked.

A file is written to a hidden temporary name in the target folder, flushed to disk and then
*linked* to its final name (``os.link`` fails if the name exists, so two exports can never
take the same name) or, with ``overwrite=True``, renamed over it (``os.replace``).  A process
killed half-way leaves only a hidden ``.<name>.part-<pid>-...`` file, never a truncated figure;
:func:`remove_stale_parts` deletes those whose process is gone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
from pathlib import Path

_PART = re.compile(r"^\.(?P<name>.+)\.part-(?P<pid>\d+)-[0-9a-f]{8}$")


def _part_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.part-{os.getpid()}-{secrets.token_hex(4)}")


def _write_part(path: Path, data: bytes, durable: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    part = _part_path(path)
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            part.unlink()
        raise
    return part


def write_atomic(path: "str | os.PathLike", data: bytes, *, overwrite: bool = False, durable: bool = True) -> Path:
    """Write ``data`` to ``path`` all at once.

    ``durable=False`` skips the ``fsync`` (still atomic for a killed process, not for a power
    cut); the batch exporter uses it for dataset tiles, where it costs more than the encoding.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    part = _write_part(path, data, durable)
    try:
        if overwrite:
            os.replace(part, path)
        else:
            try:
                os.link(part, path)
            except OSError as e:
                if e.errno == errno.EEXIST:
                    raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.") from None
                if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                    raise
                # Filesystems without hard links: exclusive create, then rename over it.
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                os.close(fd)
                os.replace(part, path)
    finally:
        with contextlib.suppress(OSError):
            part.unlink()
    return path


def free_stem(stem: "str | os.PathLike", suffixes: "list[str]", *, overwrite: bool = False) -> Path:
    """A stem ``S`` such that no ``S + suffix`` exists: ``fig``, else ``fig-2``, ``fig-3``, ...

    With ``overwrite=True`` the stem is returned unchanged.
    """
    stem = Path(stem)
    if overwrite:
        return stem
    candidate, n = stem, 1
    while any(candidate.with_name(candidate.name + s).exists() for s in suffixes):
        n += 1
        candidate = stem.with_name(f"{stem.name}-{n}")
    return candidate


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_parts(folder: "str | os.PathLike") -> list[Path]:
    """Delete temporary ``.part`` files left in ``folder`` by processes that no longer run."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _PART.match(p.name)
        if m and int(m["pid"]) != os.getpid() and not _alive(int(m["pid"])):
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed
