"""The claims scorecard: verdicts recorded by notebook runs, collected per dataset into the book's
first page."""

import json

import pandas as pd
import pytest

from dsco import results, scorecard
from dsco import verdicts as V

NB = "31_table01_02_low_ipc"


def _runs(gap, reps=5):
    return pd.DataFrame(
        [
            dict(
                method=m,
                arch="convnet",
                ipc=1,
                replicate=r,
                acc=70 + r + (gap + 0.1 * (r % 2) if m == "A" else 0),
            )
            for r in range(reps)
            for m in "AB"
        ]
    )


HOLDS = V.superiority(_runs(3.0), "A", "B")
NOISE = V.superiority(_runs(0.0), "A", "B")
FAILS = V.superiority(_runs(-3.0), "A", "B")


def _run(monkeypatch, tmp_path, dataset, claims, notebook=NB, profile="paper"):
    monkeypatch.setenv("DSCO_RESULTS", str(tmp_path))
    results.start(dataset, profile, 0, "cpu")
    return scorecard.record(claims, notebook, "§5.2, Tables 1–2", show=False)


def test_record_saves_one_row_per_claim_with_its_rule_cells_and_provenance(monkeypatch, tmp_path):
    frame = _run(monkeypatch, tmp_path, "digits", {"DsCo > Random": HOLDS, "DsCo > DiT†": NOISE})
    assert list(frame.index) == ["DsCo > Random", "DsCo > DiT†"]
    assert list(frame["verdict"]) == ["holds", "within noise"] == list(frame["computed"])
    assert frame.loc["DsCo > DiT†", "resolution"] > 0
    out = tmp_path / "digits" / "paper" / f"verdicts_{NB}.csv"
    assert out.is_file() and json.loads(out.with_suffix(".json").read_text())["params"]["profile"]
    cells = json.loads(pd.read_csv(out).set_index("claim").loc["DsCo > Random", "cells"])
    assert cells[0]["category"] == "for" and cells[0]["n"] == 5


def test_record_refuses_anything_but_a_verdict_and_no_claims(monkeypatch, tmp_path):
    with pytest.raises(TypeError, match="judge it with a rule of dsco.verdicts"):
        _run(monkeypatch, tmp_path, "digits", {"A > B": ("holds", "3/3")})
    with pytest.raises(ValueError, match="no claims"):
        _run(monkeypatch, tmp_path, "digits", {})
    assert not list(tmp_path.rglob("verdicts_*.csv"))  # nothing half-written


def test_smoke_verdicts_are_recorded_as_not_measured(monkeypatch, tmp_path):
    frame = _run(monkeypatch, tmp_path, "digits", {"A > B": HOLDS, "B > A": FAILS}, profile="smoke")
    assert set(frame["verdict"]) == {"not measured"}
    assert list(frame["computed"]) == [
        "holds",
        "does not hold",
    ]  # the rule ran; the page ignores it
    page = scorecard.page("smoke", present=[NB])
    assert "Smoke profile: nothing here is a finding" in page
    body = page[page.index("<tbody>") : page.index("</tbody>")]
    assert body.count("· not measured (smoke)") == 2 and "✓" not in body and "✗" not in body


def test_collect_and_table_give_one_column_per_dataset_that_ran(monkeypatch, tmp_path):
    _run(monkeypatch, tmp_path, "digits", {"DsCo > Random": HOLDS, "only here": FAILS})
    _run(monkeypatch, tmp_path, "mnist", {"DsCo > Random": NOISE})
    _run(monkeypatch, tmp_path, "mnist", {"smoke only": HOLDS}, profile="smoke")
    long = scorecard.collect("paper")
    assert sorted(long["dataset"].unique()) == ["digits", "mnist"]
    assert long["saved_at"].str.len().min() > 0
    wide = scorecard.table(long)
    assert list(wide.columns) == ["digits", "digits: numbers", "mnist", "mnist: numbers"]
    row = wide.xs("DsCo > Random", level="claim").iloc[0]
    assert (row["digits"], row["mnist"]) == ("holds", "within noise")
    assert wide.xs("only here", level="claim").iloc[0]["mnist"] == "not measured"
    assert scorecard.collect("paper", datasets=["folder"]).empty
    assert scorecard.table(scorecard.collect("nope")).empty


def test_notebooks_not_in_the_build_do_not_reach_the_page(monkeypatch, tmp_path):
    _run(monkeypatch, tmp_path, "digits", {"kept": HOLDS})
    _run(monkeypatch, tmp_path, "digits", {"left over": FAILS}, notebook="99_removed_notebook")
    assert set(scorecard.collect("paper")["claim"]) == {"kept", "left over"}
    assert set(scorecard.collect("paper", present=[NB])["claim"]) == {"kept"}
    page = scorecard.page("paper", present=[NB])
    assert "kept" in page and "left over" not in page


def test_page_shows_what_stands_behind_each_column_and_fits_the_content(monkeypatch, tmp_path):
    _run(monkeypatch, tmp_path, "digits", {"A | B <x>": HOLDS, "C": NOISE})
    page = scorecard.page("paper", present=[NB])
    assert page.startswith("# Claims scorecard") and "Smoke profile" not in page
    runs = scorecard.runs(scorecard.collect("paper"), "paper").iloc[0]
    assert runs["replicates"] == "5" and runs["claims"] == 2 and runs["date"]
    rows = {line.split(" | ")[0]: line for line in page.splitlines() if line.startswith("| ")}
    assert "| | digits |" in page.splitlines()  # one column per dataset, as the claims table
    assert rows["| commit"] == f"| commit | `{runs['commit']}` |"
    assert rows["| claims (notebooks)"] == "| claims (notebooks) | 2 (1) |"
    assert rows["| verdicts"] == "| verdicts | 1 holds<br>1 within noise |"
    assert rows["| against the reference run"].endswith("| none shipped |")
    assert f'<a href="notebooks/{NB}.html">31</a>' in page  # a link to the notebook in this build
    assert "A | B &lt;x&gt;" in page  # escaped, inside an HTML table (no markdown pipes to break)
    assert "<details><summary>✓ holds</summary>" in page and "○ within noise" in page
    assert "could detect a difference larger than" in page
    assert "No executed notebook has recorded" in scorecard.page("smoke")


def test_record_shows_the_verdicts_as_a_list(monkeypatch, tmp_path):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs: shown.extend(objs))
    _run(monkeypatch, tmp_path, "digits", {"A > B": NOISE}, profile="paper")
    assert shown == []  # show=False
    results.start("digits", "paper", 0, "cpu")
    scorecard.record({"A > B": NOISE}, NB, "§5")
    assert shown[0].data.startswith("- ○ **A > B** — *within noise*: ")


def test_carries_over_sets_the_verdicts_of_two_datasets_side_by_side(monkeypatch, tmp_path):
    _run(monkeypatch, tmp_path, "mnist", {"A > B": HOLDS, "B > A": FAILS})
    _run(monkeypatch, tmp_path, "digits", {"A > B": HOLDS, "B > A": NOISE, "new": HOLDS})
    table = scorecard.carries_over(NB, "mnist")
    assert (
        table.loc["A > B", "carries over"] == "yes" and table.loc["B > A", "carries over"] == "no"
    )
    assert table.loc["new", "mnist"] == "not measured" and table.loc["new", "carries over"] == "–"
    assert "own dataset" in scorecard.carries_over(NB, "digits")
    assert "compare_with = None" in scorecard.carries_over(NB, None)
    assert "no folder verdicts" in scorecard.carries_over(NB, "folder")
