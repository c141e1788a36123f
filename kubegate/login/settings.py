"""What `kubegate login` was asked to do, read from its flags and checked once.

Rules of this module:
- every problem is collected and reported at once as one `UsageError` (exit status 2);
- the issuer URL passes `discovery.check_issuer_url` here, before anything is sent;
- the client secret is read from its file here and never appears in a repr; the file's
  path is kept so that an exec plugin's command can name it (never the secret);
- `os.environ` is not read here: the command passes its environment in.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kubegate.errors import UsageError
from kubegate.grammar import parse_duration
from kubegate.login.discovery import check_issuer_url
from kubegate.login.store import login_folder

__all__ = ["DEFAULT_SCOPES", "DEFAULT_TIMEOUT", "LoginSettings", "read_login_settings"]

DEFAULT_SCOPES = "openid email groups offline_access"
DEFAULT_TIMEOUT = "5m"
MAX_SECRET_BYTES = 4096


@dataclass(frozen=True, kw_only=True)
class LoginSettings:
    issuer: str
    client_id: str
    client_secret: str = field(default="", repr=False)
    client_secret_file: Path | None = None
    scopes: tuple[str, ...] = tuple(DEFAULT_SCOPES.split())
    issuer_ca_file: Path | None = None
    device: bool = False
    open_browser: bool = True
    timeout: float = 300.0
    listen_port: int = 0  # 0: any free port
    cache_folder: Path

    def __post_init__(self) -> None:
        if not self.issuer or not self.client_id:
            raise ValueError("a login needs an issuer and a client id")


def read_login_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> LoginSettings:
    problems: list[str] = []
    issuer, client_id = (args.issuer or "").strip(), (args.client_id or "").strip()
    if not client_id:
        problems.append("--client-id: required")
    try:
        check_issuer_url(issuer)
    except UsageError as error:
        problems.append(str(error) if issuer else "--issuer: required")
    scopes = tuple(args.scopes.split())
    if "openid" not in scopes:
        problems.append("--scopes: must include openid")
    timeout = _timeout(args.timeout, problems)
    secret = _secret(args.client_secret_file, problems)
    ca_file = args.issuer_ca_file
    if ca_file is not None and not ca_file.is_file():
        problems.append(f"--issuer-ca-file {ca_file}: no such file")
    if not 0 <= args.listen_port <= 65535:
        problems.append("--listen-port: must be 0 to 65535")
    if problems:
        raise UsageError("; ".join(problems))
    return LoginSettings(
        issuer=issuer, client_id=client_id, client_secret=secret,
        client_secret_file=args.client_secret_file.resolve() if secret else None,
        scopes=scopes, issuer_ca_file=ca_file.resolve() if ca_file else None,
        device=args.device, open_browser=not args.no_browser and _graphical(environ),
        timeout=timeout, listen_port=args.listen_port, cache_folder=login_folder(environ))


def _timeout(text: str, problems: list[str]) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as error:
        problems.append(f"--timeout: {error}")
        return 0.0
    if seconds <= 0:
        problems.append("--timeout: must be positive")
    return seconds


def _secret(path: Path | None, problems: list[str]) -> str:
    if path is None:
        return ""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SECRET_BYTES + 1)
    except OSError as error:
        problems.append(f"--client-secret-file {path}: {error.strerror}")
        return ""
    try:
        secret = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        secret = ""
    if not secret or len(data) > MAX_SECRET_BYTES:
        problems.append(f"--client-secret-file {path}: empty, too large or not UTF-8 text")
    return secret


def _graphical(environ: Mapping[str, str]) -> bool:
    """Whether a browser window can open here. On Linux and the BSDs without a display,
    `webbrowser` would start a text browser in this terminal (and kubectl's), so not then."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"))
