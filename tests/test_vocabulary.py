"""STAC field names and the bbox type are defined once, in eomatch.core.vocabulary (#11 §6)."""

from __future__ import annotations

import ast
import json
import re
from importlib import resources
from pathlib import Path

from eomatch.core import vocabulary

SRC = Path(vocabulary.__file__).resolve().parents[1]

FIELD = re.compile(r"^(matchup|eomatch):[A-Za-z_0-9]+$")


def _constants() -> dict[str, str]:
    return {
        k: v
        for k, v in vars(vocabulary).items()
        if k.isupper() and isinstance(v, str) and FIELD.match(v)
    }


def _literals(path: Path) -> list[tuple[int, str]]:
    """String constants that look like a field name (docstrings and f-string text excluded)."""
    tree = ast.parse(path.read_text())
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return sorted(
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docs
        and FIELD.match(node.value)
    )


def test_no_field_name_literal_outside_the_vocabulary():
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel == "core/vocabulary.py":
            continue
        found += [f"{rel}:{line}: {text!r}" for line, text in _literals(path)]
    assert found == []


def test_the_scanner_finds_literals(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        '"""matchup:doc"""\nX = {"matchup:role": 1}\nY = "eomatch:kind"\nZ = "eomatch: error"\n'
    )
    assert _literals(probe) == [(2, "matchup:role"), (3, "eomatch:kind")]


def test_every_field_of_the_shipped_schema_is_a_vocabulary_constant():
    text = resources.files("eomatch.schemas").joinpath(vocabulary.EXTENSION_SCHEMA_FILE)
    names = set(re.findall(r'"((?:matchup|eomatch):[A-Za-z_0-9]+)"', text.read_text()))
    assert names
    assert names <= set(_constants().values())
    assert json.loads(text.read_text())["$id"] == vocabulary.EXTENSION_URI


def test_constants_are_unique_and_carry_their_prefix():
    consts = _constants()
    assert len(set(consts.values())) == len(consts)
    assert vocabulary.crossover_prop("distance_km") == "eomatch:distance_km"
    assert all(
        v.startswith((vocabulary.MATCHUP_PREFIX, vocabulary.EOMATCH_PREFIX))
        for v in consts.values()
    )


def test_one_bbox_type():
    from eomatch.config import models
    from eomatch.core import geometry
    from eomatch.io import stac_source
    from eomatch.workflows import crossovers

    assert models.BBox is geometry.BBox is crossovers.BBox is vocabulary.BBox
    assert stac_source.BBox is vocabulary.BBox
    pattern = re.compile(r"^\w+ = tuple\[float, float, float, float\]", re.M)
    defined = [
        p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py") if pattern.search(p.read_text())
    ]
    assert defined == ["core/vocabulary.py"]
