"""Extraction of candidate code, CHANGE lines and strategy lists from LLM answers."""
from __future__ import annotations

from nimm_jupyter.proposers.base import Strategy
from nimm_jupyter.proposers.extract import (
    NO_CODE_ERROR,
    extract_change,
    extract_code,
    extract_strategies,
    fenced_blocks,
    near_duplicate,
)

MODEL = "import torch\nfrom torch import nn\n\n\nclass Model(nn.Module):\n    def forward(self, x):\n        return x\n"


def test_single_python_block_with_prose_around():
    text = f"Here is my model.\n\nCHANGE: add a residual net on dV\n```python\n{MODEL}```\nHope it helps."
    got = extract_code(text)
    assert got is not None and got.code == MODEL and not got.truncated
    assert extract_change(text) == "add a residual net on dV"


def test_picks_block_defining_model_among_several():
    helper = "```python\nimport torch\nx = torch.zeros(3)\n```"
    text = f"First a sketch:\n{helper}\nThen the model:\n```python\n{MODEL}```\nUsage:\n```bash\npip install x\n```"
    assert extract_code(text).code == MODEL


def test_last_model_block_wins_when_revised():
    v2 = MODEL.replace("return x", "return 2 * x")
    text = f"```python\n{MODEL}```\nWait, a fix:\n```python\n{v2}```"
    assert extract_code(text).code == v2


def test_untagged_fence_and_tilde_fence():
    assert extract_code(f"```\n{MODEL}```").code == MODEL
    assert extract_code(f"~~~py\n{MODEL}~~~").code == MODEL


def test_python_tag_preferred_over_untagged():
    other = MODEL.replace("return x", "return -x")
    text = f"```python\n{MODEL}```\n```\n{other}```"
    assert extract_code(text).code == MODEL


def test_unterminated_fence_is_returned_and_flagged():
    text = "CHANGE: widen the net\n```python\n" + MODEL + "    def extra(self):\n        return 1"
    got = extract_code(text)
    assert got is not None and got.truncated
    assert got.code.startswith("import torch") and got.code.rstrip().endswith("return 1")


def test_no_code_block_defining_model():
    assert extract_code("I cannot do that.") is None
    assert extract_code("```python\nimport torch\nprint(1)\n```") is None
    assert extract_code('```json\n{"class Model": 1}\n```') is None
    assert "class Model" in NO_CODE_ERROR and "```python" in NO_CODE_ERROR


def test_bare_code_without_fences():
    text = "Sure.\n" + MODEL
    assert extract_code(text).code == MODEL


def test_nested_longer_fence_keeps_inner_backticks():
    inner = MODEL + '    doc = """\n```\nnot a fence end for ````\n"""\n'
    blocks = fenced_blocks(f"````python\n{inner}````")
    assert len(blocks) == 1 and blocks[0].closed and "not a fence end" in blocks[0].body


def test_change_variants():
    assert extract_change("**CHANGE:** replace the logistic term\n```python\nx\n```") == "replace the logistic term"
    assert extract_change("- change: add dose as a net input") == "add dose as a net input"
    # a CHANGE inside the code is not the summary
    assert extract_change("```python\n# CHANGE: nope\n```") == ""
    assert extract_change("no summary here") == ""


def test_strategies_from_fenced_json_with_prose():
    text = """Here are my ideas:
```json
[
  {"title": "Neural time-varying growth rate", "description": "rho(t) from an MLP of time and dose."},
  {"title": "Residual on dV/dt", "description": "A small net adds to the tumour derivative."},
  {"title": "Neural closure for immune kill", "description": "Missing immune term learned from V."}
]
```
Let me know."""
    out = extract_strategies(text, k=3)
    assert [s.title for s in out] == ["Neural time-varying growth rate", "Residual on dV/dt",
                                      "Neural closure for immune kill"]
    assert out[0].key == "neural-time-varying-growth-rate"
    assert "MLP" in out[0].description
    assert len({s.key for s in out}) == 3


def test_strategies_bare_json_truncated_to_k_and_deduplicated():
    text = ('Ideas: [{"name": "Residual on dV", "desc": "a"}, {"name": "residual on dV", "desc": "b"}, '
            '{"title": "Unobserved input predictor", "description": "c"}, {"title": "Extra", "description": "d"}]')
    out = extract_strategies(text, k=2)
    assert [s.title for s in out] == ["Residual on dV", "Unobserved input predictor"]


def test_strategies_exclude_near_duplicates_and_wrapped_object():
    text = '{"strategies": [{"title": "Neural growth rate", "description": "x"}, {"title": "Closure term", "description": "y"}]}'
    out = extract_strategies(text, k=5, exclude=[Strategy("neural growth rate", "old")])
    assert [s.title for s in out] == ["Closure term"]


def test_strategies_ignores_non_strategy_lists():
    assert extract_strategies("shapes [1, 2, 3] and no json objects", k=3) == []
    text = 'shape [B, T] then [{"title": "A b c", "description": "d"}]'
    assert [s.title for s in extract_strategies(text, k=3)] == ["A b c"]


def test_near_duplicate():
    assert near_duplicate(Strategy("Residual net on dV", ""), Strategy("residual network on dV", ""))
    assert not near_duplicate(Strategy("Residual net on dV", ""), Strategy("Time-varying growth rate", ""))
