"""Acceptance run of ``bmdkit serve`` beside Orthanc, and its throughput against ``bmdkit predict``.

Usage (root, Debian: installs orthanc and dicom3tools if missing)::

    PYTHONPATH=. OMP_NUM_THREADS=1 python tests/pacs_acceptance.py [--images 40] [--out DIR]

What it does, on SYNTHETIC phantoms (not clinical images):

1. fits a small split-conformal Concat model (resnet10t, 64 px, 3 epochs) on
   120 phantoms (256 px PNGs) and takes ``--images`` others of the same
   SYNTHETIC cohort as CR DICOM files (``--image-size`` px on the long side,
   default 256; e.g. 2048 for a CR film's size);
2. starts Orthanc on loopback and ``bmdkit serve --forward`` to it, uploads
   the images and one non-image object (an Encapsulated PDF) to Orthanc, and
   has Orthanc send the first half of the images, then the bad object, then
   the second half to the node (REST C-STORE, one request each);
3. waits for every report in Orthanc, checks each with dciodvfy, checks that
   it references its image and carries the BMD ``bmdkit predict`` gives on the
   file (to 1e-6 g/cm2), and that the node still runs (then stops it: SIGTERM);
4. times the node (first C-STORE sent to last report stored in Orthanc) and
   ``bmdkit predict --dicom-dir`` on the same files (the command, as a user
   runs it, and the prediction alone, model loaded), and prints the figures.

It is a script, not a CI test: it takes a few minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pandas as pd  # noqa: E402
import pydicom  # noqa: E402
from dicom_cohort import COLUMNS, cohort_dicoms, non_image_object  # noqa: E402
from orthanc import ROOT, Node, Orthanc, free_port  # noqa: E402
from test_dicomnode import report_values  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--image-size", type=int, default=256,
                        help="long side of the DICOM films in pixels, e.g. 2048 (a CR film's)")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="bmdkit-pacs-"))
    out.mkdir(parents=True, exist_ok=True)
    from bmdkit import ConcatBMDRegressor
    from bmdkit.datasets import make_synthetic_cohort
    from bmdkit.uncertainty import ConformalBMDRegressor

    n = 120 + args.images
    X, y = make_synthetic_cohort(n=n, image_size=256, random_state=1, out_dir=out / "png")
    model = ConformalBMDRegressor(
        ConcatBMDRegressor(image_size=64, max_epochs=3, n_threads=1, random_state=0),
        method="split").fit(X[COLUMNS].iloc[:120], y[:120])
    model.save(out / "model")
    files = cohort_dicoms(n, args.image_size, 1, range(120, n), out / "dicom")
    uids = [pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in files]
    port = free_port()
    orthanc = Orthanc("/usr/sbin/Orthanc", out / "orthanc", node_port=port)
    node = Node(out / "model", out / "queue", out / "serve.log", port=port,
                forward=f"127.0.0.1:{orthanc.dicom}:{orthanc.aet}")
    try:
        ids = [orthanc.upload(p) for p in files]
        bad = orthanc.upload(non_image_object(files[0], out / "note.dcm"))
        half = len(ids) // 2
        start = time.perf_counter()
        orthanc.request("/modalities/bmdkit/store", {"Resources": ids[:half],
                                                     "Synchronous": True})
        try:
            orthanc.send_to_node(bad)
            refused = False
        except urllib.error.HTTPError:
            refused = True
        orthanc.request("/modalities/bmdkit/store", {"Resources": ids[half:],
                                                     "Synchronous": True})
        while len(orthanc.instances("SR")) < len(files):
            time.sleep(0.05)
        node_seconds = time.perf_counter() - start
        still_running = node.process.poll() is None
        reports = {}
        dciodvfy_errors = 0
        for instance in orthanc.instances("SR"):
            raw = orthanc.file(instance)
            (out / "report.dcm").write_bytes(raw)
            check = subprocess.run(["dciodvfy", str(out / "report.dcm")], capture_output=True,
                                   text=True)
            dciodvfy_errors += sum(line.startswith("Error")
                                   for line in (check.stdout + check.stderr).splitlines())
            report = pydicom.dcmread(out / "report.dcm")
            values, images = report_values(report)
            for uid in images:
                reports.setdefault(uid, []).append(values["Femur DXA Bone density"])
    finally:
        node_code = node.stop()
        orthanc.stop()
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bmdkit.cli", "predict", "--dicom-dir",
                    str(out / "dicom"), "--model", str(out / "model"), "--out",
                    str(out / "predict.csv")], check=True, env=env, capture_output=True)
    predict_command = time.perf_counter() - start
    from bmdkit.archive import load_model, predict_archive

    load_model(out / "model")  # warm the imports, as the running node has them
    start = time.perf_counter()
    predict_archive(out / "model", out / "predict2.csv", dicom_dir=out / "dicom", progress=False)
    predict_call = time.perf_counter() - start
    expected = pd.read_csv(out / "predict.csv").set_index("image_path")["predicted_bmd"]
    matches = sum(bool(len(reports.get(uid, [])) == 1
                       and abs(reports[uid][0] - expected[path.name]) <= 1e-6)
                  for path, uid in zip(files, uids))
    summary = {
        "images": len(files), "pixels": list(pydicom.dcmread(files[0]).pixel_array.shape), "reports_in_orthanc": sum(map(len, reports.values())),
        "reports_matching_predict_once_each": matches, "bad_object_refused": refused,
        "dciodvfy_errors": dciodvfy_errors, "node_running_after": still_running,
        "node_exit_on_sigterm": node_code,
        "node_seconds": round(node_seconds, 2),
        "node_images_per_s": round(len(files) / node_seconds, 2),
        "predict_command_seconds": round(predict_command, 2),
        "predict_call_seconds": round(predict_call, 2),
        "node_vs_predict_command": round(predict_command / node_seconds, 2),
        "node_vs_predict_call": round(predict_call / node_seconds, 2),
        "out": str(out),
    }
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
