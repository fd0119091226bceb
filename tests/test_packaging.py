"""A built wheel is complete: installed into a fresh virtualenv outside the repository, it
generates the demo and runs a billing cycle (templates, dbt project and GX suites included)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=900, **kwargs)
    assert result.returncode == 0, f"{args}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_the_wheel_installed_outside_the_repo_bills_a_cycle(tmp_path: Path) -> None:
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(REPO)])
    wheel = next((tmp_path / "dist").glob("squak_billing-*.whl"))
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)])
    # The dependencies come from the test's own environment (the index is not needed for them);
    # a path line in a .pth adds that folder without running its .pth files (the editable
    # install of the repository stays out).
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(_run([str(python), "-c", purelib]).stdout.strip())
    (site / "_squak_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "work"
    work.mkdir()
    # A clean environment: nothing of the test process's Squak, dbt or Dagster settings leaks in.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SQUAK_", "DBT_", "DAGSTER_"))
           and k != "PYTHONPATH"}
    path = f"{venv / 'bin'}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env.update(PATH=path, SQUAK_DATA_DIR=str(work / "squak"), SQUAK_INVOICE_PDF="off",
               SQUAK_DASHBOARD_IMAGES="off", SQUAK_TODAY=os.environ["SQUAK_TODAY"])
    where = _run([str(python), "-c", "import squak_pipelines, squak_pipelines.config as c; "
                  "print(squak_pipelines.__file__); print(c.DBT_PROJECT_DIR); print(c.EXPECTATIONS_DIR)"],
                 env=env, cwd=work).stdout.split()
    assert all(str(venv) in p for p in where), f"the wheel's own files are used: {where}"
    squak = str(venv / "bin" / "squak")
    _run([squak, "generate", "--customers", "12", "--cdrs", "800", "--seed", "4"], env=env, cwd=work)
    result = _run([squak, "run"], env=env, cwd=work)
    assert "==> Verdict: ok" in result.stdout, result.stdout[-3000:]
    invoices = list((work / "squak" / "invoices").rglob("SQK-*.html"))
    assert invoices, "invoices rendered from the packaged template"
