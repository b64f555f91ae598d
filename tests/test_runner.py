"""The papermill batch runner and the ``dsco`` CLI, on tiny synthetic notebooks."""

import re

import nbformat
import pytest

from dsco import cli, fixtures, runner


def make_notebook(path, body="x = 1", tagged=True):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(
        'dataset = "digits"\nprofile = "smoke"\nseed = 0\ndevice = "cpu"\nroot = None'
    )
    if tagged:
        params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# Tiny"), params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


@pytest.fixture(autouse=True)
def fixed_sources(monkeypatch):
    """Pin the package/data digest so edits elsewhere in the tree don't invalidate these caches."""
    monkeypatch.setattr(runner, "sources_digest", lambda: "0" * 64)


@pytest.fixture
def folder(tmp_path):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    make_notebook(nbs / "10_first.ipynb", "result = (dataset, profile, seed)\nprint(result)")
    make_notebook(nbs / "20_second.ipynb", "print(root)")
    (nbs / "notes.ipynb").write_text("{}")  # not numbered: ignored
    return nbs


def run(folder, tmp_path, **kw):
    kw.setdefault("extra", {"root": "/data/x"})
    return runner.run(folder=folder, runs_dir=tmp_path / "runs", progress=False, log=None, **kw)


def test_notebooks_order_and_only(folder):
    assert [p.stem for p in runner.notebooks(folder=folder)] == ["10_first", "20_second"]
    assert [p.stem for p in runner.notebooks(["20"], folder)] == ["20_second"]
    assert [p.stem for p in runner.notebooks(["20_second.ipynb", "10_first"], folder)] == [
        "10_first",
        "20_second",
    ]
    with pytest.raises(runner.RunError, match="no notebook '99'"):
        runner.notebooks(["99"], folder)


def test_run_injects_parameters_then_skips_then_forces(folder, tmp_path):
    first = run(folder, tmp_path, profile="paper", seed=3)
    assert [r.status for r in first] == ["executed", "executed"]
    out = nbformat.read(first[0].output, as_version=4)
    injected = [c for c in out.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "seed = 3" in injected[0].source
    printed = "".join(o.get("text", "") for c in out.cells for o in c.get("outputs", []))
    assert "('digits', 'paper', 3)" in printed
    assert first[0].output.parent == tmp_path / "runs" / "digits" / "paper"

    again = run(folder, tmp_path, profile="paper", seed=3)
    assert [r.status for r in again] == ["skipped", "skipped"]
    changed = run(folder, tmp_path, profile="paper", seed=4)  # new parameters: new key
    assert [r.status for r in changed] == ["executed", "executed"]
    forced = run(folder, tmp_path, profile="paper", seed=4, force=True, only=["10"])
    assert [r.status for r in forced] == ["executed"]


def test_editing_a_notebook_invalidates_only_it(folder, tmp_path):
    run(folder, tmp_path)
    make_notebook(folder / "20_second.ipynb", "print(root, 2)")
    assert [r.status for r in run(folder, tmp_path)] == ["skipped", "executed"]


def test_failure_names_cell_and_exception_and_removes_stale_output(folder, tmp_path):
    ok = run(folder, tmp_path)
    stale = ok[1].output
    assert stale.exists()
    make_notebook(folder / "20_second.ipynb", "raise ZeroDivisionError('boom here')")
    with pytest.raises(runner.NotebookFailed) as err:
        run(folder, tmp_path)
    msg = str(err.value)
    assert "20_second.ipynb" in msg and "cell [" in msg and "ZeroDivisionError: boom here" in msg
    assert not stale.exists() and not stale.with_suffix(".key").exists()
    assert (stale.parent / "20_second.failed.ipynb").exists()


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(dataset="cifar10"), "unknown dataset 'cifar10'"),
        (dict(profile="fast"), "unknown profile 'fast'"),
        (dict(only=["42"]), "no notebook '42'"),
    ],
)
def test_bad_input_writes_nothing(folder, tmp_path, kw, match):
    with pytest.raises(runner.RunError, match=match):
        run(folder, tmp_path, **kw)
    assert not (tmp_path / "runs").exists()


