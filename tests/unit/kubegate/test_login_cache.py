"""The login cache: where it lives, 0700 and 0600 written atomically, untrusted files refused
with the fix, and `kubegate logout`."""

from __future__ import annotations

import argparse
import os
import stat
import time
from pathlib import Path

import pytest

from kubegate.commands import logout
from kubegate.errors import UsageError
from kubegate.login.store import CachedLogin, LoginCache, cache_name, login_folder

ISSUER, CLIENT = "https://id.example.com", "kubegate-cli"


def login(issuer: str = ISSUER, client: str = CLIENT,
          token: str = "id.token.x") -> CachedLogin:  # noqa: S107 - a test value
    return CachedLogin(issuer=issuer, client_id=client, id_token=token,
                       refresh_token="refresh-x", expiry=int(time.time()) + 600,
                       who="alice@example.com")


@pytest.mark.parametrize(("environ", "expected"), [
    ({"KUBEGATE_CACHE_DIR": "/tmp/job", "XDG_CACHE_HOME": "/x"}, "/tmp/job/login"),
    ({"XDG_CACHE_HOME": "/x", "HOME": "/home/me"}, "/x/kubegate/login"),
    ({"XDG_CACHE_HOME": "relative", "HOME": "/home/me"}, "/home/me/.cache/kubegate/login"),
    ({"HOME": "/home/me"}, "/home/me/.cache/kubegate/login"),
])
def test_the_folder_follows_the_credential_cache(environ: dict[str, str],
                                                 expected: str) -> None:
    assert login_folder(environ) == Path(expected)


def test_the_file_name_is_a_digest_of_issuer_and_client() -> None:
    name = cache_name(ISSUER, CLIENT)
    assert len(name) == 64 and "example" not in name
    assert name != cache_name(ISSUER, CLIENT + "x") != cache_name(ISSUER + "/", CLIENT)


def test_a_login_is_written_0600_atomically_in_a_0700_folder(tmp_path: Path) -> None:
    cache = LoginCache(tmp_path / "a" / "login")
    path = cache.store(login())
    path2 = cache.store(login(token="id.token.y"))
    assert path == path2 == cache.path(ISSUER, CLIENT)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.folder.stat().st_mode) == 0o700
    assert os.listdir(cache.folder) == [path.name]  # no temporary file left behind
    loaded = cache.load(ISSUER, CLIENT)
    assert loaded is not None and loaded.id_token == "id.token.y"
    assert "id.token" not in repr(loaded) and "refresh-x" not in repr(loaded)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606])
def test_a_file_others_may_read_is_refused_with_the_fix(tmp_path: Path, mode: int) -> None:
    cache = LoginCache(tmp_path)
    path = cache.store(login())
    path.chmod(mode)
    with pytest.raises(UsageError) as caught:
        cache.load(ISSUER, CLIENT)
    message = str(caught.value)
    assert f"chmod 600 {path}" in message and "kubegate logout" in message
    assert "\n" not in message and "id.token" not in message


def test_a_file_of_someone_else_is_refused(tmp_path: Path) -> None:
    LoginCache(tmp_path).store(login())
    with pytest.raises(UsageError, match="owned by someone else; remove it"):
        LoginCache(tmp_path, uid=os.geteuid() + 1).load(ISSUER, CLIENT)


def test_a_symlink_is_refused(tmp_path: Path) -> None:
    cache = LoginCache(tmp_path / "login")
    target = LoginCache(tmp_path / "elsewhere").store(login())
    cache.prepare()
    cache.path(ISSUER, CLIENT).symlink_to(target)
    with pytest.raises(UsageError, match="a symlink"):
        cache.load(ISSUER, CLIENT)


def test_a_folder_others_may_enter_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "login"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    with pytest.raises(UsageError, match="lets others in .chmod 700"):
        LoginCache(folder).prepare()


@pytest.mark.parametrize("content", [b"", b"{}", b"not json", b'{"format": 1}',
                                     b'{"format": 2, "issuer": "x"}'])
def test_a_file_in_another_shape_counts_as_absent(tmp_path: Path, content: bytes) -> None:
    cache = LoginCache(tmp_path)
    path = cache.store(login())
    path.write_bytes(content)
    assert cache.load(ISSUER, CLIENT) is None


def test_a_file_for_another_login_counts_as_absent(tmp_path: Path) -> None:
    cache = LoginCache(tmp_path)
    other = cache.store(login(client="other"))
    os.replace(other, cache.path(ISSUER, CLIENT))
    assert cache.load(ISSUER, CLIENT) is None


def run_logout(folder: Path, monkeypatch: pytest.MonkeyPatch, **flags: object) -> int:
    monkeypatch.setenv("KUBEGATE_CACHE_DIR", str(folder))
    args = {"issuer": None, "client_id": None, "all": False, **flags}
    return logout.run(argparse.Namespace(**args))


def test_logout_removes_one_login_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    cache = LoginCache(tmp_path / "login")
    kept = cache.store(login(client="other"))
    removed = cache.store(login())
    assert run_logout(tmp_path, monkeypatch, issuer=ISSUER, client_id=CLIENT) == 0
    assert capsys.readouterr().out == f"removed {removed}\n"
    assert not removed.exists() and kept.exists()
    assert run_logout(tmp_path, monkeypatch, issuer=ISSUER, client_id=CLIENT) == 0
    assert "nothing removed" in capsys.readouterr().out


def test_logout_all_removes_every_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    cache = LoginCache(tmp_path / "login")
    paths = {cache.store(login(client=c)) for c in ("a", "b")}
    assert run_logout(tmp_path, monkeypatch, all=True) == 0
    assert set(capsys.readouterr().out.split()) == {"removed"} | {str(p) for p in paths}
    assert os.listdir(cache.folder) == []
    assert run_logout(tmp_path / "none", monkeypatch, all=True) == 0
    assert "no sign-ins cached" in capsys.readouterr().out


@pytest.mark.parametrize("flags", [{}, {"issuer": ISSUER}, {"all": True, "issuer": ISSUER}])
def test_logout_needs_a_login_or_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str],
                                     flags: dict[str, object]) -> None:
    assert run_logout(tmp_path, monkeypatch, **flags) == 2
    assert capsys.readouterr().err.startswith("kubegate logout: ")


def test_a_cache_root_the_login_creates_is_0700_for_the_credential_cache(
        tmp_path: Path) -> None:
    """`KUBEGATE_CACHE_DIR` is the credential cache's own folder: when signing in creates it
    first, the exec plugin's credential cache must still be able to use it."""
    LoginCache(login_folder({"KUBEGATE_CACHE_DIR": str(tmp_path / "job")})).store(login())
    assert stat.S_IMODE((tmp_path / "job").stat().st_mode) == 0o700
