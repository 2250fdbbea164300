"""Unsubscribe tokens, the key that makes them, and each recipient's unsubscribe links.

A token is the subscriber's address sealed with AES-SIV (RFC 5297: deterministic authenticated
encryption) under a key derived from the signing key, with the list id bound in, base64url: the
endpoint opens it to find the subscriber without a lookup table (it has none on Lambda), nobody
without the key can make one, and nobody can read the address out of a link (a forwarded email,
a proxy's log). The same address always gives the same token. It is as long as the address plus
16 bytes, in base64: about as long as the `ADDRESS.MAC` tokens before it.

Those older tokens (base64url(address) + "." + HMAC-SHA256(key, list id + address)) are in every
email sent before, and an unsubscribe link must keep working for as long as someone may click
it: they are still accepted (a dot tells them apart; base64url has none), never issued.

The endpoint checks a token before it looks at the store, so a forged token gets the same answer
whether or not its address is on the list. Tokens made with the development key start with
"dev-", so a link from a dry run is recognisable as such.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from .config import Config
from .errors import ConfigError
from .store import address_key

SECRET_ENV = "NEWSLETTER_SECRET"
MIN_SECRET_LENGTH = 32
# Public on purpose: it signs links in dry runs and tests, never a real send.
DEVELOPMENT_SECRET = b"newsletter DEVELOPMENT key - public, never use for a real send"
DEVELOPMENT_TOKEN_PREFIX = "dev-"
DEVELOPMENT_KEY_NOTICE = (
    f"using the DEVELOPMENT unsubscribe key (no ${SECRET_ENV} or unsubscribe.key_file): "
    "links in this dry run are for testing only"
)
# The older tokens' MAC: 128 bits of HMAC-SHA256 (RFC 2104 allows truncation to half the output).
MAC_BYTES = 16
MAX_TOKEN_LENGTH = 1024  # an address is at most 254 characters; anything longer is not ours
GENERATE_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


@dataclass(frozen=True)
class SigningKey:
    secret: bytes = field(repr=False)
    source: str  # where it came from, for messages: "$NEWSLETTER_SECRET", a file, "development"

    @property
    def is_development(self) -> bool:
        return hmac.compare_digest(self.secret, DEVELOPMENT_SECRET)


DEVELOPMENT_KEY = SigningKey(DEVELOPMENT_SECRET, "development")


def load_signing_key(config: Config, *, allow_development: bool) -> SigningKey:
    """The key from $NEWSLETTER_SECRET, else from `unsubscribe.key_file`; else the development key
    if allowed (a dry run), else ConfigError (a real send must not start without a real key)."""
    secret = os.environ.get(SECRET_ENV, "").strip()
    if secret:
        key = SigningKey(secret.encode(), f"${SECRET_ENV}")
        _check_length(key, config, None)
    elif config.unsubscribe_key_file is not None:
        key = _read_key_file(config, config.unsubscribe_key_file)
    elif allow_development:
        return DEVELOPMENT_KEY
    else:
        raise ConfigError(
            f"no unsubscribe signing key: set ${SECRET_ENV} or unsubscribe.key_file to a secret of "
            f"{MIN_SECRET_LENGTH}+ characters, e.g. from: {GENERATE_HINT}",
            key="unsubscribe.key_file",
            path=config.path,
        )
    if key.is_development and not allow_development:
        raise ConfigError(f"{key.source} holds the public development key; a real send needs a secret one")
    return key


def _read_key_file(config: Config, path: Path) -> SigningKey:
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read key file {path} ({reason})", key="unsubscribe.key_file", path=config.path) from None
    key = SigningKey(secret.encode(), str(path))
    _check_length(key, config, "unsubscribe.key_file")
    return key


def _check_length(key: SigningKey, config: Config, config_key: str | None) -> None:
    if len(key.secret) < MIN_SECRET_LENGTH and not key.is_development:
        raise ConfigError(
            f"the signing key in {key.source} is too short ({len(key.secret)} characters, need "
            f"{MIN_SECRET_LENGTH}+); make one with: {GENERATE_HINT}",
            key=config_key,
            path=config.path if config_key else None,
        )


_TOKEN_TEXT = re.compile(r"[A-Za-z0-9_-]+")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    """The bytes of unpadded base64url `text` as `b64` writes it; binascii.Error for anything else
    (also for the other spellings of the same bytes that the unused bits of a last character
    allow: one token, one string)."""
    if not _TOKEN_TEXT.fullmatch(text):
        raise binascii.Error("not base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64(data) != text:
        raise binascii.Error("not in canonical base64url")
    return data


class TokenCipher:
    """Seals bytes into an opaque URL-safe token, and opens a genuine one again (None for anything
    else; a well-formed wrong token costs the same time whatever it holds). One purpose per
    cipher: each derives its own AES-SIV key from the signing key (HKDF-SHA256), so a token of
    one kind never opens as another."""

    def __init__(self, key: SigningKey, purpose: bytes, list_id: str):
        # Imported here: most commands never make a token, and this costs ~40 ms at start-up.
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers.aead import AESSIV
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        secret = HKDF(hashes.SHA256(), length=64, salt=None, info=b"newsletter token v2\0" + purpose).derive(key.secret)
        self._aead = AESSIV(secret)  # 512 bits: AES-256 for the tag and for the cipher
        self._associated = [purpose, list_id.encode()]

    def seal(self, data: bytes) -> str:
        return b64(self._aead.encrypt(data, self._associated))

    def open(self, token: str) -> bytes | None:
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead.decrypt(unb64(token), self._associated)
        except (binascii.Error, ValueError, InvalidTag):
            return None


class TokenState(Enum):
    VALID = "valid"
    EXPIRED = "expired"
    INVALID = "invalid"  # forged, altered, malformed, or not issued by us


@dataclass(frozen=True)
class DatedToken:
    """What a dated token held: its state, and for a genuine one its payload and when it was issued."""

    state: TokenState
    payload: bytes | None = None  # set for a valid token
    issued_at: dt.datetime | None = None  # set for a valid or an expired one


_ISSUED_BYTES = 5  # seconds since 1970, big-endian: enough until the year 36812
_CLOCK_SKEW = dt.timedelta(minutes=5)  # a token "issued" later than this is not ours


class DatedTokens:
    """Tokens that carry when they were issued and stop working after `lifetime` (a confirmation
    link, a preferences link): the issue time and a payload sealed by a `TokenCipher` of their own
    purpose."""

    def __init__(self, key: SigningKey, purpose: bytes, list_id: str, lifetime: dt.timedelta):
        self.lifetime = lifetime
        self._cipher = TokenCipher(key, purpose, list_id)

    def seal(self, payload: bytes, issued: dt.datetime) -> str:
        return self._cipher.seal(int(issued.timestamp()).to_bytes(_ISSUED_BYTES, "big") + payload)

    def open(self, token: str, now: dt.datetime) -> DatedToken:
        sealed = self._cipher.open(token) if len(token) <= MAX_TOKEN_LENGTH else None
        if sealed is None or len(sealed) <= _ISSUED_BYTES:
            return DatedToken(TokenState.INVALID)
        return self.judge(sealed[_ISSUED_BYTES:], int.from_bytes(sealed[:_ISSUED_BYTES], "big"), now)

    def judge(self, payload: bytes, issued: int, now: dt.datetime) -> DatedToken:
        """A genuine token's payload issued at `issued` (seconds since 1970), as of `now`."""
        issued_at = dt.datetime.fromtimestamp(issued, dt.UTC)
        if issued_at > now + _CLOCK_SKEW:
            return DatedToken(TokenState.INVALID)
        if now - issued_at > self.lifetime:
            return DatedToken(TokenState.EXPIRED, issued_at=issued_at)
        return DatedToken(TokenState.VALID, payload, issued_at)


