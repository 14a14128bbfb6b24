"""Alloy-strength grammar: the task's solid-solution prior plus the mechanisms it omits.

Solid-solution theories (Varvenne–Curtin, Maresca–Curtin) predict the strength of a random
alloy from composition and temperature alone. Measured yield strengths also depend on the
specimen: grain size (Hall–Petch, sigma += k / sqrt(d)), the test type (tension vs
compression asymmetry) and the processing route. When the task gives those conditions as
inputs, this grammar adds each as a fitted mechanistic term (a slot that can be switched
off), then attaches the prior-wrapping networks of :mod:`.wrap`. For BCC alloys tested over
a range of temperatures it also offers the screw-dislocation (Peierls) lattice friction
that edge-dislocation theory leaves out, with the kink-pair temperature law
sigma_P (1 - (T/T_k)^(1/2))^(3/2) (Kocks, Argon & Ashby 1975).
"""
from __future__ import annotations

from .grammar import Slot
from .wrap import WrapGrammar

GRAIN, GRAIN_KNOWN, TENSION, TEMPERATURE = "log10_grain_um", "grain_known", "tension", "T_K"


class AlloyGrammar(WrapGrammar):
    def _has(self, *names: str) -> bool:
        return all(n in self.ctx.input_names for n in names)

    def _proc(self) -> list[str]:
        return [n for n in self.ctx.input_names if n.startswith("proc_")]

    def _bcc(self) -> bool:
        """BCC lattice, read from the task description as a scientist would."""
        return "bcc" in self.ctx.description.lower() and self._has(TEMPERATURE)

    def mechanism_slots(self) -> list[Slot]:
        """A slot's first choice is what first drafts use."""
        slots = []
        if self._bcc():
            slots.append(Slot("lattice_friction", ("kink_pair", "none"),
                              "Peierls lattice friction", "mechanism"))
        if self._has(GRAIN, GRAIN_KNOWN):
            slots.append(Slot("hall_petch", ("fitted", "none"),
                              "Hall-Petch grain-size term", "mechanism"))
        if self._has(TENSION):
            slots.append(Slot("test_type", ("none", "offset"),
                              "tension/compression offset", "mechanism"))
        if self._proc():
            slots.append(Slot("processing", ("none", "offsets"),
                              "processing-route offsets", "mechanism"))
        return slots

    def base_genome(self, strategy_key: str) -> dict[str, str]:
        g = super().base_genome(strategy_key)
        g.update({s.name: s.choices[0] for s in self.extra_slots})
        return g

    def _index(self, name: str) -> int:
        return self.ctx.input_names.index(name)

    def mechanism_init(self, g: dict[str, str]) -> list[str]:
        L = []
        if g.get("lattice_friction") == "kink_pair":
            L.append("        self.sigma_p = _Positive(200.0)  # Peierls stress at 0 K, MPa")
            L.append("        self.T_k = _Positive(600.0)  # athermal temperature of kink pairs, K")
        if g.get("hall_petch") == "fitted":
            L.append("        # Hall-Petch coefficient, MPa um^0.5 (about 200-500 for HEAs)")
            L.append("        self.k_hp = _Positive(300.0)")
        if g.get("test_type") == "offset":
            L.append("        self.tension_offset = _Real(0.0)  # in units of the target scale")
        if g.get("processing") == "offsets":
            L.append(f"        self.proc_offset = _nn.Parameter(_torch.zeros({len(self._proc())}))"
                     "  # per route, target scale")
        return L

    def mechanism_terms(self, g: dict[str, str]) -> list[str]:
        L = []
        if g.get("lattice_friction") == "kink_pair":
            t = self._index(TEMPERATURE)
            L.append(f"        t_rel = (x[:, {t}:{t + 1}] / self.T_k()).clamp(0.0, 1.0)")
            L.append("        base = base + self.sigma_p() * (1.0 - t_rel.sqrt()) ** 1.5")
        if g.get("hall_petch") == "fitted":
            gi, ki = self._index(GRAIN), self._index(GRAIN_KNOWN)
            L.append(f"        d_um = 10.0 ** x[:, {gi}:{gi + 1}]  # grain size, um")
            L.append(f"        base = base + self.k_hp() * x[:, {ki}:{ki + 1}] / d_um.sqrt()")
        if g.get("test_type") == "offset":
            ti = self._index(TENSION)
            L.append(f"        base = base + self.tension_offset() * x[:, {ti}:{ti + 1}]"
                     " * self.y_scale")
        if g.get("processing") == "offsets":
            p = [self._index(n) for n in self._proc()]
            L.append(f"        base = base + (x[:, {p}] * self.proc_offset).sum(1, keepdim=True)"
                     " * self.y_scale")
        return L
