"""An exclusive lock on an output folder: two batch exports never write into one folder at once.

The lock is a file ``OUT/.explorer-export.lock`` holding the owner's pid, host and start time,
locked with ``fcntl.flock``: the kernel releases it when its process ends, however it ends, so a
lock file left by a killed run is simply taken over (with a note naming that run).  Where
``flock`` is missing (Windows) or refused (some network filesystems), the file itself is the lock:
created with ``O_CREAT | O_EXCL``, and taken over when the pid it names no longer runs on this host.

    with OutputLock(out) as lock:      # raises OutputLocked while another run holds it
        if lock.note: log(lock.note)   # a stale lock was taken over; lock.previous: what it held
        lock.update(files=[...])       # what this run may leave behind if it is killed
        ...
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import time
from pathlib import Path

from ..files import _alive
from .render import ExportError

LOCK_NAME = ".explorer-export.lock"

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


class OutputLocked(ExportError):
    """Another run holds the output folder's lock; the message says which one."""


def _describe(holder: dict) -> str:
    parts = [f"pid {holder['pid']}" if holder.get("pid") else "another process"]
    if holder.get("host") and holder["host"] != socket.gethostname():
        parts.append(f"on {holder['host']}")
    if holder.get("started"):
        parts.append(f"started {holder['started']}")
    return ", ".join(parts)


def _parse(text: str) -> dict:
    try:
        d = json.loads(text)
        return d if isinstance(d, dict) else {}
    except (ValueError, TypeError):
        return {}


class OutputLock:
    """Exclusive lock on ``folder`` (created if missing).

    :attr:`note` says when a stale lock was taken over and :attr:`previous` holds its record (``{}`` otherwise):
    what a killed run stored with :meth:`update` is read back by the next one.
    """

    def __init__(self, folder: "str | os.PathLike"):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.note: str | None = None
        self.previous: dict = {}
        self._fd: int | None = None
        self._info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}

    def _record(self) -> bytes:
        return (json.dumps(self._info) + "\n").encode()

    def update(self, **info) -> None:
        """Store ``info`` (JSON values) in the lock file beside the owner's pid, host and start time."""
        if self._fd is None:
            raise RuntimeError("update() needs the lock held.")
        self._info.update(info)
        data = self._record()
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        os.write(self._fd, data)

    def _refuse(self, holder: dict) -> OutputLocked:
        return OutputLocked(f"{self.folder} is being written by another export ({_describe(holder)}); wait for it to "
                            "finish or choose another --out.")

    def acquire(self) -> "OutputLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        if fcntl is not None:
            try:
                return self._acquire_flock()
            except OSError as e:
                if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    raise
        return self._acquire_exclusive()

    def _acquire_flock(self) -> "OutputLock":
        while True:
            try:
                fd, created = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
            except FileExistsError:
                try:
                    fd, created = os.open(self.path, os.O_RDWR), False
                except FileNotFoundError:  # released meanwhile
                    continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _parse(os.pread(fd, 1 << 20, 0).decode(errors="replace"))
                os.close(fd)
                raise self._refuse(holder) from None
            except BaseException:  # no flock here: leave no empty file to block the fallback
                os.close(fd)
                if created:
                    with contextlib.suppress(OSError):
                        self.path.unlink()
                raise
            # Its previous holder may have removed the file between our open and our lock: then
            # we hold a lock on a file nobody else sees; start again on the one at the path.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = _parse(os.pread(fd, 1 << 20, 0).decode(errors="replace"))
        if previous.get("pid"):
            self.previous = previous
            self.note = (f"Took over the lock of an earlier export into {self.folder} ({_describe(previous)}) "
                         "that ended without releasing it.")
        self._fd = fd
        self.update()
        return self

    def _acquire_exclusive(self) -> "OutputLock":
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                try:
                    holder = _parse(self.path.read_text())
                except FileNotFoundError:
                    continue
                pid = holder.get("pid")
                same_host = holder.get("host", socket.gethostname()) == socket.gethostname()
                if isinstance(pid, int) and same_host and pid != os.getpid() and not _alive(pid):
                    with contextlib.suppress(FileNotFoundError):
                        self.path.unlink()
                    self.previous = holder
                    self.note = (f"Took over the lock of an earlier export into {self.folder} ({_describe(holder)}) "
                                 "whose process no longer runs.")
                    continue
                raise self._refuse(holder) from None
            self._fd = fd
            self.update()
            return self
        raise OutputLocked(f"Could not lock {self.folder}: {self.path} keeps reappearing.")

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()  # while still held: a waiting opener sees the file is gone and retries
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
