"""The offline proposer: writes candidates from grammars of mechanistic and neural blocks.

No LLM and no network: each task family (``tumour``, ``epidemic``, ``alloy``, ``generic``)
has a grammar whose genome renders to candidate source; a trajectory prior written in
dynamics form (``blocks.Dynamics``) also gets the ``dynamics`` grammar, which edits its
equations. Strategies root branches (where
the network attaches); refinement changes exactly one slot of the parent's genome, favouring
slots whose earlier edits in the branch lowered the validation error; debugging falls back
to a more conservative neural part. Once the user's prior is scored, the dynamics grammar's
term moves (the term draft, and every refinement that edits the added term) take the
catalogue's terms in the order of how much of the prior's residual each explains
(:mod:`.term_ranking`), best first, and its saturation moves (a prior's constant
``k -> k/(1+c·v)``) likewise (:mod:`.constant_ranking`); the term draft takes whichever
single edit, term or saturation, explains most. Deterministic for a seed.
"""
from __future__ import annotations

import random
from typing import Callable

from ..base import NodeView, Proposal, ProposalContext, Proposer, Strategy
from .alloy import AlloyGrammar
from .dynamics import EXHAUSTED, RANKED_SLOTS, DynamicsGrammar, is_dynamics_prior
from .epidemic import EpidemicGrammar
from .grammar import Grammar, key_of
from .tumour import TumourGrammar
from .wrap import CLAMP, WrapGrammar

RANKED_TERM = "dynamics:term"  # the strategy whose draft adds the best-ranked term
TERM_SLOTS = ("term", "term_state")  # the dynamics slots a ranked term move replaces together
GRAMMARS: dict[str, Callable[[ProposalContext], Grammar]] = {
    "tumour": lambda ctx: TumourGrammar(ctx),
    "epidemic": lambda ctx: EpidemicGrammar(ctx),
    "wrap": lambda ctx: WrapGrammar(ctx),
    "alloy": lambda ctx: AlloyGrammar(ctx),
    "dynamics": lambda ctx: DynamicsGrammar(ctx),
}
FAMILIES: dict[str, list[str]] = {
    "tumour": ["tumour", "wrap"],
    "epidemic": ["epidemic", "wrap"],
    "alloy": ["alloy"],
    "generic": ["wrap"],
}


def _val(metrics: dict) -> float:
    try:
        v = float(metrics.get("val", {}).get("rmse_norm", float("inf")))
    except (TypeError, ValueError, AttributeError):
        return float("inf")
    return v if v == v else float("inf")


