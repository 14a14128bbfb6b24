"""Tumour-growth (PKPD) grammar: growth laws, drug effects and where a network attaches."""
from __future__ import annotations

from ..base import Strategy
from .grammar import Grammar, Slot, neural_slots

GROWTH = {
    "exponential": "self.rho() * ones",
    "logistic": "self.rho() * (1.0 - V / self.K())",
    "gompertz": "self.rho() * safe_log(self.K() / V)",
    "bertalanffy": "self.rho() * (V.clamp_min(1e-6) ** (-1.0 / 3.0)) - self.delta()",
}
CHEMO = {
    "linear": "self.beta_c() * C",
    "emax": "self.emax() * C / (self.ec50() + C.clamp_min(0.0))",
}
RADIO = {
    "lq": "self.alpha_r() * d_r + self.beta_r() * d_r ** 2",
    "linear": "self.alpha_r() * d_r",
}
# Branch order: what an oncologist would try, from the fewest assumptions about what the
# prior misses to the most specific, never ordered by what the simulator is. First a residual
# on dV/dt (assumes nothing about the missing mechanism); then the standard comparison of the
# textbook growth laws and drug-effect forms, with no network (the growth-law slot holds
# exponential, logistic, Gompertz and von Bertalanffy as equal alternatives, every draft starts
# from the prior's exponential law and refinement picks among them at random); then drifting
# parameters (resistance over a course of treatment); then a size-dependent growth rate; last
# the dose-response closure. The first draft used to be the exponential law plus a network of
# log-volume on the growth rate, which is the simulator's Gompertz family in disguise.
STRATEGIES = [
    Strategy("residual network on dV/dt",
             "a network of the normalised state and doses adds an absolute residual (in units "
             "of the volume scale per day) to the tumour-volume derivative", "residual_dV"),
    Strategy("mechanistic structure search",
             "no network: compare the standard tumour growth laws and drug-effect forms",
             "none"),
    Strategy("time-varying growth rate",
             "a network of time (and volume) scales the mechanistic growth rate, a neural "
             "model of a parameter that drifts over the course of treatment", "param_net"),
    Strategy("size-dependent growth-rate correction",
             "a network of the normalised log-volume (and drug level) adds to the per-volume "
             "growth rate, for a growth rate that depends on tumour size", "rate_net"),
    Strategy("neural drug-effect closure",
             "a network of the drug concentration replaces part of the chemotherapy kill term, "
             "a closure for the unknown dose-response shape", "closure_chemo"),
]


