"""The differential searches: hand-written cases for every feature plus cases generated from the corpus.

A case is (resource type, raw query string). The query is split on ``&`` and the first ``=``
without URL-decoding, so FHIR escapes (``\\,`` ``\\|`` ``\\$``) reach the server as written.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"

HAND: list[tuple[str, str]] = [
    # --- string: default starts-with, :exact, :contains, accents/case, OR, AND, missing
    ("Patient", "family=har"), ("Patient", "family=HARTMANN"), ("Patient", "family:exact=Hartmann"),
    ("Patient", "family:exact=hartmann"), ("Patient", "family:contains=an"), ("Patient", "name=adal"),
    ("Patient", "name=Chalmers"), ("Patient", "given=peter,james"), ("Patient", "given=pet&family=cha"),
    ("Patient", "address-city=bos"), ("Patient", "address=Massachusetts"), ("Patient", "address-postalcode=02"),
    ("Patient", "address-state=MA"), ("Patient", "address:contains=street"), ("Patient", "family:missing=true"),
    ("Patient", "family:missing=false"), ("Patient", "phonetic=har"), ("Practitioner", "name=dr"),
    ("Practitioner", "family:contains=on"), ("Organization", "name=health"), ("Practitioner", "family=rodrigez"),
    ("Organization", "name:exact=Gastroenterology"), ("Organization", "name=Burgers UMC Ear\\,Nose"),
    ("Organization", "name:contains=hospital"),
    ("Organization", "address-city=boston"), ("Location", "name=south"), ("Patient", "name:contains=ette"),
    ("Condition", "code:text=viral"), ("Observation", "code:text=body"), ("Observation", "code:text=glucose"),
    ("Medication", "code:text=ami"), ("Patient", "given:exact=Peter"), ("Patient", "name=José"),
    ("Practitioner", "name=rodrigez"), ("Practitioner", "family=RODRÍGEZ"),  # the corpus' "Rodrígez", accent-blind
    # the corpus' edge resources (corpus.edge_resources): features the real data never exercises
    ("Patient", "name=jose"), ("Patient", "family=NUNEZ"), ("Patient", "identifier=urn:edge|a\\|b"),
    ("Patient", "identifier=urn:edge|x\\$y"), ("Patient", "_source=http://hospital.example/ehr#feed1"),
    ("Observation", "code=|edge-local-1"), ("CarePlan", "activity-date=2030-05-01"),
    ("CarePlan", "activity-date=gt2030-01-01"),
    ("Observation", "encounter.subject:Patient.general-practitioner:Practitioner.name=careful"),  # three levels
    ("Patient", "family=Windsor,Chalmers"), ("Patient", "name=van"),
    # --- token: all forms, :not, :text, :of-type, :missing, booleans, codes
    ("Patient", "gender=male"), ("Patient", "gender=female"), ("Patient", "gender:not=male"),
    ("Patient", "gender:missing=true"), ("Patient", "active=true"), ("Patient", "active=false"),
    ("Patient", "active:missing=true"), ("Patient", "identifier=12345"),
    ("Patient", "identifier=urn:oid:1.2.36.146.595.217.0.1|12345"),
    ("Patient", "identifier=http://hospital.smarthealthit.org|"),
    ("Patient", "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|12345"),
    ("Patient", "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|SS|999-34-1111"),
    ("Observation", "code=8302-2"), ("Observation", f"code={LOINC}|8302-2"), ("Observation", "code=|8302-2"),
    ("Observation", f"code={LOINC}|"), ("Observation", f"code={LOINC}|8302-2,{LOINC}|29463-7"),
    ("Observation", "code:not=8302-2&category=vital-signs"),
    ("Observation", "category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"),
    ("Observation", "category=survey"), ("Observation", "status=final"), ("Observation", "status:not=final"),
    ("Observation", "status=amended,cancelled"), ("Observation", "code:missing=true"),
    ("Observation", "data-absent-reason:missing=false"), ("Observation", "value-concept=http://snomed.info/sct|"),
    ("Observation", "combo-code=8480-6"), ("Observation", "component-code=8462-4"),
    # combo-* rows are the code/component rows (fhir_server/search/shared_rows.py): every form of them
    ("Observation", "combo-code=8867-4"), ("Observation", "combo-code:not=8480-6&category=vital-signs"),
    ("Observation", "combo-code:missing=true"), ("Observation", "combo-code:text=blood"),
    ("Observation", "combo-code:text=pressure"), ("Observation", "combo-data-absent-reason:missing=false"),
    ("Observation", "combo-value-concept=http://snomed.info/sct|"), ("Observation", "combo-value-quantity=lt5"),
    ("Observation", "combo-value-concept:missing=false"), ("Patient", "phonetic=ma"), ("Organization", "name=ACME"),
    ("Encounter", "class=AMB"), ("Encounter", "class=http://terminology.hl7.org/CodeSystem/v3-ActCode|EMER"),
    ("Encounter", "status=finished"), ("Encounter", "type=185345009"), ("Condition", "clinical-status=active"),
    ("Condition", "clinical-status:not=active"), ("Condition", "code=444814009"),
    ("Condition", "verification-status=confirmed"), ("Immunization", "vaccine-code=140"),
    ("Immunization", "status=completed"), ("MedicationRequest", "status=active"),
    ("MedicationRequest", "intent=order"), ("AllergyIntolerance", "criticality=low"),
    ("AllergyIntolerance", "type=allergy"), ("Claim", "use=claim"), ("Patient", "_id=example,pat1"),
    ("Condition", "_security=TBOO"), ("Observation", "_tag:missing=false"),
    ("Patient", "email=p.heuvel@gmail.com"), ("Patient", "phone=0648352638"), ("Patient", "telecom:missing=true"),
    ("Patient", "language=nl"), ("Procedure", "code=http://snomed.info/sct|"), ("Goal", "lifecycle-status=active"),
    ("CarePlan", "status=active,completed"), ("DiagnosticReport", "code=51990-0"), ("Patient", "_security=TBOO"),
    ("Observation", "identifier=urn:ietf:rfc:3986|urn:uuid:187e0c12-8dd2-67e2-99b2-bf273c878281"),
    # --- terminology modifiers (official vital-signs value set, condition-clinical hierarchy)
    ("Observation", "code:in=http://hl7.org/fhir/ValueSet/observation-vitalsignresult"),
    ("Observation", "code:not-in=http://hl7.org/fhir/ValueSet/observation-vitalsignresult&category=vital-signs"),
    ("Condition", "clinical-status:below=http://terminology.hl7.org/CodeSystem/condition-clinical|inactive"),
    ("Condition", "clinical-status:below=http://terminology.hl7.org/CodeSystem/condition-clinical|active"),
    ("Condition", "clinical-status:above=http://terminology.hl7.org/CodeSystem/condition-clinical|resolved"),
    # --- reference: Type/id, id, :Type, absolute URL, :identifier, :missing
    ("Observation", "subject=Patient/example"), ("Observation", "subject=example"),
    ("Observation", "subject:Patient=example"), ("Observation", "subject:Group=example"),
    ("Observation", "patient=Patient/ba18818d-faef-44cd-9744-b12d8973d402"),
    ("Observation", "patient=ba18818d-faef-44cd-9744-b12d8973d402,39cc9d76-0952-4ded-9b39-b97d1e43b9cf"),
    ("Observation", "subject:missing=true"), ("Observation", "performer:missing=false"),
    ("Observation", "encounter:missing=false&category=vital-signs"),
    ("Observation", "performer=Practitioner/f201"), ("Observation", "has-member:missing=false"),
    ("Observation", "derived-from:missing=false"), ("Patient", "general-practitioner=Practitioner/example"),
    ("Patient", "organization=Organization/1"), ("Patient", "link:missing=false"),
    ("Encounter", "subject:missing=true"), ("Encounter", "patient=Patient/example"),
    ("Condition", "subject=Patient/f201"), ("DiagnosticReport", "result:missing=false"),
    ("MedicationRequest", "medication=Medication/med0316"), ("MedicationRequest", "requester:missing=false"),
    ("Provenance", "target=Procedure/example/_history/1"), ("Provenance", "target:missing=false"),
    ("AuditEvent", "agent=Practitioner/xcda-author"), ("Observation", "subject:identifier=urn:oid:1.2.3|ABC"),
    ("Immunization", "patient=Patient/example"),
    ("Coverage", "policy-holder=http://benefitsinc.com/FHIR/Organization/CBI35"),
    ("MessageHeader", "receiver=http://acme.com/ehr/fhir/Practitioner/2323-33-4"),
    ("AuditEvent", "agent:identifier=urn:oid:2.16.840.1.113883.4.2|2.16.840.1.113883.4.2"),
    ("AuditEvent", "entity:identifier=What.id"), ("Observation", "subject=Patient/example/_history/2"),
    ("Claim", "patient:missing=false"),
    ("List", "subject=Patient/example"), ("Observation", "focus:missing=false"),
    # --- date: prefixes, precision, periods, instants, timings
    ("Patient", "birthdate=1949"), ("Patient", "birthdate=1949-11"), ("Patient", "birthdate=1949-11-29"),
    ("Patient", "birthdate=gt2000"), ("Patient", "birthdate=ge2000-10-22"), ("Patient", "birthdate=lt1950"),
    ("Patient", "birthdate=le1949-06-09"), ("Patient", "birthdate=ne1949"), ("Patient", "birthdate=sa1960"),
    ("Patient", "birthdate=eb1950-01-01"), ("Patient", "birthdate=ap1950"),
    ("Patient", "birthdate=ge1940&birthdate=lt1960"), ("Patient", "birthdate=lt1920,gt2000"),
    ("Patient", "birthdate:missing=true"), ("Patient", "death-date:missing=false"),
    ("Observation", "date=2015"), ("Observation", "date=ge2019-01-01&category=laboratory"),
    ("Observation", "date=lt2000"), ("Observation", "date=2016-11"), ("Observation", "date=sa2020-01-01"),
    ("Observation", "date=eb1990"), ("Observation", "date=gt2012-09-17T09:00:00Z"),
    ("Observation", "date=le2012-09-17T09:30:00%2B01:00"), ("Observation", "date=2012-09"),
    ("Observation", "date:missing=true"), ("Encounter", "date=2010"), ("Encounter", "date=ge2018-06"),
    ("Encounter", "date=lt1990-01-01"), ("Encounter", "date=sa2015-01-01&date=eb2016-01-01"),
    ("Encounter", "date=ne2015"), ("Condition", "onset-date=lt2000"), ("Condition", "onset-date=ge2010"),
    ("Condition", "abatement-date:missing=false"), ("Condition", "recorded-date=ge2012"),
    ("Procedure", "date=2014"), ("Procedure", "date=gt2018-03-01"), ("Immunization", "date=ge2019"),
    ("Immunization", "date=2015-08"), ("MedicationRequest", "authoredon=ge2015"), ("CarePlan", "date=ge2019"),
    ("CarePlan", "date=lt2000"), ("DiagnosticReport", "date=ge2018"), ("DiagnosticReport", "issued=ge2018"),
    ("AllergyIntolerance", "date=ge2000"), ("Claim", "created=ge2018"), ("Goal", "start-date:missing=false"),
    ("MedicationAdministration", "effective-time=2015-01-15"), ("ServiceRequest", "authored=ge2014"),
    ("RiskAssessment", "date=ge2006"), ("Task", "authored-on=2016"), ("Appointment", "date=2013-12"),
    ("Coverage", "_id=9876B1"), ("Observation", "date=ap2012-09-17"),
    ("ServiceRequest", "occurrence=2013-05-08"), ("ServiceRequest", "occurrence=ge2014"),
    ("CarePlan", "activity-date:missing=false"), ("AuditEvent", "date=lt2013-06-20T23:42:24Z"),
    ("Patient", "_tag=synthea-5-2019"),
    ("Observation", "_tag=https://smarthealthit.org/tags|synthea-5-2019&code=8302-2"),
    ("DiagnosticReport", "issued=ge2013-05-15T19:32:52%2B01:00"), ("Encounter", "date=ge2019-05-01T10:00:00-05:00"),
    # --- number
    ("RiskAssessment", "probability=ap0.02"), ("RiskAssessment", "probability=ne0.02"),
    ("RiskAssessment", "probability:missing=true"),
    ("RiskAssessment", "probability=gt0.5"), ("RiskAssessment", "probability=lt0.1"),
    ("RiskAssessment", "probability=0.02"), ("RiskAssessment", "probability=0.0004"),
    ("MolecularSequence", "variant-start=lt30000"), ("MolecularSequence", "window-start=ge20000"),
    ("ChargeItem", "factor-override=gt0.5"), ("Encounter", "length=gt0"), ("ClaimResponse", "_id=R3500"),
    ("ImagingStudy", "_id=example"),
    # --- quantity: prefixes, units, UCUM canonical conversions
    ("Observation", f"value-quantity=gt100|{UCUM}|mg/dL"), ("Observation", f"value-quantity=lt1|{UCUM}|g/L"),
    ("Observation", f"value-quantity=gt80000|{UCUM}|g"), ("Observation", f"value-quantity=gt80|{UCUM}|kg"),
    ("Observation", f"value-quantity=le0.07|{UCUM}|kg"), ("Observation", f"value-quantity=ge1.8|{UCUM}|m"),
    ("Observation", f"value-quantity=lt100|{UCUM}|cm"), ("Observation", "value-quantity=gt200"),
    ("Observation", "value-quantity=lt5||mmol/L"), ("Observation", f"value-quantity=ge6|{UCUM}|%"),
    ("Observation", "value-quantity=ne0"), ("Observation", "value-quantity=ap100"),
    ("Observation", "value-quantity=lt80&code=2339-0"), ("Observation", "value-quantity:missing=true"),
    ("Observation", f"value-quantity=gt0.09|{UCUM}|g/dL&code=2339-0"),
    ("Observation", "component-value-quantity=gt120"), ("Observation", "component-value-quantity=lt80|"
                                                                       f"{UCUM}|mm[Hg]"),
    ("Observation", "combo-value-quantity=gt100"),
    # --- uri
    ("Questionnaire", "url=http://hl7.org/fhir/Questionnaire/3141"),
    ("PlanDefinition", "url:below=http://example.org"), ("Library", "url:below=http://ohie.org"),
    ("ActivityDefinition", "url=http://motivemi.com/artifacts/ActivityDefinition/citalopramPrescription"),
    ("Measure", "url:below=http://hl7.org/fhir/Measure"), ("Observation", "_profile="
                                                                          "http://hl7.org/fhir/StructureDefinition/vitalsigns"),
    ("Observation", "_profile:below=http://hl7.org/fhir/StructureDefinition/"),
    ("Questionnaire", "_profile:missing=false"),
    ("ActivityDefinition", "url:above=http://example.org/ActivityDefinition/"
                                                                "provide-mosquito-prevention-advice/x"),
    ("Patient", "_source:missing=false"), ("Patient", "_profile:missing=false"),
    ("Condition", "_profile=http://hl7.org/fhir/us/core/StructureDefinition/us-core-condition"),
    # --- composite
    ("Observation", f"code-value-quantity={LOINC}|29463-7$gt80|{UCUM}|kg"),
    ("Observation", "code-value-quantity=29463-7$lt50"), ("Observation", f"code-value-quantity={LOINC}|2339-0$ge90"),
    ("Observation", f"component-code-value-quantity={LOINC}|8480-6$gt140"),
    ("Observation", "component-code-value-quantity=8462-4$lt70|http://unitsofmeasure.org|mm[Hg]"),
    ("Observation", "combo-code-value-quantity=8480-6$gt130"),
    ("Observation", f"code-value-concept={LOINC}|72166-2$http://snomed.info/sct|266919005"),
    ("Observation", "code-value-date=21612-7$ge2012"),
    ("Observation", f"code-value-quantity={LOINC}|29463-7$gt80|{UCUM}|kg,{LOINC}|8302-2$lt150|{UCUM}|cm"),
    # --- escaping
    ("Patient", "family=Chalmers\\,x"), ("Observation", "code=http\\://loinc.org"),
    ("Patient", "identifier=a\\|b"), ("Patient", "name=Peter\\,James,Chalmers"),
    # --- chains (several levels) and _has (nested)
    ("Observation", "subject:Patient.name=hart"), ("Observation", "subject.name=peter"),
    ("Observation", "patient.birthdate=lt1950&code=8302-2"), ("Observation", "subject:Patient.gender=female"),
    ("Observation", "encounter.class=EMER"), ("Observation", "encounter.subject:Patient.family=Ortiz"),
    ("Observation", "encounter.service-provider.name:contains=hospital"),
    ("Observation", "encounter.participant.name=dr&code=8302-2"),
    ("Observation", "encounter.patient.general-practitioner.name=dr"),  # three links: the most allowed
    ("Patient", "general-practitioner.name=adam"), ("Patient", "general-practitioner:Practitioner.family=Careful"),
    ("Patient", "organization.name=gastro"), ("Encounter", "patient.address-city=boston"),
    ("DiagnosticReport", "result.code=2339-0"), ("DiagnosticReport", "subject:Patient.family=conroy"),
    ("Claim", "patient.name=grant&use=claim"), ("Condition", "encounter.date=ge2015"),
    ("MedicationRequest", "subject.name=peter"), ("Immunization", "patient.gender=female"),
    ("Patient", "_has:Observation:patient:code=55284-4"), ("Patient", "_has:Observation:subject:code=8302-2"),
    ("Patient", "_has:Condition:subject:code=444814009"), ("Patient", "_has:Observation:patient:status=final"),
    ("Patient", "_has:Encounter:patient:_has:Observation:encounter:code=72166-2"),
    ("Encounter", "_has:Observation:encounter:value-quantity=gt120"),
    ("Encounter", "_has:Procedure:encounter:code=http://snomed.info/sct|"),
    ("Practitioner", "_has:Encounter:participant:class=EMER"),
    ("Organization", "_has:Encounter:service-provider:status=finished"),
    ("Patient", "_has:Immunization:patient:vaccine-code=140&gender=male"),
    # --- _id, base meta parameters, _list, _text, _content
    ("Patient", "_id=ba18818d-faef-44cd-9744-b12d8973d402"), ("Observation", "_id=example,bmi,satO2"),
    ("Patient", "_list=long"), ("Observation", "_list=example"), ("Condition", "_list=example"),
    ("Patient", "_text=Peter"), ("Patient", "_text=Chalmers"), ("Observation", "_text=glucose"),
    ("Condition", "_text=asthma"), ("Patient", "_content=Massachusetts"), ("Observation", "_content=hemoglobin"),
    ("Patient", "_content=Donald"), ("Procedure", "_text=appendectomy"), ("Patient", "_text=peter,donald"),
    ("Patient", "_tag:missing=false"), ("Observation", "_tag:missing=true&code=8302-2"),
]

# --- sort orders, checked against the evaluator's sort keys (ties may come in any order)
SORTS: list[tuple[str, str]] = [
    ("Patient", "_sort=birthdate"), ("Patient", "_sort=-birthdate"), ("Patient", "_sort=family,given"),
    ("Patient", "_sort=-family"), ("Observation", "code=8302-2&_sort=date"), ("Observation", "code=8302-2&_sort=-date"),
    ("Observation", "code=29463-7&_sort=value-quantity"), ("Observation", "code=29463-7&_sort=-value-quantity"),
    ("Encounter", "_sort=-date&_count=17"), ("Condition", "_sort=code,-onset-date"),
    ("Patient", "_sort=gender,-birthdate"),
    ("Observation", "category=laboratory&_sort=-date,_id&_count=50"), ("Patient", "_sort=_id&_count=5"),
    ("Immunization", "_sort=date&_count=9"),
]

# --- _include / _revinclude (with :iterate and *): compared as sets of included (type, id)
INCLUDES: list[tuple[str, str]] = [
    ("Observation", "code=8302-2&_include=Observation:subject"),
    ("Observation", "code=8302-2&_include=Observation:subject:Patient&_include=Observation:encounter"),
    ("Observation", "_id=example,bmi&_include=Observation:*"),
    ("Patient", "family=hart&_revinclude=Observation:subject"),
    ("Patient", "_id=example&_revinclude=Observation:patient&_revinclude=Encounter:subject"),
    ("Patient", "family=ortiz&_revinclude=Encounter:patient&_revinclude:iterate=Observation:encounter"),
    ("Encounter", "class=AMB&_include=Encounter:subject&_include:iterate=Patient:organization"),
    ("MedicationRequest",
     "intent=order&_include=MedicationRequest:encounter&_include:iterate=Encounter:service-provider"),
    ("MedicationRequest", "_include=MedicationRequest:medication&_include=MedicationRequest:requester"),
    ("Patient", "_id=example&_revinclude=*:*"), ("Encounter", "_count=7&_include=Encounter:service-provider"),
    ("Observation", "code=55284-4&_count=10&_include=Observation:patient&_revinclude=DiagnosticReport:result"),
]

# --- paging: (type, query) run with a small _count; pages must be disjoint and add up
PAGES: list[tuple[str, str]] = [
    ("Observation", "category=vital-signs&_count=37"), ("Observation", "_count=250"),
    ("Encounter", "_count=40&_sort=date"), ("Observation", "code=8302-2&_count=10&_sort=-date"),
    ("Patient", "_count=3&_sort=family"), ("Claim", "_count=100&_sort=-created"),
    ("Observation", "_count=333&_sort=code"), ("Condition", "_count=1"),
]


def generated(resources: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Cases derived from the corpus: every common code, every Synthea patient, family prefixes."""
    out: list[tuple[str, str]] = []
    obs = [r for r in resources if r["resourceType"] == "Observation"]
    codes = Counter((c.get("system"), c["code"]) for r in obs for c in r.get("code", {}).get("coding", [])
                    if "code" in c)
    for (system, code), _n in codes.most_common(30):
        out.append(("Observation", f"code={system}|{code}" if system else f"code={code}"))
    for (system, code), _n in codes.most_common(60)[30:]:
        out.append(("Observation", f"code={code}&date=ge2015"))
    pats = sorted(r["id"] for r in resources if r["resourceType"] == "Patient" and len(r["id"]) == 36)
    for pid in pats:
        out.append(("Observation", f"subject=Patient/{pid}&category=vital-signs"))
        out.append(("Encounter", f"patient={pid}"))
        out.append(("Condition", f"patient=Patient/{pid}"))
    fams = sorted({n["family"][:3] for r in resources if r["resourceType"] == "Patient"
                   for n in r.get("name", []) if n.get("family")})
    out.extend(("Patient", f"family={f}") for f in fams)
    conds = Counter(c["code"] for r in resources if r["resourceType"] == "Condition"
                    for c in r.get("code", {}).get("coding", []) if "code" in c)
    out.extend(("Condition", f"code={c}") for c, _ in conds.most_common(15))
    years = range(1990, 2021, 3)
    out.extend(("Encounter", f"date=ge{y}&date=lt{y + 3}") for y in years)
    return out