def test_untagged_parameters_cell_is_rejected_before_anything_runs(folder, tmp_path):
    make_notebook(folder / "30_untagged.ipynb", tagged=False)
    with pytest.raises(runner.RunError, match="30_untagged.ipynb has no cell tagged 'parameters'"):
        run(folder, tmp_path)
    assert not (tmp_path / "runs").exists()


def test_cache_key_depends_on_params_and_sources(folder):
    nb = folder / "10_first.ipynb"
    k = runner.cache_key(nb, {"seed": 0}, "abc")
    assert k == runner.cache_key(nb, {"seed": 0}, "abc")
    assert k != runner.cache_key(nb, {"seed": 1}, "abc")
    assert k != runner.cache_key(nb, {"seed": 0}, "abd")


def test_tree_digest_follows_paths_sizes_and_modification_times(tmp_path):
    import os
    import shutil

    from dsco import tree_digest

    root = tmp_path / "tree"
    (root / "a").mkdir(parents=True)
    image = root / "a" / "1.png"
    image.write_bytes(b"abc")
    first = tree_digest(root)
    assert first == tree_digest(str(root)) and first != tree_digest(tmp_path / "nowhere")
    shutil.copytree(root, tmp_path / "copy")  # copytree keeps the times: the same content
    assert tree_digest(tmp_path / "copy") == first
    image.write_bytes(b"abcd")  # another size
    resized = tree_digest(root)
    assert resized != first
    st = image.stat()
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # rewritten: another time
    assert tree_digest(root) != resized
    (root / "a" / "2.png").write_bytes(b"")
    assert len({tree_digest(root), resized, first}) == 3


def test_the_cache_key_digests_keep_their_bytes():
    """The caches' content keys are made of json_digest and tensor_digest: the values below were
    computed by the code they replaced (doping's, evaluate's and surrogates' own hashers, five
    inline json.dumps), so the sets and trainings cached before keep being read back."""
    from pathlib import Path

    import torch

    from dsco import json_digest, tensor_digest

    x = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4).transpose(1, 2)  # strided
    y = torch.tensor([3, 1])
    with_shapes = "be75dfff77e288ba1bdb63e5dfd4e84d916f5ab1c8d13e1fef940265b0573578"
    assert tensor_digest(x, y) == tensor_digest(x.contiguous(), y) == with_shapes
    assert tensor_digest(x.requires_grad_(), y) == with_shapes
    assert tensor_digest(x, y, shapes=False) == (
        "12950c915d1474da428e9f3708d1dd6519e6b22241b5fd40928756759bea299e"
    )
    assert tensor_digest(x.reshape(4, 6), y) != with_shapes  # same values, another shape
    key = {"b": [1, 2.5, "c"], "a": {"z": None, "y": True}, "p": Path("/tmp/q"), "t": (1, 2)}
    assert json_digest(key) == "27337caadd19671cc1c46e5f91ebe3a6fcec128001972b1749aaab992ab2d1a3"
    assert json_digest(dict(reversed(key.items()))) == json_digest(key)  # dict order: no matter
    key = ["fp1", "fp2", [0, 1], [1.0, 4.0], 2, 3, 0, "cpu"]  # prepare.class_consistency's
    assert json_digest(key) == "6f34ab8eb8396ab9592e442a152e9c309f73816282de3cfd3a4dd0480b6a84d3"


def test_the_key_follows_the_data_tree_and_the_trained_models(folder, tmp_path, monkeypatch):
    """A changed tree re-executes every notebook; a retrain (a new file under
    build/models/<dataset>/) the notebooks after the setup notebooks."""
    from dsco import models

    monkeypatch.setattr(models, "BUILD_MODELS", tmp_path / "models")
    make_notebook(folder / "00_setup.ipynb", "print(root)")
    root = tmp_path / "tree" / "c"
    root.mkdir(parents=True)
    (root / "0.png").write_bytes(b"1")
    kw = dict(extra={"root": str(root.parent)})
    assert [r.status for r in run(folder, tmp_path, **kw)] == ["executed"] * 3
    assert [r.status for r in run(folder, tmp_path, **kw)] == ["skipped"] * 3
    trained = tmp_path / "models" / "digits" / "smoke-x"
    trained.mkdir(parents=True)
    (trained / "digits_ddpm.safetensors").write_bytes(b"weights")
    assert [r.status for r in run(folder, tmp_path, **kw)] == ["skipped", "executed", "executed"]
    (root / "0.png").write_bytes(b"22")
    assert [r.status for r in run(folder, tmp_path, **kw)] == ["executed"] * 3
    first = folder / "10_first.ipynb"
    key = runner.cache_key(first, {}, "0", runner.inputs_digest("digits"))
    (trained / "digits_ddpm.safetensors").write_bytes(b"retrained")
    assert runner.cache_key(first, {}, "0", runner.inputs_digest("digits")) != key


