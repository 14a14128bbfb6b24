"""Prior-wrapping grammar: keep the task's mechanistic prior intact and attach networks to it.

Used for the alloy family and for user tasks (whose prior is free-form code), and as extra
branches for the other families. The prior's ``Model`` class is renamed ``Prior`` and
embedded, so its fitted mechanistic parameters stay named (``prior.<name>``).
"""
from __future__ import annotations

import re

from ..base import Strategy
from .grammar import Grammar, Slot

STRATEGIES = [
    Strategy("neural residual on the prior's output",
             "the mechanistic prediction plus a network correction in units of the target scale",
             "residual"),
    Strategy("multiplicative neural correction",
             "a network rescales the mechanistic prediction (a learned, input-dependent "
             "correction factor of the strength / state)", "multiplicative"),
    Strategy("network informed by the mechanism",
             "a network that sees the inputs and the prior's own prediction outputs the "
             "correction, so it can learn where the mechanism is wrong", "augmented"),
]


_DYNAMICS = re.compile(r"^class\s+Model\s*\(\s*(?:\w+\.)*Dynamics\s*\)", re.M)
CLAMP = "clamp states"  # the integration safeguard of a prior in dynamics form


def is_dynamics_prior(prior_code: str) -> bool:
    """Whether the prior is written in dynamics form (``class Model(Dynamics)`` with ``rhs``)."""
    return bool(_DYNAMICS.search(prior_code or "")) and "def rhs(" in prior_code


def clamp_lines(owner: str) -> list[str]:
    """``__init__`` lines (8-space indent) that make the ``blocks.Dynamics`` rollout of
    ``owner`` (``self`` or ``self.prior``) safe: 4x smaller RK4 steps, states clamped."""
    return [f"        {owner}.substeps = 4 * max(int({owner}.substeps), 1)",
            "        # keep every state within 20 training spreads of its mean",
            f"        {owner}.clamp = (float((spec.target_mean - 20 * spec.target_scale).min()),",
            "                         float((spec.target_mean + 20 * spec.target_scale).max()))"]


def prior_as_class(prior_code: str) -> str:
    """The prior source with its ``Model`` class renamed ``Prior``."""
    code, n = re.subn(r"^class\s+Model\s*\(", "class Prior(", prior_code, flags=re.M)
    if n != 1:
        raise ValueError("prior code must define exactly one top-level class Model")
    return code.rstrip() + "\n"


