"""Learning-rate schedules, as picklable epoch → factor callables for ``LambdaLR``."""

from __future__ import annotations

import math

__all__ = ["WarmupSchedule"]


class WarmupSchedule:
    """Linear warm-up, then cosine annealing to 0 (or a constant rate).

    The factor of the base learning rate in epoch ``e`` (from 0) is
    ``(e + 1) / (w + 1)`` during the ``w = warmup_epochs`` warm-up epochs,
    then ``(1 + cos(pi * (e - w) / (max_epochs - w))) / 2`` for
    ``decay="cosine"`` or 1 for ``decay=None``.

    Examples
    --------
    >>> schedule = WarmupSchedule(warmup_epochs=1, max_epochs=5)
    >>> [round(schedule(e), 3) for e in range(5)]
    [0.5, 1.0, 0.854, 0.5, 0.146]
    """

    def __init__(self, warmup_epochs, max_epochs, decay="cosine"):
        self.warmup_epochs = warmup_epochs
        self.max_epochs = max_epochs
        self.decay = decay

    def __call__(self, epoch):
        if epoch < self.warmup_epochs:
            return (epoch + 1) / (self.warmup_epochs + 1)
        if self.decay is None:
            return 1.0
        span = max(self.max_epochs - self.warmup_epochs, 1)
        return 0.5 * (1 + math.cos(math.pi * (epoch - self.warmup_epochs) / span))
