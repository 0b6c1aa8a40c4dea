"""The workspace jail (SEC-04): file steps never leave one directory.

The jail never trusts a path string: it walks the path one component at a time from a directory
file descriptor of the root, opening each with ``O_NOFOLLOW``, so a symlink (even one swapped in
after a check) cannot lead outside; special files are refused after ``fstat`` of what was opened.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import stat
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from ...errors import GuardError

__all__ = ["Jail"]


def _outside(path: str, why: str) -> GuardError:
    return GuardError(f"path {path!r} {why}", code="path_outside_jail", field="path")


_ENCODED = re.compile(r"%(2e|2f|5c|00)", re.I)
# Bounds of the scan of the engine's own files: directories walked, entries read in each.
_MAX_DIRS = 1000
_MAX_FILES = 10_000


class Jail:
    """A directory that file steps cannot leave (see module docstring)."""

    def __init__(
        self, root: Path, *, protected: Iterable[Path] = (), refuse_hard_links: bool = False
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()
        # a file with several names may have one outside the workspace (another tenant's file):
        # the server profile opens none (a developer's own tools, git and pnpm, make them)
        self.refuse_hard_links = refuse_hard_links
        self._protected_paths = [Path(p) for p in protected]
        # the engine's own files by path too, whether they exist or not: a step must not create
        # the configuration file a later run would read
        self._protected_files = [p.resolve() for p in self._protected_paths if not p.is_dir()]
        self._protected: frozenset[tuple[int, int]] = frozenset()
        self._protected_dirs: list[Path] = []
        self._stamps: dict[str, tuple[int, int] | None] = {}
        self._scan_protected()

    def _scan_protected(self) -> None:
        """Record the inodes of the engine's own files (so hard links to them are refused too),
        and a stamp of each path looked at, so that a change is noticed without a walk."""
        inodes: set[tuple[int, int]] = set()
        stamps: dict[str, tuple[int, int] | None] = {}
        root = os.stat(self.root)
        for p in self._protected_paths:
            st = _stamp(str(p), stamps)
            if st is None:
                continue
            if not stat.S_ISDIR(st.st_mode):
                inodes.add((st.st_dev, st.st_ino))
                continue
            resolved = p.resolve()
            # a workspace inside the engine's home (the server default) stays usable; the
            # engine's files beside it are outside the jail anyway, and their inodes are
            # still recorded below against hard links
            if not (self.root == resolved or resolved in self.root.parents):
                inodes.add((st.st_dev, st.st_ino))
                if resolved not in self._protected_dirs:
                    self._protected_dirs.append(resolved)
            _scan_tree(str(p), (root.st_dev, root.st_ino), inodes, stamps)
        self._protected, self._stamps = frozenset(inodes), stamps

    def _protected_changed(self) -> bool:
        """Whether a file or directory of the engine's own appeared, went or was replaced
        since the last scan (a directory's mtime moves when an entry is added or removed)."""
        for path, stamp in self._stamps.items():
            try:
                st = os.stat(path)
            except OSError:
                if stamp is not None:
                    return True
                continue
            if (st.st_ino, st.st_mtime_ns) != stamp:
                return True
        return False

    # -- path handling ---------------------------------------------------------------------

    def parts(self, path: str) -> list[str]:
        """Lexically check ``path`` and split it into components relative to the root."""
        if not isinstance(path, str) or not path or "\x00" in path:
            raise _outside(str(path), "is empty or holds a NUL byte")
        if _ENCODED.search(path):
            raise _outside(path, "holds URL-encoded separators or dots")
        candidate = path.replace("\\", "/")
        if candidate.startswith("~"):
            raise _outside(path, "starts with ~; give a path inside the workspace")
        if candidate.startswith("/"):
            try:
                candidate = str(Path(os.path.normpath(candidate)).relative_to(self.root))
            except ValueError:
                raise _outside(path, f"is outside the workspace {self.root}") from None
        parts = [p for p in candidate.split("/") if p not in ("", ".")]
        if any(p == ".." for p in parts):
            raise _outside(path, "climbs out with '..'")
        target = self.root.joinpath(*parts)
        for d in self._protected_dirs:
            try:
                target.relative_to(d)
            except ValueError:
                continue
            raise GuardError(f"path {path!r} is engine state", code="path_outside_jail")
        if target in self._protected_files:
            raise GuardError(f"path {path!r} is engine state", code="path_outside_jail")
        return parts

    def display(self, path: str) -> str:
        return "/".join(self.parts(path)) or "."

    @contextmanager
    def _dir(self, parts: Sequence[str], *, create: bool = False) -> Iterator[int]:
        """A descriptor of the directory ``parts`` inside the root, never through a symlink."""
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for name in parts:
                try:
                    nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    # parallel steps may create the same parent at the same moment
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, dir_fd=fd)
                    nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (40, 20):  # ELOOP (symlink), ENOTDIR
                        if os.path.islink(os.path.join(f"/proc/self/fd/{fd}", name)):
                            raise _outside("/".join(parts), "goes through a symlink") from None
                    raise
                os.close(fd)
                fd = nfd
            yield fd
        finally:
            os.close(fd)

    def _check_fd(self, fd: int, path: str) -> os.stat_result:
        st = os.fstat(fd)
        inode = (st.st_dev, st.st_ino)
        if (
            inode not in self._protected
            and st.st_nlink > 1
            and stat.S_ISREG(st.st_mode)
            and self._protected_changed()
        ):
            self._scan_protected()  # engine files appeared since the last scan
        if inode in self._protected:
            raise GuardError(f"path {path!r} is engine state", code="path_outside_jail")
        return st

    def open(self, path: str, mode: str, *, create_dirs: bool = False) -> IO[bytes]:
        """Open a regular file in the jail. ``mode``: ``r``, ``w``, ``a`` or ``x`` (binary)."""
        parts = self.parts(path)
        if not parts:
            raise GuardError("the workspace root is not a file", code="file_type_refused")
        flags = {
            "r": os.O_RDONLY,
            "w": os.O_WRONLY | os.O_CREAT,
            "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
            "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL,
        }[mode]
        flags |= os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        with self._dir(parts[:-1], create=create_dirs and mode != "r") as dfd:
            try:
                fd = os.open(parts[-1], flags, 0o644, dir_fd=dfd)
            except OSError as exc:
                if exc.errno == 40:  # ELOOP: the last component is a symlink
                    raise _outside(path, "is a symlink") from None
                if exc.errno == 6:  # ENXIO: a FIFO with no reader
                    raise GuardError(
                        f"{path!r} is not a regular file", code="file_type_refused"
                    ) from None
                raise
        try:
            st = self._check_fd(fd, path)
            if not stat.S_ISREG(st.st_mode):
                raise GuardError(f"{path!r} is not a regular file", code="file_type_refused")
            if self.refuse_hard_links and st.st_nlink > 1:
                # another name of the same file may be outside the workspace (`ln /etc/x y`)
                raise GuardError(
                    f"{path!r} has other hard links, which may lie outside the workspace",
                    code="file_type_refused",
                )
            if mode == "w":
                os.ftruncate(fd, 0)
            os.set_blocking(fd, True)
            return os.fdopen(fd, {"r": "rb", "w": "wb", "a": "ab", "x": "wb"}[mode])
        except BaseException:
            os.close(fd)
            raise

    def _lstat(self, parts: Sequence[str]) -> os.stat_result | None:
        if not parts:
            return os.stat(self.root)
        try:
            with self._dir(parts[:-1]) as dfd:
                return os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            return None

    def exists(self, path: str) -> bool:
        return self._lstat(self.parts(path)) is not None

    def is_dir(self, path: str) -> bool:
        st = self._lstat(self.parts(path))
        return st is not None and stat.S_ISDIR(st.st_mode)

    def mkdir(self, path: str) -> None:
        with self._dir(self.parts(path), create=True):
            pass

    def unlink(self, path: str, *, recursive: bool = False) -> int:
        """Remove a file (or, with ``recursive``, a directory tree); returns entries removed."""
        parts = self.parts(path)
        if not parts:
            raise GuardError("refusing to delete the workspace root", code="path_outside_jail")
        with self._dir(parts[:-1]) as dfd:
            st = os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
            if (st.st_dev, st.st_ino) in self._protected:
                raise GuardError(f"path {path!r} is engine state", code="path_outside_jail")
            if stat.S_ISDIR(st.st_mode):
                if not recursive:
                    raise GuardError(
                        f"{path!r} is a directory; set recursive: true to delete it",
                        code="file_type_refused",
                    )
                return self._rmtree(dfd, parts[-1])
            os.unlink(parts[-1], dir_fd=dfd)  # a symlink is removed itself, never its target
            return 1

    def _rmtree(self, parent_fd: int, name: str) -> int:
        count = 0
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent_fd)
        try:
            for entry in os.scandir(fd):
                if entry.is_dir(follow_symlinks=False):
                    count += self._rmtree(fd, entry.name)
                else:
                    os.unlink(entry.name, dir_fd=fd)
                    count += 1
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=parent_fd)
        return count + 1

    def rename(self, source: str, destination: str, *, overwrite: bool = False) -> None:
        src, dst = self.parts(source), self.parts(destination)
        if not src or not dst:
            raise GuardError("cannot move the workspace root", code="path_outside_jail")
        moved_to = self.root.joinpath(*dst)
        if any(f.is_relative_to(moved_to) for f in self._protected_files):
            # a directory moved here would bring the engine's configuration file with it
            raise GuardError(f"path {destination!r} is engine state", code="path_outside_jail")
        with self._dir(src[:-1]) as sfd, self._dir(dst[:-1], create=True) as dfd:
            st = os.stat(src[-1], dir_fd=sfd, follow_symlinks=False)
            if (st.st_dev, st.st_ino) in self._protected:
                raise GuardError(f"path {source!r} is engine state", code="path_outside_jail")
            if not overwrite:
                try:
                    os.stat(dst[-1], dir_fd=dfd, follow_symlinks=False)
                except FileNotFoundError:
                    pass
                else:
                    raise GuardError(
                        f"{destination!r} exists; set overwrite: true to replace it",
                        code="file_exists",
                    )
            os.rename(src[-1], dst[-1], src_dir_fd=sfd, dst_dir_fd=dfd)

    def scandir(self, path: str) -> list[tuple[str, str, int]]:
        """Entries of a directory as ``(name, kind, size)``; kind is file, dir, link or other."""
        with self._dir(self.parts(path)) as fd:
            return sorted(_entry(e) for e in os.scandir(fd))

    def walk(self, path: str, *, max_entries: int) -> list[tuple[str, str, int]]:
        """Every entry under ``path`` (not following symlinks) as ``(relative path, kind, size)``."""
        out: list[tuple[str, str, int]] = []
        base = self.parts(path)
        todo: list[list[str]] = [[]]
        while todo and len(out) < max_entries:
            rel = todo.pop()
            with self._dir([*base, *rel]) as fd:
                for entry in sorted(os.scandir(fd), key=lambda e: e.name):
                    name, kind, size = _entry(entry)
                    out.append(("/".join([*rel, name]), kind, size))
                    if kind == "dir":
                        todo.append([*rel, name])
                    if len(out) >= max_entries:
                        break
        return out

    def copy(self, source: str, destination: str, *, overwrite: bool, create_dirs: bool) -> int:
        with (
            self.open(source, "r") as src,
            self.open(destination, "w" if overwrite else "x", create_dirs=create_dirs) as dst,
        ):
            shutil.copyfileobj(src, dst, 1024 * 1024)
            return dst.tell()


