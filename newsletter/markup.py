"""The one Markdown dialect of issue files, and `Text` -> HTML or plain text.

The parser and the renderer share these settings, so what the parser accepted is exactly what the
renderer shows: CommonMark with raw HTML off (it stays literal text), images off (an image is read
as a link, and links must be http, https or mailto).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

from . import labels
from .model import Text

LINK_SCHEMES = ("http", "https", "mailto")


def link_problem(url: str) -> str | None:
    """Why `url` may not be a link in an issue, or None when it may."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"{url!r} is not a valid URL"
    scheme = parts.scheme.lower()
    if scheme not in LINK_SCHEMES:
        shown = f"scheme {scheme!r}" if scheme else "no scheme"
        return f"link {url!r} has {shown}; expected an absolute http, https or mailto URL"
    if scheme in ("http", "https") and not parts.hostname:
        return f"link {url!r} has no host name"
    if scheme == "mailto" and "@" not in parts.path:
        return f"link {url!r} has no email address"
    return None


def new_markdown(*, accept_every_link: bool) -> MarkdownIt:
    """The issue dialect. The parser accepts every link so it can report bad ones with a line
    number; the renderer's instance refuses them again, in case a Text was built by hand."""
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.disable("image")
    if accept_every_link:
        md.validateLink = lambda url: True
    else:
        md.validateLink = lambda url: link_problem(url) is None
    return md


@lru_cache(maxsize=1)
def _renderer() -> MarkdownIt:
    return new_markdown(accept_every_link=False)


@dataclass(frozen=True)
class Rendered:
    html: str  # safe HTML (to_html)
    plain: str  # plain text (to_plain)


@lru_cache(maxsize=1024)
def rendered(text: Text) -> Rendered:
    """A Text as HTML and as plain text from one parse, kept: the email, the web page and the text
    part show the same passages, and the preview renders an issue again after every save."""
    md = _renderer()
    tokens = _single_item_as_paragraph(md.parse(text.markdown))
    plain = "\n\n".join(_blocks(SyntaxTreeNode(tokens).children, indent=""))
    for token in tokens:  # after the plain text: presenting changes the links' text for HTML only
        if token.type == "inline" and token.children:
            _present(token.children)
    return Rendered(md.renderer.render(tokens, md.options, {}).strip(), plain)


_ONE_ITEM_LIST = ["bullet_list_open", "list_item_open", "paragraph_open", "inline", "paragraph_close",
                  "list_item_close", "bullet_list_close"]


def _single_item_as_paragraph(tokens: list) -> list:
    """A text that is one bulleted item ("* 요약…", the forum's way of writing every summary) is a
    paragraph: a passage with its English original loses the bullet to the parser, and one without
    must not be the only bulleted summary of the issue."""
    if [token.type for token in tokens] != _ONE_ITEM_LIST:
        return tokens
    paragraph = tokens[2:5]
    for token in paragraph:
        token.hidden, token.level = False, token.level - 2
    return paragraph


def to_html(text: Text) -> str:
    """Safe HTML for a Text: raw HTML escaped, only http/https/mailto links, emoji for
    `:shortcodes:`, and a long URL written as a link's own text shown as a label instead."""
    return rendered(text).html


def _present(children) -> None:
    for index, token in enumerate(children):
        if token.type == "text":
            token.content = labels.emojize(token.content)
        elif token.type == "link_open" and index + 2 < len(children):
            label, closing = children[index + 1], children[index + 2]
            href = str(token.attrs.get("href", ""))
            if label.type == "text" and closing.type == "link_close" and label.content in (href, href.removeprefix("mailto:")):
                label.content = labels.shown_url(label.content)


def to_plain(text: Text) -> str:
    """Plain text for a Text: paragraphs apart by a blank line, list items bulleted, links written
    out as URLs. Line breaks inside a paragraph become spaces; wrapping is the caller's choice."""
    return rendered(text).plain


def _blocks(nodes, indent: str) -> list[str]:
    out: list[str] = []
    for node in nodes:
        if node.type in ("paragraph", "heading"):
            out.append(indent + _inline(node))
        elif node.type in ("bullet_list", "ordered_list"):
            items = []
            for number, item in enumerate(node.children, start=int(node.attrs.get("start", 1))):
                marker = "• " if node.type == "bullet_list" else f"{number}. "
                parts = _blocks(item.children, indent + " " * len(marker))
                if parts:
                    parts[0] = indent + marker + parts[0][len(indent) + len(marker):]
                items.append("\n".join(parts))
            out.append("\n".join(items))
        elif node.type == "blockquote":
            out.extend("\n".join(indent + "> " + line for line in block.split("\n"))
                       for block in _blocks(node.children, ""))
        elif node.type in ("fence", "code_block"):
            out.append("\n".join(indent + line for line in node.content.rstrip("\n").split("\n")))
        elif node.type == "hr":
            out.append(indent + "—")
    return out


def _inline(node: SyntaxTreeNode) -> str:
    parts: list[str] = []
    for child in node.children:
        if child.type == "inline":
            parts.append(_inline(child))
        elif child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type == "softbreak":
            parts.append(" ")
        elif child.type == "hardbreak":
            parts.append("\n")
        elif child.type == "link":
            label = _inline(child)
            href = str(child.attrs.get("href", ""))
            bare = href.removeprefix("mailto:")
            parts.append(href if label in (href, bare) else f"{label} ({href})")
        else:  # em, strong and whatever else holds inline children
            parts.append(_inline(child))
    return "".join(parts)
