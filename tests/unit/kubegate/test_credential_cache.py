"""The exec plugin's credential cache: an issued credential is handed out again while enough of
it is left, only to the same exchange (exchanger, CA, role, lifetime, audiences, subject-token
identity); files that are not provably ours and intact are never trusted; parallel callers
make one exchange between them; a broken cache costs an exchange, never the call."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from kubegate.client.cache import (
    CACHE_DIR_ENV,
    REPORT_MARGIN_SECONDS,
    STALE_SECONDS,
    CacheEntry,
    CredentialCache,
    cache_folder,
    decode_entry,
    encode_entry,
    is_fresh,
    refresh_margin,
)
from kubegate.client.cached_exchange import exchange_with_cache
from kubegate.client.settings import ExchangeSettings, TokenSourceConfig
from kubegate.credential import ClusterInfo, Credential
from kubegate.errors import SubjectTokenError
from kubegate.kubeconfig import DEFAULT_MARGIN_SECONDS

NOW = 1_700_000_000
KEY = "ab" * 32
SUBJECT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvOm9jdG8vd2ViIn0.c3ViamVjdC1zaWduYXR1cmU"
ROOT = Path(__file__).resolve().parents[3]


def credential(*, expires_at: int = NOW + 900, serial: str = "issued-1") -> Credential:
    return Credential(
        token=f"eyJhbGciOiJFUzI1NiJ9.eyJqdGkiOiIxIn0.{serial}", token_type="jwt",
        expires_at=expires_at, token_id="tid", session_id="sid", mapping="web-deploy",
        cluster=ClusterInfo(name="ci", server="https://10.0.0.1:6443",
                            certificate_authority_data=b"-----BEGIN CERTIFICATE-----\n",
                            namespace="web", service_account="deployer",
                            groups=("kubegate:deployers",)))


def entry(*, obtained_at: int = NOW, lifetime: int = 900, key: str = KEY) -> CacheEntry:
    return CacheEntry(key=key, obtained_at=obtained_at,
                      credential=credential(expires_at=obtained_at + lifetime))


def settings(**changes: object) -> ExchangeSettings:
    base = ExchangeSettings(
        target="kubegate.example.com:443", ca_file=None, plaintext=False, role="web-deploy",
        lifetime=900, audiences=(),
        token_source=TokenSourceConfig(kind="env", env_name="T", env_value=SUBJECT))
    return replace(base, **changes)  # type: ignore[arg-type]


class Exchanger:
    """A fake exchange: counts calls, records the subject token it was given, and issues a
    credential that lives `lifetime` seconds from the clock's now."""

    def __init__(self, clock: Callable[[], float], lifetime: int = 900,
                 delay: float = 0.0) -> None:
        self.clock, self.lifetime, self.delay = clock, lifetime, delay
        self.tokens: list[str | None] = []
        self._lock = threading.Lock()

    def __call__(self, token: str | None) -> Credential:
        with self._lock:
            self.tokens.append(token)
            number = len(self.tokens)
        time.sleep(self.delay)
        return credential(expires_at=int(self.clock()) + self.lifetime, serial=f"issued-{number}")

    @property
    def calls(self) -> int:
        return len(self.tokens)


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cache(tmp_path: Path) -> CredentialCache:
    made = CredentialCache(tmp_path / "cache" / "credentials")
    assert made.prepare() is None
    return made


# -- where it lives -------------------------------------------------------------------------------


@pytest.mark.parametrize(("environ", "folder"), [
    ({"HOME": "/home/ci"}, "/home/ci/.cache/kubegate/credentials"),
    ({"HOME": "/home/ci", "XDG_CACHE_HOME": "/var/cache/ci"}, "/var/cache/ci/kubegate/credentials"),
    ({"HOME": "/home/ci", "XDG_CACHE_HOME": "relative"}, "/home/ci/.cache/kubegate/credentials"),
    ({"HOME": "/home/ci", "XDG_CACHE_HOME": "/x", CACHE_DIR_ENV: "/run/job/cache"},
     "/run/job/cache"),
])
def test_the_folder_is_the_override_else_the_xdg_cache_folder(environ: dict[str, str],
                                                              folder: str) -> None:
    assert cache_folder(environ) == Path(folder)


