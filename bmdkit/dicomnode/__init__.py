"""bmdkit as a DICOM citizen: Structured Reports, FHIR Observations and a Storage SCP node.

- :mod:`~bmdkit.dicomnode.card`: what a saved model says about itself (name,
  version, training summary) and the deterministic UIDs of its reports.
- :mod:`~bmdkit.dicomnode.sr`: a DICOM Structured Report (TID 1500 Measurement
  Report, built with highdicom) per prediction, one measurement group per site.
- :mod:`~bmdkit.dicomnode.overlay`: a Secondary Capture of the saliency map over
  the film.
- :mod:`~bmdkit.dicomnode.fhir`: a FHIR Observation per prediction (fhir.resources).
- :mod:`~bmdkit.dicomnode.outputs`: the reports of predicted rows, written to folders;
  what ``bmdkit predict --sr-dir/--fhir-dir/--overlay`` and the node share.
- :mod:`~bmdkit.dicomnode.node`: ``bmdkit serve``, a pynetdicom Storage SCP that
  answers every hip radiograph it receives with a Structured Report.

Everything here needs the ``dicom-node`` extra (highdicom, pynetdicom,
fhir.resources); importing this package loads none of it.
RESEARCH USE ONLY: the reports say so, and are not a medical device's output.
"""

from __future__ import annotations

__all__ = ["RESEARCH_STATEMENT", "require_extra"]

#: The statement every report carries.
RESEARCH_STATEMENT = (
    "RESEARCH USE ONLY - NOT A MEDICAL DEVICE. Bone mineral density estimated from a plain "
    "radiograph by a machine-learning model (bmdkit); it is not a DXA measurement and must "
    "not be used for diagnosis or treatment decisions. Refer to DXA for a diagnosis.")


def require_extra(feature):
    """Import highdicom, pynetdicom and fhir.resources, or raise
    :class:`bmdkit.extras.MissingExtraError` naming the ``dicom-node`` extra."""
    from bmdkit.extras import MissingExtraError

    for module in ("highdicom", "pynetdicom", "fhir.resources"):
        try:
            __import__(module)
        except ModuleNotFoundError:
            raise MissingExtraError("dicom-node", feature, module) from None
