"""Dynamics-form grammar: edit the user's equations of motion, not the prior's output.

Used when the prior is ``class Model(Dynamics)`` with an ``rhs(t, y, u)`` method (see
:class:`nimm_jupyter.blocks.Dynamics`). The prior is embedded as ``Prior`` and the candidate
subclasses it, so the prior's constants keep their own names as fitted parameters. A genome
adds at most one mechanistic term (a fitted coefficient times a function of the states and
inputs) and at most one network to the derivative of one named state, and may make one of
the prior's constants a function of the states and inputs (``k -> k * (1 + s * tanh(net))``:
the network enters the equations of motion through the mechanism) or let one saturate in a
non-negative variable (``k -> k / (1 + c * v)``, the Michaelis–Menten / Holling type-II form;
no network); each refinement changes one of those choices.
"""
from __future__ import annotations

import re

import numpy as np

from ..base import MechanismFit, Strategy
from .constant_ranking import (RankedSaturation, nonnegative_variables, parse_saturation,
                               rank_saturations, saturation_choice, saturation_note)
from .grammar import Grammar, Slot, key_of
from .term_ranking import RankedTerm, rank_note, rank_terms
from .wrap import clamp_lines, is_dynamics_prior, prior_as_class

__all__ = ["DynamicsGrammar", "is_dynamics_prior", "prior_constants", "per_sample_constants",
           "term_catalogue"]

STRATEGIES = [
    Strategy("mechanistic term in one derivative",
             "add one fitted term built from the states and inputs (linear, product, saturating, "
             "x^2*y coupling, damping or drag) to one state's derivative, or let one of the "
             "prior's rate constants saturate in a non-negative variable (k/(1+c*v)); no "
             "network", "term"),
    Strategy("neural residual in one derivative",
             "a network of all states and inputs adds to one state's derivative inside the "
             "equations, so the fitted constants keep their meaning", "residual"),
    Strategy("closure term from chosen inputs",
             "a network of one chosen state or input only is added to one state's derivative "
             "(a learned law of that variable, e.g. friction of the velocity)", "closure"),
    Strategy("state-dependent constant",
             "one of the prior's constants becomes k * (1 + s * tanh(network of the states and "
             "inputs)): the mechanism's form is kept, its rate varies within +-s of k",
             "modulate"),
]

# a scalar constant of the prior: ``self.k = Positive(2.0)`` (no ``shape=``), called as self.k()
_CONSTANT = re.compile(r"^\s*self\.(\w+)\s*=\s*(?:\w+\.)?(?:Positive|Bounded|Real)\((?![^\n]*shape)",
                       re.M)


def prior_constants(prior_code: str) -> tuple[str, ...]:
    """The prior's scalar :class:`~nimm_jupyter.blocks.Param` constants that its code calls
    (``self.k()``), in the order they are defined: the ones a modulation may act on."""
    names = dict.fromkeys(_CONSTANT.findall(prior_code or ""))
    return tuple(n for n in names if f"self.{n}()" in prior_code)


_RHS_STATE = re.compile(r"def\s+rhs\(\s*self\s*,\s*\w+\s*,\s*(\w+)")


def per_sample_constants(prior_code: str) -> tuple[str, ...]:
    """The constants a modulation or saturation may act on: :func:`prior_constants` when the
    prior's ``rhs`` reads its state by column (``y[:, 0]``, ``y[..., 1]``, ``y.unbind(1)``),
    else none. Those moves make the constant a per-sample ``(B,)`` tensor, which multiplies a
    state column as a scalar does but not the whole ``(B, S)`` state (``k() * y`` would
    broadcast to ``(B, B)``: a contract error, so a node and its debug spent for nothing)."""
    m = _RHS_STATE.search(prior_code or "")
    if not m:
        return ()
    y = re.escape(m.group(1))
    if re.search(rf"\b{y}\s*\[\s*(:|\.\.\.)\s*,|\b{y}\.unbind\(", prior_code):
        return prior_constants(prior_code)
    return ()


# a ranked term or saturation that removes less than this share of the residual it is ranked
# on is not worth a node (at the noise floor every term removes about 1/M of M steps' residual)
MIN_SHARE = 0.01
EXHAUSTED = "exhausted"  # ranked_edit: a ranking, and nothing in it left worth a node
RANKED_SLOTS = ("term", "term_state", "saturate")  # the slots whose edits follow a ranking