def address_key_of(sealed: bytes | None) -> str | None:
    """The address key a token's opened payload holds; None unless it is one exactly as
    `address_key` writes it (what the token's maker sealed)."""
    try:
        key = sealed.decode() if sealed else None
    except UnicodeDecodeError:
        return None
    return key if key and address_key(key) == key else None


class TokenSigner:
    """Makes and checks unsubscribe tokens for one list with one key; cheap per token."""

    def __init__(self, list_id: str, key: SigningKey):
        self.key = key
        self.prefix = DEVELOPMENT_TOKEN_PREFIX if key.is_development else ""
        self._cipher = TokenCipher(key, b"unsubscribe", list_id)
        # The list id is the older tokens' MAC's fixed prefix; NUL cannot occur in it or in an address.
        self._mac_for_list = hmac.new(key.secret, list_id.encode() + b"\0", hashlib.sha256)

    def token(self, address: str) -> str:
        return self.prefix + self._cipher.seal(address_key(address).encode())

    def address(self, token: str) -> str | None:
        """The address key a genuine token was made for; None for anything else."""
        if not token.startswith(self.prefix) or len(token) > MAX_TOKEN_LENGTH:
            return None
        body = token.removeprefix(self.prefix)
        if "." in body:
            return self._address_of_mac_token(body)
        return address_key_of(self._cipher.open(body))

    def _address_of_mac_token(self, body: str) -> str | None:
        """An `ADDRESS.MAC` token, as emails sent before the tokens were opaque carry them."""
        encoded_address, _, encoded_mac = body.partition(".")
        try:
            key = unb64(encoded_address).decode()
            mac = unb64(encoded_mac)
        except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
            return None
        # A MAC check that takes the same time for every wrong token; no store lookup before it.
        if not hmac.compare_digest(mac, self._mac(key)) or address_key(key) != key:
            return None
        return key

    def _mac(self, key: str) -> bytes:
        mac = self._mac_for_list.copy()
        mac.update(key.encode())
        return mac.digest()[:MAC_BYTES]


class UnsubscribeLinks:
    """Each recipient's unsubscribe links, for the footer and the List-Unsubscribe header."""

    def __init__(self, config: Config, key: SigningKey):
        self.signer = TokenSigner(config.list_id, key)
        self.url = config.unsubscribe_url
        self.mailto = config.unsubscribe_mailto

    def for_address(self, address: str) -> tuple[str, str]:
        """(https URL for one-click POST and the footer link, mailto URL)."""
        token = self.signer.token(address)
        return f"{self.url}{token}", f"mailto:{self.mailto}?subject=unsubscribe-{token}"