class WrapGrammar(Grammar):
    def __post_init__(self) -> None:
        self.tabular = self.ctx.kind == "tabular"
        comp = [n for n in self.ctx.input_names if n.startswith("x_")]
        self.n_comp = len(comp)
        self.slots = [
            Slot("base_term", ("none", "linear"), "linear base term", "mechanism"),
            Slot("attach", tuple(s.key for s in STRATEGIES), "neural attachment"),
            Slot("hidden", ("8", "16", "32", "64"), "hidden width"),
            Slot("depth", ("2", "3"), "network depth"),
            Slot("activation", ("tanh", "silu", "relu"), "activation"),
            Slot("nn_scale", ("0.1", "0.3", "1.0"), "initial scale of the neural term"),
        ]
        if self.tabular and self.n_comp and self.n_comp < len(self.ctx.input_names):
            self.slots.append(Slot("nn_inputs", ("all", "composition"), "network inputs"))
        self.strategy_list = list(STRATEGIES)
        # a prior in dynamics form whose rollout blows up can be clamped (the debug operator)
        self.dynamics = self.ctx.kind == "trajectory" and is_dynamics_prior(self.ctx.prior_code)
        self.extra_slots = self.mechanism_slots()
        self.slots[1:1] = self.extra_slots

    # -- hooks for families that add mechanisms the prior omits (see alloy.py) ---------
    def mechanism_slots(self) -> list[Slot]:
        """Extra mechanism slots, placed after ``base_term``; read once into ``extra_slots``."""
        return []

    def mechanism_init(self, g: dict[str, str]) -> list[str]:
        """``__init__`` lines (8-space indent) of the chosen extra mechanisms."""
        return []

    def mechanism_terms(self, g: dict[str, str]) -> list[str]:
        """``forward`` lines (8-space indent) that add the extra mechanisms to ``base``."""
        return []

    def base_genome(self, strategy_key: str) -> dict[str, str]:
        g = {"base_term": "none", "attach": strategy_key, "hidden": "32", "depth": "2",
             "activation": "tanh", "nn_scale": "0.3"}
        if any(s.name == "nn_inputs" for s in self.slots):
            g["nn_inputs"] = "all"
        return g

    def safer(self, genome: dict[str, str]) -> tuple[dict[str, str], str] | None:
        """A wrapped prior in dynamics form that has not been seen to run as given (node 0
        failed or is not scored yet) is clamped first: the failure is likely the prior's,
        and a network on the output cannot make its rollout finite. A clamped fit of its
        equations that ran (which ranks terms in place of the failed prior) does not prove
        the unclamped prior inside this model."""
        unproven = self.ctx.prior_status != "ok"
        if self.dynamics and unproven and genome.get("stability") != CLAMP:
            return {**genome, "stability": CLAMP}, "clamp the prior's states (smaller steps)"
        return super().safer(genome)

    def render(self, g: dict[str, str]) -> str:
        prior = prior_as_class(self.ctx.prior_code)
        return prior + "\n\n" + (self._tabular(g) if self.tabular else self._trajectory(g))

    def _head(self, g: dict[str, str], n_feat: str, doc: str) -> list[str]:
        return [
            "import torch as _torch",
            "from torch import nn as _nn",
            "from nimm_jupyter.blocks import Positive as _Positive, Real as _Real, mlp as _mlp",
            "",
            "",
            "class Model(_nn.Module):",
            f'    """{doc}; neural part: {g["attach"]}."""',
            "",
            "    def __init__(self, spec):",
            "        super().__init__()",
            "        self.prior = Prior(spec)",
            f"        self.net = _mlp({n_feat}, spec.n_targets, hidden={g['hidden']}, "
            f"depth={g['depth']}, activation=\"{g['activation']}\")",
            f"        self.nn_scale = {g['nn_scale']}",
            '        self.register_buffer("y_scale", spec.target_scale.clamp_min(1e-6))',
            '        self.register_buffer("y_mean", spec.target_mean.clone())',
            '        self.register_buffer("x_mean", spec.input_mean.clone())',
            '        self.register_buffer("x_scale", spec.input_scale.clamp_min(1e-6))',
        ]

    def _combine(self, g: dict[str, str], base: str, h: str) -> str:
        if g["attach"] == "multiplicative":
            return f"{base} * _torch.exp(({h}).clamp(-5.0, 5.0))"
        return f"{base} + {h} * self.y_scale"

    def _tabular(self, g: dict[str, str]) -> str:
        comp_only = g.get("nn_inputs") == "composition"
        n_x = str(self.n_comp) if comp_only else "spec.n_inputs"
        n_feat = n_x + (" + spec.n_targets" if g["attach"] == "augmented" else "")
        L = self._head(g, n_feat, "Mechanistic prior with a neural correction")
        if g["base_term"] == "linear":
            L.append("        self.linear = _nn.Linear(spec.n_inputs, spec.n_targets)")
            L.append("        _nn.init.zeros_(self.linear.weight); _nn.init.zeros_(self.linear.bias)")
        L += self.mechanism_init(g)
        L += [
            "",
            "    def forward(self, x):",
            "        base = self.prior(x)",
            *self.mechanism_terms(g),
            "        zx = (x - self.x_mean) / self.x_scale",
            f"        z = zx[:, :{self.n_comp}]" if comp_only else "        z = zx",
        ]
        if g["attach"] == "augmented":
            L.append("        z = _torch.cat([z, (base - self.y_mean) / self.y_scale], dim=1)")
        if g["base_term"] == "linear":
            L.append("        base = base + self.linear(zx) * self.y_scale")
        L.append("        h = self.nn_scale * self.net(z)")
        L.append(f"        return {self._combine(g, 'base', 'h')}")
        return "\n".join(L) + "\n"

    def _trajectory(self, g: dict[str, str]) -> str:
        extra = " + spec.n_targets" if g["attach"] == "augmented" else ""
        L = self._head(g, f"spec.n_inputs + 2{extra}", "Mechanistic prior with a neural correction")
        if g.get("stability") == CLAMP:
            L += clamp_lines("self.prior")
        if g["base_term"] == "linear":
            L.append("        self.gain = _nn.Parameter(_torch.zeros(spec.n_targets))")
        L += [
            "",
            "    def forward(self, y_context, u, t):",
            "        base = self.prior(y_context, u, t)",
            "        c0 = y_context.shape[1]",
            "        steps = base.shape[1]",
            "        tt = (t[c0:] - t[0]) / (t[-1] - t[0] + 1e-9)",
            "        tt = tt.view(1, -1, 1).expand(base.shape[0], steps, 1)",
            "        last = ((y_context[:, -1:] - self.y_mean) / self.y_scale).mean(-1, keepdim=True)",
            "        feats = [tt, last.expand(-1, steps, 1)]",
            "        if u.shape[-1]:",
            "            feats.append((u[:, c0:] - self.x_mean) / self.x_scale)",
        ]
        if g["attach"] == "augmented":
            L.append("        feats.append((base - self.y_mean) / self.y_scale)")
        if g["base_term"] == "linear":
            L.append("        base = base * (1.0 + self.gain)")
        L.append("        h = self.nn_scale * self.net(_torch.cat(feats, dim=-1))")
        L.append(f"        return {self._combine(g, 'base', 'h')}")
        return "\n".join(L) + "\n"
