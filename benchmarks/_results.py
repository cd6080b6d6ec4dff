"""Shared by the benchmark scripts: write a results file atomically (temp file, then rename)."""

from __future__ import annotations

import json
from pathlib import Path


def save_figure(fig, path: Path, dpi: int = 110) -> None:
    """``fig`` as a PNG at ``path``, written the same way (a temp file, then rename), and closed."""
    import matplotlib.pyplot as plt

    partial = path.with_suffix(".png.partial")
    fig.savefig(partial, dpi=dpi, format="png")
    partial.replace(path)
    plt.close(fig)


def write_json(data: dict, path: Path) -> None:
    """``data`` as indented JSON at ``path``; a reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(data, indent=2) + "\n")
    partial.replace(path)
