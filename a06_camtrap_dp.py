"""Camtrap DP module: trapstack's predictions as a Camtrap DP 1.0.2 data package.

Camtrap DP (https://camtrap-dp.tdwg.org) is the TDWG exchange format for camera-trap data
that Agouti, Wildlife Insights, camtrapR and GBIF read. r80 writes one package per run:

- `deployments.csv`: one deployment per camera (the `camera`/`site` of the metadata file,
  else the first folder under the videos folder, else the inferred camera); coordinates
  from a deployments table the user gives (`--deployments`), which the standard requires;
- `media.csv`: one row per video (its path relative to the videos folder, its capture time);
- `observations.csv`: media-level machine observations: each class whose probability
  reaches MIN_PROBABILITY (else one `unknown` observation with the top probability);
  `blank` and `human` become those observation types; a clip that could not be read is
  `unclassified`;
- `datapackage.json`: the package descriptor, pointing at the published 1.0.2 profile and
  table schemas.

The class -> scientific name table has defaults for the 24 Pri-matrix classes; a user's own
(`--species`, columns class, scientificName, observationType, taxonRank) replaces it.
"""
from __future__ import annotations

import datetime
import hashlib
import mimetypes
from pathlib import Path

import numpy as np
import pandas as pd

from a00_common import InputError
from a00_io import write_csv, write_json

CAMTRAP_DP_VERSION = "1.0.2"
CAMTRAP_DP_BASE = f"https://raw.githubusercontent.com/tdwg/camtrap-dp/{CAMTRAP_DP_VERSION}"
TABLES = ("deployments", "media", "observations")
OBSERVATION_TYPES = ("animal", "human", "vehicle", "blank", "unknown", "unclassified")
TAXON_RANKS = ("kingdom", "phylum", "class", "order", "family", "genus", "species",
               "subspecies", "")

# The Pri-matrix Factorization classes: the narrowest taxon each class names.
PRIMATRIX_SPECIES = [
    ("bird", "Aves", "animal", "class"),
    ("blank", "", "blank", ""),
    ("cattle", "Bos taurus", "animal", "species"),
    ("chimpanzee", "Pan troglodytes", "animal", "species"),
    ("elephant", "Loxodonta", "animal", "genus"),
    ("forest buffalo", "Syncerus caffer nanus", "animal", "subspecies"),
    ("gorilla", "Gorilla", "animal", "genus"),
    ("hippopotamus", "Hippopotamus amphibius", "animal", "species"),
    ("human", "Homo sapiens", "human", "species"),
    ("hyena", "Hyaenidae", "animal", "family"),
    ("large ungulate", "Artiodactyla", "animal", "order"),
    ("leopard", "Panthera pardus", "animal", "species"),
    ("lion", "Panthera leo", "animal", "species"),
    ("other (non-primate)", "Mammalia", "animal", "class"),
    ("other (primate)", "Primates", "animal", "order"),
    ("pangolin", "Manidae", "animal", "family"),
    ("porcupine", "Hystricidae", "animal", "family"),
    ("reptile", "Reptilia", "animal", "class"),
    ("rodent", "Rodentia", "animal", "order"),
    ("small antelope", "Bovidae", "animal", "family"),
    ("small cat", "Felidae", "animal", "family"),
    ("wild dog", "Lycaon pictus", "animal", "species"),
    ("duiker", "Cephalophinae", "animal", ""),
    ("hog", "Suidae", "animal", "family"),
]
SPECIES_COLUMNS = ["class", "scientificName", "observationType", "taxonRank"]
DEPLOYMENT_COLUMNS = ["deploymentID", "locationID", "locationName", "latitude", "longitude",
                      "coordinateUncertainty", "deploymentStart", "deploymentEnd", "setupBy",
                      "cameraID", "cameraModel", "cameraDelay", "cameraHeight",
                      "cameraDepth", "cameraTilt", "cameraHeading", "detectionDistance",
                      "timestampIssues", "baitUse", "featureType", "habitat",
                      "deploymentGroups", "deploymentTags", "deploymentComments"]
MEDIA_COLUMNS = ["mediaID", "deploymentID", "captureMethod", "timestamp", "filePath",
                 "filePublic", "fileName", "fileMediatype", "exifData", "favorite",
                 "mediaComments"]
