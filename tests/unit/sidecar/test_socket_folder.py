"""The socket's folder: created private whatever the umask, tightened when the sidecar owns it,
used as it is when sticky (like /tmp), refused when someone else could swap the socket in it
(a kubelet-made emptyDir: 0777, owned by root, no sticky bit). Real folders, real chown (the
tests run as root where they need another owner), and the pure decision table."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.api import ApiServer, SocketApi
from sidecar.socketfolder import (
    FolderDecision,
    UnsafeSocketFolderError,
    decide,
    prepare_socket_folder,
)
from tests.support.fixtures_kube import under_ci
from tests.unit.sidecar.test_socket_api import FakeCache

ME, OTHER, ROOT = 1000, 12345, 0
GROUP = 12346
DIR = stat.S_IFDIR
# chown to another uid needs root; under CI these run anyway and fail loudly if not root
as_root = pytest.mark.skipif(os.geteuid() != 0 and not under_ci(),
                             reason="needs root to chown to another uid")


@pytest.fixture
def umask_zero() -> Iterator[None]:
    previous = os.umask(0)
    yield
    os.umask(previous)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mode", "owner", "group", "expected"), [
    (DIR | 0o700, ME, None, FolderDecision()),
    (DIR | 0o755, ME, None, FolderDecision()),
    (DIR | 0o777, ME, None, FolderDecision(chmod=0o700)),
    (DIR | 0o2777, ME, GROUP, FolderDecision(chmod=0o750)),
    (DIR | 0o770, ME, None, FolderDecision(chmod=0o700)),
    (DIR | 0o1777, ROOT, None, FolderDecision()),  # /tmp
    (DIR | 0o1777, OTHER, None, FolderDecision()),
    (DIR | 0o755, ROOT, None, FolderDecision()),
])
def test_decide_allows_or_tightens(mode: int, owner: int, group: int | None,
                                   expected: FolderDecision) -> None:
    assert decide(mode=mode, owner=owner, me=ME, group=group) == expected


@pytest.mark.parametrize(("mode", "owner", "why"), [
    (DIR | 0o777, ROOT, "anyone may write to it (mode 0777, owner root, no sticky bit)"),
    (DIR | 0o2777, ROOT, "anyone may write"),  # emptyDir with fsGroup
    (DIR | 0o770, ROOT, "its group may write"),
    (DIR | 0o777, OTHER, "owned by uid 12345"),
    (DIR | 0o700, OTHER, "owned by uid 12345"),
    (stat.S_IFREG | 0o600, ME, "not a folder"),
])
def test_decide_refuses_a_folder_someone_else_could_write(mode: int, owner: int,
                                                          why: str) -> None:
    decision = decide(mode=mode, owner=owner, me=ME, group=None)
    assert decision.refuse is not None and why in decision.refuse
    assert decision.chmod is None


@pytest.mark.usefixtures("umask_zero")
def test_with_umask_0_missing_folders_are_created_0700(tmp_path: Path) -> None:
    folder = tmp_path / "run" / "kubegate"
    prepare_socket_folder(folder, group=None)
    assert mode_of(folder) == 0o700 and mode_of(folder.parent) == 0o700


@pytest.mark.usefixtures("umask_zero")
def test_with_a_group_missing_folders_are_created_0750_and_owned_by_it(tmp_path: Path) -> None:
    # an emptyDir with fsGroup: folders made in it would inherit its setgid bit
    os.chmod(tmp_path, 0o2777)  # noqa: S103
    folder = tmp_path / "run" / "kubegate"
    prepare_socket_folder(folder, group=os.getgid())
    for made in (folder, folder.parent):
        assert mode_of(made) == 0o750 and made.stat().st_gid == os.getgid()


@pytest.mark.usefixtures("umask_zero")
def test_the_socket_api_creates_its_folder_0700_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "made" / "kubegate.sock"
    api = SocketApi(FakeCache(), socket_path=path, plugin_command=["kubegate"],
                    clock=lambda: 0.0)
    server = ApiServer(api, path)
    try:
        assert mode_of(path.parent) == 0o700
        assert mode_of(path) == 0o600
    finally:
        server.stop()


def test_a_folder_we_own_that_anyone_may_write_is_tightened(tmp_path: Path) -> None:
    folder = tmp_path / "open"
    folder.mkdir()
    os.chmod(folder, 0o777)  # noqa: S103
    prepare_socket_folder(folder, group=None)
    assert mode_of(folder) == 0o700


def test_a_sticky_folder_is_used_and_left_as_it_is(tmp_path: Path) -> None:
    folder = tmp_path / "tmp"
    folder.mkdir()
    os.chmod(folder, 0o1777)  # noqa: S103
    prepare_socket_folder(folder, group=None)
    assert mode_of(folder) == 0o1777


@as_root
def test_a_world_writable_folder_of_another_user_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "theirs"
    folder.mkdir()
    os.chown(folder, OTHER, OTHER)
    os.chmod(folder, 0o777)  # noqa: S103
    with pytest.raises(UnsafeSocketFolderError, match=r"owned by uid 12345.*--socket"):
        prepare_socket_folder(folder, group=None)
    assert mode_of(folder) == 0o777  # not ours to change


@as_root
def test_the_socket_api_refuses_to_bind_in_an_unsafe_folder(tmp_path: Path) -> None:
    folder = tmp_path / "theirs"
    folder.mkdir()
    os.chown(folder, OTHER, OTHER)
    os.chmod(folder, 0o777)  # noqa: S103
    path = folder / "kubegate.sock"
    api = SocketApi(FakeCache(), socket_path=path, plugin_command=["kubegate"],
                    clock=lambda: 0.0)
    with pytest.raises(UnsafeSocketFolderError):
        ApiServer(api, path)
    assert not path.exists()


@as_root
def test_a_symlink_of_another_user_to_the_folder_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "real"
    target.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(target)
    os.lchown(link, OTHER, OTHER)
    with pytest.raises(UnsafeSocketFolderError, match="symlink owned by uid 12345"):
        prepare_socket_folder(link, group=None)


def test_a_symlink_of_ours_is_followed_and_its_folder_judged(tmp_path: Path) -> None:
    target = tmp_path / "real"
    target.mkdir()
    os.chmod(target, 0o777)  # noqa: S103
    link = tmp_path / "link"
    link.symlink_to(target)
    prepare_socket_folder(link, group=None)
    assert mode_of(target) == 0o700


def test_a_symlink_to_nothing_is_refused_not_followed(tmp_path: Path) -> None:
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "missing")
    with pytest.raises(UnsafeSocketFolderError, match="symlink to nothing"):
        prepare_socket_folder(link, group=None)
    assert not (tmp_path / "missing").exists()
