"""Atomic writes: a finished file under the name asked for, or nothing at all.

Why: a job killed while writing must never leave a half-written output under the name
the user asked for. The output goes to a hidden temporary file in the destination
folder and is renamed into place. The temporary file is named
``.<name>.<pid>.<random>.cgtmp``; a run that is killed before the rename leaves it
behind, and :func:`cleanup_stale` (called by every later :func:`atomic_path` on the
same output) removes such files once they are older than an hour and their process
is gone. Finished files get the permissions of the user's umask (``0o666 & ~umask``,
e.g. ``0644``), as any file the user creates, not the ``0600`` of a temporary file.

Errors name the output the user asked for, never the hidden temporary file. Shared by
every writer of churnguard (tables, quarantine files, partitioned lists, model folders);
the public names are re-exported by :mod:`churnguard.data.io`.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

__all__ = [
    "STALE_AFTER_SECONDS",
    "aside_path",
    "atomic_path",
    "cleanup_stale",
    "current_umask",
    "temporary_folder",
]

#: Age (seconds) from which a leftover temporary file of a killed run is removed.
STALE_AFTER_SECONDS = 3600.0

# Temporary files of atomic writes: ".<target name>.<pid>.<random>.cgtmp". The pid lets
# cleanup_stale spare the file of a run that is still going; the suffix is ours alone,
# so no user file is ever matched.
_TMP_SUFFIX = ".cgtmp"
_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it.

    ``os.umask`` can only be read by setting it, which races with threads creating
    files meanwhile; Linux reports it in ``/proc/self/status`` (since 4.7). Elsewhere
    it is read by setting and restoring it under a lock.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        old = os.umask(0o022)
        os.umask(old)
    return old


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, run by another user
        return True
    except OSError:
        return False
    return True


def cleanup_stale(
    path: str | os.PathLike[str], *, older_than: float = STALE_AFTER_SECONDS
) -> list[Path]:
    """Remove temporary files left by killed atomic writes; return what was removed.

    Parameters
    ----------
    path : path-like
        An output file (its own leftovers are removed) or a folder (the leftovers of
        every output in it).
    older_than : float
        Only files not modified for this many seconds are removed (default one hour),
        and never one whose process is still running on this machine: a write that
        is still going is left alone.

    Notes
    -----
    Leftovers are the hidden files and folders ``.<name>.<pid>.<random>.cgtmp`` that
    :func:`atomic_path` and :func:`temporary_folder` create; nothing else is matched.
    Files that cannot be removed (permissions, a race with another cleanup) are skipped.
    """
    p = Path(path)
    if p.is_dir():
        return _remove_leftovers(p, f".*{_TMP_SUFFIX}", older_than)
    return _leftovers_of(p, older_than)


def _leftovers_of(target: Path, older_than: float = STALE_AFTER_SECONDS) -> list[Path]:
    """Remove the stale leftovers of the output ``target`` (a file or a folder) only."""
    return _remove_leftovers(
        target.parent, f".{glob.escape(target.name)}.*{_TMP_SUFFIX}", older_than
    )


def _remove_leftovers(folder: Path, pattern: str, older_than: float) -> list[Path]:
    if not folder.is_dir():
        return []
    now = time.time()
    removed: list[Path] = []
    for leftover in folder.glob(pattern):
        parts = leftover.name[: -len(_TMP_SUFFIX)].rsplit(".", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        try:
            if now - leftover.stat().st_mtime < older_than or _pid_alive(int(parts[1])):
                continue
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()
        except OSError:
            continue
        removed.append(leftover)
    return removed


_OUTPUT_ERRNO_REASONS = {
    errno.EACCES: "permission denied: the folder '{folder}' is not writable",
    errno.EPERM: "permission denied: the folder '{folder}' is not writable",
    errno.EROFS: "the folder '{folder}' is on a read-only file system",
    errno.ENOSPC: "the disk holding '{folder}' is full",
    errno.EDQUOT: "the disk quota for '{folder}' is exhausted",
    errno.EFBIG: "the file grew larger than the file system allows",
    errno.ENOTDIR: "a part of the folder path '{folder}' is a file, not a folder",
    # mkdir(exist_ok=True) says "exists" when a file stands where a folder should.
    errno.EEXIST: "a part of the folder path '{folder}' is a file, not a folder",
}


def _output_error(exc: OSError, target: Path) -> OSError:
    """The same kind of ``OSError`` (same errno), naming the output the user asked for.

    Why: the hidden temporary file in the message means nothing to the user, who
    needs to know which of their outputs failed and what to do about it.
    """
    original = exc.strerror or str(exc)
    known = _OUTPUT_ERRNO_REASONS.get(exc.errno or 0)
    reason = f"{known.format(folder=target.parent)} ({original})" if known else original
    message = (
        f"cannot write '{target}': {reason}; nothing was written there. Choose another "
        "output path (--out) or fix the folder (permissions, free space) and run again."
    )
    try:
        if exc.errno is None:
            return type(exc)(message)
        return type(exc)(exc.errno, message)
    except Exception:  # an OSError subclass with another signature
        return OSError(exc.errno, message) if exc.errno is not None else OSError(message)


def _ours(exc: OSError, paths: tuple[Path, ...]) -> bool:
    """Whether ``exc`` is about the output being written (not some input read meanwhile)."""
    names = [n for n in (exc.filename, exc.filename2) if n is not None]
    return not names or any(Path(os.fsdecode(n)) in paths for n in names)


def aside_path(target: str | os.PathLike[str]) -> Path:
    """Where an existing output is moved while its replacement takes its place.

    Named like a temporary folder (``.<name>.<pid>.old.cgtmp``) so that, when a kill
    leaves it behind, the next write of the same output removes it (:func:`cleanup_stale`).
    """
    path = Path(target)
    return path.with_name(f".{path.name}.{os.getpid()}.old{_TMP_SUFFIX}")


def temporary_folder(target: str | os.PathLike[str]) -> Path:
    """Create a private working folder next to ``target`` and return it.

    Named ``.<name>.<pid>.<random>.cgtmp`` so that :func:`cleanup_stale` (run first,
    here) removes it once its process is gone: a killed partitioned run or model save
    leaves nothing behind for long. The caller removes it when done.
    """
    path = Path(target)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The target's own leftovers, also when the target is an existing folder (a
        # model folder saved again): not the contents of that folder.
        _leftovers_of(path)
        return Path(
            tempfile.mkdtemp(
                prefix=f".{path.name}.{os.getpid()}.", suffix=_TMP_SUFFIX, dir=path.parent
            )
        )
    except OSError as exc:
        raise _output_error(exc, path) from exc


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On error the temporary file is removed and ``path`` is left untouched. The
    finished file has the permissions a new file of the user gets
    (``0o666 & ~umask``). Leftovers of killed runs older than
    :data:`STALE_AFTER_SECONDS` are removed first (:func:`cleanup_stale`).

    Raises
    ------
    OSError
        Of the original kind (``PermissionError``, ``OSError(ENOSPC)``...), naming
        ``path`` rather than the hidden temporary file, when the folder cannot be
        created or written or the disk is full.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        cleanup_stale(target)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{target.name}.{os.getpid()}.", suffix=_TMP_SUFFIX, dir=target.parent
        )
    except OSError as exc:
        raise _output_error(exc, target) from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, target)
    except OSError as exc:
        if _ours(exc, (tmp_path, target, target.parent)):
            raise _output_error(exc, target) from exc
        raise
    except duckdb.IOException as exc:
        # A DuckDB COPY into the temporary file (full disk...): name the real output.
        if str(tmp_path) in str(exc):
            message = str(exc).replace(str(tmp_path), str(target)).splitlines()[0]
            raise OSError(f"cannot write '{target}': {message}") from exc
        raise
    finally:
        with contextlib.suppress(OSError):
            if tmp_path.exists():
                tmp_path.unlink()
