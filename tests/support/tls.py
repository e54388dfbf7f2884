"""A throwaway certificate authority for TLS tests: a CA, a server and a client certificate."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pem:
    cert: bytes
    key: bytes


@dataclass(frozen=True)
class TestPki:
    ca: Pem
    server: Pem
    client: Pem

    def write(self, directory: Path) -> dict[str, Path]:
        """Write every PEM file into ``directory``; returns their paths by name."""
        paths = {}
        for name, pem in (("ca", self.ca), ("server", self.server), ("client", self.client)):
            paths[f"{name}.crt"] = directory / f"{name}.crt"
            paths[f"{name}.key"] = directory / f"{name}.key"
            paths[f"{name}.crt"].write_bytes(pem.cert)
            paths[f"{name}.key"].write_bytes(pem.key)
        return paths


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_pki(common_name: str = "cadence-test-ca") -> TestPki:
    """A CA and two leaf certificates: ``localhost``/127.0.0.1 for the server, a client."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(name: str, usage: x509.ObjectIdentifier, *, san: bool) -> Pem:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if san:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        return Pem(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))

    return TestPki(
        ca=Pem(ca_cert.public_bytes(serialization.Encoding.PEM), _key_pem(ca_key)),
        server=leaf("localhost", ExtendedKeyUsageOID.SERVER_AUTH, san=True),
        client=leaf("activity-completer", ExtendedKeyUsageOID.CLIENT_AUTH, san=False),
    )
