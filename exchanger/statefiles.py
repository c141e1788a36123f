"""The files an exchanger creates in its state folder before it serves: the folders, the TLS
files it generates (a local CA and a certificate, when the config names none) and the
self-issued signing key.

Rules of this module:
- it imports only what creating those files needs (no gRPC server, no Kubernetes client), so
  the pre-fork parent of `kubegate serve --workers N` (`exchanger.prefork.parent`), which
  creates them once for every worker, stays small;
- creating is idempotent: files that exist are kept (`ensure_local_tls`,
  `load_or_create_signing_key`).
"""

from __future__ import annotations

from exchanger.backends.selfissued import load_or_create_signing_key
from exchanger.config import Config, TLSFiles
from exchanger.localtls import ensure_local_tls
from kubegate.addresses import HostPort, parse_address, parse_host_port


def ensure_tls(files: TLSFiles, host: str) -> None:
    """Generate the CA and certificate of `files` when they are kubegate's own, for `host`."""
    if files.generated_ca_file is not None:
        ensure_local_tls(files.generated_ca_file, files.cert_file, files.key_file,
                         (host, "localhost", "127.0.0.1"))


def host_port(listen: str) -> tuple[str, int]:
    """The host to bind and the port of a `HOST:PORT` the config loader checked."""
    address = parse_host_port(listen)
    return address.bind_host, address.port


def prepare_shared_files(config: Config) -> None:
    """Create once what every worker of `serve --workers N` reads and none may create on its
    own (N would race): the state folders, the generated TLS files of the gRPC listener and
    of self-issued discovery, and the self-issued signing key."""
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    config.mappings.mkdir(parents=True, exist_ok=True)
    if config.tls is not None:
        address = parse_address(config.listen)
        ensure_tls(config.tls, address.bind_host if isinstance(address, HostPort)
                   else "127.0.0.1")
    if config.self_issued is not None and any(c.backend == "selfIssued"
                                              for c in config.clusters):
        ensure_tls(config.self_issued.tls, host_port(config.self_issued.listen)[0])
        load_or_create_signing_key(config.state_dir / "signing-key.pem")
