"""``bmdkit serve``: a DICOM node answering each hip radiograph with a Structured Report.

The work is :class:`bmdkit.dicomnode.node.DicomNode`; this module parses the
options, logs to stderr and stops the node on SIGTERM or Ctrl-C (after
answering what its queue holds).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["add_parser", "run_serve"]


def add_parser(subparsers):
    """Register ``bmdkit serve``."""
    parser = subparsers.add_parser(
        "serve", help="run a DICOM node that answers hip radiographs with Structured Reports",
        description="Listen for DICOM C-STORE (a Storage SCP), predict femoral neck BMD for "
                    "every CR/DX hip or pelvis radiograph received, and answer each with a "
                    "DICOM Structured Report (BMD, interval, T-score, WHO category, referral, "
                    "the model and a reference to the image), sent to --forward by C-STORE "
                    "and/or written to --sr-dir. Metadata come from the header (PatientAge, "
                    "PatientSex, PatientSize, PatientWeight), fields it lacks from --metadata, "
                    "else they are imputed and named in the report and the log "
                    "(--require-metadata refuses such films). Every object is written to "
                    "the --queue folder before it is acknowledged; the queue is resumed "
                    "after a restart. Objects the node cannot use get a failure status. "
                    "SIGTERM answers the queue and exits. RESEARCH USE ONLY: not a medical "
                    "device. Needs the dicom-node extra; see docs/clinical-integration.md.")
    parser.add_argument("--model", required=True, help="folder of a model saved by bmdkit fit")
    parser.add_argument("--port", type=int, default=11112,
                        help="TCP port to listen on (default: %(default)s)")
    parser.add_argument("--ae-title", default="BMDKIT",
                        help="this node's AE title (default: %(default)s)")
    parser.add_argument("--host", default="0.0.0.0",
                        help="address to listen on (default: %(default)s, every interface)")
    parser.add_argument("--forward", metavar="HOST:PORT:AET",
                        help="send each Structured Report there by C-STORE (e.g. the PACS)")
    parser.add_argument("--sr-dir", type=Path, metavar="DIR",
                        help="also write each Structured Report to DIR")
    parser.add_argument("--fhir-dir", type=Path, metavar="DIR",
                        help="also write a FHIR Observation (JSON) per image to DIR")
    parser.add_argument("--metadata", type=Path, metavar="CSV",
                        help="model inputs for films whose header lacks them, one row per "
                             "PatientID or AccessionNumber (a column of that name)")
    parser.add_argument("--require-metadata", action="store_true",
                        help="refuse films lacking any metadata field instead of imputing it")
    parser.add_argument("--queue", type=Path, default=Path("bmdkit-queue"), metavar="DIR",
                        help="disk queue of received objects (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="queued images predicted together (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes decoding images and building reports while the "
                             "network predicts; 0 does both in the node's predicting thread "
                             "(default: one per core, %(default)s here)")
    parser.add_argument("--device", help="torch device, e.g. cuda (default: the saved one)")
    parser.set_defaults(func=run_serve)
    return parser


def run_serve(args):
    import logging
    import signal
    import threading

    from bmdkit.dicomnode.node import DicomNode
    from bmdkit.errors import ParameterError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s "
                                                   "%(message)s")
    for noisy in ("pynetdicom", "highdicom"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.forward is None and args.sr_dir is None:
        raise ParameterError("give --forward and/or --sr-dir: where the reports go")
    node = DicomNode(args.model, queue_dir=args.queue, ae_title=args.ae_title, port=args.port,
                     host=args.host, forward=args.forward, sr_dir=args.sr_dir,
                     fhir_dir=args.fhir_dir, metadata=args.metadata,
                     require_metadata=args.require_metadata, batch_size=args.batch_size,
                     workers=args.workers, device=args.device)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    node.start()
    while not stop.wait(1.0):
        pass
    node.stop()
