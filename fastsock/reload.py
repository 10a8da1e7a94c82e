"""--reload, for development: a watcher (watchfiles, on a thread of the master) that says when a
.py file under the app's directory changes. The master then replaces its worker the way SIGHUP
does, and the new worker imports the app afresh (--reload turns --preload off)."""
from __future__ import annotations

import importlib.machinery
import importlib.util
import logging
import os
import sys
import threading
from pathlib import Path

from fastsock.loading import LoadError, check_spec

log = logging.getLogger("fastsock.error")

READY_WAIT = 10.0       # seconds for the watcher to be in place before the first worker starts
TICK_MS = 200           # how often the watcher's thread looks at its stop event


def app_directory(spec: str) -> Path:
    """The directory holding the app's top-level module or package, found as the worker's
    import will find it (the current directory first) but without importing anything: a
    module imported in the master would be the old one in every worker forked after a change.
    For a package installed in site-packages, the package's own directory."""
    module_name, _ = check_spec(spec)
    top = module_name.split(".")[0]
    found = (importlib.machinery.PathFinder.find_spec(top, [os.getcwd(), *sys.path])
             or importlib.util.find_spec(top))      # an editable install's finder: no import
    if found is None:
        raise LoadError(f"cannot import module {module_name!r}: no such module")
    if found.origin and found.origin not in ("namespace", "built-in", "frozen"):
        own = Path(found.origin).resolve().parent       # the package's, or the module's
    else:
        own = Path(next(iter(found.submodule_search_locations or [os.getcwd()]))).resolve()
    holder = own.parent if found.submodule_search_locations else own
    return own if holder.name in ("site-packages", "dist-packages") else holder


class Reloader:
    """Watches a directory for .py files that change, on a daemon thread of the master; the
    master's loop takes the news with changed()."""

    def __init__(self, directory: Path):
        # there: Config checked it before anything started
        import watchfiles

        self.watchfiles = watchfiles
        self.directory = directory
        self.ready = threading.Event()
        self.news = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.watch, name="fastsock-reload", daemon=True)

    def start(self) -> None:
        """Start watching; returns once the watches are in place (or READY_WAIT passed), so
        that an edit made as soon as the server answers is seen."""
        self.thread.start()
        if not self.ready.wait(READY_WAIT):
            log.warning("--reload: the watcher of %s is not ready yet", self.directory)
        log.info("--reload: one worker, importing the app itself; restarted when a .py file "
                 "under %s changes", self.directory)

    def watch(self) -> None:
        try:
            for changes in self.watchfiles.watch(
                    self.directory, watch_filter=self.watchfiles.PythonFilter(),
                    stop_event=self.stopping, rust_timeout=TICK_MS, yield_on_timeout=True):
                self.ready.set()            # the first yield: after the watches are made
                if changes:
                    names = sorted(os.path.relpath(path, self.directory) for _, path in changes)
                    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
                    log.info("--reload: %s changed; restarting the worker",
                             ", ".join(names[:3]) + more)
                    self.news.set()
        except Exception:                       # noqa: BLE001 - dev only: say so, keep serving
            log.exception("--reload: the watcher of %s stopped; restart by hand",
                          self.directory)
            self.ready.set()

    def changed(self) -> bool:
        """True once after each batch of changes."""
        if self.news.is_set():
            self.news.clear()
            return True
        return False

    def close(self) -> None:
        self.stopping.set()
