"""HTTPS for the app: browsers open a camera only in a secure context (https, or localhost).

Three ways, in the order ``giaoban serve`` tries them (see docs/deploy.md):

* ``GIAOBAN_TLS_CERT`` + ``GIAOBAN_TLS_KEY``: a real certificate (a province's CA, Let's Encrypt…);
* ``GIAOBAN_TLS_SELF_SIGNED=1``: a self-signed certificate generated into ``<data_dir>/tls/`` naming this
  machine's host names and LAN addresses (for a LAN without a CA: each browser must trust it once);
* neither: plain http (only for localhost, or behind nginx terminating TLS).

``giaoban tls selfsigned`` makes (or remakes) the self-signed certificate and prints its fingerprint, so a
site technician can check it before trusting it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import ipaddress
import json
import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
DEFAULT_DAYS = 825  # the longest validity browsers accept for a server certificate
RENEW_BEFORE = dt.timedelta(days=30)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TlsError(ValueError):
    """A certificate or key that cannot be used; the message says which and why (Vietnamese)."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: Path
    key: Path


def machine_names() -> tuple[list[str], list[IPAddress]]:
    """This machine's host names and its interface addresses (every family, link-local excluded)."""
    names: list[str] = ["localhost"]
    for name in (socket.gethostname(), socket.getfqdn()):
        if name and name not in names:
            names.append(name)
    ips: list[IPAddress] = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    with contextlib.suppress(OSError, ValueError, subprocess.SubprocessError):
        out = subprocess.run(
            ["ip", "-j", "addr"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
        for link in json.loads(out or "[]"):
            for info in link.get("addr_info", []):
                with contextlib.suppress(ValueError, KeyError):
                    ip = ipaddress.ip_address(info["local"])
                    if not ip.is_link_local and ip not in ips:
                        ips.append(ip)
    return names, ips


def generate_self_signed(
    cert_path: Path,
    key_path: Path,
    names: list[str],
    ips: list[IPAddress],
    *,
    days: int = DEFAULT_DAYS,
    valid_from: dt.datetime | None = None,
) -> x509.Certificate:
    """Write a self-signed EC P-256 certificate for ``names`` and ``ips`` (key file 0600), valid ``days``
    from ``valid_from`` (default: now)."""
    if not names and not ips:
        raise TlsError("Chứng chỉ cần ít nhất một tên hoặc địa chỉ.")
    key = ec.generate_private_key(ec.SECP256R1())
    common = names[0] if names else str(ips[0])
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Giao Ban (tự ký)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common[:64]),
        ]
    )
    now = valid_from or dt.datetime.now(dt.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans += [x509.IPAddress(ip) for ip in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write(key_path, key_bytes, 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as exc:
        raise TlsError(f"Không đọc được chứng chỉ {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise TlsError(f"Tệp {path} không phải chứng chỉ PEM.") from exc


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint as browsers show it (AA:BB:…)."""
    digest = cert.fingerprint(hashes.SHA256()).hex().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def spki_hash(cert: x509.Certificate) -> str:
    """base64 SHA-256 of the public key (Chromium's --ignore-certificate-errors-spki-list form)."""
    import base64

    der = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def subject_names(cert: x509.Certificate) -> tuple[list[str], list[IPAddress]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    ips = [
        ip
        for ip in san.get_values_for_type(x509.IPAddress)
        if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address)
    ]
    return list(san.get_values_for_type(x509.DNSName)), ips


def ensure_self_signed(
    data_dir: Path,
    *,
    extra_names: list[str] | None = None,
    extra_ips: list[IPAddress] | None = None,
    force: bool = False,
) -> TlsFiles:
    """The self-signed certificate in ``data_dir/tls/``: kept while valid for 30 more days and naming
    every current name/address of this machine; remade otherwise (or with ``force``)."""
    names, ips = machine_names()
    names += [n for n in extra_names or [] if n not in names]
    ips += [ip for ip in extra_ips or [] if ip not in ips]
    files = TlsFiles(data_dir / "tls" / CERT_FILE, data_dir / "tls" / KEY_FILE)
    if not force and files.cert.exists() and files.key.exists():
        with contextlib.suppress(TlsError):
            cert = load_cert(files.cert)
            have_names, have_ips = subject_names(cert)
            fresh = cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > RENEW_BEFORE
            if fresh and set(names) <= set(have_names) and set(ips) <= set(have_ips):
                return files
    generate_self_signed(files.cert, files.key, names, ips)
    return files


def check_pair(cert_path: Path, key_path: Path) -> None:
    """Refuse a certificate/key pair uvicorn could not serve, with a clear message."""
    cert = load_cert(cert_path)
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except OSError as exc:
        raise TlsError(f"Không đọc được khóa {key_path}: {exc.strerror}") from exc
    except (ValueError, TypeError) as exc:
        raise TlsError(f"Tệp {key_path} không phải khóa riêng PEM không mật khẩu.") from exc
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, pub) != cert.public_key().public_bytes(
        serialization.Encoding.DER, pub
    ):
        raise TlsError(f"Khóa {key_path} không khớp với chứng chỉ {cert_path}.")
    if cert.not_valid_after_utc < dt.datetime.now(dt.UTC):
        raise TlsError(f"Chứng chỉ {cert_path} đã hết hạn ({cert.not_valid_after_utc:%Y-%m-%d}).")


def resolve_tls(data_dir: Path, cert: Path | None, key: Path | None, self_signed: bool) -> TlsFiles | None:
    """What ``giaoban serve`` uses: the configured pair, else the self-signed one, else None (http)."""
    if (cert is None) != (key is None):
        raise TlsError("Cần đặt cả GIAOBAN_TLS_CERT và GIAOBAN_TLS_KEY.")
    if cert is not None and key is not None:
        check_pair(cert, key)
        return TlsFiles(cert, key)
    if self_signed:
        return ensure_self_signed(data_dir)
    return None
