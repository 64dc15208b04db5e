"""What a user of the package sees around the code: the public API (``__all__``, ``dir``, its
docstrings), ``py.typed``, ``matport --version``, version ranges for torch/torchvision with the
exact versions of CI in a constraints file, and CI running the README's test command verbatim."""

from __future__ import annotations

import argparse
import configparser
import importlib
import inspect
import json
import re
import subprocess
import sys
from importlib.metadata import version as installed_version
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

import matport
from matport.cli import COMMANDS, main
from tests.support.paths import ROOT


def _setup() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


def _requirements() -> dict[str, SpecifierSet]:
    reqs = {}
    for line in _setup()["options"]["install_requires"].split("\n"):
        if line.strip():
            name, spec = re.match(r"([A-Za-z0-9_.-]+)\s*(.*)", line.strip()).groups()
            reqs[name.lower()] = SpecifierSet(spec)
    return reqs


def _constraints() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, pin = line.split("==")
            pins[name.strip().lower()] = Version(pin.strip())
    return pins


def test_all_resolves_and_dir_lists_it() -> None:
    assert len(set(matport.__all__)) == len(matport.__all__)
    for name in matport.__all__:
        assert getattr(matport, name) is not None
    assert set(dir(matport)) == {*matport.__all__, "__version__"}
    with pytest.raises(AttributeError, match="no attribute 'lod'"):
        matport.lod  # noqa: B018 (the attribute access is the test)


@pytest.mark.parametrize("name", matport.__all__)
def test_public_names_are_documented(name: str) -> None:
    obj = getattr(matport, name)
    doc = inspect.getdoc(obj)
    assert doc, f"matport.{name} has no docstring"
    if inspect.isfunction(obj):
        assert "\nArgs:\n" in doc and "\nReturns:\n" in doc, f"matport.{name}"
        documented = set(re.findall(r"^    (\w+):", doc.split("Args:")[1].split("\n\n")[0],
                                    flags=re.M))
        assert documented == set(inspect.signature(obj).parameters), f"matport.{name}"


def test_py_typed_ships_as_package_data() -> None:
    assert (ROOT / "matport" / "py.typed").exists()
    assert _setup()["options.package_data"]["matport"].split() == ["py.typed"]


def test_version_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"matport {matport.__version__}"
    assert _setup()["metadata"]["version"] == "attr: matport.__version__"


def test_torch_is_a_range_and_ci_pins_the_installed_versions() -> None:
    reqs, pins = _requirements(), _constraints()
    assert set(pins) == {"torch", "torchvision"}
    for name, pin in pins.items():
        spec = reqs[name]
        assert pin in spec and Version(installed_version(name).split("+")[0]) == pin
        assert any(s.operator == ">=" for s in spec) and "==" not in str(spec)
    assert Version("2.3.1") not in reqs["torch"]  # no NumPy 2 support before torch 2.4


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    (command,) = re.findall(r"Install and run the tests:\n\n    (.+)\n", readme)
    assert "-c constraints.txt" in command
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"TEST_COMMAND='{command}'" in ci and 'eval "$TEST_COMMAND"' in ci
    (demo,) = re.findall(r"\n    (python -m pip install .* scripts/demo_resnet50.py)\n", readme)
    assert demo.startswith("python -m pip install -c constraints.txt -e . ")
    guard = "if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1"
    assert guard in ci and ci.index(guard) < ci.index('eval "$TEST_COMMAND"')


def test_cli_logs_what_the_library_logs(tmp_path) -> None:
    """The library logs (never prints); the command shows INFO on stderr, -q hides it."""
    library = [p for p in (ROOT / "matport").rglob("*.py") if "cli" not in p.parts]
    assert not [p for p in library if re.search(r"^\s*print\(", p.read_text(), flags=re.M)]
    from matport.mat.writer import write
    from matport.network.encode import encode_network
    from matport.synth.networks import chain, fc, feature_input

    trained = chain(feature_input("in", 2), fc("fc", 2, 2))
    untrained = chain(feature_input("in", 2), fc("fc", 2, 2), kind="LayerArray")
    write(tmp_path / "two.mat", {"net": encode_network(trained),
                                 "layers": encode_network(untrained)})
    def convert(*options: str, out: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "matport", *options, "convert",
                               str(tmp_path / "two.mat"), "-o", str(tmp_path / out)],
                              capture_output=True, text=True, timeout=300, cwd=ROOT)

    shown = convert(out="a.pt")
    assert shown.returncode == 0, shown.stderr
    assert shown.stderr.startswith("matport convert: ")
    assert "chose net (SeriesNetwork)" in shown.stderr
    quiet = convert("-q", out="b.pt")
    assert quiet.returncode == 0 and quiet.stderr == ""


def _options(command: str) -> dict[str, argparse.Action]:
    parser = argparse.ArgumentParser()
    importlib.import_module(f"matport.cli.{command}_cmd").add_arguments(parser)
    return {s: a for a in parser._actions for s in a.option_strings}


def test_subcommands_share_option_names() -> None:
    from matport.options import FAMILIES

    options = {name: _options(name) for name in COMMANDS}
    for name in ("convert", "migrate"):  # what they write
        assert options[name]["-o"] is options[name]["--out"], name
    for name in ("convert", "verify", "migrate"):
        assert tuple(options[name]["--family"].choices) == FAMILIES, name
    assert options["convert"]["--format"].choices == options["migrate"]["--format"].choices


@pytest.mark.parametrize("argv", [["inspect", "--json", "{missing}"],
                                  ["migrate", "--json", "{missing}", "--out", "{out}"],
                                  ["inspect", "--json", "{not_a_mat}"]])
def test_errors_with_json_keep_stdout_a_json_document(argv: list[str], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    paths = {"missing": str(tmp_path / "missing.mat"), "out": str(tmp_path / "out"),
             "not_a_mat": str(ROOT / "fixtures" / "not_a_mat_file.mat")}
    assert main([a.format(**paths) for a in argv]) == 2
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert document["command"] == argv[0] and document["error"]
    assert len(captured.err.strip().splitlines()) == 1
