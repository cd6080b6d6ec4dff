"""Downloads against a real loopback HTTP server: good, truncated, wrong hash, offline, concurrent, unknown."""

from __future__ import annotations

import functools
import hashlib
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from priorfit.errors import CheckpointError
from priorfit.hub import CheckpointSpec, get_spec, main, resolve_checkpoint

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class CountingHandler(SimpleHTTPRequestHandler):
    requests: list[str] = []
    truncate: bool = False

    def do_GET(self):  # noqa: N802
        type(self).requests.append(self.path)
        if type(self).truncate:
            data = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 3])  # then the connection closes early
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "model.safetensors").write_bytes(PAYLOAD)
    CountingHandler.requests = []
    CountingHandler.truncate = False
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(CountingHandler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    directory = tmp_path / "cache"
    monkeypatch.setenv("PRIORFIT_CACHE_DIR", str(directory))
    monkeypatch.delenv("PRIORFIT_OFFLINE", raising=False)
    return directory


def registry(url: str, sha256: str | None = None) -> dict[str, CheckpointSpec]:
    spec = CheckpointSpec(
        name="test-model",
        file="model.safetensors",
        sha256=sha256 or hashlib.sha256(PAYLOAD).hexdigest(),
        size=len(PAYLOAD),
        bundled=False,
        config="test",
        license="Apache-2.0",
        description="a test file",
        url=f"{url}/model.safetensors",
    )
    return {spec.name: spec}


def test_good_download_is_cached_and_not_fetched_again(server, cache):
    reg = registry(server)
    path = resolve_checkpoint("test-model", registry=reg, progress=False)
    assert path == cache / "model.safetensors" and path.read_bytes() == PAYLOAD
    assert resolve_checkpoint("test-model", registry=reg, progress=False) == path
    assert CountingHandler.requests == ["/model.safetensors"]
    assert not list(cache.glob("*.partial"))


def test_truncated_transfer_leaves_nothing_behind(server, cache):
    CountingHandler.truncate = True
    with pytest.raises(CheckpointError) as error:
        resolve_checkpoint("test-model", registry=registry(server), progress=False)
    assert "test-model" in str(error.value)
    assert not (cache / "model.safetensors").exists()
    assert not list(cache.glob("*.partial"))


def test_wrong_hash_is_refused_with_both_hashes(server, cache):
    wrong = "0" * 64
    with pytest.raises(CheckpointError, match="failed verification") as error:
        resolve_checkpoint("test-model", registry=registry(server, wrong), progress=False)
    assert wrong in str(error.value) and hashlib.sha256(PAYLOAD).hexdigest() in str(error.value)
    assert not (cache / "model.safetensors").exists()


def test_offline_uses_the_cache_or_says_how_to_fix_it(server, cache, monkeypatch):
    reg = registry(server)
    monkeypatch.setenv("PRIORFIT_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="PRIORFIT_OFFLINE=1") as error:
        resolve_checkpoint("test-model", registry=reg, progress=False)
    assert str(cache / "model.safetensors") in str(error.value)
    assert CountingHandler.requests == []
    monkeypatch.delenv("PRIORFIT_OFFLINE")
    resolve_checkpoint("test-model", registry=reg, progress=False)
    monkeypatch.setenv("PRIORFIT_OFFLINE", "1")
    assert resolve_checkpoint("test-model", registry=reg, progress=False).read_bytes() == PAYLOAD


def test_corrupt_cache_entry_is_moved_aside_and_both_hashes_shown(server, cache, monkeypatch):
    cache.mkdir(parents=True)
    (cache / "model.safetensors").write_bytes(b"garbage")
    monkeypatch.setenv("PRIORFIT_OFFLINE", "1")
    with pytest.raises(CheckpointError) as error:
        resolve_checkpoint("test-model", registry=registry(server), progress=False)
    message = str(error.value)
    assert hashlib.sha256(b"garbage").hexdigest() in message and hashlib.sha256(PAYLOAD).hexdigest() in message
    moved = list(cache.glob("model.safetensors.corrupt-*"))
    assert len(moved) == 1 and moved[0].read_bytes() == b"garbage"
    monkeypatch.delenv("PRIORFIT_OFFLINE")
    assert resolve_checkpoint("test-model", registry=registry(server), progress=False).read_bytes() == PAYLOAD


def test_concurrent_downloads_of_one_name_fetch_once(server, cache):
    reg = registry(server)
    results, errors = [], []

    def fetch():
        try:
            results.append(resolve_checkpoint("test-model", registry=reg, progress=False))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(set(results)) == 1
    assert CountingHandler.requests == ["/model.safetensors"]


def test_user_file_is_used_as_is(tmp_path, cache):
    own = tmp_path / "mine.safetensors"
    own.write_bytes(b"whatever")
    assert resolve_checkpoint(own) == own and own.read_bytes() == b"whatever"


def test_unknown_name_suggests_close_matches(server, cache):
    with pytest.raises(CheckpointError, match="Did you mean 'test-model'"):
        get_spec("test-modle", registry(server))
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_checkpoint("some/dir/model.ckpt")


def test_cli_lists_checkpoints(capsys):
    assert main(["--list"]) == 0
    assert "pfn-gp-1d" in capsys.readouterr().out


def test_cli_points_an_unknown_name_at_the_list(capsys):
    assert main(["pfn-gp-2d"]) == 1
    error = capsys.readouterr().err
    assert "unknown checkpoint name 'pfn-gp-2d'" in error and "Did you mean 'pfn-gp-1d'" in error
    assert "priorfit-download --list" in error


def test_the_errors_users_catch_are_importable_from_the_package():
    import priorfit
    from priorfit.errors import OutOfDomainWarning, PretrainingLimitError

    assert priorfit.PretrainingLimitError is PretrainingLimitError
    assert priorfit.OutOfDomainWarning is OutOfDomainWarning and issubclass(OutOfDomainWarning, UserWarning)


def test_a_file_named_like_a_registered_checkpoint_does_not_shadow_it(server, cache, tmp_path, monkeypatch):
    reg = registry(server)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "test-model").write_bytes(b"a file in the working directory")
    path = resolve_checkpoint("test-model", registry=reg, progress=False)
    assert path == cache / "model.safetensors" and path.read_bytes() == PAYLOAD
    assert resolve_checkpoint("./test-model", registry=reg) == Path("test-model")  # clearly a path: the file
    assert resolve_checkpoint(Path("test-model"), registry=reg) == Path("test-model")


def test_a_folder_named_like_a_bundled_checkpoint_does_not_break_the_estimators(tmp_path, monkeypatch):
    from priorfit import PFNClassifier

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tabular-clf-small").mkdir()
    (tmp_path / "pfn-gp-1d").write_bytes(b"not a model")
    assert resolve_checkpoint("pfn-gp-1d").name == "pfn-gp-1d.safetensors"
    classifier = PFNClassifier(n_estimators=1).fit([[0.0], [1.0], [0.1], [0.9]], [0, 1, 0, 1])
    assert classifier.predict([[0.05]]).tolist() == [0]


@pytest.mark.parametrize("file", ["../escape.safetensors", "sub/model.safetensors", "..", "", "/etc/passwd"])
def test_a_registry_file_name_cannot_leave_the_cache(file):
    with pytest.raises(CheckpointError, match="unsafe file name"):
        CheckpointSpec("x", file, "0" * 64, 1, False, "c", "Apache-2.0", "d")


def test_a_read_only_cache_with_a_valid_file_works_offline(server, cache, monkeypatch):
    import os
    import stat

    reg = registry(server)
    resolve_checkpoint("test-model", registry=reg, progress=False)
    (cache / "model.safetensors.lock").unlink(missing_ok=True)
    os.chmod(cache, stat.S_IRUSR | stat.S_IXUSR)
    monkeypatch.setenv("PRIORFIT_OFFLINE", "1")
    try:
        if os.access(cache, os.W_OK):  # root ignores permission bits: simulate what a read-only mount does
            import filelock

            def refuse(*args, **kwargs):
                raise OSError(30, "Read-only file system", str(cache / "model.safetensors.lock"))

            monkeypatch.setattr(filelock.FileLock, "acquire", refuse)
        assert resolve_checkpoint("test-model", registry=reg, progress=False).read_bytes() == PAYLOAD
        (cache / "model.safetensors").chmod(stat.S_IRUSR | stat.S_IWUSR)
    finally:
        os.chmod(cache, stat.S_IRWXU)


def test_an_unwritable_cache_is_a_named_error(server, tmp_path, monkeypatch):
    blocker = tmp_path / "a file, not a folder"
    blocker.write_text("x")
    monkeypatch.setenv("PRIORFIT_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.delenv("PRIORFIT_OFFLINE", raising=False)
    with pytest.raises(CheckpointError, match="PRIORFIT_CACHE_DIR to a writable folder"):
        resolve_checkpoint("test-model", registry=registry(server), progress=False)


def test_two_corrupt_copies_moved_aside_in_one_second_both_survive(server, cache, monkeypatch):
    monkeypatch.setenv("PRIORFIT_OFFLINE", "1")
    cache.mkdir(parents=True)
    for garbage in (b"first", b"second"):
        (cache / "model.safetensors").write_bytes(garbage)
        with pytest.raises(CheckpointError):
            resolve_checkpoint("test-model", registry=registry(server), progress=False)
    moved = sorted(path.read_bytes() for path in cache.glob("model.safetensors.corrupt-*"))
    assert moved == [b"first", b"second"]


@pytest.mark.parametrize("bad", [None, 3, ["pfn-gp-1d"]])
def test_a_checkpoint_argument_of_the_wrong_type(bad):
    with pytest.raises(CheckpointError, match="a registered name or a path"):
        resolve_checkpoint(bad)
