"""Work that runs after a view has appeared: one job at a time in a daemon thread, the newest job wins.

    live = Background()
    live.submit(work, done)      # work(stop) -> result, run in a thread; done(result) runs when it finishes
    live.wait()                  # tests and scripts: block until the current job is finished

``work`` receives ``stop()``, which turns True once a newer job was submitted (or :meth:`cancel` was called): long
work checks it between units and returns early; a superseded job's result is dropped, never shown.  An exception
in ``work`` goes to ``failed(exc)`` instead of killing the thread silently.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from typing import Any, Callable

#: every Background made, so that interpreter exit can stop their threads first (a thread still inside torch when
#: the interpreter tears down aborts the process)
_ALL: "weakref.WeakSet[Background]" = weakref.WeakSet()


@atexit.register
def _stop_all(timeout: float = 10.0) -> None:
    for b in list(_ALL):
        b.cancel()
    for b in list(_ALL):
        b.wait(timeout)


class Background:
    """One background job at a time; submitting a new one supersedes the running one."""

    def __init__(self):
        self._gen = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.last_error: BaseException | None = None
        _ALL.add(self)

    @property
    def generation(self) -> int:
        return self._gen

    def cancel(self) -> None:
        """Supersede the running job without starting another."""
        with self._lock:
            self._gen += 1

    def submit(self, work: Callable[[Callable[[], bool]], Any], done: Callable[[Any], None],
               failed: Callable[[BaseException], None] | None = None) -> int:
        """Run ``work(stop)`` in a thread, then ``done(result)`` if no newer job was submitted meanwhile.

        Returns:
            the job's generation number.
        """
        with self._lock:
            self._gen += 1
            gen = self._gen

        def stop() -> bool:
            return self._gen != gen

        def run():
            try:
                result = work(stop)
            except BaseException as e:  # noqa: BLE001 - reported to the app, never lost
                self.last_error = e
                if not stop() and failed is not None:
                    failed(e)
                return
            if not stop():
                done(result)

        t = threading.Thread(target=run, name=f"explorer-background-{gen}", daemon=True)
        self._thread = t
        t.start()
        return gen

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current job has finished; False if ``timeout`` (seconds) ran out first."""
        t = self._thread
        if t is None:
            return True
        t.join(timeout)
        return not t.is_alive()
