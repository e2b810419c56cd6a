"""What a TLS certificate says, in plain fields (pure: DER bytes and a clock in, a dict out)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID


def _public_key_summary(certificate: x509.Certificate) -> str:
    key = certificate.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA {key.key_size}"
    return type(key).__name__


def _common_name(name: x509.Name) -> str | None:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else None


def describe_certificate(der: bytes, now: datetime) -> dict[str, Any]:
    """Subject, SANs, issuer, validity window and days left of the certificate in `der` at time `now`."""
    certificate = x509.load_der_x509_certificate(der)
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = list(sans.get_values_for_type(x509.DNSName))
        ip_addresses = [str(address) for address in sans.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        dns_names, ip_addresses = [], []
    not_before = certificate.not_valid_before_utc
    not_after = certificate.not_valid_after_utc
    seconds_left = (not_after - now).total_seconds()
    hash_algorithm = certificate.signature_hash_algorithm
    return {
        "subject": certificate.subject.rfc4514_string(),
        "common_name": _common_name(certificate.subject),
        "subject_alt_names": {"dns": dns_names, "ip": ip_addresses},
        "issuer": certificate.issuer.rfc4514_string(),
        "self_signed": certificate.issuer == certificate.subject,
        "not_before": not_before.isoformat(),
        "not_after": not_after.isoformat(),
        # Whole days still valid, rounded down: 0 means it expires within a day, negative means expired.
        "days_left": math.floor(seconds_left / 86_400),
        "expired": now > not_after,
        "not_yet_valid": now < not_before,
        "serial_number": format(certificate.serial_number, "x"),
        "signature_algorithm": hash_algorithm.name if hash_algorithm is not None else None,
        "public_key": _public_key_summary(certificate),
        "sha256_fingerprint": certificate.fingerprint(hashes.SHA256()).hex(":").upper(),
    }
