"""Metapopulation-epidemic grammar on case counts: transmission, coupling, depletion, networks.

The rendered models forecast counts x (B, H, P) from the context window with a discrete-time
renewal/SIR recursion on the log scale: x_{t+1} = mix(x_t) * exp(growth), where mix couples
patches through the task's adjacency or mobility matrix.
"""
from __future__ import annotations

from ..base import Strategy
from .grammar import Grammar, Slot, neural_slots

# Order = order of branch roots. Measured on the validation splits of the four epidemic tasks
# (benchmarks/bench_references_vs_drafts.py), the exogenous-only driver network is the weakest
# first draft (it cannot see the epidemic state), so it comes after the state-aware ones.
STRATEGIES = [
    Strategy("neural time-varying transmission",
             "a network of each patch's recent incidence, its growth and the exogenous inputs "
             "(season, interventions) corrects the log transmission rate every week", "rate_net"),
    Strategy("neural coupling closure",
             "a network of local and neighbour incidence corrects how much infection flows in "
             "from neighbouring patches, a closure for the unknown mobility", "coupling_net"),
    Strategy("residual network on next-week counts",
             "a network adds a residual (in units of each patch's count scale) to the "
             "mechanistic forecast of next week's counts", "residual"),
    Strategy("exogenous driver network",
             "a network of the exogenous inputs only predicts a shared multiplier of the "
             "reproduction number: a learned, unobserved seasonal/behavioural driver", "param_net"),
    Strategy("mechanistic structure search",
             "no network: explore transmission heterogeneity, coupling and depletion", "none"),
]


