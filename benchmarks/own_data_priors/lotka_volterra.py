import torch
from nimm_jupyter.blocks import Dynamics, Positive


class Model(Dynamics):
    """Lotka-Volterra predator-prey: prey x grows exponentially and is eaten at a rate a*x*y;
    predators y grow by eating (b*x*y) and die (d*y). Time in years, densities per km^2."""

    substeps = 2

    def __init__(self, spec):
        super().__init__(spec)
        self.r = Positive(1.3)   # prey growth rate, 1/year
        self.a = Positive(0.78)  # predation rate, km^2/year
        self.b = Positive(0.39)  # predator conversion rate, km^2/year
        self.d = Positive(0.65)  # predator death rate, 1/year

    def rhs(self, t, y, u):
        prey, pred = y[:, 0], y[:, 1]
        dprey = self.r() * prey - self.a() * prey * pred
        dpred = self.b() * prey * pred - self.d() * pred
        return torch.stack([dprey, dpred], dim=1)
