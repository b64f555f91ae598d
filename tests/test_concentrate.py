"""dsco concentrate: the concentrated set on disk, sharded (2 gloo ranks, byte-identical), resumable
(kill and rerun), guarded (non-finite values, unwritable or full folders, other arguments)."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torchvision

from dsco import ROOT, cli, concentrate, export, nopt

TINY = [
    "--profile",
    "smoke",
    "--ipc",
    "2",
    "--threads",
    "1",
    "-o",
    "num_steps",
    "4",
    "-o",
    "iterations",
    "3",
]
DSCO = [sys.executable, "-m", "dsco"]


def images(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.glob("*/*.png"))}


def test_a_single_process_export_with_doping_and_its_manifest(tmp_path, capsys):
    out = tmp_path / "set"
    assert (
        cli.main(
            ["concentrate", *TINY, "--dope-to", "4", "--classes", "1", "4", "6", "--out", str(out)]
        )
        == 0
    )
    m = json.loads((out / "manifest.json").read_text())
    assert m["method"] == "dsco+doping" and m["parameters"]["options"]["iterations"] == 3
    assert (
        m["parameters"]["options"]["lambda_align"] == nopt.DEFAULTS["lambda_align"]
    )  # every option resolved
    assert (
        m["counts"] == {str(c): (4 if c in (1, 4, 6) else 0) for c in range(10)} and m["git_commit"]
    )
    assert (
        set(m["cost_per_class"]) == {"1", "4", "6"}
        and m["doping"]["doped"] == 6
        and "torch" in m["packages"]
    )
    s = export.read_export(out)  # every file's SHA-256 checked
    assert len(s) == 12 and s.y.tolist() == [1] * 4 + [4] * 4 + [6] * 4
    tv = torchvision.datasets.ImageFolder(
        str(out), allow_empty=True
    )  # the bookkeeping is gone: labels = ours
    assert len(tv) == 12 and tv.class_to_idx["04_4"] == 4
    assert (
        cli.main(
            ["concentrate", *TINY, "--dope-to", "4", "--classes", "1", "4", "6", "--out", str(out)]
        )
        == 0
    )
    assert "nothing to do" in capsys.readouterr().out


def test_two_gloo_ranks_write_byte_identical_images(tmp_path):
    args = ["concentrate", *TINY, "--classes", "0", "3", "5", "8"]
    subprocess.run(
        [*DSCO, *args, "--out", str(tmp_path / "one")], check=True, capture_output=True, cwd=ROOT
    )
    ranks = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "dsco",
        *args,
        "--out",
        str(tmp_path / "two"),
    ]
    done = subprocess.run(ranks, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    one, two = images(tmp_path / "one"), images(tmp_path / "two")
    assert len(one) == 8 and one == two  # file by file, byte for byte
    m1, m2 = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("one", "two"))
    assert m1["files"] == m2["files"] and {c["rank"] for c in m2["cost_per_class"].values()} == {
        0,
        1,
    }


def test_a_killed_run_resumes_to_the_same_export(tmp_path):
    # 150 iterations: ~0.7 s per class here, so the interrupt lands seconds before the last class
    # even on a busy machine (at 20 iterations the 4 classes left after the second record took 0.6 s
    # and CI missed it)
    args = [
        "concentrate",
        *TINY,
        "--classes",
        "0",
        "1",
        "2",
        "3",
        "4",
        "5",
        "-o",
        "iterations",
        "150",
    ]
    ref = tmp_path / "ref"
    subprocess.run([*DSCO, *args, "--out", str(ref)], check=True, capture_output=True, cwd=ROOT)
    out = tmp_path / "killed"
    # Ctrl-C reaches the command as from a terminal even when the tests run as a background job (a
    # shell starts background jobs with SIGINT ignored, and Python then keeps ignoring it)
    proc = subprocess.Popen(
        [*DSCO, *args, "--out", str(out)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    records, start = out / ".dsco" / "classes", time.time()
    while len(list(records.glob("*.json")) if records.is_dir() else []) < 1 and proc.poll() is None:
        assert time.time() - start < 300
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode != 0, (
        "the run finished before the interrupt: give each class more iterations"
    )
    assert (
        proc.returncode == 130
        and "interrupted after" in err
        and "rerun the same command to resume" in err
    )
    assert "Traceback" not in err and not (out / "manifest.json").exists()
    t0 = time.perf_counter()
    rerun = subprocess.run(
        [*DSCO, *args, "--out", str(out)], capture_output=True, text=True, cwd=ROOT
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    print(f"resume took {time.perf_counter() - t0:.1f} s")
    assert images(out) == images(ref)
    assert (
        json.loads((out / "manifest.json").read_text())["files"]
        == json.loads((ref / "manifest.json").read_text())["files"]
    )


def test_other_arguments_into_the_same_folder_are_refused(tmp_path):
    out = tmp_path / "set"
    concentrate.run(
        "digits",
        "vanilla",
        2,
        out,
        classes=[0],
        profile="smoke",
        options={"num_steps": 3},
        log=None,
        progress=False,
    )
    with pytest.raises(concentrate.ConcentrateError, match=r"other arguments \(ipc: 2 -> 3\)"):
        concentrate.run(
            "digits",
            "vanilla",
            3,
            out,
            classes=[0],
            profile="smoke",
            options={"num_steps": 3},
            log=None,
        )
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "x.txt").write_text("mine")
    with pytest.raises(
        concentrate.ConcentrateError, match="not empty and holds no dsco concentrate run"
    ):
        concentrate.run("digits", "random", 2, tmp_path / "stuff", profile="smoke", log=None)


def test_a_diverging_optimisation_stops_and_writes_nothing_of_the_class(tmp_path, capsys):
    out = tmp_path / "set"
    argv = ["concentrate", *TINY, "--classes", "2", "-o", "lr", "1e12", "--out", str(out)]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]  # the progress bars close before it
    assert err.startswith("dsco: error: class 2: non-finite") and "lower lr (now 1e+12)" in err
    assert not list(out.glob("0*")) and not list((out / ".dsco" / "classes").glob("*.json"))


def test_unwritable_or_full_folders_fail_before_any_synthesis(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(
        concentrate.ConcentrateError, match="cannot write to .*choose a writable --out"
    ):
        concentrate.run("digits", "dsco", 2, tmp_path / "file" / "set", profile="smoke", log=None)

    def full(path):
        return concentrate.shutil._ntuple_diskusage(10**9, 10**9, 1000)

    monkeypatch.setattr(concentrate.shutil, "disk_usage", full)
    called = []
    monkeypatch.setattr(concentrate.surrogates, "make", lambda *a, **k: called.append(a))
    with pytest.raises(concentrate.ConcentrateError, match="MiB free but the set needs"):
        concentrate.run("digits", "dsco", 2, tmp_path / "set", profile="smoke", log=None)
    assert not called


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    for argv, match in [
        (["--method", "gan"], "unknown method 'gan'"),
        (["--dope-to", "1"], "must be larger than"),
        (["--classes", "12"], "out of range"),
        (["-o", "speed", "3"], "unknown NOpt option"),
        (["--dataset", "imagenette"], "needs -p root"),
    ]:
        assert cli.main(["concentrate", *TINY, "--out", str(tmp_path / "x"), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert match in err and err.count("\n") == 0


def test_world_reads_torchrun_environment(monkeypatch):
    assert concentrate.world() == (0, 1, 0)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert concentrate.world() == (3, 4, 1)