# how a failing rollout is made safe; the debug operator walks this list. One step: on a
# prior that blows up (benchmarks/bench_priors.py, brusselator) smaller steps alone never
# made it run, so an intermediate "substeps x4" level only spent a node; the clamp comes
# with 4x smaller steps
STABILITY = ("as prior", "clamp states")


def term_catalogue(variables: list[str]) -> tuple[str, ...]:
    """Every candidate term over ``variables`` (states then inputs); ``self`` means the
    state whose derivative gets the term."""
    terms = ["none", "damp(self)", "drag(self)"]
    terms += [f"{v}" for v in variables]
    terms += [f"{v}/(1+c*{v})" for v in variables]
    terms += [f"{a}*{b}" for i, a in enumerate(variables) for b in variables[i:]]
    terms += [f"{a}^2*{b}" for a in variables for b in variables if a != b]
    return tuple(terms)


class DynamicsGrammar(Grammar):
    def __post_init__(self) -> None:
        self.states = list(self.ctx.target_names)
        self.inputs = list(self.ctx.input_names)
        variables = self.states + self.inputs
        self.constants = per_sample_constants(self.ctx.prior_code)
        positive = nonnegative_variables(self.ctx.train_series, self.states, self.inputs)
        saturations = tuple(saturation_choice(k, v) for k in self.constants for v in positive)
        self.slots = [
            Slot("term_state", tuple(self.states), "state whose derivative gets the term",
                 "mechanism"),
            Slot("term", term_catalogue(variables), "mechanistic term", "mechanism"),
            Slot("stability", STABILITY, "integration safeguard", "mechanism"),
            Slot("modulate", ("none", *self.constants), "constant made a network of the states",
                 "mechanism"),
            Slot("mod_scale", ("0.1", "0.5"), "bound of the constant's modulation", "mechanism"),
            Slot("saturate", ("none", *saturations), "constant that saturates in a variable",
                 "mechanism"),
            Slot("attach", ("none", "residual", "closure"), "network inside the equations"),
            Slot("nn_state", tuple(self.states), "state whose derivative gets the network"),
            Slot("nn_inputs", ("all", *variables), "network inputs"),
            Slot("hidden", ("8", "16", "32"), "hidden width"),
            Slot("depth", ("2", "3"), "network depth"),
            Slot("activation", ("tanh", "silu"), "activation"),
            Slot("nn_scale", ("0.1", "0.3", "1.0"), "initial scale of the neural term"),
        ]
        self.strategy_list = [s for s in STRATEGIES if s.key != "modulate" or self.constants]

    def base_genome(self, strategy_key: str) -> dict[str, str]:
        last = self.states[-1]  # in a mechanical prior the last state is usually the velocity
        # a modulation starts bounded to +-50 %: +-10 % could not stand in for a missing
        # saturation (benchmarks/bench_priors.py holling_prey: test 0.105 at 0.1, 0.042 at 0.5)
        g = {"term_state": last, "term": "none", "stability": "as prior",
             "modulate": "none", "mod_scale": "0.5", "saturate": "none",
             "attach": strategy_key, "nn_state": last,
             "nn_inputs": "all", "hidden": "16", "depth": "2", "activation": "tanh",
             "nn_scale": "0.3"}
        if strategy_key == "term":
            g.update(attach="none", term="damp(self)")
        elif strategy_key == "modulate":
            g.update(attach="none", modulate=self.constants[0])
        elif strategy_key == "closure":
            g["nn_inputs"] = last
        return g

    def active_slots(self, genome: dict[str, str]) -> list[Slot]:
        # the integration safeguard is the debug operator's, not a refinement; a modulation's
        # bound matters only with a modulation
        skip = {"stability"} | ({"mod_scale"} if genome.get("modulate", "none") == "none" else set())
        if genome.get("attach") == "none":
            return [s for s in self.slots if s.kind == "mechanism" and s.name not in skip]
        # a closure has one chosen input; a residual sees them all
        skip |= {"attach"} | ({"nn_inputs"} if genome["attach"] == "residual" else set())
        out = [s for s in self.slots if s.name not in skip]
        if genome["attach"] == "closure":
            out = [s if s.name != "nn_inputs" else Slot(s.name, s.choices[1:], s.what)
                   for s in out]
        return out

    def mutations(self, genome: dict[str, str]) -> list[tuple[str, str]]:
        # a genome journaled before the modulation (saturation) slots existed has none: offer
        # its real edits, not "modulate: None -> none"
        return super().mutations({"modulate": "none", "mod_scale": "0.5", "saturate": "none",
                                  **genome})

    def safer(self, genome: dict[str, str]) -> tuple[dict[str, str], str] | None:
        """A failed rollout is usually the mechanism's (an unstable prior or an added term):
        take the next integration safeguard, and a milder network if there is one."""
        level = STABILITY.index(genome.get("stability", STABILITY[0]))
        if level + 1 < len(STABILITY):
            safe = {**genome, "stability": STABILITY[level + 1]}
            neural = super().safer(genome)
            if neural is not None and genome.get("attach") != "none":
                safe = {**neural[0], "stability": STABILITY[level + 1]}
            return safe, f"mechanism {STABILITY[level + 1]}"
        if genome.get("modulate", "none") != "none":
            return {**genome, "modulate": "none"}, f"drop the modulation of {genome['modulate']}"
        if genome.get("saturate", "none") != "none":
            return {**genome, "saturate": "none"}, f"drop the saturation {genome['saturate']}"
        if genome.get("term", "none") != "none":
            return {**genome, "term": "none"}, f"drop the added term {genome['term']}"
        if genome.get("attach") != "none":
            return {**genome, "attach": "none"}, "drop the network"
        return None

    def _stability(self, g: dict[str, str]) -> list[str]:
        return clamp_lines("self") if g["stability"] == "clamp states" else []

    # -- ranked term moves ---------------------------------------------------------------
    def _fit(self, fit: MechanismFit | None) -> MechanismFit | None:
        """``fit``, or the search's default reference (the scored prior's)."""
        if fit is not None:
            return fit
        one_step = self.ctx.reference_one_step
        return None if one_step is None else MechanismFit(one_step,
                                                          self.ctx.reference_sensitivity)

    def ranking(self, fit: MechanismFit | None = None) -> list[RankedTerm]:
        """The catalogue's (state, term) pairs ranked on the residual of ``fit`` (by
        default the fitted mechanism the search hands on, :mod:`.term_ranking`); empty
        before one is scored."""
        series, ref = self.ctx.train_series, self._fit(fit)
        one_step = None if ref is None else ref.one_step
        if series is None or one_step is None:
            return []
        try:
            return rank_terms(series, one_step, self.states, self.inputs,
                              self.slot("term").choices)
        except (ValueError, np.linalg.LinAlgError):  # odd data: propose without a ranking
            return []

    def saturation_ranking(self, fit: MechanismFit | None = None) -> list[RankedSaturation]:
        """The saturation slot's choices ranked on the same residual, from the fitted
        mechanism's constant sensitivities (:mod:`.constant_ranking`); empty before one is
        scored, or without sensitivities."""
        series, ref = self.ctx.train_series, self._fit(fit)
        if series is None or ref is None or not ref.sensitivity:
            return []
        try:
            return rank_saturations(series, ref.one_step, ref.sensitivity,
                                    self.states, self.inputs, self.slot("saturate").choices)
        except (ValueError, np.linalg.LinAlgError):
            return []

    def ranked_saturation_move(self, genome: dict[str, str], seen: set[str],
                               ranking: list[RankedSaturation]
                               ) -> tuple[dict[str, str], str] | None:
        """The best saturation of ``ranking`` (:meth:`saturation_ranking`) not tried yet in
        place of the genome's, and the change text; None when every ranked one that removes
        at least ``MIN_SHARE`` of the residual was tried."""
        for rank, sat in enumerate(ranking, 1):
            child = {**genome, "saturate": sat.choice}
            if key_of(child) in seen or sat.explained < MIN_SHARE:
                continue
            return child, (f"constant that saturates in a variable: "
                           f"{genome.get('saturate', 'none')} -> {sat.choice} "
                           f"({saturation_note(rank, sat)})")
        return None

    def best_mechanistic_edit(self, genome: dict[str, str]) -> tuple[dict[str, str], str]:
        """``genome`` with the one mechanistic edit that explains most of the fitted
        mechanism's residual (the best-ranked added term or saturation; their shares are on
        one scale), and the note citing it; ``genome`` and "" without a ranking."""
        terms, sats = self.ranking()[:1], self.saturation_ranking()[:1]
        if sats and (not terms or sats[0].explained > terms[0].explained):
            return {**genome, "term": "none", "saturate": sats[0].choice}, \
                f" ({saturation_note(1, sats[0])})"
        if terms:
            return self.with_term(genome, terms[0]), f" ({rank_note(1, terms[0])})"
        return genome, ""

    def ranked_edit(self, genome: dict[str, str], slot: str, seen: set[str], parent,
                    history: list, fits: dict[int, MechanismFit]
                    ) -> tuple[dict[str, str], str, str] | str | None:
        """An edit of a ranked slot (``RANKED_SLOTS``) as the ranking makes it, on the
        residual of the model without the choice being edited (:meth:`edit_reference`):
        ``(child, change text, edited slot)``; None when there is no ranking (the edit stays
        the grammar's random one); ``EXHAUSTED`` when every ranked choice that removes at
        least ``MIN_SHARE`` of that residual was tried."""
        fit = self.edit_reference(genome, slot, parent, history, fits)
        if slot == "saturate":
            ranking, walk, edited = self.saturation_ranking(fit), self.ranked_saturation_move, \
                "saturate"
        else:
            ranking, walk, edited = self.ranking(fit), self.ranked_move, "term"
        if not ranking:
            return None
        move = walk(genome, seen, ranking)
        return EXHAUSTED if move is None else (*move, edited)

    def prior_genome(self) -> dict[str, str]:
        """The user's prior (node 0) as a genome: nothing added."""
        return {**self.base_genome("term"), "term": "none"}

    def structure(self, genome: dict[str, str]) -> str:
        """The model a genome renders, as a key: slots that do not matter for it (where a
        term acts without a term, a network's shape without one) and starting values left
        out, so that two genomes of one model compare equal."""
        g = {"modulate": "none", "mod_scale": "0.5", "saturate": "none", **genome}
        drop = set()
        if g.get("term") == "none":
            drop.add("term_state")
        if g["modulate"] == "none":
            drop.add("mod_scale")
        if g.get("attach") == "none":
            drop |= {"nn_state", "nn_inputs", "hidden", "depth", "activation", "nn_scale"}
        return key_of({k: v for k, v in g.items() if k not in drop})

    def edit_reference(self, genome: dict[str, str], slot: str, parent, history: list,
                       fits: dict[int, MechanismFit]) -> MechanismFit | None:
        """What an edit of ``slot`` of ``genome`` ranks its choices on: the residual of the
        model without that choice (adding a term to a saturated prior ranks on the
        saturated model's residual; replacing a term, on the model without it), the fit of
        the node among ``parent`` and ``history`` that is that model, else of the one that is
        its mechanism without networks (a model with a network has no fit to rank on); None
        (the default reference, the prior's) when that is the prior or has no fit either."""
        base = {**genome, ("term" if slot == "term_state" else slot): "none"}
        nodes = {self.structure(n.meta["genome"]): n for n in [*history, parent]
                 if n.status == "ok" and n.id in fits and isinstance(n.meta.get("genome"), dict)}
        for model in (base, {**base, "modulate": "none", "attach": "none"}):
            key = self.structure(model)
            if key == self.structure(self.prior_genome()):
                return None
            if key in nodes:
                return fits[nodes[key].id]
        return None

    def with_term(self, genome: dict[str, str], ranked: RankedTerm) -> dict[str, str]:
        """``genome`` with its one added term replaced by ``ranked`` (started at its fit)."""
        return {**genome, "term_state": ranked.state, "term": ranked.term,
                "_coef": f"{ranked.coef:.6g}"}

    def ranked_move(self, genome: dict[str, str], seen: set[str], ranking: list[RankedTerm]
                    ) -> tuple[dict[str, str], str] | None:
        """The best term of ``ranking`` (:meth:`ranking`) not tried yet in place of the
        genome's added term, and the change text; None when every ranked term that removes
        at least ``MIN_SHARE`` of the residual was tried. One atomic edit: the one added term
        (where it acts and what it is) is replaced."""
        for rank, t in enumerate(ranking, 1):
            child = self.with_term(genome, t)
            if key_of(child) in seen or t.explained < MIN_SHARE:
                continue
            old = (f"{genome['term']} in d{genome['term_state']}/dt"
                   if genome.get("term", "none") != "none" else "none")
            return child, (f"mechanistic term: {old} -> {t.term} in d{t.state}/dt "
                           f"({rank_note(rank, t)})")
        return None

    # -- rendering -----------------------------------------------------------------------
    def _var(self, name: str) -> str:
        if name in self.states:
            return f"y[:, {self.states.index(name)}]"
        return f"u[:, {self.inputs.index(name)}]"

    def _term(self, term: str, own: str, start: float | None = None) -> tuple[list[str], str]:
        """``__init__`` lines and the expression ``(B,)`` of one term (coefficient included);
        ``start`` is the coefficient's starting value (the ranking's least-squares fit)."""
        init = [f"        self.term_coef = _Real({0.0 if start is None else start:.6g})"
                "  # fitted coefficient of the added term"]
        if term == "damp(self)":  # a linear loss of the state, sign fixed: -c * x
            c = 1e-2 if start is None or start <= 0 else start
            return ([f"        self.term_coef = _Positive({c:.6g})  # damping rate of the added term"],
                    f"-self.term_coef() * {self._var(own)}")
        if term == "drag(self)":  # quadratic drag: -c * x * |x|
            c = 1e-3 if start is None or start <= 0 else start
            return ([f"        self.term_coef = _Positive({c:.6g})  # drag coefficient of the added term"],
                    f"-self.term_coef() * {self._var(own)} * {self._var(own)}.abs()")
        if term.endswith(")") and "/(1+c*" in term:
            v = self._var(term.split("/", 1)[0])
            init.append(f"        self.term_sat = _Positive(float(1.0 / {self._scale(term.split('/', 1)[0])}))"
                        "  # saturation constant")
            return init, f"self.term_coef() * {v} / (1.0 + self.term_sat() * {v})"
        if "^2*" in term:
            a, b = term.split("^2*")
            return init, f"self.term_coef() * {self._var(a)} ** 2 * {self._var(b)}"
        if "*" in term:
            a, b = term.split("*")
            return init, f"self.term_coef() * {self._var(a)} * {self._var(b)}"
        return init, f"self.term_coef() * {self._var(term)}"

    def _scale(self, name: str) -> str:
        if name in self.states:
            return f"spec.target_scale[{self.states.index(name)}].clamp_min(1e-6)"
        return f"spec.input_scale[{self.inputs.index(name)}].clamp_min(1e-6)"

    _Z_INIT = [  # the normalised states and inputs z every network of the equations reads
        '        self.register_buffer("z_mean", _torch.cat([spec.target_mean, spec.input_mean]))',
        '        self.register_buffer("z_scale", _torch.cat([spec.target_scale, '
        'spec.input_scale]).clamp_min(1e-6))',
    ]

    def _overrides(self, g: dict[str, str]) -> tuple[list[str], list[str]]:
        """``__init__`` lines and the class-level properties that make a modulated or
        saturating constant a function of the state wherever the prior's ``rhs`` calls it
        (both on one constant compose: ``k / (1 + c * v) * (1 + s * tanh(net(z)))``)."""
        init: list[str] = []
        exprs: dict[str, list[str]] = {}
        notes: dict[str, list[str]] = {}
        if g.get("saturate", "none") != "none":
            k, v = parse_saturation(g["saturate"])
            j = (self.states + self.inputs).index(v)
            init.append(f"        self.sat_c = _Positive(float(1.0 / {self._scale(v)}))"
                        f"  # saturation constant of {k} in {v}")
            exprs.setdefault(k, ["base()"]).append(
                f" / (1.0 + self.sat_c() * self._yu[:, {j}].clamp_min(0.0))")
            notes.setdefault(k, []).append(
                f"{k} / (1 + c * {v}) ({v} clamped at 0; {k} is its value at {v} = 0)")
        if g.get("modulate", "none") != "none":
            k = g["modulate"]
            init += ["        self.mod_net = _mlp(spec.n_targets + spec.n_inputs, 1, hidden=16, depth=2)",
                     f"        self.mod_scale = {g['mod_scale']}  # the factor stays within 1 +- this"]
            e = exprs.setdefault(k, ["base()"])
            if len(e) > 1:  # saturated too: the modulation multiplies the saturated rate
                e[:] = ["(", *e, ")"]
            e.append(" * (1.0 + self.mod_scale * _torch.tanh(self.mod_net(self._z)[:, 0]))")
            notes.setdefault(k, []).append(
                "times (1 + s * tanh(net(z))) (the network starts at 0: the prior's value)")
        prop: list[str] = []
        for k, parts in exprs.items():
            prop += [
                "    @property",
                f"    def {k}(self):",
                f"        # the prior's rhs calls self.{k}(): here {'; '.join(notes[k])},",
                "        # at the current stage's state (B,); the constant itself stays the fitted",
                f"        # parameter named {k}",
                f'        base = self._modules["{k}"]',
                f"        return lambda: {''.join(parts)}",
            ]
        return init, prop

    def _net(self, g: dict[str, str]) -> tuple[list[str], str]:
        chosen = g["nn_inputs"] if g["attach"] == "closure" else "all"
        i = self.states.index(g["nn_state"])
        init = [
            # derivative units: the state's spread per unit time of the whole series
            f"        self.d_scale = float(spec.target_scale[{i}].clamp_min(1e-6)) / "
            "max(float(spec.time[-1] - spec.time[0]), 1e-6)",
        ]
        if chosen == "all":
            n_in, feats = "spec.n_targets + spec.n_inputs", "z"
        else:
            j = (self.states + self.inputs).index(chosen)
            n_in, feats = "1", f"z[:, {j}:{j + 1}]"
        init.append(f"        self.net = _mlp({n_in}, 1, hidden={g['hidden']}, depth={g['depth']}, "
                    f"activation=\"{g['activation']}\")")
        init.append(f"        self.nn_scale = {g['nn_scale']}")
        return init, f"self.nn_scale * self.d_scale * self.net({feats})[:, 0]"

    def render(self, g: dict[str, str]) -> str:
        prior = prior_as_class(self.ctx.prior_code)
        n = len(self.states)
        L = [
            "import torch as _torch",
            "from nimm_jupyter.blocks import Positive as _Positive, Real as _Real, mlp as _mlp",
            "",
            "",
            "class Model(Prior):",
            f'    """The prior\'s equations plus: {self.describe(g)}."""',
            "",
            "    def __init__(self, spec):",
            "        super().__init__(spec)",
        ]
        L += self._stability(g)
        modulated = g.get("modulate", "none") != "none"
        saturated = g.get("saturate", "none") != "none"
        if modulated or g["attach"] != "none":
            L += self._Z_INIT
        init, prop = self._overrides(g)
        L += init
        adds: list[tuple[int, str]] = []
        if g["term"] != "none":
            start = float(g["_coef"]) if g.get("_coef") else None
            init, expr = self._term(g["term"], g["term_state"], start)
            L += init
            adds.append((self.states.index(g["term_state"]), expr))
        if g["attach"] != "none":
            init, expr = self._net(g)
            L += init
            adds.append((self.states.index(g["nn_state"]), expr))
        for k, (i, _) in enumerate(adds):
            L.append(f'        self.register_buffer("_onehot{k}", _torch.eye({n})[{i}])')
        if prop:
            L += ["", *prop]
        L += ["", "    def rhs(self, t, y, u):"]
        if modulated or g["attach"] != "none":
            L.append("        z = (_torch.cat([y, u], dim=1) - self.z_mean) / self.z_scale")
        if modulated:
            L.append("        self._z = z  # what the modulated constant reads in super().rhs")
        if saturated:
            L.append("        self._yu = _torch.cat([y, u], dim=1)  # what the saturation reads")
        L.append("        dy = super().rhs(t, y, u)")
        for k, (_, expr) in enumerate(adds):
            L.append(f"        dy = dy + ({expr}).unsqueeze(1) * self._onehot{k}")
        L.append("        return dy")
        return prior + "\n\n" + "\n".join(L) + "\n"

    def is_mechanistic(self, g: dict[str, str]) -> bool:
        """Whether a genome adds no network: its fit's residual can rank terms."""
        return g.get("attach") == "none" and g.get("modulate", "none") == "none"

    def describe(self, g: dict[str, str]) -> str:
        parts = []
        if g["term"] != "none":
            parts.append(f"term {g['term']} in d{g['term_state']}/dt")
        if g.get("modulate", "none") != "none":
            parts.append(f"constant {g['modulate']} * (1 + {g.get('mod_scale', '0.5')} * "
                         "tanh(network of all states and inputs))")
        if g.get("saturate", "none") != "none":
            k, v = parse_saturation(g["saturate"])
            parts.append(f"constant {k} saturates in {v}: {k} / (1 + c*{v})")
        if g["attach"] == "residual":
            parts.append(f"network of all states and inputs in d{g['nn_state']}/dt")
        elif g["attach"] == "closure":
            parts.append(f"network of {g['nn_inputs']} in d{g['nn_state']}/dt")
        if g["stability"] != "as prior":
            parts.append(g["stability"])
        if g["attach"] != "none":
            parts.append(f"hidden={g['hidden']}, depth={g['depth']}, {g['activation']}, "
                         f"scale {g['nn_scale']}")
        return "; ".join(parts) or "the prior's equations unchanged"
