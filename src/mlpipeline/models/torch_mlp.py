"""A torch MLP with the sklearn estimator API, so it sits in the same Pipeline as sklearn models.

CUDA when available (mixed precision with bf16 autocast there), CPU otherwise; seeded; early stopping
on a held-out slice of the training data; per-epoch curve in ``history_``. The fitted network is
kept on the CPU so the pickled model loads on any machine.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin


def select_device(prefer: str = "auto") -> str:
    import torch

    if prefer == "cpu":
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def build_network(n_in: int, n_out: int, hidden: int, layers: int, dropout: float) -> Any:
    import torch.nn as nn

    mods: list[Any] = []
    width = n_in
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
        width = hidden
    mods.append(nn.Linear(width, n_out))
    return nn.Sequential(*mods)


class _TorchMLPBase(BaseEstimator):
    def __init__(
        self,
        hidden: int = 64,
        layers: int = 2,
        dropout: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 256,
        max_epochs: int = 40,
        patience: int = 5,
        mixed_precision: bool = True,
        device: str = "auto",
        random_state: int = 42,
    ):
        self.hidden = hidden
        self.layers = layers
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.mixed_precision = mixed_precision
        self.device = device
        self.random_state = random_state

    # subclasses: _targets(y) -> (tensor-ready array, n_out), _loss()
    def _fit(self, X: Any, y_arr: np.ndarray, n_out: int, loss_fn: Any) -> _TorchMLPBase:
        import torch

        torch.manual_seed(self.random_state)
        rng = np.random.default_rng(self.random_state)
        X = np.asarray(X, dtype=np.float32)
        dev = select_device(self.device)
        self.device_used_ = dev
        n = len(X)
        idx = rng.permutation(n)
        n_val = max(1, int(0.1 * n)) if n >= 20 else 0
        val_idx, tr_idx = idx[:n_val], idx[n_val:]
        net = build_network(X.shape[1], n_out, self.hidden, self.layers, self.dropout).to(dev)
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        use_amp = self.mixed_precision and dev == "cuda"
        Xt = torch.from_numpy(X).to(dev)
        yt = torch.from_numpy(y_arr).to(dev)
        gen = torch.Generator(device="cpu").manual_seed(self.random_state)
        best, best_state, bad = float("inf"), None, 0
        history = []
        for epoch in range(self.max_epochs):
            net.train()
            perm = torch.from_numpy(tr_idx)[torch.randperm(len(tr_idx), generator=gen)].to(dev)
            total = 0.0
            for start in range(0, len(perm), self.batch_size):
                b = perm[start : start + self.batch_size]
                opt.zero_grad(set_to_none=True)
                with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
                    loss = loss_fn(net(Xt[b]).float(), yt[b])
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(b)
            train_loss = total / max(1, len(perm))
            net.eval()
            with torch.no_grad():
                vb = torch.from_numpy(val_idx).to(dev)
                val_loss = float(loss_fn(net(Xt[vb]).float(), yt[vb])) if n_val else train_loss
            history.append({"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss})
            if val_loss < best - 1e-5:
                best, bad = val_loss, 0
                best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
            else:
                bad += 1
                if bad >= self.patience:
                    break
        net = net.cpu()
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        self.network_ = net
        self.history_ = history
        self.n_features_in_ = X.shape[1]
        return self

    def _forward(self, X: Any) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.network_(torch.from_numpy(np.asarray(X, dtype=np.float32))).numpy()


class TorchMLPClassifier(ClassifierMixin, _TorchMLPBase):
    def fit(self, X: Any, y: Any) -> TorchMLPClassifier:
        import torch.nn as nn

        self.classes_, y_idx = np.unique(np.asarray(y), return_inverse=True)
        return self._fit(X, y_idx.astype(np.int64), len(self.classes_), nn.CrossEntropyLoss())

    def predict_proba(self, X: Any) -> np.ndarray:
        logits = self._forward(X).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


class TorchMLPRegressor(RegressorMixin, _TorchMLPBase):
    def fit(self, X: Any, y: Any) -> TorchMLPRegressor:
        import torch.nn as nn

        y = np.asarray(y, dtype=np.float64)
        self.y_mean_, self.y_std_ = float(y.mean()), float(y.std() or 1.0)
        y_std = ((y - self.y_mean_) / self.y_std_).astype(np.float32).reshape(-1, 1)
        return self._fit(X, y_std, 1, nn.MSELoss())

    def predict(self, X: Any) -> np.ndarray:
        return self._forward(X)[:, 0].astype(np.float64) * self.y_std_ + self.y_mean_
