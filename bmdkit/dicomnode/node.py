"""``bmdkit serve``: a DICOM Storage SCP that answers every hip radiograph with a Structured Report.

:class:`DicomNode` (pynetdicom) accepts C-STORE of any storage SOP class and
decides at once whether it can use the object: a CR or DX image, of the hip
or pelvis when the header names a body part, with pixel data (and, with
``require_metadata``, age, sex, height and weight in the header or the
metadata table). Anything else gets a failure status (0xC000, the reason in
the Error Comment and the log), and the node keeps serving.

A usable object is written whole to the disk queue (``<queue>/incoming``)
*before* the C-STORE is acknowledged, so an acknowledged image is never
lost: a crashed or stopped node resumes its queue when it starts again. A
predicting thread takes the queue in batches and predicts (the metadata from
the header, fields it lacks from the metadata table, else imputed as in
training and named in the report and the log); report processes build the
Structured Reports (and write ``sr_dir``, ``fhir_dir``) meanwhile (worker
processes decode the images and build the reports), and
sending threads send each report to ``forward`` by C-STORE and only then
remove its image from the queue. A report's SOP Instance UID is
determined by the image and the model, so an image answered again after a
crash replaces its report in the PACS instead of adding a second one: every
image is answered exactly once. Objects that turn out unreadable are moved
to ``<queue>/failed`` with the reason. The log has a line per study answered.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import warnings
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bmdkit.errors import InputError, MissingFileError, ParameterError

__all__ = ["ACCEPTED_SOP_CLASSES", "DicomNode", "Forward", "HIP_BODY_PARTS"]

log = logging.getLogger("bmdkit.serve")

#: SOP classes the node predicts on: CR, DX for presentation, DX for processing.
ACCEPTED_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.1": "CR Image",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image - For Processing",
}
#: BodyPartExamined values of a hip radiograph (an empty or absent tag is accepted too).
HIP_BODY_PARTS = {"HIP", "PELVIS", "FEMUR", "LEG", "LOWEREXTREMITY", "LOWER EXTREMITY"}
_FAILURE = 0xC000  # "Cannot understand": the object is not one the node can use
#: Threads sending reports, each over its own association: a PACS stores while the other sends.
SENDERS = 2


@dataclass(frozen=True)
class Forward:
    """Where reports go by C-STORE: ``Forward.parse("HOST:PORT:AET")``."""

    host: str
    port: int
    ae_title: str

    @classmethod
    def parse(cls, text):
        """``"127.0.0.1:4242:ORTHANC"`` -> Forward; an error naming the bad part.

        Examples
        --------
        >>> Forward.parse("pacs.local:104:PACS")
        Forward(host='pacs.local', port=104, ae_title='PACS')
        """
        host, port, aet = (text.rsplit(":", 2) + ["", ""])[:3] if text.count(":") >= 2 \
            else ("", "", "")
        if not host or not port.isdigit() or not aet or len(aet) > 16:
            raise ParameterError(f"--forward must be HOST:PORT:AET (AET up to 16 characters), "
                             f"got {text!r}")
        return cls(host, int(port), aet)


class DicomNode:
    """A Storage SCP that predicts BMD for every hip radiograph it receives.

    Parameters
    ----------
    model_dir : path
        A model saved by ``bmdkit fit`` (with ``--conformal``: intervals and referral).
    queue_dir : path
        The disk queue (created if needed); resumed on start.
    ae_title : str
    port : int
        0 picks a free port (see :attr:`port` once started).
    host : str
        Address to listen on.
    forward : Forward or str or None
        Where each Structured Report is sent by C-STORE.
    sr_dir, fhir_dir : path or None
        Also write the reports / FHIR Observations there.
    metadata : path or None
        CSV of model inputs for films whose header lacks them, with a
        ``PatientID`` or ``AccessionNumber`` column (AccessionNumber is tried first).
    require_metadata : bool
        Refuse films lacking any of the model's metadata instead of imputing.
    batch_size : int
        Queued images predicted together.
    workers : int or None
        Processes decoding the images and building the reports while the
        network predicts (highdicom's builders are pure Python: ~50 ms a
        report); 0 does both in the predicting thread; None: one per CPU core,
        as ``bmdkit predict``.
    device : str or None
        Torch device (default: the saved one).
    retry_seconds : float
        Wait before trying again when the reports could not be delivered.
    """

    def __init__(self, model_dir, *, queue_dir, ae_title="BMDKIT", port=11112,
                 host="127.0.0.1", forward=None, sr_dir=None, fhir_dir=None, metadata=None,
                 require_metadata=False, batch_size=16, workers=None, device=None,
                 retry_seconds=5.0):
        from bmdkit.archive import load_model
        from bmdkit.dicomnode.outputs import ReportWriter

        if not 1 <= len(ae_title) <= 16:
            raise ParameterError(f"--ae-title must have 1 to 16 characters, got {ae_title!r}")
        if not 0 <= port <= 65535:
            raise ParameterError(f"--port must be 0 to 65535, got {port}")
        if batch_size < 1:
            raise ParameterError(f"--batch-size must be 1 or more, got {batch_size}")
        self.forward = Forward.parse(forward) if isinstance(forward, str) else forward
        self.model, _ = load_model(model_dir, device=device)  # first: errors naming the folder
        self.writer = ReportWriter(model_dir, sr_dir=sr_dir, fhir_dir=fhir_dir)
        self.member = getattr(self.model, "estimators_", [self.model])[0]
        self.densitometer = getattr(self.member, "densitometer_", "lunar")
        pre = self.member.preprocessor_
        self.fields = [*pre.numeric_cols_, *pre.categorical_cols_]
        self.metadata = _metadata_table(metadata, self.fields) if metadata else None
        self.ae_title, self.host, self.port = ae_title, host, port
        self.require_metadata, self.batch_size = require_metadata, batch_size
        self.retry_seconds = retry_seconds
        self.queue = Path(queue_dir) / "incoming"
        self.failed = Path(queue_dir) / "failed"
        self.queue.mkdir(parents=True, exist_ok=True)
        self.failed.mkdir(parents=True, exist_ok=True)
        self.n_answered = 0
        workers = (os.cpu_count() or 1) if workers is None else workers
        if workers < 0:
            raise ParameterError(f"--workers must be 0 or more, got {workers}")
        self.workers = workers
        self._pool = None
        self._wake, self._stopping = threading.Event(), threading.Event()
        self._gave_up, self._lock, self._busy = threading.Event(), threading.Lock(), set()
        self._outbox = queue.Queue(maxsize=2)
        self._server = None
        self._threads = []

    # -- receiving ------------------------------------------------------------------------
    def start(self):
        """Start the worker processes, listen, and start the predicting and sending threads
        (which first answer what the queue holds); return the node."""
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification

        ae = AE(ae_title=self.ae_title)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        if self.workers:
            from bmdkit.inference import spawn_pool

            self._pool = spawn_pool(self.workers, initializer=_warm_up)
            for ready in [self._pool.submit(int) for _ in range(self.workers)]:
                ready.result()  # ready to decode and build before accepting images
        try:
            self._server = ae.start_server((self.host, self.port), block=False,
                                           evt_handlers=[(evt.EVT_C_STORE, self._on_store)])
        except OSError as error:  # the port is taken, or the host not this machine's
            if self._pool is not None:
                self._pool.shutdown(cancel_futures=True)
                self._pool = None
            raise ParameterError(f"cannot listen on --host {self.host} --port {self.port}: "
                                 f"{error.strerror or error}") from None
        self.port = self._server.server_address[1]
        waiting = len(self._pending())
        log.info("listening as %s on %s:%d%s; %d object(s) in the queue %s", self.ae_title,
                 self.host, self.port,
                 f", forwarding reports to {self.forward.ae_title}@{self.forward.host}:"
                 f"{self.forward.port}" if self.forward else "", waiting, self.queue)
        roles = [("predict", self._work)] + [(f"send-{k}", self._send_loop)
                                             for k in range(SENDERS)]
        self._threads = [threading.Thread(target=target, name=f"bmdkit-serve-{name}", daemon=True)
                         for name, target in roles]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout=None):
        """Stop listening, answer what the queue holds, and return (SIGTERM does this)."""
        if self._server is not None:
            self._server.shutdown()
        self._stopping.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        if self._pool is not None:
            self._pool.shutdown()
        left = len(self._pending())
        log.info("stopped after answering %d image(s)%s", self.n_answered,
                 f"; {left} left in the queue for the next start" if left else "")

    def _on_store(self, event):
        from pydicom.dataset import Dataset

        from bmdkit.files import atomic_path

        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            reason = self._unusable(ds)
        except Exception as err:  # noqa: BLE001 - any undecodable object is refused
            ds, reason = None, f"unreadable object ({err})"
        uid = str(getattr(ds, "SOPInstanceUID", "?"))
        if reason:
            log.warning("refused %s from %s: %s", uid,
                        event.assoc.requestor.ae_title, reason)
            status = Dataset()
            status.Status, status.ErrorComment = _FAILURE, reason[:64]
            return status
        with atomic_path(self.queue / f"{uid}.dcm") as tmp:  # queued before acknowledging
            tmp.write_bytes(event.encoded_dataset(include_meta=True))
        self._wake.set()
        return 0x0000

    def _unusable(self, ds):
        """Why the node cannot use ``ds`` (a sentence), or None."""
        from pydicom.uid import UID

        if not UID(str(ds.get("SOPInstanceUID", ""))).is_valid:
            return f"invalid SOP Instance UID {str(ds.get('SOPInstanceUID', ''))[:40]!r}"
        sop_class = str(ds.get("SOPClassUID", ""))
        if sop_class not in ACCEPTED_SOP_CLASSES:
            return (f"not a CR/DX image (SOP class {sop_class or 'missing'}, modality "
                    f"{ds.get('Modality', 'missing')})")
        if "PixelData" not in ds:
            return "no pixel data"
        part = str(ds.get("BodyPartExamined", "") or "").strip().upper()
        if part and part not in HIP_BODY_PARTS:
            return f"body part {part} is not a hip or pelvis"
        if self.require_metadata:
            missing = self._imputed(self._inputs(ds))
            if missing:
                return f"no {', '.join(missing)} in header or metadata"
        return None

    # -- the inputs of one image ---------------------------------------------------------
    def _inputs(self, ds):
        """The model's metadata of ``ds``: the header's, missing fields from the table."""
        from bmdkit.io.dicom_metadata import header_metadata

        row = header_metadata(ds)
        if self.metadata is not None:
            for key in ("AccessionNumber", "PatientID"):
                value = str(ds.get(key, "") or "")
                if key in self.metadata and value in self.metadata[key]:
                    extra = self.metadata[key][value]
                    row.update({c: extra[c] for c in extra
                                if c in self.fields and pd.isna(row.get(c))})
                    break
        return row

    def _imputed(self, row):
        return [c for c in self.fields if pd.isna(row.get(c))]

    # -- answering the queue -------------------------------------------------------------
    def _pending(self):
        """The queued files, oldest first (files leaving the queue meanwhile skipped)."""
        found = []
        for path in self.queue.glob("*.dcm"):
            try:
                found.append((path.stat().st_mtime_ns, path.name, path))
            except FileNotFoundError:
                continue
        return [path for *_, path in sorted(found)]

    def _work(self):
        """The predicting thread: batches from the queue, predicted while the worker
        processes build the previous batch's reports and the sending threads deliver them."""
        while True:
            with self._lock:
                busy = set(self._busy)
            batch = [p for p in self._pending() if p not in busy][:self.batch_size]
            if not batch:
                if self._stopping.is_set() and (not busy or self._gave_up.is_set()):
                    for _ in range(SENDERS):
                        self._outbox.put(None)  # each sending thread ends after its batch
                    return
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            answer = self._attempt(self._predict, batch)
            if answer is False:
                self._stopping.wait(self.retry_seconds)
            elif answer is not None:
                with self._lock:
                    self._busy.update(answer.paths)
                self._outbox.put((answer, self._submit(answer)))  # blocks when 2 are waiting

    def _send_loop(self):
        """A sending thread: deliver predicted batches (each over its own association)."""
        while (item := self._outbox.get()) is not None:
            answer, future = item
            delivered = (not self._gave_up.is_set()
                         and self._attempt(self._deliver, answer, future) is not False)
            with self._lock:
                self._busy.difference_update(answer.paths)
            if not delivered:
                if self._stopping.is_set():
                    self._gave_up.set()  # draining cannot finish: resumed at the next start
                else:
                    self._stopping.wait(self.retry_seconds)
            self._wake.set()

    def _attempt(self, step, *args):
        """``step(*args)``; on an error, log it and return False (the images stay queued)."""
        try:
            return step(*args)
        except ForwardError as err:
            log.error("%s; %d image(s) stay in the queue", err, len(self._pending()))
        except Exception:  # noqa: BLE001 - the node keeps serving; the queue keeps them
            log.exception("could not answer queued image(s); they stay in the queue")
        return False

    def _predict(self, paths):
        """The :class:`_Answer` of the queued files ``paths`` (None if none is usable)."""
        import pydicom

        from bmdkit.archive import result_columns
        from bmdkit.checks import ImputationWarning
        from bmdkit.inference import stream_predict

        start = time.perf_counter()
        sources, rows, kept = [], [], []
        for path in paths:
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except Exception as err:  # noqa: BLE001
                self._fail(path, f"unreadable DICOM file ({err})")
                continue
            sources.append(ds)
            rows.append({self.member.image_col: str(path), **self._inputs(ds)})
            kept.append(path)
        if not kept:
            return None
        X = pd.DataFrame(rows)
        predictions, done = [], []
        with warnings.catch_warnings():  # imputed fields are logged per image below
            warnings.simplefilter("ignore", ImputationWarning)
            for chunk in stream_predict(self.model, X, chunk_size=len(X), workers=self.workers,
                                        pool=self._pool):
                for position, why in chunk.failures.items():
                    self._fail(kept[position], why)
                if len(chunk.positions):
                    predictions.append(chunk.predictions)
                    done.extend(chunk.positions)
        if not done:
            return None
        axis = 1 if hasattr(self.model, "estimators_") else 0
        results = result_columns(self.model, np.concatenate(predictions, axis=axis), None,
                                 self.densitometer)
        answer = _Answer([kept[i] for i in done], [sources[i] for i in done], results,
                         [self._imputed(rows[i]) for i in done], time.perf_counter() - start)
        for ds, gone in zip(answer.sources, answer.imputed):
            if gone:
                log.warning("%s: header lacks %s; imputed as in training (named in the report)",
                            ds.SOPInstanceUID, ", ".join(gone))
        return answer

    def _submit(self, answer):
        """Future of the encoded reports of ``answer`` (built by a worker process, if any)."""
        arguments = (self.writer, answer.sources, answer.results, self.member.sites_ or (),
                     answer.imputed)
        if self._pool is not None:
            return self._pool.submit(_encoded_reports, *arguments)
        future = Future()
        try:
            future.set_result(_encoded_reports(*arguments))
        except Exception as err:  # noqa: BLE001 - raised again by future.result()
            future.set_exception(err)
        return future

    def _deliver(self, answer, future):
        """Send the reports of ``answer``, then take its images off the queue."""
        import pydicom
        from pydicom.filebase import DicomBytesIO

        waited = time.perf_counter()
        reports = [pydicom.dcmread(DicomBytesIO(data)) for data in future.result()]
        sent = time.perf_counter()
        if self.forward is not None:
            self._send(reports)
        for path in answer.paths:
            path.unlink(missing_ok=True)
        self.n_answered += len(answer.paths)
        self._log_studies(answer.sources, answer.results)
        log.info("batch of %d: predicted in %.2f s, reports waited for %.2f s, sent in %.2f s",
                 len(answer.paths), answer.seconds, sent - waited, time.perf_counter() - sent)
        return True

    def _send(self, reports):
        from pynetdicom import AE
        from pynetdicom.sop_class import Comprehensive3DSRStorage

        ae = AE(ae_title=self.ae_title)
        ae.add_requested_context(Comprehensive3DSRStorage)
        target = f"{self.forward.ae_title}@{self.forward.host}:{self.forward.port}"
        assoc = ae.associate(self.forward.host, self.forward.port,
                             ae_title=self.forward.ae_title)
        if not assoc.is_established:
            raise ForwardError(f"could not associate with {target}")
        try:
            for report in reports:
                status = assoc.send_c_store(report)
                code = getattr(status, "Status", None)
                if code is None or code not in (0x0000, 0xB000, 0xB007, 0xB006):
                    raise ForwardError(f"{target} answered the report "
                                       f"{report.SOPInstanceUID} with status "
                                       f"{'none' if code is None else hex(code)}")
        finally:
            assoc.release()

    def _fail(self, path, why):
        log.warning("could not use %s: %s (moved to %s)", path.name, why, self.failed)
        from bmdkit.files import write_text

        write_text(self.failed / f"{path.stem}.reason.txt", why + "\n")  # whole or not at all
        path.replace(self.failed / path.name)

    def _log_studies(self, sources, results):
        bmd = results.filter(like="predicted_bmd").iloc[:, 0].to_numpy()
        studies = {}
        for ds, value in zip(sources, bmd):
            studies.setdefault((str(ds.StudyInstanceUID), str(ds.get("PatientID", ""))),
                               []).append(value)
        waiting = len(self._pending())
        for (study, patient), values in studies.items():
            log.info("study %s (patient %s): %d image(s) answered, BMD %s g/cm2; "
                     "%d answered in all, %d waiting", study, patient, len(values),
                     ", ".join(f"{v:.3f}" for v in values), self.n_answered, waiting)


