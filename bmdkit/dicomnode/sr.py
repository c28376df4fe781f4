"""A DICOM Structured Report per prediction: a TID 1500 Measurement Report built with highdicom.

The report (Comprehensive 3D SR) sits in the source image's patient and
study, lists the source image in its evidence (Current Requested Procedure
Evidence) and references it in the content tree (in each measurement group
and each measurement). Per site, one measurement group (TID 1501) holds:

- the estimated BMD (UCUM ``g/cm2``), the LOINC code of that site's DXA bone
  density, method "estimated from a plain radiograph" (not DXA);
- with a conformal model, the interval's lower and upper bound (g/cm2);
- the T-score (UCUM ``{T-score}``; interval bounds too) and the WHO category
  (SNOMED CT) where the site has a T-score reference;
- the referral flag (refer to DXA: the interval contains a screening
  threshold), SNOMED CT Yes/No;
- the model's name, version and training summary (algorithm identification).

The root also holds a "Qualitative Evaluations" container with the research
use statement and, where the header lacked metadata, the imputed fields.
Codes that no standard vocabulary offers use the local scheme ``99BMDKIT``.
"""

from __future__ import annotations

import math

__all__ = ["SITE_CODES", "build_report", "site_values"]

#: Per site: (LOINC BMD code, meaning), (LOINC T-score code, meaning), SNOMED CT finding site.
SITE_CODES = {
    "femoral_neck": (("24701-5", "Femur DXA Bone density"),
                     ("38263-0", "DXA Femur [T-score] Bone density"),
                     "BoneStructureOfProximalFemur"),
    "total_hip": (("24701-5", "Femur DXA Bone density"),
                  ("38263-0", "DXA Femur [T-score] Bone density"), "Hip"),
    "lumbar_spine": (("24966-4", "DXA Lumbar spine [Mass/Area] Bone density"),
                     ("38267-1", "DXA Lumbar spine [T-score] Bone density"), "LumbarSpine"),
}
#: WHO category -> SNOMED CT (code, meaning).
WHO_CODES = {"osteoporosis": ("64859006", "Osteoporosis"),
             "osteopenia": ("312894000", "Osteopenia"),
             "normal": ("17621005", "Normal")}
_LOCAL = "99BMDKIT"


def _local(value, meaning):
    from highdicom.sr import CodedConcept

    return CodedConcept(value, _LOCAL, meaning)


def site_values(result, sites):
    """``{site: {column: value}}`` from one row of ``bmdkit predict``'s result columns
    (infinite interval bounds left out).

    Examples
    --------
    >>> site_values({"predicted_bmd": 0.8, "t_score": -1.2, "bmd_lower": float("-inf")}, [])
    {'femoral_neck': {'predicted_bmd': 0.8, 't_score': -1.2}}
    >>> site_values({"total_hip/predicted_bmd": 0.9, "refer": False}, ["total_hip"])
    {'total_hip': {'predicted_bmd': 0.9}}
    """
    if not sites:
        return {"femoral_neck": _finite(result)}
    return {site: _finite({column.partition("/")[2]: value for column, value in result.items()
                           if column.startswith(f"{site}/")}) for site in sites}


def _finite(values):
    """``values`` without infinite bounds (a conformal interval too wide for its calibration
    rows is unbounded): such a bound is left out of the report."""
    return {k: v for k, v in values.items()
            if not (isinstance(v, float) and math.isinf(v))}


def _measurement(name, value, unit, source, method):
    from highdicom.sr import Measurement

    return Measurement(name=name, value=float(value), unit=unit, method=method)


def _group(source, site, values, card, confidence, tracking):
    from highdicom.sr import (
        AlgorithmIdentification,
        CodedConcept,
        FindingSite,
        MeasurementsAndQualitativeEvaluations,
        QualitativeEvaluation,
        SourceImageForMeasurementGroup,
        TrackingIdentifier,
    )
    from pydicom.sr.codedict import codes

    (bmd_code, bmd_meaning), (t_code, t_meaning), where = SITE_CODES.get(
        site, ((None, None), (None, None), None))
    label = site.replace("_", " ")
    algorithm = AlgorithmIdentification(name=card.name[:64], version=card.version[:64],
                                        parameters=list(card.summary))
    g_cm2 = CodedConcept("g/cm2", "UCUM", "gram per square centimeter")
    bmd_name = (CodedConcept(bmd_code, "LN", bmd_meaning) if bmd_code
                else _local(f"BMD-{site}", f"{label} bone mineral density"))
    method = _local("RADIOGRAPH-ESTIMATE",
                    "Estimated from plain radiograph by machine-learning model")
    measurements = [_measurement(bmd_name, values["predicted_bmd"], g_cm2, source, method)]
    level = f"{confidence:.0%} " if confidence else ""
    for column, word in (("bmd_lower", "Lower"), ("bmd_upper", "Upper")):
        if column in values:
            measurements.append(_measurement(
                _local(f"BMD-{column.upper()}", f"{word} bound, {level}prediction interval, BMD"),
                values[column], g_cm2, source, method))
    t_unit = CodedConcept("{T-score}", "UCUM", "T-score")
    if "t_score" in values:
        measurements.append(_measurement(CodedConcept(t_code, "LN", t_meaning),
                                         values["t_score"], t_unit, source, method))
        for column, word in (("t_score_lower", "Lower"), ("t_score_upper", "Upper")):
            if column in values:
                measurements.append(_measurement(
                    _local(f"T-{column.upper()}", f"{word} bound, {level}prediction interval, "
                                                   "T-score"),
                    values[column], t_unit, source, method))
    evaluations = []
    if "who_category" in values:
        code, meaning = WHO_CODES[values["who_category"]]
        evaluations.append(QualitativeEvaluation(
            _local("WHO-CATEGORY", "WHO category of estimated T-score"),
            CodedConcept(code, "SCT", meaning)))
    if "refer" in values:
        evaluations.append(QualitativeEvaluation(
            _local("REFER-DXA", "Referral to DXA: interval contains a screening threshold"),
            codes.SCT.Yes if bool(values["refer"]) else codes.SCT.No))
    return MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=tracking, identifier=f"{label} BMD estimate"),
        finding_type=_local("BMD", "Bone mineral density"),
        algorithm_id=algorithm,
        finding_sites=[FindingSite(getattr(codes.SCT, where))] if where else None,
        measurements=measurements, qualitative_evaluations=evaluations or None,
        source_images=[SourceImageForMeasurementGroup.from_source_image(source)])


