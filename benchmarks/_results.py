"""Shared by the benchmark scripts: write a results file atomically (temp file, then rename)."""

from __future__ import annotations

import json
from pathlib import Path


def write_json(data: dict, path: Path) -> None:
    """``data`` as indented JSON at ``path``; a reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(data, indent=2) + "\n")
    partial.replace(path)