class ForwardError(RuntimeError):
    """The reports could not be sent to the forward destination."""


@dataclass
class _Answer:
    """A predicted batch: its queued files, headers, result columns and imputed fields."""

    paths: list
    sources: list
    results: pd.DataFrame
    imputed: list
    seconds: float


def _warm_up():
    """Import the decoders and build one report on a made-up header when a worker process
    starts: highdicom and pydicom load their code dictionaries and templates on first use
    (~2 s)."""
    from pydicom.dataset import Dataset

    import bmdkit.inference  # noqa: F401 - decode_images
    from bmdkit.dicomnode.card import ModelCard, derived_uid
    from bmdkit.dicomnode.sr import build_report

    header = Dataset()
    header.SOPClassUID = next(iter(ACCEPTED_SOP_CLASSES))
    header.SOPInstanceUID, header.StudyInstanceUID, header.SeriesInstanceUID = (
        derived_uid("warm-up", k) for k in range(3))
    header.PatientID, header.PatientName, header.Modality = "WARMUP", "WARM^UP", "CR"
    header.Rows = header.Columns = header.SamplesPerPixel = 1
    header.BitsAllocated, header.PhotometricInterpretation = 16, "MONOCHROME2"
    for keyword in ("PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                    "ReferringPhysicianName", "StudyID", "AccessionNumber"):
        setattr(header, keyword, "")
    card = ModelCard("warm-up", "0", (), "0" * 64, {"confidence": 0.9})
    build_report(header, {"predicted_bmd": 0.8, "bmd_lower": 0.7, "bmd_upper": 0.9,
                          "t_score": -1.0, "who_category": "normal", "refer": False}, card)


def _encoded_reports(writer, sources, results, sites, imputed):
    """Write the outputs of a batch (:meth:`ReportWriter.write`) and return each Structured
    Report encoded as a DICOM file (bytes): run in the report process."""
    from pydicom.filebase import DicomBytesIO

    encoded = []
    for report in writer.write(sources, results, sites=sites, imputed=imputed):
        buffer = DicomBytesIO()
        report.save_as(buffer, enforce_file_format=True)
        encoded.append(buffer.getvalue())
    return encoded


def _metadata_table(path, fields):
    """``{key column: {value: {field: value}}}`` of a metadata CSV keyed by
    AccessionNumber and/or PatientID."""
    if not Path(path).is_file():
        raise MissingFileError(f"--metadata {path} not found")
    table = pd.read_csv(path, encoding="utf-8-sig", dtype={"PatientID": str,
                                                           "AccessionNumber": str})
    keys = [k for k in ("AccessionNumber", "PatientID") if k in table.columns]
    if not keys:
        raise InputError(f"--metadata {path} needs a PatientID or AccessionNumber column")
    useful = [c for c in fields if c in table.columns]
    if not useful:
        raise InputError(f"--metadata {path} has none of the model's columns {fields}")
    return {key: {str(value): row for value, row in
                  zip(table[key], table[useful].to_dict(orient="records"))}
            for key in keys}