def test_the_folder_is_made_private_and_a_folder_others_may_enter_is_refused(
        tmp_path: Path) -> None:
    fresh = CredentialCache(tmp_path / "new" / "credentials")
    assert fresh.prepare() is None
    assert stat.S_IMODE(fresh.folder.stat().st_mode) == 0o700

    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    problem = CredentialCache(shared).prepare()
    assert problem is not None and "lets others in" in problem
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755  # never changed behind the user's back

    foreign = CredentialCache(fresh.folder, uid=os.geteuid() + 4242).prepare()
    assert foreign is not None and "owned by uid" in foreign
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    assert CredentialCache(not_a_folder).prepare() is not None


# -- how long an entry is handed out ------------------------------------------------------------


def test_the_cached_path_reports_expiry_as_early_as_the_plugin_does() -> None:
    assert REPORT_MARGIN_SECONDS == DEFAULT_MARGIN_SECONDS


@pytest.mark.parametrize(("lifetime", "margin"), [
    (600, 60 + 60),     # the shortest grant (10 m): a minute, plus the minute kubectl is told
    (900, 60 + 90),     # 15 m: 10 % of the lifetime
    (3600, 60 + 360),
    (0, 60 + 60),
])
def test_the_refresh_margin_is_the_report_margin_plus_the_larger_of_a_minute_and_a_tenth(
        lifetime: int, margin: int) -> None:
    assert refresh_margin(lifetime) == margin


@pytest.mark.parametrize(("elapsed", "fresh"), [
    (0, True),
    (900 - 151, True),   # 151 s left: more than the 150 s margin
    (900 - 150, False),  # exactly the margin: exchange again
    (900, False),
    (2000, False),
    (-4, True),          # the clock slewed back a little
    (-60, False),        # the clock was set back: how much is left is unknown
])
def test_an_entry_is_fresh_while_more_than_the_margin_is_left(elapsed: int, fresh: bool) -> None:
    assert is_fresh(entry(lifetime=900), NOW + elapsed) is fresh


# -- what a file must be to be trusted -----------------------------------------------------------


def test_an_entry_survives_the_round_trip(cache: CredentialCache) -> None:
    stored = entry()
    cache.store(stored, now=NOW)
    path = cache.folder / f"{KEY}.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert cache.load(KEY) == stored
    assert cache.load(KEY).credential.token == stored.credential.token  # type: ignore[union-attr]
    assert "issued-1" not in repr(cache.load(KEY))


def _document() -> dict[str, object]:
    document: dict[str, object] = json.loads(encode_entry(entry()))
    return document


@pytest.mark.parametrize("damage", [
    lambda d: b"not json",
    lambda d: b"",
    lambda d: json.dumps(d)[:-5].encode(),
    lambda d: json.dumps([d]).encode(),
    lambda d: json.dumps({**d, "format": 2}).encode(),
    lambda d: json.dumps({**d, "obtained_at": True}).encode(),
    lambda d: json.dumps({**d, "obtained_at": "1700000000"}).encode(),
    lambda d: json.dumps({**d, "credential": {**d["credential"], "token": ""}}).encode(),
    lambda d: json.dumps({**d, "credential": {**d["credential"], "expires_at": 1.5}}).encode(),
    lambda d: json.dumps({**d, "credential": {**d["credential"], "cluster": []}}).encode(),
    lambda d: json.dumps({**d, "credential": {k: v for k, v in d["credential"].items()
                                              if k != "session_id"}}).encode(),
    lambda d: json.dumps({**d, "credential": {**d["credential"], "cluster": {
        **d["credential"]["cluster"], "certificate_authority_data": "%%%"}}}).encode(),
    lambda d: json.dumps({**d, "credential": {**d["credential"], "cluster": {
        **d["credential"]["cluster"], "groups": [1]}}}).encode(),
])
def test_a_corrupt_entry_is_missing_never_an_error(damage: Callable[[dict[str, object]], bytes],
                                                   cache: CredentialCache) -> None:
    data = damage(_document())
    assert decode_entry(data) is None
    path = cache.folder / f"{KEY}.json"
    path.write_bytes(data)
    path.chmod(0o600)
    assert cache.load(KEY) is None
    cache.store(entry(), now=NOW)  # and the next store replaces it
    assert cache.load(KEY) == entry()


