"""``bmdkit bench``: where the time of a fit goes, measured side by side.

For one network (the estimator's own :class:`~bmdkit.nn.BMDNet`) the bench
times, per training epoch:

* ``floor``: the *floor reference*, forward + backward + optimiser step on
  tensors already in memory, in a plain torch loop (no skorch, no data
  loader): the network's arithmetic alone;
* ``fit``: :meth:`BMDRegressor.fit`'s own epochs once the image cache is
  warm (skorch's epoch durations); ``overhead_ratio = fit / floor``;
* ``naive``: the *naive reference*, the typical research loop, a torch
  ``Dataset`` that decodes, normalises and resizes every file in
  ``__getitem__`` every epoch, under a ``DataLoader``;
  ``cache_speedup = naive / fit``;

plus ``predict`` throughput, peak memory, and how epoch time and memory grow
with the number of subjects and with ``image_size``. ``bmdkit bench --options``
instead A/Bs the optional speed-ups (:data:`OPTIONS`: bfloat16 autocast,
channels-last, a frozen backbone with cached features, ``torch.compile``)
against the float32 default: epoch times, fit time and held-out accuracy.
``bmdkit bench --predict`` measures streaming ``bmdkit predict``. It runs on
generated radiograph-sized files (16-bit PNG, 2048 × 1664 by default) and
on the synthetic demo cohort. Peak memory is the process's peak anonymous
resident memory (``RssAnon``, Linux; file-backed pages of a memory-mapped
image store are reclaimable and are not counted), elsewhere ``ru_maxrss``;
on CUDA it is ``torch.cuda.max_memory_allocated``.

Modules: :mod:`~bmdkit.benchmarks.references` (the two reference loops, the
only training code of the bench: every other fit is the estimator's own),
:mod:`~bmdkit.benchmarks.training` (fit against the references, scaling,
options), :mod:`~bmdkit.benchmarks.predict` (the prediction bench),
:mod:`~bmdkit.benchmarks.measure` (peak memory, the machine record),
:mod:`~bmdkit.benchmarks.data` (generated files) and
:mod:`~bmdkit.benchmarks.tables` (text output); the command is
:mod:`bmdkit.cli.bench`.

Benchmarks are not tests: timings depend on the machine and its load. See
docs/performance.md for figures and what each optimisation bought.
"""

from bmdkit.benchmarks.data import make_radiograph_files
from bmdkit.benchmarks.predict import PREDICT_SETTINGS, run_predict_benchmarks
from bmdkit.benchmarks.tables import format_options_table, format_predict_table, format_table
from bmdkit.benchmarks.training import (
    OPTIONS,
    SETTINGS,
    run_benchmarks,
    run_option_benchmarks,
)

__all__ = ["OPTIONS", "PREDICT_SETTINGS", "SETTINGS", "format_options_table",
           "format_predict_table", "format_table", "make_radiograph_files", "run_benchmarks",
           "run_option_benchmarks", "run_predict_benchmarks"]