OBSERVATION_COLUMNS = ["observationID", "deploymentID", "mediaID", "eventID", "eventStart",
                       "eventEnd", "observationLevel", "observationType", "cameraSetupType",
                       "scientificName", "count", "lifeStage", "sex", "behavior",
                       "individualID", "individualPositionRadius", "individualPositionAngle",
                       "individualSpeed", "bboxX", "bboxY", "bboxWidth", "bboxHeight",
                       "classificationMethod", "classifiedBy", "classificationTimestamp",
                       "classificationProbability", "observationTags", "observationComments"]


# The Camtrap DP 1.0.2 fields of the three tables, as Table Schema constraints: what a
# package must satisfy (types, required fields, vocabularies, ranges, the datetime format,
# keys). Written from the standard's table definitions (https://camtrap-dp.tdwg.org/data);
# the tests validate r80's packages against it with frictionless.
DATETIME = {"type": "datetime", "format": "%Y-%m-%dT%H:%M:%S%z"}
FIELD_RULES = {
    "deployments": {
        "deploymentID": {"type": "string", "constraints": {"required": True, "unique": True}},
        "latitude": {"type": "number", "constraints": {"required": True, "minimum": -90,
                                                      "maximum": 90}},
        "longitude": {"type": "number", "constraints": {"required": True, "minimum": -180,
                                                       "maximum": 180}},
        "coordinateUncertainty": {"type": "integer", "constraints": {"minimum": 1}},
        "deploymentStart": {**DATETIME, "constraints": {"required": True}},
        "deploymentEnd": {**DATETIME, "constraints": {"required": True}},
        "cameraDelay": {"type": "integer", "constraints": {"minimum": 0}},
        "cameraHeight": {"type": "number", "constraints": {"minimum": 0}},
        "cameraDepth": {"type": "number", "constraints": {"minimum": 0}},
        "cameraTilt": {"type": "integer", "constraints": {"minimum": -90, "maximum": 90}},
        "cameraHeading": {"type": "integer", "constraints": {"minimum": 0, "maximum": 360}},
        "detectionDistance": {"type": "number", "constraints": {"minimum": 0}},
        "timestampIssues": {"type": "boolean"},
        "baitUse": {"type": "boolean"},
        "featureType": {"type": "string", "constraints": {"enum": [
            "roadPaved", "roadDirt", "trailHiking", "trailGame", "roadUnderpass",
            "roadOverpass", "roadBridge", "culvert", "burrow", "nestSite", "carcass",
            "waterSource", "fruitingTree"]}},
    },
    "media": {
        "mediaID": {"type": "string", "constraints": {"required": True, "unique": True}},
        "deploymentID": {"type": "string", "constraints": {"required": True}},
        "captureMethod": {"type": "string", "constraints": {"enum": ["activityDetection",
                                                                     "timeLapse"]}},
        "timestamp": {**DATETIME, "constraints": {"required": True}},
        # relative, never starting with '.', '/' or '~', never with '..'
        "filePath": {"type": "string", "constraints": {
            "required": True, "pattern": "^(?=^[^./~])(^((?!\\.{2}).)*$).*$"}},
        "filePublic": {"type": "boolean", "constraints": {"required": True}},
        "fileMediatype": {"type": "string", "constraints": {
            "required": True, "pattern": "^(image|video|audio)/.*$"}},
        "exifData": {"type": "any"},
        "favorite": {"type": "boolean"},
    },
    "observations": {
        "observationID": {"type": "string", "constraints": {"required": True, "unique": True}},
        "deploymentID": {"type": "string", "constraints": {"required": True}},
        "eventStart": {**DATETIME, "constraints": {"required": True}},
        "eventEnd": {**DATETIME, "constraints": {"required": True}},
        "observationLevel": {"type": "string", "constraints": {"required": True,
                                                               "enum": ["media", "event"]}},
        "observationType": {"type": "string", "constraints": {"required": True,
                                                              "enum": list(OBSERVATION_TYPES)}},
        "cameraSetupType": {"type": "string", "constraints": {"enum": ["setup",
                                                                       "calibration"]}},
        "count": {"type": "integer", "constraints": {"minimum": 1}},
        "lifeStage": {"type": "string", "constraints": {"enum": ["adult", "subadult",
                                                                 "juvenile"]}},
        "sex": {"type": "string", "constraints": {"enum": ["female", "male"]}},
        "individualPositionRadius": {"type": "number", "constraints": {"minimum": 0}},
        "individualPositionAngle": {"type": "number", "constraints": {"minimum": -90,
                                                                     "maximum": 90}},
        "individualSpeed": {"type": "number", "constraints": {"minimum": 0}},
        "bboxX": {"type": "number", "constraints": {"minimum": 0, "maximum": 1}},
        "bboxY": {"type": "number", "constraints": {"minimum": 0, "maximum": 1}},
        "bboxWidth": {"type": "number", "constraints": {"minimum": 1e-15, "maximum": 1}},
        "bboxHeight": {"type": "number", "constraints": {"minimum": 1e-15, "maximum": 1}},
        "classificationMethod": {"type": "string", "constraints": {"enum": ["human",
                                                                            "machine"]}},
        "classificationTimestamp": DATETIME,
        "classificationProbability": {"type": "number", "constraints": {"minimum": 0,
                                                                       "maximum": 1}},
    },
}


