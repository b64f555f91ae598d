"""`make lab`: JupyterLab from the project's environment on the notebooks folder. The server starts
headless, lists the notebooks through its REST API, runs one notebook in a kernel it started, and
stops."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import requests

from dsco import ROOT, runner


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_make_lab_serves_the_notebooks_and_runs_one_in_its_kernel(tmp_path):
    from jupyter_client import BlockingKernelClient

    assert (
        "lab:" in (ROOT / "Makefile").read_text()
        and "--notebook-dir notebooks" in (ROOT / "Makefile").read_text()
    )
    port, token = _free_port(), "dsco-test-token"
    env_dirs = {
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "DSCO_RESULTS": str(tmp_path / "results"),
    }  # the digits batch test may run beside it
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            f"--port={port}",
            f"--IdentityProvider.token={token}",
            "--notebook-dir",
            str(ROOT / "notebooks"),
            "--ServerApp.ip=127.0.0.1",
            "--allow-root",
        ],
        env={**os.environ, **env_dirs},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base, head = f"http://127.0.0.1:{port}/api", {"Authorization": f"token {token}"}
    listing = None
    try:
        for _ in range(120):
            try:
                listing = requests.get(f"{base}/contents/", headers=head, timeout=2)
                if listing.ok:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        assert listing is not None and listing.ok, (
            "the JupyterLab server did not answer within a minute"
        )
        names = sorted(
            item["name"] for item in listing.json()["content"] if item["type"] == "notebook"
        )
        assert names == sorted(p.name for p in runner.notebooks())
        kernel = requests.post(
            f"{base}/kernels", headers=head, json={"name": "python3"}, timeout=30
        ).json()
        connection = Path(env_dirs["JUPYTER_RUNTIME_DIR"]) / f"kernel-{kernel['id']}.json"
        for _ in range(60):
            if connection.is_file():
                break
            time.sleep(0.5)
        client = BlockingKernelClient(connection_file=str(connection))
        client.load_connection_file()
        client.start_channels()
        client.wait_for_ready(timeout=180)  # a loaded CI machine starts kernels slowly
        nb = nbformat.read(ROOT / "notebooks" / "10_occupancy_table13.ipynb", as_version=4)
        outputs = []
        client.execute_interactive(f"import os; os.chdir({str(ROOT / 'notebooks')!r})", timeout=60)
        for cell in (c for c in nb.cells if c.cell_type == "code"):
            reply = client.execute_interactive(cell.source, timeout=300, output_hook=outputs.append)
            assert reply["content"]["status"] == "ok", (
                cell.source[:80],
                reply["content"].get("evalue"),
            )
        assert any(
            o["msg_type"] == "display_data" for o in outputs
        )  # its figures and tables came back
        client.stop_channels()
        assert (
            requests.delete(f"{base}/kernels/{kernel['id']}", headers=head, timeout=30).status_code
            == 204
        )
    finally:
        server.terminate()
        server.wait(timeout=60)
    with pytest.raises(requests.ConnectionError):  # the server went away with its port
        requests.get(f"{base}/contents/", headers=head, timeout=2)
