"""Finished pipeline stages, found again by fingerprint: resume and sweep sharing.

A stage's fingerprint hashes everything that determines its artefact: the model source (name,
or path + file hash), data, training config, global seed, and every compression stage up to and
including it, chained. ``ROOT/stages/<fingerprint>.json`` records one finished stage: its
artefact (relative to ROOT, with its hash) and its report entry. ``edgekit run --resume`` looks
stages up in the run folder; a sweep shares one cache across its candidates, so the float model
is trained once and candidates that differ only after a stage reuse everything before it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from device_bench.atomicio import atomic_target, write_json
from edgekit.core.errors import InputError
from edgekit.report_types import KerasEntry

RECORDS = "stages"  # ROOT/stages/<fingerprint>.json, one record per finished stage
SCHEMA = "edgekit.stage/1"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, or of every file under a folder (sorted by relative path)."""
    p = Path(path)
    h = hashlib.sha256()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    for f in files:
        h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def fingerprint(parent: str, payload: Any) -> str:
    """Chains ``payload`` (JSON-serializable) onto the ``parent`` fingerprint.

    Args:
        parent: The previous stage's fingerprint ("" for the first).
        payload: What determines this stage.

    Returns:
        A hex digest.
    """
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(f"{parent}|{text}".encode()).hexdigest()[:32]


class StageCache:
    """The finished stages recorded under a folder: one ``stages/<fingerprint>.json`` each.

    Every record is its own file, written atomically (temp file + rename), and holds the
    artefact's path (relative to ``root``), its SHA-256 and the stage's report entry. So two
    processes can share one cache: neither rewrites the other's records, a reader never sees a
    half-written one, and a record whose artefact was overwritten since (a later stage config
    that writes the same file) no longer matches its hash and is ignored.

    Lookups see the stages recorded through this object, plus, with ``resume``, every record in
    ``root`` (an earlier run's, or another process's). Within one run fingerprints are chained,
    so a fresh run never finds its own stages; a sweep's candidates find each other's.

    Args:
        root: The folder that holds ``stages/``; artefacts are stored relative to it.
        resume: Also see the records already in ``root`` (False: only this object's).
    """

    def __init__(self, root: str | os.PathLike[str], resume: bool) -> None:
        self.root = Path(root)
        self.resume = resume
        self._mine: set[str] = set()

    def _record_path(self, fp: str) -> Path:
        if not fp or not all(c in "0123456789abcdefghijklmnopqrstuvwxyz_-" for c in fp):
            raise ValueError(f"stage fingerprint {fp!r} is not a plain token")
        return self.root / RECORDS / f"{fp}.json"

    def lookup(self, fp: str) -> dict[str, Any] | None:
        """Returns ``{"path": Path, "entry": dict}`` of a finished stage, or None.

        Args:
            fp: The stage fingerprint.

        Returns:
            The stage, or None when it was never recorded (visibly to this cache), its record is
            unreadable or of another schema, or its artefact is gone or has changed since.
        """
        if fp not in self._mine and not self.resume:
            return None
        try:
            record = json.loads(self._record_path(fp).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("schema") != SCHEMA:
            return None
        path = self.root / str(record.get("artefact", ""))
        if not path.is_file() or file_sha256(path) != record.get("sha256"):
            return None
        return {"path": path, "entry": record.get("entry")}

    def lookup_entry(self, fp: str) -> tuple[Path, KerasEntry] | None:
        """A finished stage, its entry read back typed.

        Args:
            fp: The stage fingerprint.

        Returns:
            (its artefact, its report entry), or None when there is none, its file is gone, or
            its entry is not a Keras stage entry this version reads (the stage then runs again).
        """
        hit = self.lookup(fp)
        if hit is None:
            return None
        try:
            return hit["path"], KerasEntry.from_dict(hit["entry"], f"stage record {fp}")
        except InputError:
            return None

    def record(self, fp: str, artefact: Path, entry: KerasEntry | dict[str, Any]) -> None:
        """Records a finished stage in its own file (atomically).

        Args:
            fp: The stage fingerprint.
            artefact: Its file (inside ``root``).
            entry: Its report entry (stored as ``to_dict()``).
        """
        stored = entry.to_dict() if isinstance(entry, KerasEntry) else dict(entry)
        write_json(self._record_path(fp), {
            "schema": SCHEMA, "fingerprint": fp,
            "artefact": os.path.relpath(artefact, self.root),
            "sha256": file_sha256(artefact), "entry": stored})
        self._mine.add(fp)


def place(src: Path, dest: Path) -> Path:
    """Copies a cached artefact into a run folder (atomically; nothing when it is the same file).

    Args:
        src: The cached artefact.
        dest: Where the run expects it.

    Returns:
        ``dest``.
    """
    if src.resolve() == dest.resolve():
        return dest
    with atomic_target(dest) as tmp:
        shutil.copyfile(src, tmp)
    return dest
