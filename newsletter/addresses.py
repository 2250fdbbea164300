"""Email addresses as `newsletter` takes them: one address per value, one that SES can deliver to,
in one normal form.

- Amazon SES does not support SMTPUTF8, so an address with non-ASCII before the @ (`José@…`,
  `김민지@…`) cannot be delivered: it is refused with that reason, never stored. A Korean
  (internationalised) domain is fine: it is kept in its ASCII `xn--` form, which SES delivers to.
- `Name <address>` is read strictly: anything that is not one name and one address (`a@b.c d
  <e@f.g>`, two addresses, stray brackets) is refused, never turned into another address.
- Checks are email-validator's, without DNS lookups. Checking the domain is most of its cost, so
  the result is kept per domain: an import of a million rows pays it once per distinct domain.
"""

from __future__ import annotations

import re
from functools import lru_cache

import email_validator

# email-validator's limits (RFC 5321), for the fast path to know when to leave the work to it.
MAX_LOCAL_PART = 64
MAX_ADDRESS = 254
# An unquoted ASCII local part (RFC 5322 dot-atom): the shape of nearly every real address.
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_OPTIONS = {"check_deliverability": False, "allow_smtputf8": False}


class AddressError(ValueError):
    """Why a value is not an address the list can hold; `str()` is the reason."""


def split_mailbox(value: str) -> tuple[str, str | None]:
    """`Name <address>` -> (address, name); a bare address -> (address, None).

    Editors paste `홍길동 <hong@example.org>` unquoted, which email-validator refuses, so the name
    is split off here; anything else with angle brackets in it is refused."""
    value = value.strip()
    if "<" not in value and ">" not in value:
        return value, None
    name, opening, rest = value.rpartition("<")
    address = rest.removesuffix(">").strip()
    if not opening or not rest.endswith(">") or any(c in name + address for c in "<>"):
        raise AddressError("expected one address, or one 'Name <address>'")
    name = name.strip()
    if len(name) > 1 and name[0] == name[-1] == '"':
        name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    elif "@" in name:
        raise AddressError(f"more than one address in {value!r}; expected one address per row or value")
    return address, name or None


def normalise(address: str) -> str:
    """The address in the form the list keeps (domain lower-cased, IDNA), or AddressError."""
    local, at, domain = address.rpartition("@")
    if at and len(local) <= MAX_LOCAL_PART and _DOT_ATOM.fullmatch(local):
        ascii_domain = _checked_domain(domain)
        if ascii_domain is not None and len(local) + 1 + len(ascii_domain) <= MAX_ADDRESS:
            return f"{local}@{ascii_domain}"
    # Anything unusual (or wrong) goes through email-validator whole, for its exact reason.
    if not local.isascii() and at:
        raise AddressError(
            f"the part before the @ is not ASCII ({local!r}); Amazon SES cannot deliver to such "
            "addresses (no SMTPUTF8), so the list cannot hold it"
        )
    try:
        return email_validator.validate_email(address, **_OPTIONS).ascii_email
    except email_validator.EmailNotValidError as error:
        raise AddressError(str(error)) from None


@lru_cache(maxsize=100_000)
def _checked_domain(domain: str) -> str | None:
    """The domain's ASCII form if email-validator accepts it, else None (the slow path explains)."""
    try:
        return email_validator.validate_email(f"x@{domain}", **_OPTIONS).ascii_domain
    except email_validator.EmailNotValidError:
        return None


def parse(value: str) -> tuple[str, str | None]:
    """(normalised address, display name or None) from `address` or `Name <address>`."""
    address, name = split_mailbox(value)
    return normalise(address), name
