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
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import torch.hub
from filelock import FileLock

from priorfit._files import atomic_write
from priorfit.errors import CheckpointError

__all__ = [
    "CheckpointSpec",
    "list_checkpoints",
    "get_spec",
    "resolve_checkpoint",
    "looks_like_path",
    "download_checkpoint",
    "cache_dir",
    "sha256_of",
    "file_identity",
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

    def __post_init__(self) -> None:
        # the file name joins the cache folder: it must stay inside it
        bad = not isinstance(self.file, str) or self.file in ("", ".", "..") or Path(self.file).name != self.file
        if bad or any(sep and sep in self.file for sep in (os.sep, os.altsep, "/", "\\")):
            raise CheckpointError(
                f"registry entry {self.name!r} has an unsafe file name {self.file!r}: a plain name only"
            )

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


def file_identity(path: Path) -> tuple[str, int, int, int, int]:
    """(resolved path, size, mtime in ns, inode, device): changes whenever the file is replaced or rewritten."""
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_dev


_HASHES: dict[tuple, str] = {}  # file identity -> sha256, so an unchanged file is hashed once per process


def sha256_of(path: Path) -> str:
    """The file's full sha256 (remembered for an unchanged file: same path, size, mtime and inode)."""
    identity = file_identity(path)
    if identity not in _HASHES:
        _HASHES[identity] = _hash_file(path)
    return _HASHES[identity]


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _move_aside(path: Path) -> Path:
    # unique even for two moves in the same second by one process: never replaces an earlier corrupt copy
    target = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:12]}")
    os.replace(path, target)
    return target


def _verified(spec: CheckpointSpec, path: Path) -> bool:
    return path.stat().st_size == spec.size and sha256_of(path) == spec.sha256


def download_checkpoint(spec: CheckpointSpec, *, directory: Path | None = None, progress: bool = True) -> Path:
    """Download ``spec`` into the cache under a file lock; verify the full sha256; rename into place.

    A second process asking for the same file waits for the lock and then finds it in place.
    """
    directory = cache_dir() if directory is None else directory
    target = directory / spec.file
    url = spec.download_url()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(target) + ".lock")
        lock.acquire()
    except OSError as error:
        raise CheckpointError(
            f"cannot download {spec.name!r} into the cache folder {directory}: {error}. Fix: set "
            "PRIORFIT_CACHE_DIR to a writable folder, or place the verified file there by hand."
        ) from None
    try:
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
    finally:
        lock.release()
    return target


def looks_like_path(name_or_path: str | os.PathLike) -> bool:
    """A ``Path``, or a string with a folder separator, a leading ``~`` or ``.``, or a checkpoint suffix."""
    if isinstance(name_or_path, os.PathLike):
        return True
    text = str(name_or_path)
    separators = [sep for sep in (os.sep, os.altsep, "/") if sep]
    return (
        any(sep in text for sep in separators)
        or text.startswith(("~", "."))
        or Path(text).suffix in (".ckpt", ".safetensors", ".pt", ".pth")
    )


def resolve_checkpoint(
    name_or_path: str | os.PathLike, *, registry: dict[str, CheckpointSpec] | None = None, progress: bool = True
) -> Path:
    """The verified local file for a path or a registered name (see the module docstring for the order).

    A registered name always resolves through the hash-checked registry, even when a file of that name lies in
    the working directory; a string is a path when it is not a registered name or clearly is one (see
    :func:`looks_like_path`).
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise CheckpointError(
            f"a checkpoint is a registered name or a path, got {type(name_or_path).__name__} "
            "(see priorfit.hub.list_checkpoints())"
        )
    registry = REGISTRY if registry is None else registry
    is_path = looks_like_path(name_or_path)
    if is_path or str(name_or_path) not in registry:
        path = Path(name_or_path).expanduser()
        if path.is_file():
            return path  # a user's own file: used as is, never moved or changed
        if path.exists():
            raise CheckpointError(f"checkpoint path {path} is not a file")
        if is_path:
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
    # verifying needs no lock, so a read-only (shared, pre-filled) cache works; only moving a bad copy aside does
    if cached.is_file() and _verified(spec, cached):
        return cached
    if cached.exists():
        try:
            with FileLock(str(cached) + ".lock"):
                if cached.exists():
                    actual = sha256_of(cached)
                    if actual == spec.sha256:
                        return cached
                    bad_hash, moved_to = actual, _move_aside(cached)
        except OSError as error:
            raise CheckpointError(
                f"the cached copy of {spec.name!r} at {cached} does not match the registry (expected sha256 "
                f"{spec.sha256}) and could not be moved aside: {error}. Fix: delete or replace that file, or set "
                f"PRIORFIT_CACHE_DIR to a writable folder."
            ) from None

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
            print(f"{'':24s} calibration: {_card_line(spec)}")
        return 0
    names = [s.name for s in list_checkpoints()] if args.all else args.names
    try:
        for name in names:
            print(f"{name}: {resolve_checkpoint(name)}")
    except CheckpointError as error:
        print(f"priorfit-download: error: {error} Run priorfit-download --list for the names.", file=sys.stderr)
        return 1
    return 0


def _card_line(spec: CheckpointSpec) -> str:
    """The summary of a registered checkpoint's calibration card, read from its local copy's header."""
    from priorfit.checkpoint import read_card

    local = [BUNDLED_DIR / spec.file] if spec.bundled else []
    path = next((p for p in [*local, cache_dir() / spec.file] if p.is_file() and _verified(spec, p)), None)
    if path is None:
        return "not downloaded yet (priorfit-download NAME fetches it; the card is in the file)"
    try:
        card = read_card(path)
    except CheckpointError as error:
        return f"unreadable ({error})"
    return card.summary() if card is not None else "none (the file predates calibration cards)"


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
    atomic_write(REGISTRY_FILE, lambda temp: temp.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n"))
    REGISTRY[name] = spec
    return spec
