import torch
from torch import nn
from nimm_jupyter.blocks import Positive, euler_rollout, safe_log


class Model(nn.Module):
    """Gompertz growth, untreated: dV/dt = rho * V * ln(K / V). Generic starting values."""

    def __init__(self, spec):
        super().__init__()
        self.rho = Positive(0.05)    # 1/day
        self.K = Positive(5000.0)    # cm^3

    def mechanistic_parameters(self):
        return {"rho": self.rho(), "K": self.K()}

    def forward(self, y_context, u, t):
        log_k = torch.log(self.K())
        rho = self.rho()

        def step(y, u_k, k):
            V = y.clamp_min(0.0)
            return rho * V * (log_k - safe_log(V, 1e-6))

        c = y_context.shape[1]
        return euler_rollout(step, y_context[:, -1], u[:, c - 1:], n_steps=t.shape[0] - c,
                             dt=float(t[1] - t[0]), clamp=(0.0, 1e6))
