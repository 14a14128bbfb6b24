import torch
from torch import nn
from nimm_jupyter.blocks import Positive, euler_rollout, safe_log


class Model(nn.Module):
    """Gompertz growth with log-kill chemotherapy and first-order drug elimination:
    dV/dt = V * (rho * ln(K / V) - beta_c * C);  dC/dt = -k_el * C + d_c. Generic starts."""

    def __init__(self, spec):
        super().__init__()
        self.i_chemo = list(spec.input_names).index("chemo_dose")
        self.rho = Positive(0.05)     # 1/day
        self.K = Positive(5000.0)     # cm^3
        self.beta_c = Positive(0.05)  # 1/(day * conc)
        self.k_el = Positive(0.2)     # 1/day

    def mechanistic_parameters(self):
        return {"rho": self.rho(), "K": self.K(), "beta_c": self.beta_c(), "k_el": self.k_el()}

    def forward(self, y_context, u, t):
        log_k, rho, beta_c, k_el = torch.log(self.K()), self.rho(), self.beta_c(), self.k_el()
        i = self.i_chemo

        def step(y, u_k, k):
            V = y[:, :1].clamp_min(0.0)
            C = y[:, 1:2]
            dV = V * (rho * (log_k - safe_log(V, 1e-6)) - beta_c * C)
            return torch.cat([dV, -k_el * C + u_k[:, i:i + 1]], dim=1)

        c = y_context.shape[1]
        return euler_rollout(step, y_context[:, -1], u[:, c - 1:], n_steps=t.shape[0] - c,
                             dt=float(t[1] - t[0]), clamp=(0.0, 1e6))
