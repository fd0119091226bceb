"""Signed, expiring payment links: the token names the invoice, amount and currency.

Token: base64url(compact JSON {"inv", "amt", "cur", "exp"}) "." base64url(HMAC-SHA256).
The key is `SQUAK_PAYMENT_LINK_SECRET` (production); without it, a random key kept in
`<data dir>/secrets/payment-link.key` (created on first use, readable by its owner only)
serves the embedded default. A link expires `SQUAK_PAYMENT_LINK_DAYS` (60) days after the
invoice's issue date, so the same invoice always gets the same link. A tampered, malformed
or expired token is refused with the reason.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

from squak_pipelines import clock
from squak_pipelines.money import round_to_currency

DEFAULT_URL = "https://pay.squak.example/pay?token={token}"


class LinkError(ValueError):
    """A payment-link token that must be refused (the message says why)."""


@dataclass(frozen=True)
class LinkClaims:
    invoice_number: str
    amount: Decimal
    currency: str
    expires_at: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def link_secret(data_dir: Path) -> bytes:
    """The signing key: from the environment, else the data directory's own key file."""
    if secret := os.environ.get("SQUAK_PAYMENT_LINK_SECRET"):
        return secret.encode()
    path = data_dir / "secrets" / "payment-link.key"
    if not path.exists():
        _create_key(path)
    return path.read_bytes().strip()


def _create_key(path: Path) -> None:
    """Write a new key whole, then link it into place: when several processes (invoice
    renderers) create it at once, one key wins and every process reads that one, complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(base64.b64encode(os.urandom(32)))
        with contextlib.suppress(FileExistsError):  # another process's key won: that one is used
            os.link(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def expiry(issue_date: date) -> datetime:
    days = int(os.environ.get("SQUAK_PAYMENT_LINK_DAYS", "60"))
    return datetime.combine(issue_date, time(), UTC) + timedelta(days=days)


def sign(invoice_number: str, amount: Decimal, currency: str, expires_at: datetime, secret: bytes) -> str:
    payload = json.dumps(
        {"inv": invoice_number, "amt": f"{amount:f}", "cur": currency, "exp": int(expires_at.timestamp())},
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    mac = hmac.new(secret, payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(mac)}"


def verify(token: str, secret: bytes, now: datetime | None = None) -> LinkClaims:
    """The claims of a valid token; LinkError when it is malformed, tampered or expired."""
    try:
        body, mac = token.split(".")
        payload, given = _unb64(body), _unb64(mac)
    except (ValueError, TypeError) as exc:
        raise LinkError("malformed payment link") from exc
    expected = hmac.new(secret, payload, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, given):
        raise LinkError("payment link signature does not match (tampered or not ours)")
    try:
        claims = json.loads(payload)
        result = LinkClaims(
            str(claims["inv"]),
            Decimal(claims["amt"]),
            str(claims["cur"]),
            datetime.fromtimestamp(int(claims["exp"]), UTC),
        )
    except (ValueError, KeyError, TypeError, InvalidOperation) as exc:
        raise LinkError("malformed payment link") from exc
    if (now or clock.now()) >= result.expires_at:
        raise LinkError(f"payment link expired on {result.expires_at:%Y-%m-%d}")
    return result


def payment_url(
    invoice_number: str, amount: Decimal, currency: str, issue_date: date, data_dir: Path,
    template: str = "",
) -> str:
    """The link printed on invoices, in emails and on the portal (`SQUAK_PAYMENT_URL`, else the
    operator's `payment_link`, with `{token}`). The amount is taken in the currency's minor
    units, so the invoice, the e-mail and the portal print the same link."""
    amount = round_to_currency(amount, currency)
    token = sign(invoice_number, amount, currency, expiry(issue_date), link_secret(data_dir))
    return (os.environ.get("SQUAK_PAYMENT_URL") or template or DEFAULT_URL).format(
        token=token, number=invoice_number, amount=f"{amount:f}"
    )
