"""Every estimator parameter has a declared constraint, and a bad one is named at ``fit``.

The cases come from the tables themselves (``_parameter_constraints`` and
:func:`bmdkit.params.bad_values`): a parameter added without a constraint, or a
constraint that lets a wrong type or value through, fails here.
"""

import re

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge

import bmdkit.estimators  # noqa: F401 - registers the built-in estimators
from bmdkit.errors import ParameterError
from bmdkit.params import bad_values, validate_params
from bmdkit.persistence import ESTIMATORS
from bmdkit.uncertainty import ConformalBMDRegressor

BASE = bmdkit.estimators.BMDRegressor


def _classes():
    classes = [cls for name, cls in sorted(ESTIMATORS.items()) if name.startswith("bmdkit.")]
    try:
        from bmdkit.scaleout import AcceleratedBMDRegressor
    except ImportError:  # the distributed extra is not installed
        return classes + [ConformalBMDRegressor]
    return classes + [AcceleratedBMDRegressor, ConformalBMDRegressor]


CLASSES = _classes()


def _make(cls):
    return cls(Ridge()) if cls is ConformalBMDRegressor else cls()


def _cases():
    """(class, parameter, bad value): BMDRegressor's every parameter, and for the other
    classes the parameters they add or constrain otherwise."""
    for cls in CLASSES:
        for name, constraints in cls._parameter_constraints.items():
            if cls is not BASE and BASE._parameter_constraints.get(name) == constraints:
                continue
            for value in bad_values(constraints):
                yield pytest.param(cls, name, value, id=f"{cls.__name__}-{name}-{value!r}")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"age": rng.uniform(60, 90, 20), "sex": rng.choice(["F", "M"], 20)})
    return X, 1.2 - 0.005 * X["age"].to_numpy()


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_every_parameter_has_a_declared_constraint_that_its_default_meets(cls):
    params = _make(cls).get_params(deep=False)
    assert set(params) <= set(cls._parameter_constraints)  # named models fix fusion
    validate_params(cls._parameter_constraints, params)  # the defaults pass


def test_the_cases_cover_every_parameter_of_bmdregressor():
    covered = {values[1] for values in (case.values for case in _cases())
               if values[0] is BASE}
    assert covered == set(BASE().get_params())


@pytest.mark.parametrize("cls, name, value", list(_cases()))
def test_a_bad_type_or_value_of_each_parameter_is_one_error_naming_it(data, cls, name, value):
    model = _make(cls).set_params(**{name: value})
    # the message pattern, or the own message of a check that is the only constraint
    with pytest.raises(ParameterError, match=f"^{name}( must be |=).*{re.escape(repr(value))}"):
        model.fit(*data)
    assert issubclass(ParameterError, ValueError) and issubclass(ParameterError, TypeError)


def test_a_checks_own_error_is_kept_when_it_is_the_only_constraint():
    from bmdkit.params import Check, Options

    def even(value):
        if value % 2:
            raise ParameterError(f"n must be even (pairs of views), got {value!r}")

    with pytest.raises(ParameterError, match=r"^n must be even \(pairs of views\), got 3$"):
        validate_params({"n": [Check(even, "an even number")]}, {"n": 3})
    # among other constraints, the pattern naming them all
    with pytest.raises(ParameterError, match="^n must be one of 'all' or an even number, got 3$"):
        validate_params({"n": [Options({"all"}), Check(even, "an even number")]}, {"n": 3})
    # any other failure of the check is the pattern too
    with pytest.raises(ParameterError, match="^n must be an even number, got 'two'$"):
        validate_params({"n": [Check(even, "an even number")]}, {"n": "two"})
