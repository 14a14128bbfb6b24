import torch
from torch import nn
from nimm_jupyter.blocks import Bounded, Positive


class Model(nn.Module):
    """Metapopulation SEIR with commuting and a constant transmission rate.

    Data: weekly reported cases per patch; the model steps daily (7 Euler steps per week).
    Residents of patch i spend a share M[i, j] of their day in patch j (spec.constants
    "mobility"), so the force of infection on i is beta * sum_j M[i, j] * I_eff[j] / N_eff[j].
    The hidden compartments are initialised from the context: daily incidence is last
    week's cases / (7 * rho), E = incidence / sigma, I = incidence / gamma, and the
    susceptible share at the forecast origin is fitted.
    """

    def __init__(self, spec):
        super().__init__()
        self.register_buffer("M", spec.constants["mobility"])  # (P, P), rows sum to 1
        self.register_buffer("N", spec.constants["population"])  # (P,)
        self.beta = Positive(0.35)  # transmission rate, 1/day
        self.sigma = Positive(0.25)  # 1 / latent period, 1/day
        self.gamma = Positive(1.0 / 7.0)  # 1 / infectious period, 1/day
        self.rho = Bounded(0.2, 0.01, 1.0)  # reporting fraction
        self.s0 = Bounded(0.6, 0.02, 1.0)  # susceptible share at the forecast origin

    def transmission(self, S, E, I, u_k):
        """Per-patch transmission rate (B, P), 1/day."""
        return self.beta() * torch.ones_like(S)

    def forward(self, y_context, u, t):
        C, H = y_context.shape[1], t.shape[0] - y_context.shape[1]
        week_days = 7.0 * float(t[1] - t[0]) if t.shape[0] > 1 else 7.0
        n_sub = max(1, int(round(week_days)))
        h = week_days / n_sub
        N = self.N.clamp_min(1.0)
        n_eff = (N @ self.M).clamp_min(1.0)  # people present in each patch by day
        rho, sigma, gamma = self.rho(), self.sigma(), self.gamma()
        recent = y_context[:, -2:].clamp_min(0.0).mean(1)  # two weeks damp reporting noise
        incidence = recent / (rho * week_days)
        E = torch.minimum(incidence / sigma, 0.5 * N)
        I = torch.minimum(incidence / gamma, 0.5 * N)
        S = (self.s0() * N - E - I).clamp_min(0.0)
        out = []
        for k in range(H):
            u_k = u[:, C + k]
            onsets = torch.zeros_like(S)
            for _ in range(n_sub):
                prevalence = (I @ self.M) / n_eff
                force = self.transmission(S, E, I, u_k) * (prevalence @ self.M.T)
                infected = S * -torch.expm1(-(force * h).clamp(0.0, 20.0))  # never exceeds S
                new_i, new_r = sigma * E * h, gamma * I * h
                S = (S - infected).clamp_min(0.0)
                E = (E + infected - new_i).clamp_min(0.0)
                I = (I + new_i - new_r).clamp(0.0, 1e8)
                onsets = onsets + new_i
            out.append(rho * onsets)
        return torch.stack(out, dim=1)
