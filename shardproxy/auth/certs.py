"""A throwaway certificate authority for dev clusters and tests (``dev up --tls``): a CA, a
server certificate for localhost/127.0.0.1 and a client certificate, written as PEM files.
Not for production: there, certificates come from your own PKI."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class CertPaths:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _issue(ca_key: ec.EllipticCurvePrivateKey, ca_name: x509.Name, cn: str, server: bool,
           hosts: list[str], days: int) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_name).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                               else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return key, b.sign(ca_key, hashes.SHA256())


def make_dev_certs(out: Path, hosts: tuple[str, ...] = ("localhost", "127.0.0.1"), days: int = 30,
                   ca_days: int = 365) -> CertPaths:
    """Write ca.pem, server.pem/server.key, client.pem/client.key under ``out`` (kept when present,
    so a restarted dev cluster serves the same CA)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = CertPaths(out / "ca.pem", out / "server.pem", out / "server.key", out / "client.pem", out / "client.key")
    if all(p.exists() for p in vars(paths).values()):
        return paths
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("shardproxy dev CA")
    now = dt.datetime.now(dt.timezone.utc)
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=ca_days))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    paths.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    skey, scert = _issue(ca_key, ca_name, hosts[0], True, list(hosts), days)
    paths.server_cert.write_bytes(scert.public_bytes(serialization.Encoding.PEM))
    _write_key(skey, paths.server_key)
    ckey, ccert = _issue(ca_key, ca_name, "shardproxy-client", False, [], days)
    paths.client_cert.write_bytes(ccert.public_bytes(serialization.Encoding.PEM))
    _write_key(ckey, paths.client_key)
    return paths
