"""scikit-learn's own estimator checks, with the ones that cannot apply explained."""

import pytest
from sklearn.utils.estimator_checks import check_estimator

from bmdkit import MetadataOnlyBMDRegressor, XAttnBMDRegressor

MAPIE = ("n_features_in_ is deliberately not set: MAPIE's prefit check would call predict on "
         "an all-zero array, which has no image paths (DESIGN.md); feature_names_in_ is set")
FLOAT32 = ("the network computes in float32 and BLAS kernels depend on the batch size, so "
           "predictions on a subset agree to ~1e-6, not the check's 1e-7")

METADATA_ONLY_EXPECTED_FAILURES = {
    "check_n_features_in": MAPIE,
    "check_n_features_in_after_fitting": MAPIE,
    "check_methods_subset_invariance": FLOAT32,
    "check_methods_sample_order_invariance": FLOAT32,
    "check_dtype_object": ("a non-numeric cell in a numeric column raises bmdkit's InputError "
                           "(a ValueError naming every bad cell), not the TypeError the check wants"),
}

NO_IMAGE = ("the check passes a numeric array; image models need a DataFrame with an "
            "image-path column and fail with a KeyError naming the missing column")
# Every check that fits on generated numeric arrays cannot apply to a model of image paths.
IMAGE_MODEL_EXPECTED_FAILURES = dict.fromkeys([
    "check_complex_data", "check_dict_unchanged", "check_dont_overwrite_parameters",
    "check_dtype_object", "check_estimators_dtypes", "check_estimators_empty_data_messages",
    "check_estimators_fit_returns_self", "check_estimators_overwrite_params",
    "check_estimators_pickle", "check_f_contiguous_array_estimator", "check_fit2d_1feature",
    "check_fit2d_predict1d", "check_fit_check_is_fitted",
    "check_fit_idempotent", "check_fit_score_takes_y", "check_methods_sample_order_invariance",
    "check_methods_subset_invariance", "check_pipeline_consistency",
    "check_positive_only_tag_during_fit", "check_readonly_memmap_input",
    "check_regressor_data_not_an_array", "check_regressor_multioutput", "check_regressors_int",
    "check_regressors_no_decision_function", "check_regressors_train",
    "check_supervised_y_2d",

], NO_IMAGE) | {"check_n_features_in": MAPIE, "check_n_features_in_after_fitting": MAPIE}


def _run(estimator, expected):
    results = check_estimator(estimator, expected_failed_checks=expected, on_skip=None,
                              on_fail=None)
    failed = {r["check_name"]: repr(r["exception"])[:300] for r in results
              if r["status"] == "failed"}
    unexpected_passes = {r["check_name"] for r in results
                         if r["status"] == "passed" and r["check_name"] in expected}
    return failed, unexpected_passes, len(results)


@pytest.mark.filterwarnings("ignore")
def test_metadata_only_passes_sklearn_checks():
    failed, unexpected, n = _run(MetadataOnlyBMDRegressor(max_epochs=15, random_state=0),
                                 METADATA_ONLY_EXPECTED_FAILURES)
    assert not failed, failed
    assert n > 30


@pytest.mark.filterwarnings("ignore")
def test_image_model_passes_every_check_that_applies():
    tiny = XAttnBMDRegressor(image_size=32, max_epochs=1, backbone="resnet10t", embed_dim=16,
                             n_heads=2, n_layers=1, random_state=0)
    failed, unexpected, n = _run(tiny, IMAGE_MODEL_EXPECTED_FAILURES)
    assert not failed, failed
    assert not unexpected, f"listed as failing but passed: {unexpected}"
    assert n > 30