def test_sources_digest_follows_the_package_sources_and_the_shipped_data(tmp_path, monkeypatch):
    monkeypatch.undo()
    (tmp_path / "dsco").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "dsco" / "a.py").write_text("x = 1")
    (tmp_path / "data" / "t.csv").write_text("1")
    monkeypatch.setattr(runner, "ROOT", tmp_path)
    first = runner.sources_digest()
    assert re.fullmatch("[0-9a-f]{64}", first) and runner.sources_digest() == first
    (tmp_path / "dsco" / "notes.txt").write_text("not a source")
    assert runner.sources_digest() == first
    (tmp_path / "data" / "t.csv").write_text("2")
    second = runner.sources_digest()
    assert second != first
    (tmp_path / "dsco" / "a.py").write_text("x = 2")
    assert runner.sources_digest() not in (first, second)


def test_cli_bad_input_exit_2_one_line(capsys):
    assert cli.main(["run", "--dataset", "cifar10"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown dataset 'cifar10'" in err and "--dataset" in err
    assert cli.main(["run", "--profile", "fast"]) == 2
    assert cli.main(["run", "--only", "99_nothing"]) == 2
    assert cli.main(["run", "-p", "seed", "3"]) == 2
    assert cli.main(["run", "--jobs", "0"]) == 2
    assert "--jobs 1 or more" in capsys.readouterr().err


def test_cli_value_parsing():
    assert cli._value("3") == 3 and cli._value("0.5") == 0.5 and cli._value("true") is True
    assert cli._value("/data/imagenette") == "/data/imagenette"
    assert cli._value("[1, 2]") == "[1, 2]"  # lists stay strings: notebooks parse their own


def test_cli_run_on_folder(monkeypatch, folder, tmp_path, capsys):
    monkeypatch.setattr(runner, "NOTEBOOKS", folder)
    monkeypatch.setattr(runner, "RUNS", tmp_path / "runs")
    assert cli.main(["run", "--only", "20", "-p", "root", "/x/y"]) == 0
    out = tmp_path / "runs" / "digits" / "smoke" / "20_second.ipynb"
    assert "/x/y" in out.read_text()
    assert "1 executed, 0 skipped" in capsys.readouterr().out
    assert cli.main(["run", "--only", "20", "-p", "root", "/x/y"]) == 0
    assert "0 executed, 1 skipped" in capsys.readouterr().out


def test_kernels_do_not_print_the_tqdm_ipywidgets_warning(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONWARNINGS", "")  # restored after the test
    make_notebook(
        folder / "10_first.ipynb", "from tqdm.auto import tqdm\nprint(sum(tqdm(range(3))))"
    )
    out = run(folder, tmp_path, only=["10"])[0].output.read_text()
    assert "IProgress" not in out and '"3\\n"' in out


def test_parallel_jobs_run_setup_first_and_collect_every_failure(folder, tmp_path):
    make_notebook(folder / "00_setup.ipynb", "setup = True")
    make_notebook(folder / "30_third.ipynb", "raise ValueError('third broke')")
    make_notebook(folder / "40_fourth.ipynb", "raise KeyError('fourth broke')")
    with pytest.raises(runner.NotebookFailed) as err:
        run(folder, tmp_path, jobs=3)
    msg = str(err.value)
    assert msg.startswith("2 notebook(s) failed") and "third broke" in msg and "fourth broke" in msg
    out = tmp_path / "runs" / "digits" / "smoke"
    assert {p.name for p in out.glob("*.ipynb")} == {
        "00_setup.ipynb",
        "10_first.ipynb",
        "20_second.ipynb",
        "30_third.failed.ipynb",
        "40_fourth.failed.ipynb",
    }
    for bad in ("30_third", "40_fourth"):
        (folder / f"{bad}.ipynb").unlink()
    again = run(folder, tmp_path, jobs=3)
    assert [r.notebook for r in again] == ["00_setup", "10_first", "20_second"]
    assert [r.status for r in again] == ["skipped"] * 3


def test_each_notebook_receives_the_parameters_it_declares(folder, tmp_path):
    make_notebook(
        folder / "30_third.ipynb", "print(sorted(k for k in dir() if k in ('root', 'threads')))"
    )
    nb = nbformat.read(folder / "30_third.ipynb", as_version=4)
    nb.cells[1].source += "\nthreads = 1"
    nbformat.write(nb, folder / "30_third.ipynb")
    assert runner.declared(folder / "30_third.ipynb") == [
        "dataset",
        "profile",
        "seed",
        "device",
        "root",
        "threads",
    ]
    out = run(folder, tmp_path, extra={"root": "/x", "threads": 2})
    first = nbformat.read(
        out[0].output, as_version=4
    )  # declares no threads: papermill is never given it
    injected = next(c for c in first.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "threads" not in injected.source and "root = " in injected.source
    assert "threads = 2" in out[2].output.read_text()


def test_a_parameter_no_notebook_declares_is_refused_before_anything_runs(folder, tmp_path):
    with pytest.raises(
        runner.RunError,
        match=r"no notebook declares the parameter\(s\) rooot: use -p with one of root",
    ):
        run(folder, tmp_path, extra={"rooot": "/x"})
    assert not (tmp_path / "runs").exists()


@pytest.fixture(scope="module")
def nette(tmp_path_factory):
    return fixtures.make(tmp_path_factory.mktemp("fx"), train=2, val=1)


@pytest.fixture
def dsfolder(tmp_path):
    """One notebook declaring every dataset parameter, as the dataset notebooks do."""
    from dsco.datasets import PARAMS

    nbs = tmp_path / "dsnotebooks"
    nbs.mkdir()
    make_notebook(nbs / "10_ds.ipynb")
    nb = nbformat.read(nbs / "10_ds.ipynb", as_version=4)
    nb.cells[1].source += "".join(f"\n{k} = None" for k in PARAMS if k != "root")
    nbformat.write(nb, nbs / "10_ds.ipynb")
    return nbs


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(root=None), r"dataset 'imagenette' needs -p root"),
        (dict(backbone_path=None), r"needs -p backbone_path"),
        (
            dict(image_size=16),
            r"decodes to 8 px images but imagenette is loaded at image_size 16: pass -p "
            r"image_size 8",
        ),
        (dict(teacher_path="vae"), r"teacher .* not a timm|no teacher|has no|is not a timm"),
        (dict(root="missing"), r"class folder\(s\) missing under .*n01440764 \(tench\)"),
    ],
)
def test_dataset_parameters_are_checked_before_anything_runs(
    dsfolder, tmp_path, nette, change, match, capsys, monkeypatch
):
    folder = dsfolder
    params = dict(nette)
    for k, v in change.items():
        params[k] = (
            None
            if v is None
            else v
            if k == "image_size"
            else nette["vae_path"]
            if v == "vae"
            else str(tmp_path / v)
        )
    if change.get("root") == "missing":
        (tmp_path / "missing" / "train").mkdir(parents=True)
    params = {k: v for k, v in params.items() if v is not None}
    with pytest.raises(runner.RunError, match=match):
        run(folder, tmp_path, dataset="imagenette", extra=params)
    assert not (tmp_path / "runs").exists()
    monkeypatch.setattr(runner, "NOTEBOOKS", folder)
    monkeypatch.setattr(runner, "RUNS", tmp_path / "runs")
    argv = ["run", "--dataset", "imagenette"] + [
        a for k, v in params.items() for a in ("-p", k, str(v))
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dsco: error:") and err.count("\n") == 0


def test_a_backbone_of_the_wrong_class_count_is_refused(dsfolder, tmp_path, nette):
    from dsco import backbones, dit

    folder = dsfolder
    bb = backbones.load(
        "dit-xl-2-256", random_weights=True, config=dit.TINY_DIT, vae_config=dit.TINY_VAE
    )
    bb.model.save_pretrained(tmp_path / "dit10")  # 10 classes: not conditioned on ImageNet-1k
    with pytest.raises(
        runner.RunError, match="the backbone has 10 classes but imagenette needs 1000"
    ):
        run(
            folder,
            tmp_path,
            dataset="imagenette",
            extra={**nette, "backbone_path": str(tmp_path / "dit10")},
        )


def test_ctrl_c_prints_one_line_and_how_to_resume(folder, tmp_path, monkeypatch, capsys):
    import papermill

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(papermill, "execute_notebook", interrupted)
    with pytest.raises(KeyboardInterrupt, match="interrupted after 0 of 2 notebooks"):
        run(folder, tmp_path)
    monkeypatch.setattr(runner, "NOTEBOOKS", folder)
    monkeypatch.setattr(runner, "RUNS", tmp_path / "runs")
    assert cli.main(["run"]) == 130
    err = capsys.readouterr().err.strip().splitlines()  # the progress bar closes before the message
    assert err[-1] == "dsco: interrupted after 0 of 2 notebooks; rerun the same command to resume"


def test_cli_fixtures_writes_a_tree_and_prints_the_command(tmp_path, capsys):
    assert cli.main(["fixtures", "--dataset", "folder", "--out", str(tmp_path / "f")]) == 0
    out = capsys.readouterr().out
    assert f"dsco run --dataset folder --profile smoke -p root {tmp_path / 'f'}" in out
    assert len(list((tmp_path / "f").glob("*/*.png"))) == 3 * 14
    assert (
        cli.main(["fixtures", "--dataset", "folder", "--out", str(tmp_path / "f")]) == 2
    )  # not empty
    assert cli.main(["fixtures", "--dataset", "digits", "--out", str(tmp_path / "g")]) == 2


def test_parallel_kernels_split_the_cores_between_them(folder, tmp_path, monkeypatch):
    for name in runner._THREAD_VARS:
        monkeypatch.delenv(name, raising=False)
    make_notebook(
        folder / "10_first.ipynb", "import os\nprint('threads', os.environ.get('OMP_NUM_THREADS'))"
    )
    out = run(folder, tmp_path, jobs=2)[0].output.read_text()
    import os

    assert f"threads {max(1, len(os.sched_getaffinity(0)) // 2)}" in out
    assert "OMP_NUM_THREADS" not in os.environ  # restored after the batch


def test_kernel_threads_keeps_what_the_user_set_and_restores_the_rest(monkeypatch):
    import os

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    with runner.kernel_threads(4, cores=16) as share:
        assert (
            share == "4"
            and os.environ["OMP_NUM_THREADS"] == "3"
            and os.environ["MKL_NUM_THREADS"] == "4"
        )
    assert os.environ["OMP_NUM_THREADS"] == "3" and "MKL_NUM_THREADS" not in os.environ
    with runner.kernel_threads(8, cores=2) as share:
        assert share == "1"


def test_ctrl_c_stops_a_parallel_batch_without_waiting_for_its_notebooks(folder, tmp_path):
    """jupyter_client starts kernels in their own session, so Ctrl-C reaches only the runner: it
    cancels the queued notebooks and stops the running kernels instead of waiting the notebooks
    out."""
    import os
    import signal
    import threading
    import time

    import psutil

    # a process started in the background by a non-interactive shell (as CI may be) ignores SIGINT:
    # restore Python's own handler, which a terminal's Ctrl-C meets
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    for name in ("10_first", "20_second", "30_third"):
        make_notebook(folder / f"{name}.ipynb", "import time\ntime.sleep(300)")
    out = tmp_path / "runs" / "digits" / "smoke"
    sent = []

    def interrupt_once_both_run():
        deadline = time.monotonic() + 240
        while len(list(out.glob(".*.running.ipynb"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)  # the kernels start and enter the sleeping cells
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)  # what the terminal sends on Ctrl-C

    threading.Thread(target=interrupt_once_both_run, daemon=True).start()
    try:
        with pytest.raises(KeyboardInterrupt, match="interrupted after 0 of 3"):
            run(folder, tmp_path, jobs=2)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - sent[0] < 120  # the cells sleep 300 s
    assert not [
        c for c in psutil.Process().children(recursive=True) if "ipykernel" in " ".join(c.cmdline())
    ]
    assert not (out / "30_third.ipynb").exists() and not list(out.glob(".*.running.ipynb"))


def test_stop_kernels_ignores_other_children():
    import subprocess
    import sys

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert runner.stop_kernels() == 0 and other.poll() is None
    finally:
        other.kill()
        other.wait()
