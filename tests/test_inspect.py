"""matport inspect: the text report and the matport.inspect/1 JSON document."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema
import pytest

from matport.cli import main
from matport.network.summary import INSPECT_SCHEMA
from tests.support.paths import FIXTURES, corpus_file


def inspect_json(path: object, capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(["inspect", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    jsonschema.validate(doc, INSPECT_SCHEMA)
    return doc


@pytest.mark.parametrize("name", ["series_net_v7.mat", "series_net_v73.mat"])
def test_json_describes_the_fixture_network(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    doc = inspect_json(FIXTURES / name, capsys)
    assert doc["format"] == ("v7" if name.endswith("_v7.mat") else "v7.3")
    assert [v["name"] for v in doc["variables"]] == ["net", "classNames"]
    (net,) = doc["networks"]
    # what scripts/make_fixtures.py put there: 8x8 grey input, 3x3 conv with 4 filters, 3 classes
    assert net["kind"] == "SeriesNetwork" and net["num_layers"] == 6
    assert net["class_names"] == ["circle", "square", "triangle"]
    assert net["num_parameters"] == 3 * 3 * 4 + 4 + 6 * 6 * 4 * 3 + 3
    conv = net["layers"][1]
    assert conv["type"] == "Convolution2DLayer" and conv["params"]["FilterSize"] == [3, 3]
    assert conv["learnables"] == {"Weights": [3, 3, 1, 4], "Bias": [1, 1, 4]}
    (inp,) = net["inputs"]
    assert inp["input_size"] == [8, 8, 1]
    assert inp["normalization"]["type"] == "zerocenter"
    assert inp["normalization"]["mean_shape"] == [8, 8, 1]
    assert [(c["source"], c["dest"]) for c in net["connections"]][0] == ("imageinput", "conv")


def test_json_for_a_dag_with_ports(capsys: pytest.CaptureFixture[str]) -> None:
    doc = inspect_json(corpus_file("Nisitka__AllMatLab/newNet.mat"), capsys)
    (net,) = doc["networks"]
    ports = {(c["source"], c["source_port"], c["dest"], c["dest_port"])
             for c in net["connections"]}
    assert any(sp == "indices" for _, sp, _, _ in ports)
    assert net["class_names"] == ["road", "sky", "vehicle", "pedestrian", "background"]


def test_text_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(FIXTURES / "series_net_v7.mat")]) == 0
    out = capsys.readouterr().out
    assert "Network net: SeriesNetwork, 6 layers, 475 learnable parameters" in out
    assert "Weights[3x3x1x4]" in out and "Classes (3): circle, square, triangle" in out
    assert "Input imageinput: 8x8x1, normalization zerocenter" in out


def test_file_without_network(capsys: pytest.CaptureFixture[str]) -> None:
    doc = inspect_json(FIXTURES / "no_network_v7.mat", capsys)
    assert doc["networks"] == [] and len(doc["variables"]) == 5
    assert main(["inspect", str(FIXTURES / "no_network_v7.mat")]) == 0
    assert "No network in this file." in capsys.readouterr().out


@pytest.mark.parametrize("name", ["not_a_mat_file.mat", "corrupt_truncated_v7.mat",
                                  "corrupt_truncated_v73.mat", "corrupt_subsystem_version_v7.mat"])
def test_bad_files_exit_2_with_one_line(name: str) -> None:
    run = subprocess.run([sys.executable, "-m", "matport", "inspect", str(FIXTURES / name)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert run.stderr.startswith("matport inspect: error: ") and name in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
