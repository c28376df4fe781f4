"""``bmdkit doctor``: run every device path of bmdkit once and say what passed.

:func:`run_checks` exercises, on one device (``"cuda"`` by default, as
``make gpu-check`` runs it), every path that a GPU user takes: fit and
predict, save and load across devices (device ↔ CPU), bfloat16 and (through
Accelerate, with loss scaling) float16 training, the fused AdamW step,
channels-last, ``torch.compile``, ``explain``, ``bmdkit predict --device``
streaming and ``bmdkit bench --device`` (both as the user runs them, in a
subprocess), ``AcceleratedBMDRegressor`` fits of several settings in one
process, and the paper's configuration (ResNet34, 256 px, 10 folds) with
its time. Each check is timed and reported as ``pass`` or ``fail`` with the
error; a check is reported as passed only after it ran to its end.

Without the device it runs nothing: :class:`NoDeviceError` (``bmdkit
doctor`` then prints "no CUDA device" and exits with :data:`NO_DEVICE_EXIT`).
Nothing here imports torch before a check runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from bmdkit.errors import BMDKitError, ParameterError

__all__ = ["CHECKS", "NO_DEVICE_EXIT", "CheckResult", "NoDeviceError", "check_device",
           "exit_status", "run_checks"]

#: Exit status of ``bmdkit doctor`` when the device is not there (77: "skipped", as
#: automake's test harness reads it): never 0, never a failed check's 1.
NO_DEVICE_EXIT = 77
#: Exit status when a check failed.
FAILED_EXIT = 1
#: Largest difference (g/cm²) allowed between predictions of one model on two devices
#: or two paths: TF32 convolutions on CUDA differ from CPU float32 in the fourth digit;
#: DXA's own precision at the femoral neck is 1-2.5 % (about 0.01-0.02 g/cm²).
TOLERANCE = 5e-3

#: Sizes per mode: the small "smoke" run (CPU, tests) and the real check.
SETTINGS = {
    "smoke": dict(n=24, image_size=32, epochs=1, batch_size=8, embed_dim=16, n_heads=2,
                  n_layers=1, paper_folds=2, paper_backbone="resnet10t", paper_image_size=32,
                  paper_demo_cohort=False),
    "full": dict(n=96, image_size=128, epochs=2, batch_size=16, embed_dim=64, n_heads=4,
                 n_layers=3, paper_folds=10, paper_backbone="resnet34", paper_image_size=256,
                 paper_demo_cohort=True),
}


class NoDeviceError(BMDKitError, RuntimeError):
    """The device asked for is not there (no CUDA device, torch built without CUDA, or a
    device string torch does not know)."""


@dataclass(frozen=True)
class CheckResult:
    """One check: ``status`` is ``"pass"`` only when it ran to its end."""

    name: str
    status: str
    seconds: float
    detail: str


CHECKS = {}


def _check(name):
    def register(function):
        CHECKS[name] = function
        return function
    return register


def check_device(device):
    """A description of ``device`` (name, torch and CUDA versions), or NoDeviceError.

    The device is read by :func:`bmdkit.batching.check_device`; its
    ParameterError (not a torch device, no such CUDA device) becomes a
    NoDeviceError (``bmdkit doctor`` exits with :data:`NO_DEVICE_EXIT`).
    """
    import torch

    from bmdkit.batching import check_device as parse_device

    try:
        kind = parse_device(device, name="--device")
    except ParameterError as error:
        raise NoDeviceError(f"{error} (torch {torch.__version__}, built for CUDA "
                            f"{torch.version.cuda}); nothing was checked") from None
    if kind.type == "cpu":
        return f"CPU, torch {torch.__version__}"
    if kind.type != "cuda":
        raise NoDeviceError(f"bmdkit doctor checks CUDA or the CPU, not {device!r}")
    return (f"{torch.cuda.get_device_name(kind.index or 0)}, torch {torch.__version__}, "
            f"CUDA {torch.version.cuda}")


class _Run:
    """What the checks share: device, sizes, the data and one fitted model."""

    def __init__(self, device, mode, workdir, paper_epochs):
        self.device, self.workdir, self.paper_epochs = device, Path(workdir), paper_epochs
        self.settings = SETTINGS[mode]
        self._data = self._model = None

    @property
    def data(self):
        if self._data is None:
            from bmdkit.datasets import make_synthetic_cohort

            self._data = make_synthetic_cohort(
                n=self.settings["n"], image_size=self.settings["image_size"], random_state=0,
                out_dir=self.workdir / "cohort")
        return self._data

    def regressor(self, cls=None, **params):
        from bmdkit import BMDRegressor

        s = self.settings
        params = dict(dict(image_size=s["image_size"], max_epochs=s["epochs"],
                           batch_size=s["batch_size"], embed_dim=s["embed_dim"],
                           n_heads=s["n_heads"], n_layers=s["n_layers"], random_state=0,
                           device=self.device), **params)
        return (cls or BMDRegressor)(**params)

    def fitted(self, cls=None, **params):
        """``(model fitted on the data, its predictions, seconds)``, predictions checked finite."""
        import numpy as np

        X, y = self.data
        start = time.perf_counter()
        model = self.regressor(cls, **params).fit(X, y)
        predictions = model.predict(X)
        seconds = time.perf_counter() - start
        if predictions.shape != (len(X),) or not np.isfinite(predictions).all():
            raise AssertionError(f"predictions of shape {predictions.shape}, not all finite")
        return model, predictions, seconds

    @property
    def model(self):
        """The XAttn model of check ``fit_predict`` (fitted once)."""
        if self._model is None:
            self._model = self.fitted()
        return self._model

    def on_device(self, model):
        parameter = next(model.net_.module_.parameters())
        if parameter.device.type != self.device.partition(":")[0]:
            raise AssertionError(f"weights on {parameter.device}, not on {self.device}")

    def command(self, *argv):
        """Run ``bmdkit ARGV`` as a user does (a subprocess); its output, or an error with it."""
        done = subprocess.run([sys.executable, "-m", "bmdkit.cli", *argv], capture_output=True,
                              text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        if done.returncode != 0:
            raise AssertionError(f"bmdkit {' '.join(argv)} exited {done.returncode}:\n"
                                 f"{done.stderr[-2000:]}")
        return done.stdout


@_check("fit_predict")
def _fit_predict(run):
    model, _, seconds = run.model
    run.on_device(model)
    return f"XAttn, {len(run.data[1])} rows, {model.max_epochs} epochs: fit + predict {seconds:.1f} s"


@_check("fused_adamw")
def _fused_adamw(run):
    model = run.model[0]
    fused = [group.get("fused") for group in model.net_.optimizer_.param_groups]
    if not all(fused):
        raise AssertionError(f"AdamW param groups fused={fused}")
    return "AdamW steps with torch's fused kernel"


@_check("save_load")
def _save_load(run):
    import numpy as np

    from bmdkit import load

    model, predictions, _ = run.model
    model.save(run.workdir / "device-model", overwrite=True)
    on_cpu = load(run.workdir / "device-model", device="cpu").predict(run.data[0])
    cpu_model, cpu_predictions, _ = run.fitted(device="cpu")
    cpu_model.save(run.workdir / "cpu-model", overwrite=True)
    moved = load(run.workdir / "cpu-model", device=run.device)
    run.on_device(moved)
    on_device = moved.predict(run.data[0])
    gaps = [float(np.abs(a - b).max()) for a, b in ((on_cpu, predictions),
                                                      (on_device, cpu_predictions))]
    if max(gaps) > TOLERANCE:
        raise AssertionError(f"predictions moved across devices differ by up to {max(gaps):.2g} "
                             "g/cm²")
    return (f"{run.device} -> cpu: max |Δ| {gaps[0]:.2g} g/cm²; cpu -> {run.device}: "
            f"{gaps[1]:.2g} g/cm²")


def _option_check(name, **params):
    def check(run):
        model, _, seconds = run.fitted(**params)
        run.on_device(model)
        return f"fit + predict {seconds:.1f} s"
    CHECKS[name] = check


_option_check("bfloat16", precision="bfloat16")
_option_check("channels_last", channels_last=True)
_option_check("compile", compile=True)


@_check("explain")
def _explain(run):
    import numpy as np

    explanation = run.model[0].explain(run.data[0].iloc[:4], n_steps=8, n_samples=8)
    if not np.isfinite(explanation.saliency).all():
        raise AssertionError("saliency maps are not finite")
    return f"saliency {explanation.saliency.shape}, attributions {explanation.attributions.shape}"


@_check("predict_command")
def _predict_command(run):
    import pandas as pd

    model, predictions, _ = run.model
    model.save(run.workdir / "device-model", overwrite=True)
    X = run.data[0]
    X.to_csv(run.workdir / "rows.csv", index=False)
    start = time.perf_counter()
    run.command("predict", "--csv", str(run.workdir / "rows.csv"), "--model",
                str(run.workdir / "device-model"), "--out", str(run.workdir / "predicted.csv"),
                "--device", run.device, "--workers", "2", "--chunk-size", "16")
    seconds = time.perf_counter() - start
    written = pd.read_csv(run.workdir / "predicted.csv")["predicted_bmd"].to_numpy()
    if len(written) != len(X) or abs(written - predictions).max() > TOLERANCE:
        raise AssertionError("streamed predictions differ from model.predict")
    return f"{len(X)} rows streamed in chunks of 16 by 2 decoding workers: {seconds:.1f} s"


@_check("bench_command")
def _bench_command(run):
    run.command("bench", "--smoke", "--device", run.device, "--json",
                str(run.workdir / "bench.json"))
    figures = json.loads((run.workdir / "bench.json").read_text())
    return f"bench --smoke on {run.device}: {len(figures)} figures"


@_check("float16")
def _float16(run):
    from bmdkit.scaleout import AcceleratedBMDRegressor

    # BMDRegressor's precisions are float32 and bfloat16: float16 needs loss scaling,
    # which Accelerate's fp16 does
    _, _, seconds = run.fitted(AcceleratedBMDRegressor, mixed_precision="fp16")
    return f"AcceleratedBMDRegressor(mixed_precision='fp16'): fit + predict {seconds:.1f} s"


@_check("accelerate")
def _accelerate(run):
    from bmdkit.scaleout import AcceleratedBMDRegressor

    done = []
    for mixed_precision in ("bf16", "no"):  # after float16's fp16: three settings, one process
        _, _, seconds = run.fitted(AcceleratedBMDRegressor, mixed_precision=mixed_precision)
        done.append(f"{mixed_precision} {seconds:.1f} s")
    return "AcceleratedBMDRegressor, one process: " + ", ".join(done)


@_check("paper_configuration")
def _paper_configuration(run):
    from bmdkit import BMDStratifiedKFold, XAttnBMDRegressor
    from bmdkit.datasets import load_demo_cohort
    from bmdkit.evaluation import compare_models

    s = run.settings
    # the demo cohort's 128 px phantoms, resized to 256 px by the preprocessor
    X, y = load_demo_cohort(random_state=0) if s["paper_demo_cohort"] else run.data
    model = XAttnBMDRegressor(backbone=s["paper_backbone"], image_size=s["paper_image_size"],
                              max_epochs=run.paper_epochs, random_state=0, device=run.device)
    start = time.perf_counter()
    results = compare_models({"XAttn": model}, X, y, progress=False,
                             cv=BMDStratifiedKFold(s["paper_folds"], random_state=0))
    seconds = time.perf_counter() - start
    r2 = results.summary().loc["XAttn", ("r2", "mean")]
    return (f"XAttn {s['paper_backbone']}, {s['paper_image_size']} px, {s['paper_folds']} folds "
            f"x {run.paper_epochs} epochs, {len(y)} SYNTHETIC subjects: {seconds:.1f} s "
            f"({seconds / s['paper_folds'] / run.paper_epochs:.2f} s per fold-epoch); "
            f"R² {r2:.3f}")


def run_checks(device="cuda", *, only=None, smoke=False, paper_epochs=20, workdir=None,
               log=None):
    """Run the checks on ``device``; their :class:`CheckResult`, in :data:`CHECKS` order.

    Parameters
    ----------
    device : str, default="cuda"
    only : sequence of str or None
        Names of :data:`CHECKS` to run (default: all).
    smoke : bool, default=False
        Tiny sizes (seconds on a CPU; for tests of this harness).
    paper_epochs : int, default=20
        Epochs of each fold of the paper's configuration (20: the estimators'
        default); the check also reports the time per fold-epoch.
    workdir : str, Path or None
        Where the cohort, models and outputs go (default: a temporary folder).
    log : callable or None
        Called with a line when a check ends.

    Raises
    ------
    NoDeviceError
        Without the device; nothing is run.
    """
    unknown = sorted(set(only or ()) - set(CHECKS))
    if unknown:
        raise ParameterError(f"--only: unknown checks {unknown}; known: {list(CHECKS)}")
    check_device(device)
    with tempfile.TemporaryDirectory() as scratch:
        run = _Run(device, "smoke" if smoke else "full", workdir or scratch, paper_epochs)
        run.workdir.mkdir(parents=True, exist_ok=True)
        results = []
        for name, check in CHECKS.items():
            if only and name not in only:
                continue
            start = time.perf_counter()
            try:
                detail, status = check(run), "pass"
            except Exception as error:  # every failure is reported, the next check runs
                detail, status = f"{type(error).__name__}: {error}", "fail"
                if log is not None:
                    log(traceback.format_exc())
            results.append(CheckResult(name, status, time.perf_counter() - start, detail))
            if log is not None:
                log(f"{status:4} {name} ({results[-1].seconds:.1f} s): {detail}")
    return results


def exit_status(results):
    """0 when every check passed, :data:`FAILED_EXIT` otherwise (also for no check at all)."""
    return 0 if results and all(r.status == "pass" for r in results) else FAILED_EXIT


def results_json(results, device_description, seconds):
    """The report ``bmdkit doctor --out`` writes."""
    return json.dumps(dict(device=device_description, seconds=seconds,
                           passed=sum(r.status == "pass" for r in results), total=len(results),
                           checks=[asdict(r) for r in results]), indent=2)
