import torch
from nimm_jupyter.blocks import Dynamics, Positive


class Model(Dynamics):
    """The true structure of benchmarks/bench_short_series.py (the ceiling, not a prior a
    user would have): Lotka-Volterra with logistic prey growth, r*x*(1 - x/K). Same start as
    lotka_volterra.py, every constant 30 % off the simulator's."""

    substeps = 2

    def __init__(self, spec):
        super().__init__(spec)
        self.r = Positive(1.3)   # prey growth rate, 1/year
        self.K = Positive(10.4)  # prey carrying capacity, per km^2
        self.a = Positive(0.78)  # predation rate, km^2/year
        self.b = Positive(0.39)  # predator conversion rate, km^2/year
        self.d = Positive(0.65)  # predator death rate, 1/year

    def rhs(self, t, y, u):
        prey, pred = y[:, 0], y[:, 1]
        dprey = self.r() * prey * (1 - prey / self.K()) - self.a() * prey * pred
        dpred = self.b() * prey * pred - self.d() * pred
        return torch.stack([dprey, dpred], dim=1)
