"""Fast estimator settings shared by the tests: one place instead of a copy per module.

``TINY`` is for tests of behaviour (a fit must run, not learn): one epoch of a
tiny network on 32-px images. ``LEARNING`` is for tests that a model learns the
signal cohorts of ``conftest.py``. ``TINY_OPTIONS`` are ``TINY`` as ``bmdkit``
command-line options. ``TINY_SEVERAL_BATCHES`` is ``TINY`` for tests of batched
prediction. A module needing another value writes ``dict(TINY, name=value)``.
"""

#: One epoch of a tiny network: a fit that runs in about a second.
TINY = dict(backbone="resnet10t", image_size=32, embed_dim=16, n_heads=2, n_layers=1,
            max_epochs=1, random_state=0)
#: ``TINY`` in batches of 8: the 40-odd rows of a test cohort stream through several batches.
TINY_SEVERAL_BATCHES = dict(TINY, batch_size=8)
#: Enough epochs and width to learn the signal cohorts (tests of learning).
LEARNING = dict(backbone="resnet10t", image_size=32, embed_dim=32, n_layers=2, max_epochs=12,
                random_state=0)
#: ``TINY`` (with batches of 32) as options of the ``bmdkit`` commands.
TINY_OPTIONS = ["--epochs", "1", "--image-size", "32", "--batch-size", "32",
                "--param", "embed_dim=16", "--param", "n_heads=2", "--param", "n_layers=1"]
