"""A FHIR Observation per prediction (fhir.resources, FHIR R5), for sites that integrate by FHIR.

The Observation's code is the LOINC code of the site's DXA bone density
(:data:`bmdkit.dicomnode.sr.SITE_CODES`), its value the estimate in UCUM
``g/cm2``; a note and the method say that it is an estimate from a plain
radiograph by a research model, not a DXA measurement. A conformal model's
interval is the ``referenceRange`` (low/high, its text naming the level);
T-score, WHO category and the referral flag are components. The patient and
the study are referenced by identifier (PatientID, StudyInstanceUID), the
source image by its SOP Instance UID in ``derivedFrom``. Several sites: the
first site is the value, every site's BMD also a component.
"""

from __future__ import annotations

__all__ = ["build_observation"]

_LOINC = "http://loinc.org"
_UCUM = "http://unitsofmeasure.org"
_SCT = "http://snomed.info/sct"
_LOCAL = "urn:bmdkit:codes"


def _concept(system, code, display):
    from fhir.resources.codeableconcept import CodeableConcept
    from fhir.resources.coding import Coding

    return CodeableConcept(coding=[Coding(system=system, code=code, display=display)],
                           text=display)


def _g_cm2(value):
    from fhir.resources.quantity import Quantity

    return Quantity(value=round(float(value), 6), unit="g/cm2", system=_UCUM, code="g/cm2")


def _effective(source):
    date, time = str(source.get("StudyDate", "") or ""), str(source.get("StudyTime", "") or "")
    if len(date) != 8:
        return None
    stamp = f"{date[:4]}-{date[4:6]}-{date[6:]}"
    if len(time) >= 6 and time[:6].isdigit():
        stamp += f"T{time[:2]}:{time[2:4]}:{time[4:6]}Z"
    return stamp


def build_observation(source, result, card, *, sites=(), imputed=()):
    """The Observation of one prediction on the image ``source`` (arguments as
    :func:`bmdkit.dicomnode.sr.build_report`); a ``fhir.resources`` Observation."""
    from fhir.resources.annotation import Annotation
    from fhir.resources.identifier import Identifier
    from fhir.resources.observation import (
        Observation,
        ObservationComponent,
        ObservationReferenceRange,
    )
    from fhir.resources.reference import Reference

    from bmdkit.dicomnode import RESEARCH_STATEMENT
    from bmdkit.dicomnode.card import derived_uid
    from bmdkit.dicomnode.sr import SITE_CODES, WHO_CODES, site_values

    per_site = site_values(result, sites)
    first = next(iter(per_site))
    values = per_site[first]
    (bmd_code, bmd_meaning), (t_code, t_meaning), _ = SITE_CODES.get(
        first, ((None, None), (None, None), None))
    code = (_concept(_LOINC, bmd_code, bmd_meaning) if bmd_code
            else _concept(_LOCAL, f"BMD-{first}", f"{first} bone mineral density"))
    code.text = f"{first.replace('_', ' ')} BMD estimated from a radiograph"
    components = []
    if "t_score" in values:
        components.append(ObservationComponent(
            code=_concept(_LOINC, t_code, t_meaning),
            valueQuantity={"value": round(float(values["t_score"]), 4), "unit": "T-score",
                           "system": _UCUM, "code": "{T-score}"}))
    if "who_category" in values:
        who_code, who_meaning = WHO_CODES[values["who_category"]]
        components.append(ObservationComponent(
            code=_concept(_LOCAL, "WHO-CATEGORY", "WHO category of estimated T-score"),
            valueCodeableConcept=_concept(_SCT, who_code, who_meaning)))
    if "refer" in values or "refer" in result:
        components.append(ObservationComponent(
            code=_concept(_LOCAL, "REFER-DXA", "Referral to DXA: interval contains a "
                                               "screening threshold"),
            valueBoolean=bool(values.get("refer", result.get("refer")))))
    for site, other in list(per_site.items())[1:]:
        components.append(ObservationComponent(
            code=_concept(_LOCAL, f"BMD-{site}", f"{site.replace('_', ' ')} BMD estimate"),
            valueQuantity=_g_cm2(other["predicted_bmd"])))
    ranges = []
    if "bmd_lower" in values or "bmd_upper" in values:  # an infinite bound is left out
        level = f"{card.conformal['confidence']:.0%} " if card.conformal else ""
        ranges.append(ObservationReferenceRange(
            low=_g_cm2(values["bmd_lower"]) if "bmd_lower" in values else None,
            high=_g_cm2(values["bmd_upper"]) if "bmd_upper" in values else None,
            text=f"{level}conformal prediction interval of the estimate (not a normal range)"))
    notes = [RESEARCH_STATEMENT,
             f"Model: {card.name} {card.version}; " + "; ".join(card.summary)]
    if imputed:
        notes.append(f"Imputed metadata fields (not in the image header): {', '.join(imputed)}")
    return Observation(
        id=derived_uid(source.SOPInstanceUID, card.checksum, "fhir").removeprefix("2.25."),
        status="preliminary",
        category=[_concept("http://terminology.hl7.org/CodeSystem/observation-category",
                           "imaging", "Imaging")],
        code=code,
        subject=Reference(identifier=Identifier(value=str(source.get("PatientID", ""))
                                                or "unknown"), display="patient"),
        effectiveDateTime=_effective(source),
        valueQuantity=_g_cm2(values["predicted_bmd"]),
        method=_concept(_LOCAL, "RADIOGRAPH-ESTIMATE",
                        "Estimated from plain radiograph by machine-learning model"),
        derivedFrom=[Reference(identifier=Identifier(
            system="urn:dicom:uid", value=f"urn:oid:{source.SOPInstanceUID}"),
            display=f"source image of study urn:oid:{source.StudyInstanceUID}")],
        device=Reference(display=f"{card.name} {card.version}"[:200]),
        referenceRange=ranges or None, component=components or None,
        note=[Annotation(text=text) for text in notes])
