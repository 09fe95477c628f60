"""One run per output folder: an exclusive lock file held while ``edgekit run`` / ``demo`` works.

Two runs writing the same folder would overwrite each other's stages and reports (each file is
atomic, the set of files is not). :func:`run_folder_lock` takes ``OUT/.edgekit.lock`` with
``fcntl.flock`` before anything is written; a second run on the same folder is refused at once
with one line naming the folder (and the pid holding it)::

    output folder 'runs/r1' is in use by another edgekit run (pid 4242); wait for it to finish
    or choose another --out

The kernel drops a ``flock`` when its holder dies, however it dies (SIGKILL included), so a
killed run never leaves a stale lock: the next run takes the file over. The file is removed when
the run ends; a taker checks that the file it locked is still the one at the path (a run that
ended in between removed it), so removing it cannot let two runs in. A folder the lock had to
create is removed again when the run wrote nothing into it (bad input leaves no empty folder).

On a file system without ``flock`` (some network mounts) the run goes on unlocked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from device_bench.atomicio import default_file_mode
from edgekit.core.errors import InputError

__all__ = ["LOCK_NAME", "run_folder_lock"]

LOCK_NAME = ".edgekit.lock"


def _make_folders(out: Path) -> list[Path]:
    """Creates ``out`` and its missing parents; returns those it created, outermost first."""
    missing: list[Path] = []
    probe = out
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"output folder {str(out)!r} cannot be created: {e.strerror or e}") from e
    return list(reversed(missing))


def _holder(fd: int) -> str:
    """`` (pid N)`` from the lock file's content, or nothing when it says nothing useful."""
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return f" (pid {int(text)})"
    return ""


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (not removed or replaced since)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _acquire(path: Path, out: Path) -> int | None:
    """Locks ``path`` (created when missing); returns its descriptor, None when unsupported.

    Raises:
        InputError: Another process holds the lock, or the file cannot be opened.
    """
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, default_file_mode())
        except OSError as e:
            raise InputError(f"output folder {str(out)!r} cannot be locked: "
                             f"{e.strerror or e}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise InputError(
                f"output folder {str(out)!r} is in use by another edgekit run{holder}; wait "
                "for it to finish or choose another --out") from None
        except OSError:
            os.close(fd)  # no flock here (ENOLCK, EOPNOTSUPP): run unlocked
            return None
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, path):
            break
        os.close(fd)  # the run that held it ended and removed it: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    except OSError:
        pass  # the pid is only a courtesy for the message of a refused run
    return fd


def _release(fd: int, path: Path) -> None:
    """Removes the lock file (still holding it, so no one can take the old one) and unlocks."""
    try:
        if _same_file(fd, path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    finally:
        os.close(fd)


@contextlib.contextmanager
def run_folder_lock(out: str | os.PathLike[str]) -> Iterator[Path]:
    """Holds ``OUT/.edgekit.lock`` exclusively while the block runs (creating ``out``).

    Args:
        out: The run folder (it may not exist yet; check it first with
            ``edgekit.pipeline.check_out_dir`` for the clearer message on a bad path).

    Yields:
        ``out`` as a Path.

    Raises:
        InputError: Another run holds the folder, or it cannot be created.
    """
    folder = Path(out)
    created = _make_folders(folder)
    path = folder / LOCK_NAME
    try:
        fd = _acquire(path, folder)
        try:
            yield folder
        finally:
            if fd is not None:
                _release(fd, path)
    finally:
        for d in reversed(created):  # innermost first; stops at the first non-empty one
            try:
                d.rmdir()
            except OSError:
                break
