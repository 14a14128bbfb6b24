import torch
from nimm_jupyter.blocks import Dynamics, Real


class Model(Dynamics):
    """dI/dt = r(t) I, dr/dt = b: exponential growth or decline of the visits from the last
    observed week, with a growth rate that changes at a constant pace."""

    def __init__(self, spec):
        super().__init__(spec)
        self.r = Real(0.0)  # growth rate at the last observed week, 1/week
        self.b = Real(0.0)  # change of the growth rate, 1/week^2
        self.t_last = float(spec.time[spec.context - 1])  # the time column is in days

    def rhs(self, t, y, u):
        tau = (t - self.t_last) / 7.0  # weeks after the last observed week
        return (self.r() + self.b() * tau) * y / 7.0  # per day
