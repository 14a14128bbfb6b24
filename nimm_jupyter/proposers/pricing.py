"""Claude list prices and the dollar cost of one Messages API call.

Prices are USD per million tokens (MTok): base input, output, 5-minute prompt-cache write and
cache read, from Anthropic's pricing and model-overview pages (platform.claude.com/docs,
about-claude/pricing) as of November 2026 — verify there when money matters. Long-context
surcharges are not modelled (this package's prompts are far below 200k tokens), except
Haiku 5.5's prompt-length tier, which starts at 100k. Add or override entries in
:data:`PRICES` (a plain dict) when a model is missing; an unknown model costs 0 and is
flagged, never an error, so a search never stops over bookkeeping.
"""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens; ``long_prompt`` applies to every token of a call whose prompt
    (input + cache writes + cache reads) exceeds ``long_prompt_threshold`` tokens."""

    input: float
    output: float
    cache_write: float
    cache_read: float
    long_prompt_threshold: int | None = None
    long_prompt: "ModelPrice | None" = None


def _price(inp: float, out: float, cache_read: float | None = None) -> ModelPrice:
    # 5-minute cache writes cost 1.25x input on every model; reads are 0.1x unless listed.
    return ModelPrice(input=inp, output=out, cache_write=inp * 1.25,
                      cache_read=inp * 0.1 if cache_read is None else cache_read)


PRICES: dict[str, ModelPrice] = {
    "claude-fable-5-1": _price(10.0, 50.0, 0.25),
    "claude-mythos-5-1": _price(10.0, 50.0, 0.25),
    "claude-fable-5": _price(10.0, 50.0),
    "claude-mythos-5": _price(10.0, 50.0),
    "claude-opus-5-5": _price(4.0, 20.0, 0.20),
    "claude-opus-5": _price(5.0, 25.0),
    "claude-opus-4-8": _price(5.0, 25.0),
    "claude-opus-4-7": _price(5.0, 25.0),
    "claude-opus-4-6": _price(5.0, 25.0),
    "claude-opus-4-5": _price(5.0, 25.0),
    "claude-opus-4-1": _price(15.0, 75.0),
    "claude-opus-4": _price(15.0, 75.0),
    "claude-sonnet-5-5": _price(2.0, 10.0, 0.10),  # cache reads cut from 0.20 on 2026-10-07
    "claude-sonnet-5": _price(2.0, 10.0),
    "claude-sonnet-4-6": _price(3.0, 15.0),
    "claude-sonnet-4-5": _price(3.0, 15.0),
    "claude-sonnet-4": _price(3.0, 15.0),
    "claude-3-7-sonnet": _price(3.0, 15.0),
    "claude-haiku-5-5": ModelPrice(0.10, 0.50, 0.125, 0.01, long_prompt_threshold=100_000,
                                   long_prompt=ModelPrice(0.50, 2.50, 0.625, 0.05)),
    "claude-haiku-4-5": _price(1.0, 5.0),
    "claude-3-5-haiku": _price(0.80, 4.0),
}

_DATE_SUFFIX = re.compile(r"(-\d{8}|@\d{8}|-latest|-v\d+(:\d+)?)$")


def price_for(model: str) -> ModelPrice | None:
    """The price entry for ``model`` (dated ids and ``-latest`` aliases map to their family)."""
    name = model.strip().lower()
    if name.startswith("anthropic."):  # Bedrock-style id
        name = name[len("anthropic."):]
    for _ in range(2):  # e.g. "-20250929" then nothing, or "-v1:0" then "-20250514"
        if name in PRICES:
            return PRICES[name]
        name = _DATE_SUFFIX.sub("", name)
    if name in PRICES:
        return PRICES[name]
    return None


@dataclass(frozen=True)
class CallCost:
    usd: float
    price_known: bool


def call_cost(
    model: str,
    input_tokens: int,
    output_tokens: int,
    cache_creation_input_tokens: int = 0,
    cache_read_input_tokens: int = 0,
) -> CallCost:
    """Dollar cost of one call from its usage block; 0 with ``price_known=False`` if unknown.

    ``input_tokens`` is the API's uncached input count (cache writes and reads are reported
    separately by the API and priced at their own rates).
    """
    price = price_for(model)
    if price is None:
        return CallCost(usd=0.0, price_known=False)
    prompt = input_tokens + cache_creation_input_tokens + cache_read_input_tokens
    if price.long_prompt is not None and prompt > (price.long_prompt_threshold or 0):
        price = price.long_prompt
    usd = (
        input_tokens * price.input
        + output_tokens * price.output
        + cache_creation_input_tokens * price.cache_write
        + cache_read_input_tokens * price.cache_read
    ) / 1_000_000
    return CallCost(usd=usd, price_known=True)
