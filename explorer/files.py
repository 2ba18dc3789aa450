"""Writing files safely: atomically, never overwriting without being asked.

A file is written to a hidden temporary name in the target folder, flushed to disk and then
*linked* to its final name (``os.link`` fails if the name exists, so two exports can never
take the same name) or, with ``overwrite=True``, renamed over it (``os.replace``).  A process
killed half-way leaves only a hidden ``.<name>.part-<pid>-...`` file, never a truncated figure;
:func:`remove_stale_parts` deletes those whose process is gone.

:func:`write_all` writes several files (a figure's PDF / SVG / PNG, its sidecar, its stored inputs) as one: all are
written under temporary names first, then moved into place together, or none is.  :func:`check_name` refuses, before
anything is written, a name the file system cannot take with those temporary names, or one with control characters
or path separators.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import unicodedata
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


def _link_new(part: Path, path: Path) -> None:
    """Give ``part`` the name ``path``, which must not exist yet (``FileExistsError``)."""
    try:
        os.link(part, path)
    except OSError as e:
        if e.errno == errno.EEXIST:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.") from None
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        # Filesystems without hard links: exclusive create, then rename over it.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.") from None
        os.close(fd)
        os.replace(part, path)


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
            _link_new(part, path)
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


# ---------------------------------------------------------------------------------------------- names
#: Bytes a temporary name adds to a file's name: ``.`` + name + ``.part-<pid>-<8 hex>`` (pid up to 10 digits).
PART_OVERHEAD = len(".") + len(".part-") + 10 + len("-") + 8
_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


def name_max(folder: "str | os.PathLike") -> int:
    """The longest file name (in bytes) the file system of ``folder`` (or its nearest existing parent) takes."""
    p = Path(folder).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return int(os.pathconf(p, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def check_name(name: str, *, suffixes: "list[str] | tuple[str, ...]" = ("",), folder: "str | os.PathLike" = ".") -> str:
    """``name`` if it can be a file name here with each of ``suffixes`` and every temporary name :func:`write_all` uses.

    Refused (``ValueError``, before anything is written): an empty name, ``.`` / ``..``, a path separator, a control
    character (newline, tab, NUL, DEL, line / paragraph separators, bidirectional overrides), and a name too long for
    the file system once the longest suffix and the temporary name's ``.part-<pid>-<hex>`` are added.
    """
    if not isinstance(name, str) or name in ("", ".", ".."):
        raise ValueError(f"{name!r} is not a file name.")
    seps = {"/", "\\", os.sep, *([os.altsep] if os.altsep else [])}
    if any(s in name for s in seps):
        raise ValueError(f"The file name {name!r} contains a path separator; give the folder separately.")
    bad = [ch for ch in name if unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in _BIDI]
    if bad:
        raise ValueError(f"The file name {name!r} contains a control character ({ascii(bad[0])}); "
                         "use letters, digits, spaces, '-', '_' or '.'.")
    longest = max((len(s.encode()) for s in suffixes), default=0)
    size = len(os.fsencode(name))
    limit = name_max(folder) - longest - PART_OVERHEAD
    if size > limit:
        raise ValueError(f"The file name {name[:40]!r}… is {size} bytes long; at most {limit} fit here (the file system "
                         f"takes {name_max(folder)} bytes per name, less the suffix and the temporary name used "
                         "while writing). Choose a shorter name.")
    return name


# ---------------------------------------------------------------------------------------------- several files at once
def write_all(files: "list[tuple[str | os.PathLike, bytes]]", *, overwrite: bool = False,
              keep_existing: "set | frozenset" = frozenset(), durable: bool = True) -> list[Path]:
    """Write several files as one: all of them, or none.

    Every file is first written (and flushed to disk) under a hidden temporary name next to its target; only when
    all are written are they moved into place, one rename / link each.  If one cannot take its name (it exists and
    ``overwrite`` is False, or the disk is full), those already moved are taken back (files this call replaced are
    restored) and the error is raised.  A process killed while writing leaves only hidden ``.part`` files
    (:func:`remove_stale_parts`).

    Args:
        files: ``(path, bytes)`` in the order they are moved into place.
        overwrite: replace existing files (else ``FileExistsError``, and nothing stays written).
        keep_existing: paths that are named by their content (stored inputs): one that exists is kept as it is.
    Returns:
        the paths this call created or replaced (not those kept).
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data in files:
            path = Path(path)
            if path in keep_existing and path.exists():
                continue
            staged.append((_write_part(path, data, durable), path))
    except BaseException:
        for part, _ in staged:
            with contextlib.suppress(OSError):
                part.unlink()
        raise
    done: list[tuple[Path, Path | None]] = []  # (final path, backup of what it replaced)
    try:
        for part, path in staged:
            if path in keep_existing:
                try:
                    _link_new(part, path)
                except FileExistsError:  # written meanwhile by another export: the same content (named by it)
                    continue
                done.append((path, None))
            elif overwrite:
                backup = None
                if path.exists():
                    backup = _part_path(path)
                    try:
                        os.link(path, backup)
                    except OSError:
                        backup = None  # no hard links here: the old file cannot be kept for a roll-back
                try:
                    os.replace(part, path)
                except BaseException:
                    if backup is not None:
                        with contextlib.suppress(OSError):
                            backup.unlink()
                    raise
                done.append((path, backup))
            else:
                _link_new(part, path)
                done.append((path, None))
    except BaseException:
        for path, backup in reversed(done):
            with contextlib.suppress(OSError):
                if backup is not None:
                    os.replace(backup, path)
                else:
                    path.unlink()
        raise
    finally:
        for part, _ in staged:
            with contextlib.suppress(OSError):
                part.unlink()
        for _, backup in done:
            if backup is not None:
                with contextlib.suppress(OSError):
                    backup.unlink()
    return [p for p, _ in done]
