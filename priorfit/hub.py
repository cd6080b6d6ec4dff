"""Named checkpoints: a registry, a hash-checked cache, downloads, and bundled files for offline use.

``resolve_checkpoint(name_or_path)`` looks, in order, at: an explicit path; the bundled package
data; the cache (``PRIORFIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/priorfit``, else
``~/.cache/priorfit``); a download (unless ``PRIORFIT_OFFLINE=1``); and otherwise raises an error
that says which name, which paths were checked, which switch is on and how to fix it.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import http.client
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch.hub
from filelock import FileLock

from priorfit.errors import CheckpointError

__all__ = [
    "CheckpointSpec",
    "list_checkpoints",
    "get_spec",
    "resolve_checkpoint",
    "download_checkpoint",
    "cache_dir",
    "sha256_of",
    "register_file",
    "main",
]

BUNDLED_DIR = Path(__file__).resolve().parent / "checkpoints"
REGISTRY_FILE = BUNDLED_DIR / "registry.json"
# where released checkpoints live; a mirror can be set with PRIORFIT_HUB_URL
DEFAULT_HUB_URL = "https://github.com/priorfit/priorfit/releases/download/checkpoints-v1"


@dataclass(frozen=True)
class CheckpointSpec:
    """One named checkpoint: where it lives, how to verify it and how it was made."""

    name: str
    file: str
    sha256: str
    size: int
    bundled: bool
    config: str
    license: str
    description: str
    url: str | None = None

    def download_url(self) -> str:
        if self.url:
            return self.url
        base = os.environ.get("PRIORFIT_HUB_URL", DEFAULT_HUB_URL).rstrip("/")
        return f"{base}/{self.file}"


def _load_registry() -> dict[str, CheckpointSpec]:
    if not REGISTRY_FILE.exists():
        return {}
    entries = json.loads(REGISTRY_FILE.read_text())
    return {name: CheckpointSpec(name=name, **fields) for name, fields in entries.items()}


REGISTRY: dict[str, CheckpointSpec] = _load_registry()


def list_checkpoints(registry: dict[str, CheckpointSpec] | None = None) -> list[CheckpointSpec]:
    """Every registered checkpoint, by name."""
    registry = REGISTRY if registry is None else registry
    return [registry[name] for name in sorted(registry)]


def get_spec(name: str, registry: dict[str, CheckpointSpec] | None = None) -> CheckpointSpec:
    """The registry entry for ``name``; unknown names raise an error suggesting close matches."""
    registry = REGISTRY if registry is None else registry
    if name in registry:
        return registry[name]
    close = difflib.get_close_matches(name, list(registry), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise CheckpointError(
        f"unknown checkpoint name {name!r} (and no file at that path).{hint} "
        f"Known checkpoints: {sorted(registry) or 'none'}; see priorfit.hub.list_checkpoints()."
    )


def cache_dir() -> Path:
    """``PRIORFIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/priorfit``, else ``~/.cache/priorfit``."""
    if os.environ.get("PRIORFIT_CACHE_DIR"):
        return Path(os.environ["PRIORFIT_CACHE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "priorfit"


def offline() -> bool:
    return os.environ.get("PRIORFIT_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _move_aside(path: Path) -> Path:
    target = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    os.replace(path, target)
    return target


def _verified(spec: CheckpointSpec, path: Path) -> bool:
    return path.stat().st_size == spec.size and sha256_of(path) == spec.sha256


def download_checkpoint(spec: CheckpointSpec, *, directory: Path | None = None, progress: bool = True) -> Path:
    """Download ``spec`` into the cache under a file lock; verify the full sha256; rename into place.

    A second process asking for the same file waits for the lock and then finds it in place.
    """
    directory = cache_dir() if directory is None else directory
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / spec.file
    url = spec.download_url()
    with FileLock(str(target) + ".lock"):
        if target.exists() and _verified(spec, target):
            return target
        try:
            # streams to "<target>.<uuid>.partial", checks the hash, then moves into place
            torch.hub.download_url_to_file(url, str(target), hash_prefix=spec.sha256, progress=progress)
        except RuntimeError as error:
            message = str(error)
            if "invalid hash value" in message:
                raise CheckpointError(
                    f"download of {spec.name!r} from {url} failed verification ({message}): expected sha256 "
                    f"{spec.sha256} ({spec.size} bytes). The transfer may have been cut short or the file "
                    f"at that URL changed; nothing was written to {target}. Try again, or set "
                    f"PRIORFIT_HUB_URL to a mirror."
                ) from None
            raise CheckpointError(f"could not download {spec.name!r} from {url}: {message}") from None
        except (OSError, http.client.HTTPException) as error:  # URLError, refused, timeouts, cut transfers
            raise CheckpointError(
                f"could not download {spec.name!r} from {url}: {error}. Check the network or set "
                f"PRIORFIT_HUB_URL to a mirror; or set PRIORFIT_OFFLINE=1 and place the file at {target}."
            ) from None
    return target


def resolve_checkpoint(
    name_or_path: str | os.PathLike, *, registry: dict[str, CheckpointSpec] | None = None, progress: bool = True
) -> Path:
    """The verified local file for a path or a registered name (see the module docstring for the order)."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_file():
            raise CheckpointError(f"checkpoint path {path} is not a file")
        return path  # a user's own file: used as is, never moved or changed
    if isinstance(name_or_path, os.PathLike) or os.sep in str(name_or_path) or path.suffix in (".ckpt", ".safetensors"):
        raise CheckpointError(f"checkpoint not found: {path} does not exist")
    spec = get_spec(str(name_or_path), registry)
    checked = []

    bundled = BUNDLED_DIR / spec.file
    if spec.bundled:
        checked.append(str(bundled))
        if bundled.exists():
            actual = sha256_of(bundled)
            if actual != spec.sha256:
                raise CheckpointError(
                    f"bundled checkpoint {bundled} does not match the registry: sha256 {actual}, expected "
                    f"{spec.sha256}. The installation is damaged; reinstall priorfit."
                )
            return bundled

    cached = cache_dir() / spec.file
    checked.append(str(cached))
    moved_to, bad_hash = None, None
    if cached.exists():
        with FileLock(str(cached) + ".lock"):
            if cached.exists():
                actual = sha256_of(cached)
                if actual == spec.sha256:
                    return cached
                bad_hash, moved_to = actual, _move_aside(cached)

    corrupt_note = (
        f" The cached copy had sha256 {bad_hash} but the registry expects {spec.sha256}; it was moved aside to "
        f"{moved_to}."
        if moved_to
        else ""
    )
    if offline():
        raise CheckpointError(
            f"checkpoint {spec.name!r} is not available offline: checked {', '.join(checked)}; PRIORFIT_OFFLINE=1 "
            f"is set, so it was not downloaded.{corrupt_note} Fix: unset PRIORFIT_OFFLINE to download it from "
            f"{spec.download_url()}, or copy the file to {cached}."
        )
    try:
        return download_checkpoint(spec, progress=progress)
    except CheckpointError as error:
        raise CheckpointError(f"{error}{corrupt_note} (checked: {', '.join(checked)})") from None