class EpidemicGrammar(Grammar):
    def __post_init__(self) -> None:
        self.n_u = len(self.ctx.input_names)
        self.slots = [
            Slot("transmission", ("shared", "per_patch"), "transmission rate", "mechanism"),
            Slot("coupling", ("none", "network"), "spatial coupling", "mechanism"),
            Slot("depletion", ("none", "sir"), "susceptible depletion", "mechanism"),
            Slot("momentum", ("none", "trend"), "growth memory term", "mechanism"),
            *neural_slots(tuple(s.key for s in STRATEGIES), ("state", "state+inputs"),
                          ("0.1", "0.5")),
        ]
        self.strategy_list = list(STRATEGIES)
        if not self.n_u:
            self.strategy_list = [s for s in STRATEGIES if s.key != "param_net"]

    def base_genome(self, strategy_key: str) -> dict[str, str]:
        return {"transmission": "shared", "coupling": "network", "depletion": "none",
                "momentum": "none", "attach": strategy_key, "hidden": "16", "depth": "2",
                "activation": "tanh", "nn_inputs": "state+inputs" if self.n_u else "state",
                "nn_scale": "0.1"}

    def render(self, g: dict[str, str]) -> str:
        attach = g["attach"]
        n_u = self.n_u
        use_u = n_u > 0 and (g["nn_inputs"] == "state+inputs" or attach == "param_net")
        if attach == "param_net":
            n_feat = n_u
        elif attach == "coupling_net":
            n_feat = 2 + (n_u if use_u else 0)
        else:
            n_feat = 2 + (n_u if use_u else 0)
        per_patch = g["transmission"] == "per_patch"
        L = [
            "import torch",
            "from torch import nn",
            "from nimm_jupyter.blocks import Bounded, Positive, Real, mlp",
            "",
            "",
            "class Model(nn.Module):",
            f'    """Metapopulation renewal model ({g["transmission"]} transmission, coupling '
            f'{g["coupling"]}, depletion {g["depletion"]})'
            + ("" if attach == "none" else f"; neural part: {attach}") + '."""',
            "",
            "    def __init__(self, spec):",
            "        super().__init__()",
            "        n = spec.n_targets",
            '        A = spec.constants.get("mobility", spec.constants.get("adjacency"))',
            "        A = torch.eye(n) if A is None else A.float()",
            '        self.register_buffer("W", A / A.sum(1, keepdim=True).clamp_min(1e-9))',
            "        self.register_buffer(\"scale\", spec.target_scale.clamp_min(1e-6))",
            ("        self.log_r = Real(0.0, shape=(n,))  # log weekly growth per patch"
             if per_patch else "        self.log_r = Real(0.0)  # log weekly growth factor"),
        ]
        if g["coupling"] == "network":
            L.append("        self.kappa = Bounded(0.1, 0.0, 1.0)  # share of infection from neighbours")
        if g["depletion"] == "sir":
            L.append("        self.n_eff = Positive(50.0)  # effective susceptible pool, in count scales")
        if g["momentum"] == "trend":
            L.append("        self.phi = Bounded(0.3, -1.0, 1.0)  # persistence of last week's growth")
        if attach != "none":
            L.append(f"        self.net = mlp({n_feat}, 1, hidden={g['hidden']}, depth={g['depth']}, "
                     f"activation=\"{g['activation']}\")")
            L.append(f"        self.nn_scale = {g['nn_scale']}")
        if n_u:
            L.append("        self.register_buffer(\"u_mean\", spec.input_mean.clone())")
            L.append("        self.register_buffer(\"u_scale\", spec.input_scale.clone())")
        L += [
            "",
            "    def forward(self, y_context, u, t):",
            "        c0 = y_context.shape[1]",
            "        horizon = t.shape[0] - c0",
            "        x = y_context[:, -1].clamp_min(0.0) + 1.0",
            "        prev = (y_context[:, -2] if c0 > 1 else y_context[:, -1]).clamp_min(0.0) + 1.0",
            "        cum = y_context.clamp_min(0.0).sum(1) / self.scale",
            "        out = []",
            "        for k in range(horizon):",
        ]
        if g["coupling"] == "network":
            L.append("            kappa = self.kappa()")
            L.append("            mixed = (1.0 - kappa) * x + kappa * x @ self.W.T")
        else:
            L.append("            mixed = x")
        L.append("            growth = self.log_r() * torch.ones_like(x)")
        if g["depletion"] == "sir":
            L.append("            growth = growth + torch.log((1.0 - cum / self.n_eff()).clamp_min(1e-3))")
        if g["momentum"] == "trend":
            L.append("            growth = growth + self.phi() * torch.log(x / prev)")
        if attach != "none":
            if use_u:
                L.append("            uk = ((u[:, c0 - 1 + k] - self.u_mean) / self.u_scale)"
                         ".unsqueeze(1).expand(-1, x.shape[1], -1)")
            if attach == "param_net":
                feats = "uk"
            elif attach == "coupling_net":
                feats = "torch.log(x / self.scale).unsqueeze(-1) / 5.0, torch.log((x @ self.W.T) / self.scale).unsqueeze(-1) / 5.0"
                feats = f"torch.cat([{feats}" + (", uk" if use_u else "") + "], dim=-1)"
            else:
                feats = ("torch.log(x / self.scale).unsqueeze(-1) / 5.0, "
                         "torch.log(x / prev).unsqueeze(-1)")
                feats = f"torch.cat([{feats}" + (", uk" if use_u else "") + "], dim=-1)"
            L.append(f"            h = self.nn_scale * self.net({feats}).squeeze(-1)")
            if attach == "param_net":
                L.append("            h = h.mean(dim=1, keepdim=True) * torch.ones_like(x)")
        if attach in ("rate_net", "param_net"):
            L.append("            growth = growth + h")
        if attach == "coupling_net":
            L.append("            mixed = mixed * torch.exp(h.clamp(-5.0, 5.0))")
        L.append("            x_new = mixed * torch.exp(growth.clamp(-5.0, 3.0))")
        if attach == "residual":
            L.append("            x_new = (x_new + h * self.scale).clamp_min(1.0)")
        L += [
            "            x_new = x_new.clamp(1.0, 1e7)",
            "            out.append(x_new - 1.0)",
            "            cum = cum + x_new / self.scale",
            "            prev, x = x, x_new",
            "        return torch.stack(out, dim=1)",
            "",
        ]
        return "\n".join(L)
