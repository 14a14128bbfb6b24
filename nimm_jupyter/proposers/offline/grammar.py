"""Grammar machinery for the offline proposer.

A *genome* is a dict ``slot -> choice``. A family grammar lists its slots (mechanistic
alternatives and neural-block choices), the strategies that root branches (where the
network attaches), and renders a genome into candidate source. An atomic refinement
changes exactly one slot; the change text names the slot and both choices.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..base import ProposalContext, Strategy


@dataclass(frozen=True)
class Slot:
    name: str
    choices: tuple[str, ...]
    what: str  # human description used in change texts ("growth law", "hidden width")
    kind: str = "neural"  # "mechanism" | "neural"; refinement alternates between kinds


def neural_slots(attach_keys: tuple[str, ...], inputs: tuple[str, str],
                 scales: tuple[str, ...]) -> list[Slot]:
    """The neural-block slots shared by the mechanistic families."""
    return [
        Slot("attach", attach_keys, "neural attachment"),
        Slot("hidden", ("8", "16", "32"), "hidden width"),
        Slot("depth", ("2", "3"), "network depth"),
        Slot("activation", ("tanh", "silu"), "activation"),
        Slot("nn_inputs", inputs, "network inputs"),
        Slot("nn_scale", scales, "initial scale of the neural term"),
    ]


@dataclass
class Grammar:
    """Base class of a family grammar; subclasses fill slots/strategies and ``render``."""

    ctx: ProposalContext
    slots: list[Slot] = field(default_factory=list)
    strategy_list: list[Strategy] = field(default_factory=list)

    def __post_init__(self) -> None:
        """Subclasses fill ``slots`` and ``strategy_list`` from ``ctx`` here."""

    # -- to implement ------------------------------------------------------------------
    def base_genome(self, strategy_key: str) -> dict[str, str]:
        raise NotImplementedError

    def render(self, genome: dict[str, str]) -> str:
        raise NotImplementedError

    def describe(self, genome: dict[str, str]) -> str:
        """One-line summary of a draft."""
        parts = [f"{s.what}={genome[s.name]}" for s in self.slots if s.name in genome]
        return "; ".join(parts)

    # -- shared ------------------------------------------------------------------------
    def slot(self, name: str) -> Slot:
        for s in self.slots:
            if s.name == name:
                return s
        raise KeyError(name)

    def active_slots(self, genome: dict[str, str]) -> list[Slot]:
        """Slots that matter for this genome (e.g. no hidden width without a network)."""
        if genome.get("attach") == "none":
            return [s for s in self.slots if s.kind == "mechanism"]
        return [s for s in self.slots if s.name in genome and s.name != "attach"]

    def safer(self, genome: dict[str, str]) -> tuple[dict[str, str], str] | None:
        """A more conservative variant of a failed genome and what changed, or None."""
        safe = dict(genome)
        # the usual cause of a failed grammar model is an unstable neural term
        for slot, value in (("nn_scale", None), ("activation", "tanh"), ("depth", "2")):
            if slot in safe:
                safe[slot] = value if value is not None else self.slot(slot).choices[0]
        if key_of(safe) == key_of(genome):
            safe["attach"] = "none" if any(s.key == "none" for s in self.strategy_list) \
                else genome.get("attach", "residual")
        if key_of(safe) == key_of(genome):
            return None
        return safe, "smaller, bounded neural term"

    def mutations(self, genome: dict[str, str]) -> list[tuple[str, str]]:
        """Every atomic edit (slot, new choice) of ``genome``."""
        edits = []
        for s in self.active_slots(genome):
            for c in s.choices:
                if c != genome.get(s.name):
                    edits.append((s.name, c))
        return edits

    def mutate(self, genome: dict[str, str], rng: random.Random, seen: set[str],
               slot_weights: dict[str, float], skip: frozenset[str] = frozenset()
               ) -> tuple[dict[str, str], str] | None:
        """Pick one unseen atomic edit of a slot not in ``skip``; slots whose past edits
        helped are tried more."""
        edits = [e for e in self.mutations(genome)
                 if e[0] not in skip and key_of({**genome, e[0]: e[1]}) not in seen]
        if not edits:
            return None
        weights = [max(slot_weights.get(s, 1.0), 0.05) for s, _ in edits]
        slot_name, choice = rng.choices(edits, weights=weights, k=1)[0]
        child = {**genome, slot_name: choice}
        s = self.slot(slot_name)
        change = f"{s.what}: {genome.get(slot_name)} -> {choice}"
        return child, change


def key_of(genome: dict[str, str]) -> str:
    """The structure a genome names. Keys starting with ``_`` are starting values for the
    rendering (e.g. a ranked term's coefficient), not structure: two genomes that differ only
    there are the same model."""
    return "|".join(f"{k}={genome[k]}" for k in sorted(genome) if not k.startswith("_"))
