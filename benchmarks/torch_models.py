"""The benchmark's reference models in PyTorch, eager and torch.compile.

The same four models as benchmarks/plain_jax.py, written the way a PyTorch
user writes them: nn.Sequential of standard layers, nn.LSTM, and a GCN over
a precomputed sparse normalised adjacency (Kipf & Welling's own code
computes it once, as here). Each step computes what dl's step logs: the
loss, the accuracy and the gradient norm, all kept on the device (no
.item()), with Adam. PyTorch is an optional benchmark dependency: nothing
in dl imports this module.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def _mlp(spec):
    sizes = spec["sizes"]
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in zip(sizes[:-2], sizes[1:-1], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(sizes[-2], sizes[-1]))


class _LeNet(nn.Module):
    def __init__(self, spec):
        super().__init__()
        h, w, c = spec["image_shape"]
        side = (((h - 4) // 2 - 4) // 2) * (((w - 4) // 2 - 4) // 2)
        self.net = nn.Sequential(
            nn.Conv2d(c, 6, 5), nn.Tanh(), nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * side, 120), nn.Tanh(),
            nn.Linear(120, 84), nn.Tanh(),
            nn.Linear(84, spec["classes"]),
        )  # fmt: skip

    def forward(self, x):  # x: NHWC as dl stores it
        if x.dim() == 3:
            x = x.unsqueeze(-1)
        return self.net(x.permute(0, 3, 1, 2))


class _LSTM(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.lstm = nn.LSTM(spec["features"], spec["hidden"], batch_first=True)
        self.head = nn.Linear(spec["hidden"], spec["classes"])

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


class _GCN(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.layer0 = nn.Linear(spec["features"], spec["hidden"])
        self.layer1 = nn.Linear(spec["hidden"], spec["classes"])
        self.adjacency = None

    def set_graph(self, senders, receivers, n):
        loops = np.arange(n)
        senders = np.concatenate([senders, loops])
        receivers = np.concatenate([receivers, loops])
        degree = np.bincount(receivers, minlength=n).astype(np.float32)
        norm = 1.0 / np.sqrt(np.maximum(degree, 1.0))
        values = norm[receivers] * norm[senders]
        index = torch.as_tensor(np.stack([receivers, senders]), dtype=torch.long)
        self.adjacency = torch.sparse_coo_tensor(index, torch.as_tensor(values), (n, n)).coalesce()

    def forward(self, x):
        h = torch.relu(torch.sparse.mm(self.adjacency, self.layer0(x)))
        return torch.sparse.mm(self.adjacency, self.layer1(h))


def build(kind: str, spec: dict) -> nn.Module:
    if kind == "mlp":
        return _mlp(spec)
    if kind == "lenet":
        return _LeNet(spec)
    if kind == "lstm":
        return _LSTM(spec)
    if kind == "gcn":
        return _GCN(spec)
    raise ValueError(f"unknown reference {kind!r}")


def to_batch(kind: str, batch: dict) -> tuple:
    """A batch of numpy arrays (dl's layout) -> the tensors the torch step takes."""
    if kind == "gcn":
        x = torch.as_tensor(batch["x"][0])
        return x, torch.as_tensor(batch["y"][0]).long(), torch.as_tensor(batch["label_mask"][0])
    x = torch.as_tensor(batch["x"])
    y = torch.as_tensor(batch["y"]).long()
    return x, y, torch.ones(y.shape[0])


def make_step(kind: str, spec: dict, learning_rate: float, compiled: bool, first_batch: dict):
    """A step(x, y, weight) -> metrics dict of 0-d tensors, for eager or compiled torch."""
    torch.manual_seed(0)
    model = build(kind, spec)
    if kind == "gcn":
        model.set_graph(
            first_batch["senders"][0], first_batch["receivers"][0], first_batch["x"].shape[1]
        )
    opt = torch.optim.Adam(model.parameters(), lr=learning_rate)
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    # Compiled: the forward and backward are compiled, the optimizer's update
    # stays eager (what torch.compile does to a step that calls opt.step()).
    net = torch.compile(model) if compiled else model

    def step(x, y, weight):
        opt.zero_grad(set_to_none=True)
        logits = net(x)
        losses = loss_fn(logits, y)
        total = weight.sum()
        loss = (losses * weight).sum() / total
        loss.backward()
        with torch.no_grad():
            grad_norm = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(p.grad) for p in model.parameters()])
            )
            accuracy = ((logits.argmax(-1) == y) * weight).sum() / total
        opt.step()
        return {"loss": loss.detach(), "accuracy": accuracy, "grad_norm": grad_norm}

    return step
