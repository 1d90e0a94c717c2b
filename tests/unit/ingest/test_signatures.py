from __future__ import annotations

import hashlib
import hmac

from ingest.signatures import sign, verify

BODY = b'{"object":"whatsapp_business_account","entry":[]}'
SECRET = "s3cret"


def test_sign_is_hmac_sha256_hex_of_raw_body() -> None:
    expected = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    assert sign(BODY, SECRET) == f"sha256={expected}"


def test_valid_signature_verifies() -> None:
    assert verify(BODY, sign(BODY, SECRET), SECRET) is True


def test_uppercase_hex_verifies() -> None:
    header = sign(BODY, SECRET)
    assert verify(BODY, "sha256=" + header.removeprefix("sha256=").upper(), SECRET) is True


def test_missing_header_fails() -> None:
    assert verify(BODY, None, SECRET) is False
    assert verify(BODY, "", SECRET) is False


def test_wrong_secret_fails() -> None:
    assert verify(BODY, sign(BODY, "other"), SECRET) is False


def test_body_changed_by_one_byte_fails() -> None:
    assert verify(BODY + b" ", sign(BODY, SECRET), SECRET) is False


def test_header_without_prefix_fails() -> None:
    assert verify(BODY, sign(BODY, SECRET).removeprefix("sha256="), SECRET) is False
    assert verify(BODY, sign(BODY, SECRET).replace("sha256=", "sha1="), SECRET) is False


def test_truncated_signature_fails() -> None:
    assert verify(BODY, sign(BODY, SECRET)[:-2], SECRET) is False