class OfflineProposer(Proposer):
    """Grammar-based proposer; ``seed`` fixes every random choice."""

    name = "offline"

    def __init__(self, seed: int = 0, **_: object) -> None:
        self.seed = int(seed)
        self._calls = 0

    # -- helpers -----------------------------------------------------------------------
    def _grammars(self, ctx: ProposalContext) -> list[tuple[str, Grammar]]:
        names = FAMILIES.get(ctx.family, ["wrap"])
        if ctx.kind == "trajectory" and is_dynamics_prior(ctx.prior_code):
            names = ["dynamics", *names]  # the user's equations can be edited from inside
        return [(n, GRAMMARS[n](ctx)) for n in names]

    def _grammar(self, ctx: ProposalContext, name: str) -> Grammar:
        return GRAMMARS[name](ctx)

    def _rng(self, *salt: object) -> random.Random:
        self._calls += 1
        return random.Random(f"{self.seed}|{self._calls}|" + "|".join(map(str, salt)))

    def _proposal(self, grammar_name: str, grammar: Grammar, genome: dict[str, str],
                  change: str, **meta: object) -> Proposal:
        try:
            code = grammar.render(genome)
        except ValueError as exc:  # e.g. a user prior without a Model class
            return Proposal(code=None, change=change, error=f"offline grammar: {exc}")
        if isinstance(grammar, DynamicsGrammar) and grammar.is_mechanistic(genome):
            meta["mechanistic"] = True  # its fit may stand in for a failed prior's residual
        return Proposal(code=code, change=change,
                        meta={"grammar": grammar_name, "genome": genome, **meta})

    # -- Proposer API ------------------------------------------------------------------
    def notice(self, ctx: ProposalContext) -> str | None:
        """Says that a prior given only in words is not read by the grammars."""
        from ...tasks.dataframe import GENERIC_TABULAR_PRIOR, GENERIC_TRAJECTORY_PRIOR

        generic = ctx.prior_code in (GENERIC_TABULAR_PRIOR, GENERIC_TRAJECTORY_PRIOR)
        if not generic or ctx.seed_code or "Mechanism (from the user):" not in ctx.description:
            return None
        what = "a linear ODE" if ctx.kind == "trajectory" else "linear regression"
        return ("your prior is given as text only: the offline proposer does not read text, so "
                f"it searches around the generic baseline ({what}). To search from your "
                "mechanism, give it as code (seed code / prior_code; a blocks.Dynamics "
                "subclass lets it edit the equations) or use --proposer anthropic, which "
                "reads the text.")

    def strategies(self, ctx: ProposalContext, k: int, exclude: list[Strategy]) -> list[Strategy]:
        taken = {s.key for s in exclude} | {s.title.lower() for s in exclude}
        out: list[Strategy] = []
        pools = [[Strategy(s.title, s.description, f"{n}:{s.key}") for s in g.strategy_list]
                 for n, g in self._grammars(ctx)]
        # interleave families so the first K branches differ in where the network attaches
        for i in range(max(len(p) for p in pools)):
            for pool in pools:
                if i < len(pool):
                    s = pool[i]
                    if s.key not in taken and s.title.lower() not in taken:
                        out.append(s)
        if out and out[0].key == RANKED_TERM and ctx.reference_one_step is None and len(out) > 1:
            # the term draft is ranked on the prior's residual; asked before the prior is
            # scored (the first call, while node 0 trains), draft it second, so it is ranked
            out[0], out[1] = out[1], out[0]
        return out[:k]

    def draft(self, ctx: ProposalContext, strategy: Strategy | None) -> Proposal:
        if strategy is None:  # an independent draft: random strategy, random neural choices
            rng = self._rng("draft")
            gname, grammar = rng.choice(self._grammars(ctx))
            key = rng.choice([s.key for s in grammar.strategy_list])
            genome = grammar.base_genome(key)
            for slot in grammar.active_slots(genome):
                if rng.random() < 0.5:
                    genome[slot.name] = rng.choice(slot.choices)
            return self._proposal(gname, grammar, genome, f"draft: {grammar.describe(genome)}")
        gname, _, key = strategy.key.partition(":")
        if gname not in GRAMMARS:
            return Proposal(code=None, change=strategy.title,
                            error=f"offline proposer does not know strategy {strategy.key!r}")
        grammar = self._grammar(ctx, gname)
        genome = grammar.base_genome(key)
        if ctx.prior_status not in (None, "ok") and (gname == "dynamics"
                                                     or getattr(grammar, "dynamics", False)):
            # the prior in dynamics form failed as given (it blows up, most often): every
            # model of it would, so start this one clamped instead of spending a debug node
            genome["stability"] = CLAMP
        ranked = ""
        if strategy.key == RANKED_TERM and isinstance(grammar, DynamicsGrammar):
            # the term or saturation that explains most of the prior's residual
            genome, ranked = grammar.best_mechanistic_edit(genome)
        return self._proposal(gname, grammar, genome,
                              f"draft ({strategy.title}): {grammar.describe(genome)}{ranked}")

    def _own(self, ctx: ProposalContext, node: NodeView, verb: str
             ) -> tuple[str, Grammar, dict[str, str]] | Proposal:
        """The grammar and genome of a node this proposer wrote, or a failed proposal."""
        gname, genome = node.meta.get("grammar"), node.meta.get("genome")
        if node.meta.get("prior") and ctx.kind == "trajectory" \
                and is_dynamics_prior(ctx.prior_code):
            # the user's prior (node 0) is the dynamics grammar's genome with nothing added
            gname = "dynamics"
            genome = DynamicsGrammar(ctx).prior_genome()
        if gname not in GRAMMARS or not isinstance(genome, dict):
            return Proposal(code=None, change=verb,
                            error=f"offline proposer can only {verb} models it wrote")
        return gname, self._grammar(ctx, gname), genome

    def refine(self, ctx: ProposalContext, parent: NodeView, history: list[NodeView]) -> Proposal:
        own = self._own(ctx, parent, "refine")
        if isinstance(own, Proposal):
            return own
        gname, grammar, genome = own
        seen = {key_of(genome)}
        weights: dict[str, float] = {}
        for node in history:
            g = node.meta.get("genome")
            if isinstance(g, dict):
                seen.add(key_of(g))
            slot = node.meta.get("edited_slot")
            if slot:
                before = float(node.meta.get("parent_val", float("inf")))
                helped = _val(node.metrics) < before
                weights[slot] = weights.get(slot, 1.0) * (1.6 if helped else 0.6)
        rng = self._rng("refine", parent.id, len(history))
        skip: frozenset[str] = frozenset()
        while True:
            picked = grammar.mutate(genome, rng, seen, weights, skip)
            if picked is None:
                return Proposal(code=None, change="refine", error="every single-slot edit of "
                                "this model worth a node was already tried")
            child, change = picked
            slot = next(k for k in child if child[k] != genome.get(k))
            if slot not in RANKED_SLOTS or not isinstance(grammar, DynamicsGrammar):
                break
            # a term or saturation edit takes the best-ranked untried choice, not a random one
            ranked = grammar.ranked_edit(genome, slot, seen, parent, history, ctx.fits)
            if ranked == EXHAUSTED:  # nothing left there explains enough: edit another slot
                skip |= set(TERM_SLOTS) if slot in TERM_SLOTS else {slot}
                continue
            if ranked is None:  # an unranked term starts from the grammar's default
                child.pop("_coef", None)
            else:
                child, change, slot = ranked
            break
        return self._proposal(gname, grammar, child, change, edited_slot=slot,
                              parent_val=_val(parent.metrics))

    def debug(self, ctx: ProposalContext, failed: NodeView) -> Proposal:
        own = self._own(ctx, failed, "debug")
        if isinstance(own, Proposal):
            return own
        gname, grammar, genome = own
        picked = grammar.safer(genome)
        if picked is None:
            return Proposal(code=None, change="debug",
                            error=f"no safer variant of this model ({failed.status})")
        safe, what = picked
        return self._proposal(gname, grammar, safe, f"debug after {failed.status}: {what}")