def table_schema(table: str) -> dict:
    """The Table Schema of one Camtrap DP table (every column r80 writes, in order)."""
    columns = {"deployments": DEPLOYMENT_COLUMNS, "media": MEDIA_COLUMNS,
               "observations": OBSERVATION_COLUMNS}[table]
    rules = FIELD_RULES[table]
    schema = {"fields": [{"name": name, **rules.get(name, {"type": "string"})}
                         for name in columns],
              "missingValues": ["", "NA", "NaN", "nan"],
              "primaryKey": f"{table[:-1] if table != 'media' else 'media'}ID"}
    if table == "media":
        schema["foreignKeys"] = [{"fields": "deploymentID", "reference": {
            "resource": "deployments", "fields": "deploymentID"}}]
    if table == "observations":
        schema["foreignKeys"] = [
            {"fields": "deploymentID", "reference": {"resource": "deployments",
                                                     "fields": "deploymentID"}},
            {"fields": "mediaID", "reference": {"resource": "media", "fields": "mediaID"}}]
    return schema


def species_table(path: Path | None, classes: list[str]) -> pd.DataFrame:
    """class -> scientificName, observationType, taxonRank for every class of the stack.

    A class without an entry stops with one line naming it: an export must not guess."""
    if path is None:
        table = pd.DataFrame(PRIMATRIX_SPECIES, columns=SPECIES_COLUMNS)
        where = "the default (Pri-matrix) species table"
    else:
        try:
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            raise InputError(f"{path}: not a readable CSV ({error})") from None
        where = str(path)
        absent = [c for c in ("class", "scientificName", "observationType") if c not in table]
        if absent:
            raise InputError(f"{path}: needs the columns class, scientificName, observationType "
                             f"(taxonRank optional); missing {absent}")
        if "taxonRank" not in table:
            table["taxonRank"] = ""
    table = table[SPECIES_COLUMNS].astype(str)
    repeated = table["class"][table["class"].duplicated()]
    if len(repeated):
        raise InputError(f"{where}: class {repeated.iloc[0]!r} is listed more than once")
    wrong = table[~table["observationType"].isin(OBSERVATION_TYPES)]
    if len(wrong):
        raise InputError(f"{where}: class {wrong['class'].iloc[0]!r} has observationType "
                         f"{wrong['observationType'].iloc[0]!r}; allowed: "
                         f"{', '.join(OBSERVATION_TYPES)}")
    wrong = table[~table["taxonRank"].isin(TAXON_RANKS)]
    if len(wrong):
        raise InputError(f"{where}: class {wrong['class'].iloc[0]!r} has taxonRank "
                         f"{wrong['taxonRank'].iloc[0]!r}; allowed: "
                         f"{', '.join(r for r in TAXON_RANKS if r)} or empty")
    missing = [name for name in classes if name not in set(table["class"])]
    if missing:
        raise InputError(f"{where} has no entry for the stack's class(es) {missing}: give "
                         f"--species CSV with columns {', '.join(SPECIES_COLUMNS)}")
    named = table[(table["observationType"].isin(("animal",))) & (table["scientificName"] == "")]
    if len(named):
        raise InputError(f"{where}: animal class {named['class'].iloc[0]!r} has no "
                         f"scientificName")
    return table.set_index("class").loc[classes]


def stable_id(*parts: str) -> str:
    """A short identifier that is the same for the same clip in every run."""
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).hexdigest()


def iso_timestamp(value, round_up: bool = False) -> str:
    """ISO 8601 in whole seconds with a time zone designator, as Camtrap DP's datetime
    fields read it ("" when unknown); an end time is rounded up, so it never precedes the
    last frame."""
    if value is None or pd.isna(value):
        return ""
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    stamp = stamp.ceil("s") if round_up else stamp.floor("s")
    return stamp.strftime("%Y-%m-%dT%H:%M:%S") + \
        ("Z" if stamp.utcoffset() == datetime.timedelta(0) else stamp.strftime("%z"))


