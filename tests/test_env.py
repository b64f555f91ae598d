"""Install files agree with each other: environment.yml (conda) pins what requirements.txt pins
(with requirements-book.txt, which it includes), and the book's subset needs no torch."""

import tomllib

import yaml

from dsco import ROOT


def requirement_pins(name="requirements.txt"):
    """The pins of a requirements file, following its ``-r`` includes."""
    pins = []
    for line in (ROOT / name).read_text().splitlines():
        line = line.strip()
        if line.startswith("-r "):
            pins += requirement_pins(line.removeprefix("-r ").strip())
        elif line and not line.startswith("#"):
            pins.append(line)
    return pins


def test_requirements_are_all_exact_pins():
    pins = requirement_pins()
    assert pins and all("==" in p for p in pins)
    torch = next(p for p in pins if p.startswith("torch=="))
    assert torch == "torch==2.14.1"  # a newer torch pulls a multi-GB download here
    assert "jupyter-book==1.0.4.post1" in pins  # 2.x cannot build HTML offline
    assert len(set(pins)) == len(pins)  # each pin once, in one of the two files


def test_the_book_requirements_are_a_torch_free_subset():
    book = requirement_pins("requirements-book.txt")
    assert set(book) < set(requirement_pins()) and "jupyter-book==1.0.4.post1" in book
    assert not {p.split("==")[0] for p in book} & {"torch", "torchvision", "diffusers", "timm"}


def test_environment_yml_parses_and_pins_the_same_versions():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert sorted(pip) == sorted(requirement_pins())


def test_pyproject_declares_package_and_console_script():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "dsco"
    assert meta["project"]["scripts"]["dsco"] == "dsco.cli:main"
    names = {p.split("==")[0].lower() for p in requirement_pins()}
    assert {d.lower() for d in meta["project"]["dependencies"]} - {"nbformat"} <= names
