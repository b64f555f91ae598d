"""The claims scorecard: verdicts recorded by notebook runs, collected per dataset into the book's page."""
import pytest

from dsco import plots, scorecard


def _run(monkeypatch, tmp_path, dataset, claims, notebook="31_table01_02_low_ipc", profile="paper"):
    monkeypatch.setenv("DSCO_RESULTS", str(tmp_path))
    plots.start(dataset, profile, 0, "cpu")
    return scorecard.record(claims, notebook, "§5.2, Tables 1–2", show=False)


def test_record_saves_one_row_per_claim_with_provenance(monkeypatch, tmp_path):
    frame = _run(monkeypatch, tmp_path, "digits", {"DsCo > Random": ("holds", "3/3 better"),
                                                    "DsCo > DiT†": ("within noise", "0/3 better, 0 worse")})
    assert list(frame.index) == ["DsCo > Random", "DsCo > DiT†"]
    assert list(frame["verdict"]) == ["holds", "within noise"]
    out = tmp_path / "digits" / "paper" / "verdicts_31_table01_02_low_ipc.csv"
    assert out.is_file() and out.with_suffix(".json").is_file()


def test_record_refuses_an_unknown_verdict_and_no_claims(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="not one of"):
        _run(monkeypatch, tmp_path, "digits", {"A > B": ("true", "")})
    with pytest.raises(ValueError, match="no claims"):
        _run(monkeypatch, tmp_path, "digits", {})
    assert not list(tmp_path.rglob("verdicts_*.csv"))   # nothing half-written


def test_collect_and_table_give_one_column_per_dataset_that_ran(monkeypatch, tmp_path):
    _run(monkeypatch, tmp_path, "digits", {"DsCo > Random": ("holds", "3/3"), "only here": ("does not hold", "x")})
    _run(monkeypatch, tmp_path, "mnist", {"DsCo > Random": ("holds in most cells", "2/3")})
    _run(monkeypatch, tmp_path, "mnist", {"smoke only": ("holds", "")}, profile="smoke")
    long = scorecard.collect("paper")
    assert sorted(long["dataset"].unique()) == ["digits", "mnist"] and long["saved_at"].str.len().min() > 0
    wide = scorecard.table(long)
    assert list(wide.columns) == ["digits", "digits: numbers", "mnist", "mnist: numbers"]
    row = wide.xs("DsCo > Random", level="claim").iloc[0]
    assert (row["digits"], row["mnist"], row["mnist: numbers"]) == ("holds", "holds in most cells", "2/3")
    assert wide.xs("only here", level="claim").iloc[0]["mnist"] == "not measured"
    assert scorecard.collect("paper", datasets=["folder"]).empty and scorecard.table(scorecard.collect("nope")).empty


def test_markdown_links_present_notebooks_and_page_counts_the_verdicts(monkeypatch, tmp_path):
    _run(monkeypatch, tmp_path, "digits", {"A | B": ("holds", "1/1"), "C": ("within noise", "+0.1 [-1, 1]")})
    text = scorecard.markdown(scorecard.collect("paper"), present=["31_table01_02_low_ipc"])
    assert "{doc}`31_table01_02_low_ipc <notebooks/31_table01_02_low_ipc>`" in text
    assert "A \\| B" in text and "✓ holds" in text and "○ within noise" in text
    assert "`31_table01_02_low_ipc`" in scorecard.markdown(scorecard.collect("paper"))   # not in this build
    page = scorecard.page("paper")
    assert page.startswith("# Claims scorecard") and "1 holds, 1 within noise" in page and "**digits**" in page
    assert "No executed notebook has recorded" in scorecard.page("smoke")


def test_record_shows_the_verdicts_as_a_list(monkeypatch, tmp_path):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs: shown.extend(objs))
    monkeypatch.setenv("DSCO_RESULTS", str(tmp_path))
    plots.start("digits", "smoke", 0, "cpu")
    scorecard.record({"A > B": ("within noise", "+0.1 [-0.5, +0.7]")}, "31_table01_02_low_ipc", "§5")
    assert shown[0].data == "- ○ **A > B** — within noise: +0.1 [-0.5, +0.7]"