# camera-trap containers that Python's mimetypes table may not know
VIDEO_MEDIA_TYPES = {".avi": "video/x-msvideo", ".asf": "video/x-ms-asf",
                     ".wmv": "video/x-ms-wmv", ".mkv": "video/x-matroska",
                     ".mts": "video/mp2t", ".3gp": "video/3gpp"}


def media_type(path: str) -> str:
    """The IANA media type of a clip, from its extension (Camtrap DP: video/...)."""
    suffix = Path(path).suffix.lower()
    if suffix in VIDEO_MEDIA_TYPES:
        return VIDEO_MEDIA_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(path.lower())
    if guessed and guessed.startswith("video/"):
        return guessed
    return f"video/{suffix.lstrip('.') or 'unknown'}"


def observations_of(probabilities: np.ndarray, classes: list[str],
                    min_probability: float) -> list[tuple[str, float]]:
    """The (class, probability) pairs a clip is observed as: every class at or above
    `min_probability`, highest first; else none (the caller writes `unknown`)."""
    order = np.argsort(-probabilities, kind="stable")
    return [(classes[i], float(probabilities[i])) for i in order
            if probabilities[i] >= min_probability]


def read_deployments(path: Path | None) -> pd.DataFrame:
    """The user's deployments table (deploymentID + any Camtrap DP deployment columns)."""
    if path is None:
        return pd.DataFrame(columns=["deploymentID"])
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise InputError(f"{path}: not a readable CSV ({error})") from None
    if "deploymentID" not in table:
        raise InputError(f"{path}: needs a deploymentID column (the camera or folder name)")
    repeated = table["deploymentID"][table["deploymentID"].duplicated()]
    if len(repeated):
        raise InputError(f"{path}: deploymentID {repeated.iloc[0]!r} is listed more than once")
    unknown = [c for c in table.columns if c not in DEPLOYMENT_COLUMNS]
    if unknown:
        raise InputError(f"{path}: column(s) {unknown} are not Camtrap DP deployment fields")
    return table


def write_package(folder: Path, clips: pd.DataFrame, probabilities: np.ndarray,
                  classes: list[str], species: pd.DataFrame, deployments_table: pd.DataFrame,
                  min_probability: float, classified_by: str, title: str) -> list[str]:
    """Writes the four files of the package into `folder`; returns warnings (one line each).

    `clips` has one row per video: path (relative, POSIX), deployment, timestamp (UTC, or
    NaT), duration (seconds, or NaN), timestamp_source, status ("ok", "partial: …",
    "failed: …")."""
    warnings = []
    now = iso_timestamp(datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0))
    clips = clips.reset_index(drop=True)
    media_ids = [stable_id("media", path) for path in clips["path"]]
    timestamps = [iso_timestamp(value) for value in clips["timestamp"]]
    untimed = sum(1 for value in timestamps if not value)
    if untimed:
        warnings.append(f"{untimed} video(s) have no capture time (no metadata, no creation "
                        f"time, unreadable): media.timestamp is empty there, which Camtrap DP "
                        f"does not allow; give --metadata with capture_time")
    media = pd.DataFrame({
        "mediaID": media_ids, "deploymentID": clips["deployment"],
        "captureMethod": "activityDetection", "timestamp": timestamps,
        "filePath": clips["path"], "filePublic": "false",
        "fileName": [Path(path).name for path in clips["path"]],
        "fileMediatype": [media_type(path) for path in clips["path"]],
        "exifData": "", "favorite": "",
        "mediaComments": [("capture time from " + source) if source else ""
                          for source in clips["timestamp_source"]]})
    rows = []
    for row, clip in clips.iterrows():
        start = timestamps[row]
        end = iso_timestamp(pd.Timestamp(clip["timestamp"]) + pd.to_timedelta(
            clip["duration"], unit="s"), round_up=True) \
            if start and np.isfinite(clip["duration"]) else start
        base = {"deploymentID": clip["deployment"], "mediaID": media_ids[row],
                "eventID": media_ids[row], "eventStart": start, "eventEnd": end,
                "observationLevel": "media", "classificationMethod": "machine",
                "classifiedBy": classified_by, "classificationTimestamp": now}
        if clip["status"].startswith("failed"):
            rows.append({**base, "observationID": stable_id("observation", clip["path"]),
                         "observationType": "unclassified",
                         "observationComments": clip["status"]})
            continue
        found = observations_of(probabilities[row], classes, min_probability)
        if not found:
            top = int(np.argmax(probabilities[row]))
            rows.append({**base, "observationID": stable_id("observation", clip["path"]),
                         "observationType": "unknown",
                         "classificationProbability": round(float(probabilities[row, top]), 6),
                         "observationComments": f"no class reaches {min_probability:g}; most "
                                                f"likely {classes[top]}"})
            continue
        for name, probability in found:
            entry = species.loc[name]
            rows.append({**base, "observationID": stable_id("observation", clip["path"], name),
                         "observationType": entry["observationType"],
                         "scientificName": entry["scientificName"]
                         if entry["observationType"] in ("animal", "human") else "",
                         "classificationProbability": round(probability, 6),
                         "observationComments": f"trapstack class: {name}"})
    observations = pd.DataFrame(rows, columns=OBSERVATION_COLUMNS).fillna("")

    known = deployments_table.set_index("deploymentID") if len(deployments_table) else None
    deployment_rows = []
    for deployment, group in clips.groupby("deployment", sort=True):
        times = pd.to_datetime(group["timestamp"], utc=True).dropna()
        durations = pd.to_timedelta(group["duration"].fillna(0), unit="s")
        ends = (pd.to_datetime(group["timestamp"], utc=True) + durations).dropna()
        entry = {"deploymentID": deployment, "locationName": deployment,
                 "deploymentStart": iso_timestamp(times.min()) if len(times) else "",
                 "deploymentEnd": iso_timestamp(ends.max(), round_up=True) if len(ends)
                 else ""}
        if known is not None and deployment in known.index:
            given = known.loc[deployment]
            entry.update({key: value for key, value in given.items() if value != ""})
        deployment_rows.append(entry)
    deployments = pd.DataFrame(deployment_rows, columns=DEPLOYMENT_COLUMNS).fillna("")
    located = (deployments["latitude"] != "") & (deployments["longitude"] != "")
    if not located.all():
        warnings.append(f"{(~located).sum()} deployment(s) have no coordinates (e.g. "
                        f"{deployments.loc[~located, 'deploymentID'].iloc[0]!r}), which Camtrap "
                        f"DP requires: give --deployments CSV with deploymentID, latitude, "
                        f"longitude")
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(deployments, folder / "deployments.csv")
    write_csv(media, folder / "media.csv")
    write_csv(observations, folder / "observations.csv")
    write_json(descriptor(deployments, media, observations, species, title, now),
               folder / "datapackage.json")
    return warnings


