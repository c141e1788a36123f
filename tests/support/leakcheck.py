"""A pytest plugin: no token or key the suite uses may appear in anything the suite wrote down.

What counts as a secret (recorded as the suite runs, by wrapping the helpers that make them;
observing only, nothing is faked):
- subject tokens the test issuers sign (`OIDCIssuer.sign`), and the GitHub issuer's ID-token
  request token;
- Kubernetes tokens the tests request (`Cluster.request_token`);
- credentials kubegate issues (`SelfIssuedSigner.issue`, `KubernetesClient.request_token`) and
  returns (`ExchangeClient.exchange`);
- private keys: the test issuers' signing keys, keys made by the local CA, and at the end every
  PEM private key file under pytest's base temporary folder.
A token is matched by its signature segment, a key by the lines of its PEM body (lines its public
key shares are left out); shorter pieces than 32 characters are not matched.

Where it looks (the artefacts): every log record of the session (kubegate's and the sidecar's
loggers at DEBUG, everything else at its own level), every captured stdout/stderr/log section
and failure report of every test, the text of every KubegateError and ExchangeError created,
kubegate's audit logs (every file `AuditLog` opened, and `audit.log` files under the base
temporary folder, which includes the kube-apiserver's), and other `*.log` files there.

At the end of the session a finding fails the run (exit status 1) with a line naming the kind of
secret and the artefact, never the secret. Output of subprocesses the tests do not capture is not
seen (a known limit).
"""

from __future__ import annotations

import functools
import itertools
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

MIN_PIECE = 32
_RUN = re.compile(rf"[A-Za-z0-9_\-+/]{{{MIN_PIECE},}}")
_PEM_BODY = re.compile(
    r"-----BEGIN ([A-Z ]*PRIVATE KEY)-----\s+(.*?)\s+-----END \1-----", re.DOTALL)
_OWN_LOGGERS = ("exchanger", "sidecar", "kubegate")
_MAX_FILE_BYTES = 64 * 1024 * 1024


# -- what is secret -------------------------------------------------------------------------------


class SecretRegistry:
    """Secret pieces by their first MIN_PIECE characters; thread-safe."""

    def __init__(self) -> None:
        self._by_prefix: dict[str, list[tuple[str, str]]] = {}
        self._lock = threading.Lock()

    def add_token(self, kind: str, token: object) -> None:
        """A JWT (or any opaque token): its signature segment, or the whole if it has none."""
        if isinstance(token, str) and token:
            self._add(kind, token.rsplit(".", 1)[-1])

    def add_private_key_pem(self, kind: str, pem: str | bytes, public_pem: str | bytes = b"",
                            ) -> None:
        text = pem.decode("ascii", "replace") if isinstance(pem, bytes) else pem
        public = public_pem.decode("ascii", "replace") if isinstance(public_pem, bytes) \
            else public_pem
        public_lines = set(public.split())
        for match in _PEM_BODY.finditer(text):
            for line in match.group(2).split():
                if line not in public_lines:
                    self._add(kind, line)

    def _add(self, kind: str, piece: str) -> None:
        if len(piece) < MIN_PIECE:
            return
        with self._lock:
            entries = self._by_prefix.setdefault(piece[:MIN_PIECE], [])
            if (kind, piece) not in entries:
                entries.append((kind, piece))

    def __len__(self) -> int:
        with self._lock:
            return sum(len(entries) for entries in self._by_prefix.values())

    def kinds_in(self, text: str) -> set[str]:
        """The kinds of secret whose pieces occur in `text`."""
        found: set[str] = set()
        with self._lock:
            by_prefix = dict(self._by_prefix)
        for run in _RUN.findall(text):
            for start in range(len(run) - MIN_PIECE + 1):
                for kind, piece in by_prefix.get(run[start:start + MIN_PIECE], ()):
                    if run.startswith(piece, start):
                        found.add(kind)
        return found


# -- where it must not appear ---------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Finding:
    kind: str
    artefact: str

    def __str__(self) -> str:
        return f"a {self.kind} appears in {self.artefact}"