def _statements(texts):
    """The root's "Qualitative Evaluations" container (TID 1500) holding ``texts``."""
    from highdicom.sr import CodedConcept, ContainerContentItem, TextContentItem
    from highdicom.sr.enum import RelationshipTypeValues
    from highdicom.sr.value_types import ContentSequence

    container = ContainerContentItem(
        name=CodedConcept("C0034375", "UMLS", "Qualitative Evaluations"),
        relationship_type=RelationshipTypeValues.CONTAINS)
    container.ContentSequence = ContentSequence(
        [TextContentItem(name=_local(key, meaning), value=text[:1024],
                         relationship_type=RelationshipTypeValues.CONTAINS)
         for key, meaning, text in texts], is_root=False)
    return container


def build_report(source, result, card, *, sites=(), imputed=(), series_number=9501):
    """The Structured Report of one prediction on the image ``source``.

    Parameters
    ----------
    source : pydicom.Dataset
        The radiograph (its header is enough: the pixels are not copied).
    result : dict
        One row of ``bmdkit predict``'s result columns (``predicted_bmd``,
        ``t_score``, ``who_category``, with a conformal model ``bmd_lower``,
        ``bmd_upper``, ``t_score_lower``, ``t_score_upper``, ``refer``; per
        site ``"<site>/<column>"`` for a model of several sites).
    card : ModelCard
        The model (:meth:`ModelCard.from_folder`).
    sites : sequence of str
        The model's sites (empty: the femoral neck alone).
    imputed : sequence of str
        Metadata fields the header lacked, imputed as in training.
    series_number : int

    Returns
    -------
    highdicom.sr.Comprehensive3DSR
        Its SOP Instance UID is determined by the source's UID and the
        model (:func:`bmdkit.dicomnode.card.derived_uid`).
    """
    from highdicom.sr import (
        Comprehensive3DSR,
        DeviceObserverIdentifyingAttributes,
        MeasurementReport,
        ObservationContext,
        ObserverContext,
    )
    from pydicom.dataset import Dataset
    from pydicom.sr.codedict import codes

    from bmdkit.dicomnode import RESEARCH_STATEMENT
    from bmdkit.dicomnode.card import derived_uid

    source_uid = str(source.SOPInstanceUID)
    confidence = card.conformal["confidence"] if card.conformal else None
    groups = [_group(source, site, values, card, confidence,
                     derived_uid(source_uid, card.checksum, site))
              for site, values in site_values(result, sites).items()]
    observer = ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=derived_uid(card.checksum), name="bmdkit", manufacturer_name="bmdkit",
            model_name=card.name[:64]))
    report = MeasurementReport(observation_context=ObservationContext(
                                   observer_device_context=observer),
                               procedure_reported=codes.cid100.XRUnspecifiedBodyRegion,
                               imaging_measurements=groups)
    texts = [("RESEARCH-USE", "Research use statement", RESEARCH_STATEMENT),
             ("TRAINING", "Model training summary",
              f"{card.name} {card.version}; " + "; ".join(card.summary))]
    if imputed:
        texts.append(("IMPUTED", "Imputed metadata fields",
                      "not in the image header nor the metadata table, imputed as in "
                      f"training: {', '.join(imputed)}"))
    report[0].ContentSequence.append(_statements(texts))
    document = Comprehensive3DSR(
        evidence=[source], content=report[0],
        series_instance_uid=derived_uid(source.StudyInstanceUID, card.checksum, "sr-series"),
        series_number=series_number,
        sop_instance_uid=derived_uid(source_uid, card.checksum, "sr"),
        instance_number=int(source.get("InstanceNumber") or 1),
        manufacturer="bmdkit", manufacturer_model_name=card.name[:64],
        software_versions=card.version[:64],
        series_description="BMD estimate - RESEARCH USE ONLY", is_complete=True)
    scheme = Dataset()  # the local coding scheme, declared (PS3.3 C.12.1.1.2)
    scheme.CodingSchemeDesignator, scheme.CodingSchemeName = _LOCAL, "bmdkit local codes"
    scheme.CodingSchemeResponsibleOrganization = "bmdkit"
    document.CodingSchemeIdentificationSequence = [scheme]
    return document
