"""Test certificates: the product's local CA, under the names tests use."""

from exchanger.localtls import IssuedCert, LocalCA, key_pem, new_ec_key, public_key_pem

TestCA = LocalCA
TestCA.__test__ = False  # type: ignore[attr-defined]  # not a pytest test class

__all__ = ["IssuedCert", "TestCA", "key_pem", "new_ec_key", "public_key_pem"]