def main(argv: list[str] | None = None) -> int:
    """``priorfit-download NAME [NAME ...]`` / ``--all`` / ``--list``."""
    parser = argparse.ArgumentParser(prog="priorfit-download", description="Fetch named priorfit checkpoints.")
    parser.add_argument("names", nargs="*", help="checkpoint names (see --list)")
    parser.add_argument("--all", action="store_true", help="every registered checkpoint")
    parser.add_argument("--list", action="store_true", help="list registered checkpoints and exit")
    args = parser.parse_args(argv)
    if args.list or not (args.names or args.all):
        for spec in list_checkpoints():
            where = "bundled" if spec.bundled else "download"
            print(f"{spec.name:24s} {where:8s} {spec.size / 1e6:6.2f} MB  {spec.description}")
        return 0
    names = [s.name for s in list_checkpoints()] if args.all else args.names
    try:
        for name in names:
            print(f"{name}: {resolve_checkpoint(name)}")
    except CheckpointError as error:
        print(f"error: {error}")
        return 1
    return 0


def register_file(
    name: str, path: Path, *, bundled: bool, config: str, description: str, license: str = "Apache-2.0"
) -> CheckpointSpec:
    """Add or update a registry entry for ``path`` (maintainers, after training); atomic write."""
    spec = CheckpointSpec(
        name=name,
        file=path.name,
        sha256=sha256_of(path),
        size=path.stat().st_size,
        bundled=bundled,
        config=config,
        license=license,
        description=description,
    )
    entries = json.loads(REGISTRY_FILE.read_text()) if REGISTRY_FILE.exists() else {}
    fields = asdict(spec)
    del fields["name"]
    entries[name] = fields
    temp = REGISTRY_FILE.with_suffix(".json.partial")
    temp.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")
    os.replace(temp, REGISTRY_FILE)
    REGISTRY[name] = spec
    return spec
