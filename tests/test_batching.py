"""The fast data path: batches sliced from contiguous arrays, same order as DataLoader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skorch import NeuralNetRegressor
from skorch.dataset import ValidSplit

from bmdkit import BMDRegressor
from bmdkit.batching import ArrayDataset, BatchIterator, torch_threads


def _arrays(n=37, seed=0):
    rng = np.random.default_rng(seed)
    X = {"image": rng.normal(size=(n, 1, 8, 8)).astype(np.float32),
         "numeric": rng.normal(size=(n, 3)).astype(np.float32),
         "categorical": rng.integers(0, 3, size=(n, 2))}
    return X, rng.normal(size=(n, 1)).astype(np.float32)


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.embed = torch.nn.Embedding(3, 4)
        self.out = torch.nn.Linear(4 + 3 + 4, 1)

    def forward(self, image, numeric, categorical):
        pooled = torch.nn.functional.dropout(self.conv(image).mean((2, 3)), 0.3, self.training)
        return self.out(torch.cat([pooled, numeric, self.embed(categorical).mean(1)], 1))


def _fit(fast, train_split=None):
    torch.manual_seed(0)
    fast_args = dict(dataset=ArrayDataset, iterator_train=BatchIterator,
                     iterator_valid=BatchIterator) if fast else {}
    net = NeuralNetRegressor(_Tiny, max_epochs=3, batch_size=8, iterator_train__shuffle=True,
                             train_split=train_split, verbose=0, **fast_args)
    X, y = _arrays()
    return net.fit(X, y), net.predict(X)


@pytest.mark.parametrize("train_split", [None, ValidSplit(0.2, random_state=0)])
def test_fast_path_is_bit_identical_to_skorch_default(train_split):
    (slow, slow_pred), (fast, fast_pred) = _fit(False, train_split), _fit(True, train_split)
    for a, b in zip(slow.module_.parameters(), fast.module_.parameters()):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(slow_pred, fast_pred)
    assert [h["train_loss"] for h in slow.history] == [h["train_loss"] for h in fast.history]


def test_batches_match_dataloader_order_and_values():
    X, y = _arrays(n=10)
    data = ArrayDataset(X, y)
    torch.manual_seed(3)
    slow = list(torch.utils.data.DataLoader(data, batch_size=4, shuffle=True, drop_last=True))
    torch.manual_seed(3)
    fast = list(BatchIterator(data, batch_size=4, shuffle=True, drop_last=True))
    assert len(fast) == len(slow) == 2
    for (xs, ys), (xf, yf) in zip(slow, fast):
        assert torch.equal(ys, yf)
        assert all(torch.equal(xs[k], xf[k]) and xs[k].dtype == xf[k].dtype for k in X)


def test_memmap_rows_are_read_per_batch(tmp_path):
    images = np.memmap(tmp_path / "images.bin", np.float32, "w+", shape=(6, 1, 4, 4))
    images[:] = np.arange(6, dtype=np.float32)[:, None, None, None]
    (xb, yb), = BatchIterator(ArrayDataset({"image": images}), batch_size=6)
    assert yb is None and xb["image"][:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4, 5]


def test_rows_must_agree():
    with pytest.raises(ValueError, match="different numbers of rows"):
        ArrayDataset({"a": np.zeros(3)}, np.zeros(4))


def test_n_threads_applies_during_fit_and_is_restored(signal_cohort):
    X, y = signal_cohort
    seen = []
    before = torch.get_num_threads()

    class Spy(BMDRegressor):
        def _callbacks(self):
            from skorch.callbacks import Callback

            class Record(Callback):
                def on_epoch_begin(self, net, **kwargs):
                    seen.append(torch.get_num_threads())

            return super()._callbacks() + [Record()]

    Spy(fusion="image", image_size=16, max_epochs=1, n_threads=before + 1,
        random_state=0).fit(X[:20], y[:20])
    assert seen == [before + 1] and torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