@dataclass
class Artefacts:
    """Long base64-looking runs of text by the artefact they were seen in (texts themselves are
    not kept: only runs could hold a secret piece)."""

    runs: dict[str, set[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, artefact: str, text: str) -> None:
        runs = _RUN.findall(text)
        if runs:
            with self.lock:
                self.runs.setdefault(artefact, set()).update(runs)


def find_leaks(registry: SecretRegistry, artefacts: Iterable[tuple[str, str]]) -> list[Finding]:
    """Every (kind of secret, artefact) where a secret piece occurs in the artefact's text."""
    findings = {Finding(kind=kind, artefact=artefact)
                for artefact, text in artefacts for kind in registry.kinds_in(text)}
    return sorted(findings, key=lambda f: (f.artefact, f.kind))


def _file_texts(paths: Iterable[Path], root: Path | None) -> Iterator[tuple[str, str]]:
    for path in sorted(set(paths)):
        try:
            if not path.is_file() or path.stat().st_size > _MAX_FILE_BYTES:
                continue
            text = path.read_text(errors="replace")
        except OSError:
            continue
        shown = path.relative_to(root) if root and path.is_relative_to(root) else path
        yield f"file {shown}", text


# -- the plugin -----------------------------------------------------------------------------------


class _RecordingHandler(logging.Handler):
    def __init__(self, check: LeakCheck) -> None:
        super().__init__(logging.DEBUG)
        self._check = check
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # a record that cannot be formatted holds no text to leak
            return
        self._check.artefacts.add(f"a log record of {record.name} ({self._check.current})", text)


class LeakCheck:
    """The session's registry, artefacts and the wrappers that feed them."""

    def __init__(self) -> None:
        self.registry = SecretRegistry()
        self.artefacts = Artefacts()
        self.audit_paths: set[Path] = set()
        self.current = "collection"
        self.findings: list[Finding] = []
        self.files_checked = 0
        self._undo: list[Callable[[], None]] = []
        self._handler = _RecordingHandler(self)
        self._levels: dict[str, int] = {}

    # installing

    def install(self) -> None:
        root = logging.getLogger()
        root.addHandler(self._handler)
        self._undo.append(lambda: root.removeHandler(self._handler))
        for name in _OWN_LOGGERS:
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            logger.setLevel(logging.DEBUG)
        self._undo.append(self._restore_levels)
        self._wrap_sources()

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()

    def _restore_levels(self) -> None:
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)

    def _patch(self, owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        setattr(owner, name, make(original))
        self._undo.append(lambda: setattr(owner, name, original))

    def _returns(self, owner: Any, name: str, record: Callable[[Any, Any], None]) -> None:
        """Wrap `owner.name` so that `record(self_or_none, result)` sees every result."""
        def make(original: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(original)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                result = original(*args, **kwargs)
                record(args[0] if args else None, result)
                return result
            return wrapper
        self._patch(owner, name, make)

    def _wrap_sources(self) -> None:
        from exchanger import localtls
        from exchanger.audit import log as audit_log
        from exchanger.backends import selfissued
        from exchanger.kube import client as kube_client
        from kubegate.client import rpc
        from kubegate.errors import KubegateError
        from tests.support import kube, oidc

        add_token = self.registry.add_token
        self._returns(oidc.OIDCIssuer, "sign",
                      lambda _, token: add_token("subject token of a test issuer", token))
        self._returns(oidc.OIDCIssuer, "start", self._record_request_token)
        self._returns(oidc, "new_signing_key", lambda _, key: self._record_rsa_key(key))
        self._returns(localtls, "key_pem", lambda _, pem: self.registry.add_private_key_pem(
            "private key of the local CA", pem))
        self._returns(kube.Cluster, "request_token", lambda _, status: add_token(
            "Kubernetes token a test requested", getattr(status, "token", None)))
        self._returns(selfissued.SelfIssuedSigner, "issue", lambda _, credential: add_token(
            "credential kubegate issued", credential.token))
        self._returns(kube_client.KubernetesClient, "request_token", lambda _, granted: add_token(
            "credential kubegate issued", granted.token))
        self._returns(rpc.ExchangeClient, "exchange", lambda _, credential: add_token(
            "credential kubegate returned", credential.token))
        self._after_init(audit_log.AuditLog, lambda log: self.audit_paths.add(Path(log.path)))
        self._after_init(KubegateError, lambda error: self.artefacts.add(
            f"a kubegate error ({self.current})", f"{error} {error.detail}"))

    def _after_init(self, cls: type, record: Callable[[Any], None]) -> None:
        def make(original: Callable[..., None]) -> Callable[..., None]:
            @functools.wraps(original)
            def init(instance: Any, *args: Any, **kwargs: Any) -> None:
                original(instance, *args, **kwargs)
                record(instance)  # subclasses reach here through super().__init__, once
            return init
        self._patch(cls, "__init__", make)

    def _record_request_token(self, issuer: Any, _: Any) -> None:
        self.registry.add_token("Actions ID-token request token",
                                getattr(issuer, "_request_token", None))

    def _record_rsa_key(self, key: Any) -> None:
        from cryptography.hazmat.primitives import serialization

        private = key.private_key
        pem = private.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        public = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.registry.add_private_key_pem("signing key of a test issuer", pem, public)

    # checking

    def check(self, basetemp: Path | None) -> list[Finding]:
        files = set(self.audit_paths)
        if basetemp is not None and basetemp.is_dir():
            self._record_key_files(basetemp)
            files |= set(basetemp.rglob("*.log"))
        texts = [(artefact, "\n".join(runs)) for artefact, runs in self.artefacts.runs.items()]
        self.findings = find_leaks(self.registry,
                                   itertools.chain(texts, self._counted(files, basetemp)))
        return self.findings

    def _counted(self, files: set[Path], basetemp: Path | None) -> Iterator[tuple[str, str]]:
        """One file at a time (an apiserver audit log can be large), counting them."""
        for artefact, text in _file_texts(files, basetemp):
            self.files_checked += 1
            yield artefact, text

    def _record_key_files(self, basetemp: Path) -> None:
        for path in [*basetemp.rglob("*.key"), *basetemp.rglob("*.pem")]:
            try:
                if not path.is_file() or path.stat().st_size >= 100_000:
                    continue  # a key file is small; a CA bundle of a virtualenv is not one
                text = path.read_text(errors="replace")
            except OSError:
                continue
            if "PRIVATE KEY" in text:
                self.registry.add_private_key_pem(
                    f"private key file ({path.relative_to(basetemp)})", text,
                    _public_pem_of(text))


def _public_pem_of(private_pem: str) -> bytes:
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(private_pem.encode(), password=None)
        return key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, TypeError):
        return b""


_CHECK = pytest.StashKey[LeakCheck]()


class _Hooks:
    """The session hooks, bound to one LeakCheck."""

    def __init__(self, check: LeakCheck) -> None:
        self.check = check

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Iterator[None]:
        self.check.current = item.nodeid
        try:
            return (yield)
        finally:
            self.check.current = "between tests"

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for title, content in report.sections:
            self.check.artefacts.add(f"{title.lower()} of {report.nodeid}", content)
        if report.longrepr is not None:
            self.check.artefacts.add(f"the {report.when} report of {report.nodeid}",
                                     report.longreprtext)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.check.check(_basetemp(session.config)):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        check = self.check
        if not check.findings:
            terminalreporter.write_line(
                f"leak check: none of {len(check.registry)} secret pieces in logs, captured "
                f"output, reports, error messages or {check.files_checked} audit and log files")
            return
        terminalreporter.write_sep("=", "SECRETS LEAKED", red=True, bold=True)
        for finding in check.findings:
            terminalreporter.write_line(f"  {finding}")


def _basetemp(config: pytest.Config) -> Path | None:
    """pytest's base temporary folder, if a test made one (private attributes, read only)."""
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is None:
        return None
    made = getattr(factory, "_basetemp", None)
    return Path(made) if made is not None else None


def pytest_configure(config: pytest.Config) -> None:
    check = LeakCheck()
    check.install()
    config.stash[_CHECK] = check
    config.pluginmanager.register(_Hooks(check), "kubegate-leakcheck-hooks")


def pytest_unconfigure(config: pytest.Config) -> None:
    check = config.stash.get(_CHECK, None)
    if check is not None:
        check.uninstall()


@pytest.fixture(scope="session")
def secret_registry(pytestconfig: pytest.Config) -> SecretRegistry:
    """Register secrets a test makes by other means than the wrapped helpers."""
    return pytestconfig.stash[_CHECK].registry