class TumourGrammar(Grammar):
    def __post_init__(self) -> None:
        names = self.ctx.target_names
        self.has_c = "C" in names
        self.has_chemo = "chemo_dose" in self.ctx.input_names
        self.has_radio = "radio_dose" in self.ctx.input_names
        self.slots = [
            Slot("growth", tuple(GROWTH), "growth law", "mechanism"),
            *neural_slots(tuple(s.key for s in STRATEGIES), ("state", "state+doses"),
                          ("0.01", "0.1")),
        ]
        if self.has_c and self.has_chemo:
            self.slots.insert(1, Slot("chemo", tuple(CHEMO), "chemo effect", "mechanism"))
        if self.has_radio:
            self.slots.insert(1, Slot("radio", tuple(RADIO), "radio effect", "mechanism"))
        keys = [s.key for s in STRATEGIES]
        if not (self.has_c and self.has_chemo):
            keys.remove("closure_chemo")
        self.strategy_list = [s for s in STRATEGIES if s.key in keys]

    def base_genome(self, strategy_key: str) -> dict[str, str]:
        g = {"growth": "exponential", "attach": strategy_key, "hidden": "16", "depth": "2",
             "activation": "tanh", "nn_inputs": "state", "nn_scale": "0.1"}
        if self.has_c and self.has_chemo:
            g["chemo"] = "linear"
        if self.has_radio:
            g["radio"] = "lq"
        return g

    def render(self, g: dict[str, str]) -> str:
        attach = g["attach"]
        params = ["        self.rho = Positive(0.01)  # growth rate, 1/day"]
        if g["growth"] in ("logistic", "gompertz"):
            params.append("        self.K = Positive(20000.0)  # carrying capacity, cm^3")
        if g["growth"] == "bertalanffy":
            params[0] = "        self.rho = Positive(0.05)  # anabolic rate, cm/day"
            params.append("        self.delta = Positive(0.01)  # catabolic rate, 1/day")
        kill_terms = []
        if "chemo" in g:
            if g["chemo"] == "linear":
                params.append("        self.beta_c = Positive(0.02)  # kill per unit drug")
            else:
                params.append("        self.emax = Positive(0.2)  # maximal kill rate, 1/day")
                params.append("        self.ec50 = Positive(3.0)  # half-effect concentration")
            kill_terms.append(CHEMO[g["chemo"]])
        if self.has_c:
            params.append("        self.k_el = Positive(0.4)  # drug elimination, 1/day")
        if "radio" in g:
            params.append("        self.alpha_r = Positive(0.03)  # radio linear, 1/Gy")
            if g["radio"] == "lq":
                params.append("        self.beta_r = Positive(0.003)  # radio quadratic, 1/Gy^2")
            kill_terms.append(RADIO[g["radio"]])
        n_dose = (1 if self.has_chemo else 0) + (1 if self.has_radio else 0)
        feats = ["logv"]
        if self.has_c:
            feats.append("C / self.c_scale")
        if attach == "param_net":
            feats = ["logv", "tt"]
        if g["nn_inputs"] == "state+doses" and n_dose:
            feats.append("u_k / self.u_scale")
        if attach == "closure_chemo":
            feats = ["C / self.c_scale"]
        n_feat = len(feats) + (n_dose - 1 if "u_k / self.u_scale" in feats else 0)
        lines = [
            "import torch",
            "from torch import nn",
            "from nimm_jupyter.blocks import Positive, euler_rollout, mlp, safe_log",
            "",
            "",
            "class Model(nn.Module):",
            f'    """Tumour growth: {g["growth"]} law'
            + (f', {g["chemo"]} chemo' if "chemo" in g else "")
            + (f', {g["radio"]} radio' if "radio" in g else "")
            + ("" if attach == "none" else f"; neural part: {attach}") + '."""',
            "",
            "    def __init__(self, spec):",
            "        super().__init__()",
            *params,
        ]
        if attach != "none":
            lines += [
                f"        self.net = mlp({n_feat}, 1, hidden={g['hidden']}, depth={g['depth']}, "
                f"activation=\"{g['activation']}\")",
                f"        self.nn_scale = {g['nn_scale']}",
            ]
        if self.has_c:
            lines.append("        self.c_scale = float(spec.target_scale[1]) + 1e-6")
        if attach == "residual_dV":
            lines.append("        self.v_scale = float(spec.target_scale[0])  # cm^3/day per unit of h")
        if "u_k / self.u_scale" in feats:
            lines.append("        self.register_buffer(\"u_scale\", spec.input_scale.clone())")
        if attach == "param_net":
            lines.append("        self.t_end = float(spec.time[-1]) + 1e-6")
        lines += [
            "",
            "    def forward(self, y_context, u, t):",
            "        c0 = y_context.shape[1]",
            "        dt = float(t[1] - t[0])",
            "",
            "        def step(y, u_k, k):",
            "            V = y[:, 0:1].clamp_min(1e-6)",
        ]
        if self.has_c:
            lines.append("            C = y[:, 1:2]")
        if self.has_chemo:
            lines.append("            d_c = u_k[:, 0:1]")
        if self.has_radio:
            lines.append("            d_r = u_k[:, 1:2]")
        lines.append("            ones = torch.ones_like(V)")
        if attach != "none":
            lines.append("            logv = safe_log(V) / 5.0")
            if attach == "param_net":
                lines.append("            tt = ones * ((c0 - 1 + k) * dt / self.t_end)")
            lines.append(f"            h = self.nn_scale * self.net(torch.cat([{', '.join(feats)}], dim=1))")
        growth = GROWTH[g["growth"]]
        if attach == "rate_net":
            rate = f"{growth} + h"
        elif attach == "param_net":
            rate = f"({growth}) * torch.exp(h)"
        else:
            rate = growth
        kill = " + ".join(f"({k})" for k in kill_terms)
        if attach == "closure_chemo":
            kill = (kill + " + " if kill else "") + "h * C.clamp_min(0.0)"
        lines.append(f"            rate = {rate}" + (f" - ({kill})" if kill else ""))
        dv = "V * rate"
        if attach == "residual_dV":
            dv = "V * rate + self.v_scale * h"
        lines.append(f"            dV = {dv}")
        if self.has_c:
            dose = "d_c" if self.has_chemo else "0.0"
            lines.append(f"            dC = -self.k_el() * C + {dose}")
            lines.append("            return torch.cat([dV, dC], dim=1)")
        else:
            lines.append("            return dV")
        lines += [
            "",
            "        return euler_rollout(step, y_context[:, -1], u[:, c0 - 1:],",
            "                             n_steps=t.shape[0] - c0, dt=dt, clamp=(0.0, 1e6))",
            "",
        ]
        return "\n".join(lines)
