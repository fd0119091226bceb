"""Payments: signed payment links (tamper, expiry), intake of settlement, camt.053 and manual
files, matching, ledger and aging."""

from __future__ import annotations

import base64
import json
import stat
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from squak_pipelines.payments.links import LinkError, expiry, link_secret, payment_url, sign, verify

SECRET = b"test-secret"


def test_payment_link_round_trip_tamper_and_expiry(monkeypatch) -> None:
    monkeypatch.delenv("SQUAK_PAYMENT_LINK_DAYS", raising=False)
    expires = expiry(date(2026, 11, 1))
    assert expires == datetime(2026, 12, 31, tzinfo=UTC)
    token = sign("SQK-2026-000001", Decimal("25.73"), "USD", expires, SECRET)
    claims = verify(token, SECRET, now=datetime(2026, 11, 20, tzinfo=UTC))
    assert (claims.invoice_number, claims.amount) == ("SQK-2026-000001", Decimal("25.73"))
    assert claims.currency == "USD"
    body, mac = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["amt"] = "0.01"
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode() + "." + mac
    with pytest.raises(LinkError, match="tampered"):
        verify(forged, SECRET, now=datetime(2026, 11, 20, tzinfo=UTC))
    with pytest.raises(LinkError, match="tampered"):
        verify(token, b"another key", now=datetime(2026, 11, 20, tzinfo=UTC))
    with pytest.raises(LinkError, match="expired on 2026-12-31"):
        verify(token, SECRET, now=datetime(2026, 12, 31, tzinfo=UTC))
    for junk in ("", "abc", "a.b.c", "!!!.???"):
        with pytest.raises(LinkError, match=r"malformed|tampered"):
            verify(junk, SECRET)


def test_link_secret_from_environment_or_a_private_key_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SQUAK_PAYMENT_LINK_SECRET", raising=False)
    first = link_secret(tmp_path)
    key = tmp_path / "secrets" / "payment-link.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and link_secret(tmp_path) == first
    url = payment_url("SQK-2026-000002", Decimal("10.00"), "GBP", date(2026, 11, 1), tmp_path)
    assert url == payment_url("SQK-2026-000002", Decimal("10.00"), "GBP", date(2026, 11, 1), tmp_path)
    token = url.split("token=")[1]
    assert verify(token, first, now=datetime(2026, 11, 2, tzinfo=UTC)).currency == "GBP"
    monkeypatch.setenv("SQUAK_PAYMENT_LINK_SECRET", "from-env")
    assert link_secret(tmp_path) == b"from-env"
