"""The user's own local files by absolute path: an upload's source.

A task's path goes through the account's PathMap; planning resolves it (symlinks that stay inside an
allowed root are fine then); the open walks from the allowed root's descriptor and follows none
(engine.localfs). PathSource opens a path as it is, for callers that trust it (tests, tools).
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Sequence
from pathlib import Path

from transfers.engine.endpoints.local import LocalSourceFile
from transfers.engine.localfs import LocalTree, NotAFile
from transfers.engine.paths import PathMap, PathRefused, SourceResolver

__all__ = ["LocalFiles", "PathSource"]


class LocalFiles:
    """The user's local files by absolute path (an upload's source), below the allowed roots.

    A task's path goes through the account's PathMap; planning resolves it (symlinks that stay inside
    an allowed root are fine then); the open walks from the allowed root's descriptor and follows none.
    """

    where: str | None = None  # messages say "local file ..."

    def __init__(self, allowed_roots: Sequence[Path], path_map: PathMap | None = None, *, label: str = "local files") -> None:
        self.allowed_roots = list(allowed_roots)
        self.path_map = path_map or PathMap()
        self.label = label
        self._resolver = SourceResolver(self.allowed_roots)
        self._unmapped = not self.path_map.rules
        self._tree: LocalTree | None = None
        self._opening = threading.Lock()

    def locate(self, path: str) -> tuple[str, os.stat_result | None]:
        if self._unmapped and path[:1] == "/" and path[1:2] != "/" and "\\" not in path:
            mapped = path  # what PathMap.apply gives without rules, without the call (once per file)
        else:
            mapped = self.path_map.apply(path)
        try:
            return self._resolver.resolve_stat(mapped)
        except OSError:
            return mapped, None  # the open meets it and says what it is

    def open_source(self, located: str) -> LocalSourceFile:
        tree = self._tree
        if tree is None:
            with self._opening:
                if self._tree is None:
                    self._tree = LocalTree(self.allowed_roots)
                tree = self._tree
        return LocalSourceFile(*tree.open_file(located))

    def prefetch(self, located: Sequence[str]) -> None:
        """Ask the kernel to read these files now, all at once (posix_fadvise WILLNEED): their reads then
        overlap instead of each send waiting for its own (1.2-1.4x the 4 KiB files per second, cold, here).

        A hint only, and whatever fails here fails nothing. Each file is opened as open_source does
        (walked from an allowed root, no symlink followed, a regular file), but through a tree of its
        own, closed at once: the run's tree does not keep the folders walked here, so a folder swapped
        between this hint and the send is walked, and refused, at the send as it would be without it.
        """
        with LocalTree(self.allowed_roots) as tree:
            for path in located:
                try:
                    fd, _ = tree.open_file(path)
                except (OSError, PathRefused, NotAFile):
                    continue
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
                except OSError:
                    pass
                finally:
                    os.close(fd)

    def stat_source(self, located: str) -> os.stat_result:
        return os.stat(located)

    def close(self) -> None:
        with self._opening:
            tree, self._tree = self._tree, None
        if tree is not None:
            tree.close()


class PathSource:
    """A source that opens what it is given as it is (for callers that trust the path; tests)."""

    label = "local files"
    where: str | None = None

    def locate(self, path: str) -> tuple[str, os.stat_result | None]:
        try:
            return path, os.stat(path)
        except OSError:
            return path, None

    def open_source(self, located: str) -> LocalSourceFile:
        fd = os.open(located, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # O_NONBLOCK: a FIFO cannot hang us
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            reason = "a folder, not a file" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise NotAFile(f"local path is {reason}: {located}")
        return LocalSourceFile(fd, info)  # O_NONBLOCK changes nothing for a regular file

    def stat_source(self, located: str) -> os.stat_result:
        return os.stat(located)

    def close(self) -> None:
        pass
