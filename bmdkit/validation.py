"""Deprecated: the input checks are :mod:`bmdkit.checks` (a name that does not read like
validation splits). This alias re-exports its public names and warns on import."""

import warnings

from bmdkit.checks import *  # noqa: F403
from bmdkit.checks import __all__  # noqa: F401

warnings.warn("bmdkit.validation is deprecated and will be removed: import bmdkit.checks",
              DeprecationWarning, stacklevel=2)
