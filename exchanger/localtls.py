"""A tiny local certificate authority: serving certificates for loopback listeners (the
exchanger's embedded default generates its TLS this way) and client certificates (tests use
one for the apiserver's admin user).

Keys are real (ECDSA P-256); private keys are written 0600, atomically.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubegate.files import write_secret_file

_VALIDITY = datetime.timedelta(days=2)


def new_ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True, kw_only=True)
class IssuedCert:
    cert_pem: bytes
    key_pem: bytes

    def write_to(self, cert_path: Path, key_path: Path) -> None:
        write_secret_file(key_path, self.key_pem)
        write_secret_file(cert_path, self.cert_pem, mode=0o644)

    def write(self, folder: Path, stem: str) -> tuple[Path, Path]:
        """Write `<stem>.crt` and `<stem>.key` (0600) into folder; return both paths."""
        cert_path, key_path = folder / f"{stem}.crt", folder / f"{stem}.key"
        self.write_to(cert_path, key_path)
        return cert_path, key_path


class LocalCA:
    """A self-signed CA that issues leaf certificates."""

    def __init__(self, name: str, validity: datetime.timedelta = _VALIDITY) -> None:
        self._validity = validity
        self._key = new_ec_key()
        now = datetime.datetime.now(datetime.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + validity)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    content_commitment=False, key_encipherment=False, data_encipherment=False,
                    key_agreement=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> bytes:
        return self._cert.public_bytes(serialization.Encoding.PEM)

    def write(self, path: Path) -> Path:
        path.write_bytes(self.cert_pem)
        return path

    def issue_server(self, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> IssuedCert:
        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        return self._issue(hosts[0], (), [ExtendedKeyUsageOID.SERVER_AUTH], sans)

    def issue_client(self, user: str, groups: tuple[str, ...] = ()) -> IssuedCert:
        """A client certificate the apiserver reads as user CN and groups O."""
        return self._issue(user, groups, [ExtendedKeyUsageOID.CLIENT_AUTH], [])

    def _issue(
        self,
        common_name: str,
        organizations: tuple[str, ...],
        usages: list[x509.ObjectIdentifier],
        sans: list[x509.GeneralName],
    ) -> IssuedCert:
        key = new_ec_key()
        now = datetime.datetime.now(datetime.UTC)
        attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        attributes += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attributes))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + self._validity)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return IssuedCert(
            cert_pem=cert.public_bytes(serialization.Encoding.PEM), key_pem=key_pem(key)
        )


LOCAL_VALIDITY = datetime.timedelta(days=365)


def ensure_local_tls(ca_file: Path, cert_file: Path, key_file: Path, hosts: tuple[str, ...],
                     name: str = "kubegate local CA") -> bool:
    """Create a local CA and a serving certificate for hosts unless both files exist.
    Returns True when it created them. The CA's own key is not kept: nothing else is signed."""
    if cert_file.exists() and key_file.exists() and ca_file.exists():
        return False
    ca = LocalCA(name, validity=LOCAL_VALIDITY)
    ca.issue_server(hosts).write_to(cert_file, key_file)
    write_secret_file(ca_file, ca.cert_pem, mode=0o644)
    return True