def descriptor(deployments: pd.DataFrame, media: pd.DataFrame, observations: pd.DataFrame,
               species: pd.DataFrame, title: str, created: str) -> dict:
    """datapackage.json: the Camtrap DP profile, project, coverage and the three resources."""
    latitude = pd.to_numeric(deployments["latitude"], errors="coerce").dropna()
    longitude = pd.to_numeric(deployments["longitude"], errors="coerce").dropna()
    spatial = None
    if len(latitude) and len(longitude):
        west, east = float(longitude.min()), float(longitude.max())
        south, north = float(latitude.min()), float(latitude.max())
        spatial = {"type": "Polygon", "coordinates": [[[west, south], [east, south],
                                                       [east, north], [west, north],
                                                       [west, south]]]}
    times = pd.to_datetime(media["timestamp"].replace("", None), utc=True).dropna()
    temporal = {"start": times.min().date().isoformat(), "end": times.max().date().isoformat()} \
        if len(times) else None
    names = sorted(set(observations["scientificName"]) - {""})
    ranks = species.drop_duplicates("scientificName").set_index("scientificName")["taxonRank"]
    taxonomic = [{"scientificName": name,
                  **({"taxonRank": ranks[name]} if ranks.get(name, "") else {})}
                 for name in names]
    package = {
        "profile": f"{CAMTRAP_DP_BASE}/camtrap-dp-profile.json",
        "name": "trapstack-predictions",
        "id": stable_id("package", *media["mediaID"]),
        "created": created,
        "title": title,
        "contributors": [{"title": "trapstack", "role": "contributor"}],
        "project": {"title": title, "samplingDesign": "opportunistic",
                    "captureMethod": ["activityDetection"], "individualAnimals": False,
                    "observationLevel": ["media"]},
        "spatial": spatial,
        "temporal": temporal,
        "taxonomic": taxonomic,
        "resources": [{"name": name, "path": f"{name}.csv", "profile": "tabular-data-resource",
                       "format": "csv", "mediatype": "text/csv", "encoding": "utf-8",
                       "schema": f"{CAMTRAP_DP_BASE}/{name}-table-schema.json"}
                      for name in TABLES],
    }
    return {key: value for key, value in package.items() if value is not None}