def test_an_entry_filed_under_another_key_is_not_handed_out(cache: CredentialCache) -> None:
    cache.store(entry(key="cd" * 32), now=NOW)
    os.replace(cache.folder / f"{'cd' * 32}.json", cache.folder / f"{KEY}.json")
    assert cache.load(KEY) is None


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o606])
def test_an_entry_others_could_read_or_write_is_not_trusted(mode: int,
                                                           cache: CredentialCache) -> None:
    cache.store(entry(), now=NOW)
    (cache.folder / f"{KEY}.json").chmod(mode)
    assert cache.load(KEY) is None


def test_an_entry_owned_by_someone_else_is_not_trusted(cache: CredentialCache) -> None:
    cache.store(entry(), now=NOW)
    assert CredentialCache(cache.folder, uid=os.geteuid() + 4242).load(KEY) is None


def test_an_entry_is_never_read_through_a_symlink(cache: CredentialCache,
                                                  tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_bytes(encode_entry(entry()))
    elsewhere.chmod(0o600)
    (cache.folder / f"{KEY}.json").symlink_to(elsewhere)
    assert cache.load(KEY) is None
    cache.store(entry(), now=NOW)  # replaced by a file of its own; the target is untouched
    assert not (cache.folder / f"{KEY}.json").is_symlink()
    assert cache.load(KEY) == entry()


def test_a_huge_file_is_not_read(cache: CredentialCache) -> None:
    path = cache.folder / f"{KEY}.json"
    path.write_bytes(b" " * (64 * 1024 + 1))
    path.chmod(0o600)
    assert cache.load(KEY) is None


def test_keys_are_hex_digests_only(cache: CredentialCache) -> None:
    for key in ("../escape", "", "AB" * 32, "x.json"):
        with pytest.raises(ValueError):
            cache.load(key)


def test_expired_entries_and_orphan_locks_are_pruned_once_an_hour_old(
        cache: CredentialCache) -> None:
    now = int(time.time())
    old, live, recent = "01" * 32, "02" * 32, "03" * 32
    cache.store(entry(key=old, obtained_at=now - 2 * STALE_SECONDS), now=now)
    cache.store(entry(key=live, obtained_at=now, lifetime=3 * STALE_SECONDS), now=now)
    cache.store(entry(key=recent, obtained_at=now - 1000), now=now)  # expired, but just now
    orphan, kept = cache.folder / f"{'04' * 32}.lock", cache.folder / f"{live}.lock"
    orphan.touch()
    kept.touch()
    aged = now - 2 * STALE_SECONDS
    for path in cache.folder.iterdir():
        if not path.name.startswith(recent):
            os.utime(path, (aged, aged))
    cache.prune(now)
    names = {p.name for p in cache.folder.iterdir()}
    assert f"{old}.json" not in names and orphan.name not in names
    assert {f"{live}.json", kept.name, f"{recent}.json"} <= names


# -- the lock -------------------------------------------------------------------------------------


def test_a_held_lock_makes_the_next_caller_wait_then_go_on_without_it(
        cache: CredentialCache) -> None:
    clock = Clock(0.0)

    def sleep(seconds: float) -> None:
        clock.now += seconds

    with cache.locked(KEY) as first:
        assert first is True
        with cache.locked(KEY, wait=1.0, clock=clock, sleep=sleep) as second:
            assert second is False
        assert clock.now >= 1.0
    with cache.locked(KEY) as again:
        assert again is True
    assert stat.S_IMODE((cache.folder / f"{KEY}.lock").stat().st_mode) == 0o600


# -- one exchange through the cache ----------------------------------------------------------


def test_a_second_call_is_served_from_the_cache_without_an_exchange(
        cache: CredentialCache) -> None:
    clock = Clock()
    exchange = Exchanger(clock)
    first = exchange_with_cache(settings(), cache, exchange, clock=clock)
    clock.now += 600
    second = exchange_with_cache(settings(), cache, exchange, clock=clock)
    assert second == first
    assert exchange.tokens == [SUBJECT]  # the token read for the key is the one exchanged


def test_a_credential_close_to_its_expiry_is_replaced(cache: CredentialCache) -> None:
    clock = Clock()
    exchange = Exchanger(clock)
    first = exchange_with_cache(settings(), cache, exchange, clock=clock)
    clock.now += 900 - 150
    second = exchange_with_cache(settings(), cache, exchange, clock=clock)
    assert exchange.calls == 2 and second != first
    assert second.expires_at == NOW + 900 - 150 + 900


def _github(request_token: str) -> TokenSourceConfig:
    return TokenSourceConfig(kind="github-actions",
                             github_request_url="https://runtime.example/idtoken",
                             github_request_token=request_token)


@pytest.mark.parametrize("other", [
    {"token_source": TokenSourceConfig(kind="env", env_name="T", env_value=SUBJECT + "x")},
    {"token_source": TokenSourceConfig(kind="gitlab", env_name="T", env_value=SUBJECT)},
    {"target": "kubegate-staging.example.com:443"},
    {"role": "web-admin"},
    {"lifetime": 600},
    {"audiences": ("kubernetes",)},
], ids=["another-subject-token", "another-source-kind", "another-exchanger", "another-role",
        "another-lifetime", "other-audiences"])
def test_a_credential_is_never_handed_to_a_different_exchange(
        other: dict[str, object], cache: CredentialCache) -> None:
    clock = Clock()
    exchange = Exchanger(clock)
    mine = exchange_with_cache(settings(), cache, exchange, clock=clock)
    theirs = exchange_with_cache(settings(**other), cache, exchange, clock=clock)
    assert exchange.calls == 2 and theirs != mine
    assert exchange_with_cache(settings(), cache, exchange, clock=clock) == mine


def test_another_ca_or_another_github_job_is_another_key(cache: CredentialCache,
                                                         tmp_path: Path) -> None:
    clock = Clock()
    exchange = Exchanger(clock)
    ca = tmp_path / "ca.crt"
    ca.write_text("first CA")
    with_ca = settings(ca_file=ca)
    exchange_with_cache(with_ca, cache, exchange, clock=clock)
    exchange_with_cache(with_ca, cache, exchange, clock=clock)
    ca.write_text("another CA at the same path")
    exchange_with_cache(with_ca, cache, exchange, clock=clock)
    assert exchange.calls == 2

    job_1, job_2 = settings(token_source=_github("job-1")), settings(token_source=_github("job-2"))
    for chosen in (job_1, job_1, job_2, job_2):
        exchange_with_cache(chosen, cache, exchange, clock=clock)
    assert exchange.calls == 4
    assert exchange.tokens[2:] == [None, None]  # GitHub ID tokens are fetched by the exchange


def test_the_cache_file_holds_no_subject_token_or_runtime_token(cache: CredentialCache) -> None:
    clock = Clock()
    exchange_with_cache(settings(), cache, Exchanger(clock), clock=clock)
    exchange_with_cache(settings(token_source=_github("runtime-request-secret")), cache,
                        Exchanger(clock), clock=clock)
    for path in cache.folder.iterdir():
        text = path.read_text()
        assert SUBJECT not in text and SUBJECT.rsplit(".", 1)[1] not in text
        assert "runtime-request-secret" not in text and "runtime.example" not in text


def test_refresh_always_exchanges_and_fills_the_cache_for_the_plugin(
        cache: CredentialCache) -> None:
    clock = Clock()
    exchange = Exchanger(clock)
    exchange_with_cache(settings(), cache, exchange, clock=clock)
    checked = exchange_with_cache(settings(), cache, exchange, refresh=True, clock=clock)
    assert exchange.calls == 2
    assert exchange_with_cache(settings(), cache, exchange, clock=clock) == checked


def test_a_missing_token_file_is_the_exchange_error_it_always_was(
        cache: CredentialCache, tmp_path: Path) -> None:
    missing = settings(token_source=TokenSourceConfig(kind="file", path=tmp_path / "nope"))
    with pytest.raises(SubjectTokenError, match="no such file"):
        exchange_with_cache(missing, cache, Exchanger(Clock()), clock=Clock())


def test_an_unreadable_ca_file_is_left_to_the_exchange_to_report(cache: CredentialCache,
                                                                 tmp_path: Path) -> None:
    exchange = Exchanger(Clock())
    exchange_with_cache(settings(ca_file=tmp_path / "gone.crt"), cache, exchange, clock=Clock())
    assert exchange.tokens == [None] and list(cache.folder.iterdir()) == []


def test_a_cache_that_cannot_be_used_costs_an_exchange_not_the_call(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    broken = CredentialCache(tmp_path / "a-file" / "credentials")  # no folder can be made
    clock = Clock()
    exchange = Exchanger(clock)
    for _ in range(2):
        assert exchange_with_cache(settings(), broken, exchange, clock=clock).token
    assert exchange.calls == 2


def test_parallel_threads_make_one_exchange(cache: CredentialCache) -> None:
    exchange = Exchanger(time.time, delay=0.3)
    results: list[Credential] = []
    threads = [threading.Thread(target=lambda: results.append(
        exchange_with_cache(settings(), cache, exchange))) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert exchange.calls == 1
    assert len(results) == 10 and len({r.token for r in results}) == 1


PROCESS = textwrap.dedent("""\
    import sys, time
    from pathlib import Path
    from kubegate.client.cache import CredentialCache
    from kubegate.client.cached_exchange import exchange_with_cache
    from kubegate.client.settings import ExchangeSettings, TokenSourceConfig
    from kubegate.credential import ClusterInfo, Credential

    folder, calls = Path(sys.argv[1]), Path(sys.argv[2])
    def exchange(token):
        with calls.open("a") as log:
            log.write("exchange\\n")
        time.sleep(0.5)
        return Credential(token="issued." + str(time.time_ns()), token_type="jwt",
                          expires_at=int(time.time()) + 900, token_id="t", session_id="s",
                          mapping="m", cluster=ClusterInfo(name="c", server="https://s",
                          certificate_authority_data=b"", namespace="n"))
    settings = ExchangeSettings(target="h:1", ca_file=None, plaintext=False, role="r",
                                lifetime=0, audiences=(), token_source=TokenSourceConfig(
                                    kind="env", env_name="T", env_value="subject"))
    cache = CredentialCache(folder)
    assert cache.prepare() is None
    print(exchange_with_cache(settings, cache, exchange).token)
""")


def test_parallel_processes_make_one_exchange(tmp_path: Path) -> None:
    folder, calls = tmp_path / "cache", tmp_path / "calls"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    children = [subprocess.Popen([sys.executable, "-c", PROCESS, str(folder), str(calls)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=env) for _ in range(8)]
    outputs = [child.communicate(timeout=60) for child in children]
    assert all(child.returncode == 0 for child in children), outputs
    assert calls.read_text().count("exchange") == 1
    assert len({out.strip() for out, _ in outputs}) == 1


HIT = textwrap.dedent("""\
    import json, sys
    from pathlib import Path
    from kubegate.cli import main
    from kubegate.client.cache import CacheEntry, CredentialCache
    from kubegate.client.cached_exchange import cache_key, ca_digest, subject_identity
    from kubegate.commands.exchange import add_arguments, load_settings
    from kubegate.credential import ClusterInfo, Credential
    import argparse, os, time

    argv = ["--server", "kubegate.example.com:443", "--token-env", "T", "--role", "web",
            "--output", "exec-credential"]
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    settings = load_settings(parser.parse_args(argv), os.environ)
    identity, _ = subject_identity(settings.token_source)
    key = cache_key(settings, identity=identity, ca=ca_digest(None))
    now = int(time.time())
    CredentialCache(Path(os.environ["KUBEGATE_CACHE_DIR"])).prepare()
    CredentialCache(Path(os.environ["KUBEGATE_CACHE_DIR"])).store(CacheEntry(
        key=key, obtained_at=now, credential=Credential(
            token="cached.credential.token", token_type="jwt", expires_at=now + 900,
            token_id="t", session_id="s", mapping="web", cluster=ClusterInfo(
                name="c", server="https://s", certificate_authority_data=b"",
                namespace="n"))), now=now)
    status = main(["exchange", *argv])
    heavy = [m for m in ("grpc", "yaml", "tenacity", "urllib.request", "ssl", "jwt",
                         "kubernetes", "exchanger") if m in sys.modules]
    print(json.dumps([status, heavy]))
""")


def test_a_cache_hit_makes_no_exchange_and_imports_no_grpc_yaml_or_tls(tmp_path: Path) -> None:
    """kubectl runs the plugin before every command: a hit must cost little more than the
    interpreter's start (benchmark 8 measures it)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "T": SUBJECT,
           CACHE_DIR_ENV: str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-c", HIT], capture_output=True, text=True,
                            timeout=60, env=env, check=False)
    assert result.returncode == 0, result.stderr
    *printed, last = result.stdout.splitlines()
    assert json.loads(last) == [0, []]
    document = json.loads("\n".join(printed))
    assert document["kind"] == "ExecCredential"
    assert document["status"]["token"] == "cached.credential.token"
