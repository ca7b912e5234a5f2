"""r80: new footage through a trained stack, and the result as Camtrap DP.

The tiny chain's stack is exported once as an archive. Its own test clips, predicted from
that archive by a copy of the project in another folder, give its submission's numbers. A
camera card of awkward files (empty, truncated, AVI, ASF, MP4 with MP3 sound, a name with a
space and accents, in folders per site) gets a row per video, the bad ones marked, and a
Camtrap DP 1.0.2 package that frictionless validates against the standard's table rules
(and against the published schema files, where CAMTRAP_DP_SCHEMAS points at them).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tiny_chain import PROJECT_ROOT, run_script

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")


def ffmpeg(*arguments: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-nostdin", *arguments], check=True,
                   timeout=120)


def predict(*arguments: str, project: Path = PROJECT_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(project / "r80_predict.py"), *map(str, arguments)],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def exported(reference, tmp_path_factory) -> Path:
    """The tiny chain's stack as an archive."""
    path = tmp_path_factory.mktemp("exported") / "stack.tar.gz"
    result = run_script("r80_predict.py", reference, "--export", str(path))
    assert result.returncode == 0, result.stderr[-3000:]
    return path


def test_an_exported_stack_holds_models_and_settings_but_no_frames_or_videos(exported):
    with tarfile.open(exported) as archive:
        names = archive.getnames()
        manifest = json.load(archive.extractfile("manifest.json"))
    assert not [n for n in names if n.endswith((".npy", ".jpg", ".mp4", ".wav", ".flac"))]
    assert set(manifest["files"]) == set(names) - {"manifest.json"}
    assert manifest["settings"]["r10"]["FRAMES_PER_VIDEO"] == 8   # the tiny chain's setting
    assert {"gru_effnet_lite0", "lgbm_tabular"} <= set(manifest["models"])
    assert "training_clips.csv" in names and "ensemble.json" in names


def test_the_test_clips_through_a_moved_stack_and_project_give_the_submission(
        reference, exported, tmp_path):
    project = tmp_path / "elsewhere" / "trapstack copy"
    project.mkdir(parents=True)
    for script in PROJECT_ROOT.glob("*.py"):
        shutil.copy2(script, project / script.name)
    stack = tmp_path / "other place" / "stack.tar.gz"
    stack.parent.mkdir()
    shutil.copy2(exported, stack)
    out = tmp_path / "out"
    result = predict("--videos", reference / "input" / "videos",
                     "--filepaths", reference / "input" / "submission_format.csv",
                     "--metadata", reference / "input" / "video_metadata.csv",
                     "--stack", stack, "--out", out, "--workers", "2", project=project)
    assert result.returncode == 0, result.stderr[-3000:]
    predictions = pd.read_csv(out / "predictions.csv")
    submission = pd.read_csv(reference / "submissions" / "submission.csv")
    classes = list(submission.columns[1:])
    assert predictions["filename"].tolist() == submission["filename"].tolist()
    np.testing.assert_allclose(predictions[classes].to_numpy(), submission[classes].to_numpy(),
                               rtol=0, atol=1e-6)
    # the tiny data set's deleted test clip is listed, so it keeps its row, marked
    absent = [name for name in submission["filename"]
              if not (reference / "input" / "videos" / name).exists()]
    statuses = predictions.set_index("filename")["status"]
    assert absent and all(statuses[name].startswith("failed") for name in absent)
    assert (statuses.drop(absent) == "ok").all()