def _stamp(path: str, stamps: dict[str, tuple[int, int] | None]) -> os.stat_result | None:
    """Stat ``path`` and note its inode and mtime (None when it does not exist) in ``stamps``."""
    try:
        st = os.stat(path)
    except OSError:
        stamps[path] = None
        return None
    stamps[path] = (st.st_ino, st.st_mtime_ns)
    return st


def _scan_tree(
    top: str,
    skip: tuple[int, int],
    inodes: set[tuple[int, int]],
    stamps: dict[str, tuple[int, int] | None],
) -> None:
    """Add the inodes of the files under ``top`` to ``inodes`` and stamp its directories,
    leaving out the directory ``skip`` (the workspace); bounded in directories and files."""
    todo = [top]
    for _ in range(_MAX_DIRS):
        if not todo:
            return
        directory = todo.pop()
        # stamped before it is listed, so an entry added meanwhile moves the stamp
        if directory != top and _stamp(directory, stamps) is None:
            continue
        try:
            entries = os.scandir(directory)
        except OSError:
            continue
        with entries:
            for entry in itertools.islice(entries, _MAX_FILES):
                try:
                    est = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if not stat.S_ISDIR(est.st_mode):
                    inodes.add((est.st_dev, est.st_ino))
                elif (est.st_dev, est.st_ino) != skip:
                    todo.append(entry.path)


def _entry(entry: os.DirEntry[str]) -> tuple[str, str, int]:
    st = entry.stat(follow_symlinks=False)
    if stat.S_ISLNK(st.st_mode):
        kind = "link"
    elif stat.S_ISDIR(st.st_mode):
        kind = "dir"
    elif stat.S_ISREG(st.st_mode):
        kind = "file"
    else:
        kind = "other"
    return entry.name, kind, st.st_size if kind == "file" else 0
