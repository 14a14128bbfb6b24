import torch
from torch import nn
from nimm_jupyter.blocks import Positive


class Model(nn.Module):
    """SIS metapopulation of MRSA colonisation with commuting; infections from carriers.

    Carriers C per patch are colonised at rate beta * (commuting-mixed carrier share) and
    clear at rate `clear`; detected infections per day are q * C (progression x detection).
    Data are weekly detected infections; the model steps daily. C at the forecast origin is
    inferred from the mean of the last four context weeks: C = cases / (7 * q).
    """

    def __init__(self, spec):
        super().__init__()
        self.register_buffer("M", spec.constants["mobility"])  # (P, P), rows sum to 1
        self.register_buffer("N", spec.constants["population"])  # (P,)
        self.beta = Positive(1.0 / 300.0)  # colonisation transmission, 1/day
        self.clear = Positive(1.0 / 270.0)  # decolonisation rate, 1/day
        self.q = Positive(2e-4)  # detected infections per carrier per day

    def rates(self, C, u_k):
        """(transmission, detected-infection rate), each (B, P), 1/day."""
        ones = torch.ones_like(C)
        return self.beta() * ones, self.q() * ones

    def forward(self, y_context, u, t):
        Cn, H = y_context.shape[1], t.shape[0] - y_context.shape[1]
        week_days = 7.0 * float(t[1] - t[0]) if t.shape[0] > 1 else 7.0
        n_sub = max(1, int(round(week_days)))
        h = week_days / n_sub
        N = self.N.clamp_min(1.0)
        n_eff = (N @ self.M).clamp_min(1.0)
        recent = y_context[:, -4:].clamp_min(0.0).mean(1)
        C = torch.minimum(recent / (week_days * self.q()), N)
        out = []
        for k in range(H):
            u_k = u[:, Cn + k]
            detected = torch.zeros_like(C)
            for _ in range(n_sub):
                beta, q = self.rates(C, u_k)
                share = ((C @ self.M) / n_eff) @ self.M.T
                dC = beta * share * (N - C) - self.clear() * C
                C = (C + h * dC).clamp(torch.zeros_like(N), N)
                detected = detected + h * q * C
            out.append(detected)
        return torch.stack(out, dim=1)