def test_clips_without_a_site_table_join_the_cameras_the_stack_was_trained_on(
        reference, exported, tmp_path):
    """New footage copied without its site table: each clip finds its training camera by
    its background and format, so its neighbour and site features see that camera."""
    submission = pd.read_csv(reference / "input" / "submission_format.csv")
    present = [name for name in submission["filename"]
               if (reference / "input" / "videos" / name).exists()]
    folder = tmp_path / "card"
    folder.mkdir()
    for name in present:
        shutil.copy2(reference / "input" / "videos" / name, folder / name)
    result = predict("--videos", folder, "--stack", exported, "--out", tmp_path / "out",
                     "--workers", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    found = pd.read_csv(tmp_path / "out" / "work" / "metadata" / "metadata.csv",
                        keep_default_na=False).set_index("filename").loc[present]
    truth = pd.read_csv(reference / "metadata" / "metadata.csv",
                        keep_default_na=False).set_index("filename").loc[present]
    assert (found["camera"] == truth["camera"]).all()
    assert (found["camera_source"] == "inferred").all()


def make_card(folder: Path) -> dict[str, str]:
    """A camera card: {relative path: "ok" or "failed"/"partial"} for every video on it."""
    source = ["-f", "lavfi", "-i", "testsrc=size=96x64:rate=8"]
    tone = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000"]
    site_a, site_b = folder / "site A" / "check 1", folder / "site B"
    site_a.mkdir(parents=True)
    site_b.mkdir(parents=True)
    kinds = {}
    (site_a / "empty.mp4").write_bytes(b"")
    kinds["site A/check 1/empty.mp4"] = "failed"
    ffmpeg(*source, "-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           str(site_a / "whole.mp4"))
    data = (site_a / "whole.mp4").read_bytes()
    (site_a / "whole.mp4").unlink()
    (site_a / "truncated.mp4").write_bytes(data[: len(data) // 3])
    kinds["site A/check 1/truncated.mp4"] = "failed"
    ffmpeg(*source, "-t", "2", "-c:v", "mpeg4", "-vtag", "XVID", str(site_a / "PART2.AVI"))
    kinds["site A/check 1/PART2.AVI"] = "ok"
    ffmpeg(*source, "-t", "2", "-c:v", "mjpeg", "-q:v", "3", "-pix_fmt", "yuvj420p",
           str(site_a / "motion jpeg.avi"))
    kinds["site A/check 1/motion jpeg.avi"] = "ok"
    ffmpeg(*source, "-t", "2", "-c:v", "msmpeg4", "-f", "asf", str(site_b / "CLIP.ASF"))
    kinds["site B/CLIP.ASF"] = "ok"
    ffmpeg(*source, *tone, "-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           "-c:a", "libmp3lame", "-shortest", str(site_b / "WITH MP3.MP4"))
    kinds["site B/WITH MP3.MP4"] = "ok"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=80x60:rate=1", "-t", "6", "-c:v", "mpeg4",
           str(site_b / "one fps 80x60.avi"))
    kinds["site B/one fps 80x60.avi"] = "ok"
    ffmpeg(*source, "-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           str(site_b / "Cámara trampa ñandú 7.mp4"))
    kinds["site B/Cámara trampa ñandú 7.mp4"] = "ok"
    (site_b / "notes.txt").write_text("not a video\n")
    return kinds


@pytest.fixture(scope="module")
def card_run(exported, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("card")
    kinds = make_card(root / "DCIM")
    deployments = root / "deployments.csv"
    pd.DataFrame({"deploymentID": ["site A", "site B"], "latitude": [-1.5, -1.25],
                  "longitude": [29.5, 29.75], "cameraModel": ["Bushnell", "Reconyx"]}) \
        .to_csv(deployments, index=False)
    out = root / "out"
    result = predict("--videos", root / "DCIM", "--stack", exported, "--out", out,
                     "--deployments", deployments, "--workers", "2", "--videos_out")
    assert result.returncode == 0, result.stderr[-3000:]
    return out, kinds


def test_every_video_on_the_card_has_a_row_and_the_bad_ones_are_marked(card_run):
    out, kinds = card_run
    predictions = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert sorted(predictions["filename"]) == sorted(kinds)
    status = predictions.set_index("filename")["status"]
    for name, kind in kinds.items():
        assert status[name].split(":")[0] == kind, (name, status[name])
    manifest_classes = [c for c in predictions.columns if c not in ("filename", "status")
                        and not c.startswith("top") and c != "blank_probability"]
    probabilities = predictions[manifest_classes].to_numpy(float)
    assert np.isfinite(probabilities).all() and probabilities.min() >= 0 \
        and probabilities.max() <= 1
    top = predictions[manifest_classes].idxmax(axis=1)
    assert (predictions["top1_class"] == top).all()
    assert (predictions["top1_probability"] >= predictions["top2_probability"]).all()
    np.testing.assert_array_equal(predictions["blank_probability"], predictions["blank"])


def test_every_readable_video_is_drawn_with_its_top_classes(card_run):
    out, kinds = card_run
    drawn = {str(p.relative_to(out / "videos")) for p in (out / "videos").rglob("*")
             if p.is_file()}
    expected = {name if name.lower().endswith(".mp4") else f"{name}.mp4"
                for name, kind in kinds.items() if kind == "ok"}
    assert drawn == expected


def validate_package(folder: Path, schemas: Path | None = None):
    """frictionless' report on the package, each resource checked against the Camtrap DP
    table schema: a06's (the standard's fields and rules) or, given a folder, the published
    files of the release (`<table>-table-schema.json`)."""
    from frictionless import Package

    import a06_camtrap_dp as camtrap
    descriptor = json.loads((folder / "datapackage.json").read_text(encoding="utf-8"))
    # the profile is a URL frictionless would fetch; its package-level rules are checked
    # by the test itself
    descriptor.pop("profile")
    for resource in descriptor["resources"]:
        assert resource["schema"] == f"{camtrap.CAMTRAP_DP_BASE}/{resource['name']}" \
                                     f"-table-schema.json"
        resource["schema"] = camtrap.table_schema(resource["name"]) if schemas is None else \
            json.loads((schemas / f"{resource['name']}-table-schema.json").read_text())
    return Package(descriptor, basepath=str(folder)).validate()


def test_the_camtrap_dp_package_validates(card_run):
    out, kinds = card_run
    folder = out / "camtrap_dp"
    report = validate_package(folder)
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])[:10]
    descriptor = json.loads((folder / "datapackage.json").read_text(encoding="utf-8"))
    assert descriptor["profile"] == "https://raw.githubusercontent.com/tdwg/camtrap-dp/1.0.2/" \
                                    "camtrap-dp-profile.json"
    for key in ("resources", "created", "contributors", "project", "spatial", "temporal",
                "taxonomic"):
        assert key in descriptor, key
    assert {"title", "samplingDesign", "captureMethod", "individualAnimals",
            "observationLevel"} <= set(descriptor["project"])
    media = pd.read_csv(folder / "media.csv", keep_default_na=False)
    assert sorted(media["filePath"]) == sorted(kinds)
    observations = pd.read_csv(folder / "observations.csv", keep_default_na=False)
    assert set(observations["mediaID"]) == set(media["mediaID"])
    failed = media.loc[media["filePath"].map(kinds) == "failed", "mediaID"]
    assert (observations.set_index("mediaID").loc[failed, "observationType"]
            == "unclassified").all()
    assert set(observations["classificationMethod"]) == {"machine"}
    names = {entry["scientificName"] for entry in descriptor["taxonomic"]}
    assert names == set(observations["scientificName"]) - {""}


def test_a_package_that_breaks_the_standard_fails_validation(card_run, tmp_path):
    """The validation can fail: a deployment without coordinates, an observation type
    outside the vocabulary, a media row pointing at an unknown deployment or outside the
    package."""
    out, _ = card_run
    for table, column, value in (("deployments", "latitude", ""),
                                 ("observations", "observationType", "animalish"),
                                 ("media", "deploymentID", "no such camera"),
                                 ("media", "filePath", "../outside the card.mp4")):
        folder = tmp_path / f"{table}_{column}"
        shutil.copytree(out / "camtrap_dp", folder)
        frame = pd.read_csv(folder / f"{table}.csv", dtype=str, keep_default_na=False)
        frame.loc[0, column] = value
        frame.to_csv(folder / f"{table}.csv", index=False)
        assert not validate_package(folder).valid, (table, column)


@pytest.mark.skipif(not os.environ.get("CAMTRAP_DP_SCHEMAS"),
                    reason="set CAMTRAP_DP_SCHEMAS to a folder with the published 1.0.2 table "
                           "schemas (git clone --branch 1.0.2 https://github.com/tdwg/camtrap-dp)")
def test_the_camtrap_dp_package_validates_against_the_published_files(card_run):
    out, _ = card_run
    report = validate_package(out / "camtrap_dp", Path(os.environ["CAMTRAP_DP_SCHEMAS"]))
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])[:10]


def test_a_stack_for_other_classes_is_refused_in_one_line(exported, tmp_path):
    """A stack trained on classes the species table does not name cannot be exported to
    Camtrap DP: r80 stops before any work and names them."""
    from a00_io import file_digest
    folder = tmp_path / "other classes"
    with tarfile.open(exported) as archive:
        archive.extractall(folder, filter="data")
    manifest = json.loads((folder / "manifest.json").read_text())
    renamed = {name: f"species {i}" for i, name in enumerate(manifest["classes"])}
    manifest["classes"] = list(renamed.values())
    for config_path in (folder / "models").glob("*/config.json"):
        config = json.loads(config_path.read_text())
        config["classes"] = [renamed[name] for name in config["classes"]]
        config_path.write_text(json.dumps(config))
    manifest["files"] = {name: file_digest(folder / name) for name in manifest["files"]}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    videos = tmp_path / "videos"
    videos.mkdir()
    result = predict("--videos", videos, "--stack", folder, "--out", tmp_path / "out")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "species 0" in lines[0] and "--species" in lines[0], \
        result.stderr


def test_a_stack_with_a_changed_file_is_refused_in_one_line(exported, tmp_path):
    folder = tmp_path / "tampered"
    with tarfile.open(exported) as archive:
        archive.extractall(folder, filter="data")
    (folder / "ensemble.json").write_text("{}")
    videos = tmp_path / "videos"
    videos.mkdir()
    result = predict("--videos", videos, "--stack", folder, "--out", tmp_path / "out")
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and "ensemble.json" in lines[0]


def test_an_archive_with_a_name_leading_outside_is_refused(tmp_path):
    archive_path = tmp_path / "evil.tar.gz"
    payload = tmp_path / "payload.txt"
    payload.write_text("x")
    with tarfile.open(archive_path, "w:gz") as archive:
        archive.add(payload, arcname="../outside.txt")
    videos = tmp_path / "videos"
    videos.mkdir()
    result = predict("--videos", videos, "--stack", archive_path, "--out", tmp_path / "out")
    assert result.returncode != 0
    assert not (tmp_path / "outside.txt").exists()
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
