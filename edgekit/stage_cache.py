"""Finished pipeline stages, found again by fingerprint: resume and sweep sharing.

A stage's fingerprint hashes everything that determines its artefact: the model source (name,
or path + file hash), data, training config, global seed, and every compression stage up to and
including it, chained. ``ROOT/stages.json`` maps fingerprints to the artefact (relative to ROOT)
and the stage's report entry. ``edgekit run --resume`` looks stages up in the run folder; a sweep
shares one cache across its candidates, so the float model is trained once and candidates that
differ only after a stage reuse everything before it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from device_bench.atomicio import atomic_target, write_json

INDEX = "stages.json"
SCHEMA = "edgekit.stages/1"


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
    """The ``stages.json`` index of a folder.

    Lookups see the stages recorded since the cache was made, plus, with ``resume``, those an
    earlier run left in ``root``. (Within one run, fingerprints are chained, so a fresh run never
    finds its own stages; a sweep's candidates find each other's.)

    Args:
        root: The folder that holds the index; artefacts are stored relative to it.
        resume: Start from the index an earlier run wrote (False: start empty).
    """

    def __init__(self, root: str | os.PathLike[str], resume: bool) -> None:
        self.root = Path(root)
        self.index: dict[str, dict[str, Any]] = {}
        path = self.root / INDEX
        if resume and path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                data = {}
            if data.get("schema") == SCHEMA:
                self.index = dict(data.get("stages", {}))

    def lookup(self, fp: str) -> dict[str, Any] | None:
        """Returns ``{"path": Path, "entry": dict}`` of a finished stage, or None.

        Args:
            fp: The stage fingerprint.
        """
        if fp not in self.index:
            return None
        item = self.index[fp]
        path = self.root / item["artefact"]
        if not path.is_file():
            return None
        return {"path": path, "entry": item["entry"]}

    def record(self, fp: str, artefact: Path, entry: dict[str, Any]) -> None:
        """Records a finished stage and rewrites the index atomically.

        Args:
            fp: The stage fingerprint.
            artefact: Its file (inside ``root``).
            entry: Its report entry.
        """
        rel = os.path.relpath(artefact, self.root)
        # The file now holds this stage: entries of earlier configs that wrote it are stale.
        self.index = {k: v for k, v in self.index.items() if v["artefact"] != rel}
        self.index[fp] = {"artefact": rel, "entry": entry}
        write_json(self.root / INDEX, {"schema": SCHEMA, "stages": self.index})


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
