"""The email as clients that cannot fold show it, for laying it out the way they do (the browser
tests, `bench/inline_compare.py`): with the rules that need `:checked` removed (Gmail, Outlook.com
and Proton run none; Gmail also drops a whole `<style>` block it cannot parse), or with every
`<style>` removed (Gmail's apps with a non-Google account, Korean webmail, Yahoo Mail for Android
before 2025). The same as ../shared/tools/email-shots does for its screenshots."""

from __future__ import annotations

import re

_STYLE_BLOCK = re.compile(r"(<style\b[^>]*>)(.*?)(</style>)", re.S | re.I)
_CHECKED_RULE = re.compile(r"[^{}]*:checked[^{}]*\{[^{}]*\}")
_EMPTY_MEDIA = re.compile(r"@media[^{}]*\{\s*\}")
_STYLE_OR_LINK = re.compile(r"<style\b.*?</style>|<link\b[^>]*>", re.S | re.I)


def without_checked_rules(html: str) -> str:
    """Every CSS rule whose selector uses :checked removed (innermost first, then any @media left
    empty)."""
    def drop(css: str) -> str:
        previous = None
        while previous != css:
            previous = css
            css = _EMPTY_MEDIA.sub("", _CHECKED_RULE.sub("", css))
        return css
    return _STYLE_BLOCK.sub(lambda m: m[1] + drop(m[2]) + m[3], html)


def without_styles(html: str) -> str:
    """Every <style> and <link> removed."""
    return _STYLE_OR_LINK.sub("", html)
