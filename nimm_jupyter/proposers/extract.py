"""Pull candidate code, the one-line change summary and strategy lists out of LLM text.

Model answers are prose around fenced blocks, sometimes several blocks, sometimes a fence
without a language tag, and — when the answer hit the token limit — a fence that never
closes. Everything here is pure text processing, tolerant of all of that.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from .base import Strategy

NO_CODE_ERROR = "response contained no ```python code block defining class Model"

_FENCE_OPEN = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w.+-]*)[^\n`]*$")
_CLASS_MODEL = re.compile(r"^[ \t]*class[ \t]+Model\b", re.MULTILINE)
_PY_LANGS = {"", "python", "py", "python3", "py3", "pytorch"}
_CHANGE = re.compile(
    r"^[ \t>*_#-]*(?:\*\*|__)?CHANGE(?:\*\*|__)?[ \t]*:[ \t]*(?:\*\*|__)?[ \t]*(?P<text>.+?)[ \t]*$",
    re.MULTILINE | re.IGNORECASE,
)


@dataclass
class Block:
    """One fenced block: its language tag (lower case, may be empty) and body."""

    lang: str
    body: str
    closed: bool  # False when the text ended before the closing fence (truncated answer)
    start: int  # line index of the opening fence
    end: int  # line index after the block


def fenced_blocks(text: str) -> list[Block]:
    """All fenced blocks in order; an unterminated last fence runs to the end of the text."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE_OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        fence = m.group("fence")
        closing = re.compile(r"^[ \t]*" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}[ \t]*$")
        j = i + 1
        while j < len(lines) and not closing.match(lines[j]):
            j += 1
        closed = j < len(lines)
        blocks.append(Block(m.group("lang").lower(), "\n".join(lines[i + 1:j]), closed, i, j + 1))
        i = j + 1
    return blocks


@dataclass
class ExtractedCode:
    code: str
    truncated: bool  # the code block was not closed: the answer was probably cut off


def extract_code(text: str) -> ExtractedCode | None:
    """The candidate source in ``text``, or None when nothing defines ``class Model``.

    Preference: a Python-tagged block defining ``class Model`` (the last such one, since a
    model that revises itself puts its final version last), then an untagged block defining
    it, then — for answers with no fences at all — the text from its first import/class line.
    """
    blocks = [b for b in fenced_blocks(text) if b.lang in _PY_LANGS]
    defining = [b for b in blocks if _CLASS_MODEL.search(b.body)]
    tagged = [b for b in defining if b.lang != ""]
    chosen = (tagged or defining or [None])[-1]
    if chosen is not None:
        return ExtractedCode(code=chosen.body.strip("\n") + "\n", truncated=not chosen.closed)
    if not fenced_blocks(text) and _CLASS_MODEL.search(text):
        m = re.search(r"^(?:import |from |class Model\b)", text, re.MULTILINE)
        if m:
            return ExtractedCode(code=text[m.start():].strip("\n") + "\n", truncated=False)
    return None


def _outside_code(text: str) -> str:
    lines = text.splitlines()
    keep = [True] * len(lines)
    for b in fenced_blocks(text):
        for k in range(b.start, min(b.end, len(lines))):
            keep[k] = False
    return "\n".join(line for line, k in zip(lines, keep) if k)


def extract_change(text: str) -> str:
    """The one-sentence summary after ``CHANGE:`` (outside code), or "" when absent."""
    matches = list(_CHANGE.finditer(_outside_code(text)))
    if not matches:
        return ""
    change = matches[-1].group("text").strip().strip("*_`").strip()
    return change[:500]


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60]


def _words(text: str) -> set[str]:
    stop = {"a", "an", "the", "of", "for", "on", "in", "to", "and", "with", "as", "by", "neural", "network",
            "networks", "net", "nets", "nn", "mlp"}
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in stop}


def near_duplicate(a: Strategy, b: Strategy, threshold: float = 0.75) -> bool:
    """Same key, same title, or titles sharing most of their content words."""
    if a.key and a.key == b.key:
        return True
    wa, wb = _words(a.title), _words(b.title)
    if not wa or not wb:
        return a.title.strip().lower() == b.title.strip().lower()
    return len(wa & wb) / len(wa | wb) >= threshold


def _as_strategy(item: object) -> Strategy | None:
    if isinstance(item, str) and item.strip():
        title = item.strip()
        return Strategy(title=title[:120], description=title, key=_slug(title))
    if not isinstance(item, dict):
        return None
    lowered = {str(k).lower(): v for k, v in item.items()}
    title = lowered.get("title") or lowered.get("name") or lowered.get("strategy")
    if not isinstance(title, str) or not title.strip():
        return None
    desc = lowered.get("description") or lowered.get("desc") or lowered.get("details") or ""
    if not isinstance(desc, str):
        desc = json.dumps(desc)
    key = lowered.get("key")
    key = _slug(key) if isinstance(key, str) and key.strip() else _slug(title)
    return Strategy(title=title.strip()[:120], description=desc.strip(), key=key)


def _json_lists(text: str) -> list[list]:
    """Every JSON array that decodes at some ``[`` in ``text`` (fenced json blocks first)."""
    found: list[list] = []
    sources = [b.body for b in fenced_blocks(text) if b.lang in {"json", ""}] + [text]
    decoder = json.JSONDecoder()
    for src in sources:
        for m in re.finditer(r"\[", src):
            try:
                value, _ = decoder.raw_decode(src, m.start())
            except json.JSONDecodeError:
                continue
            if isinstance(value, list) and value:
                found.append(value)
    if not found:  # a {"strategies": [...]} object
        for m in re.finditer(r"\{", text):
            try:
                value, _ = decoder.raw_decode(text, m.start())
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                found.extend(v for v in value.values() if isinstance(v, list) and v)
    return found


def extract_strategies(text: str, k: int, exclude: list[Strategy] | None = None) -> list[Strategy]:
    """Up to ``k`` distinct strategies from the first JSON list of strategy objects in ``text``.

    Near-duplicates (of each other or of ``exclude``) are dropped.
    """
    exclude = list(exclude or [])
    for candidate in _json_lists(text):
        parsed = [s for s in (_as_strategy(item) for item in candidate) if s is not None]
        if not parsed:
            continue
        out: list[Strategy] = []
        for s in parsed:
            if any(near_duplicate(s, o) for o in exclude + out):
                continue
            out.append(s)
            if len(out) >= k:
                break
        return out
    return []
