"""What a Dagster user tries first: `dagster dev -w workspace.yaml` in a new shell (no venv on
PATH, no DAGSTER_HOME) serves the asset graph with its lineage and shows `make run`'s runs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from squak_pipelines.config import Settings
from squak_pipelines.instance import dev_instance_yaml, prepare_dagster_home

ROOT = Path(__file__).resolve().parent.parent
QUERY = """{
  assetNodes { assetKey { path } dependencyKeys { path } isObservable }
  runsOrError { __typename ... on Runs { results { runId } } }
}"""

pytestmark = pytest.mark.slow


def test_the_repository_dagster_yaml_is_the_managed_instance_at_make_runs_home() -> None:
    settings = Settings.from_env({"SQUAK_DATA_DIR": str(ROOT / ".squak")})
    expected = dev_instance_yaml(settings, ".squak/dagster")
    assert (ROOT / "dagster.yaml").read_text() == expected


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, deadline: float, server: subprocess.Popen, log: Path) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql",
                                     data=json.dumps({"query": QUERY}).encode(),
                                     headers={"Content-Type": "application/json"})
    while time.monotonic() < deadline:
        assert server.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                data = json.loads(response.read())["data"]
            if data["assetNodes"]:  # the code location has loaded
                return data
        except (OSError, KeyError, TypeError):
            pass
        time.sleep(1)
    pytest.fail(f"dagster dev did not serve the asset graph in time:\n{log.read_text()[-3000:]}")


def test_dagster_dev_in_a_new_shell_serves_the_graph_and_the_runs_of_make_run(tmp_path: Path) -> None:
    # A checkout's folder: workspace.yaml and dagster.yaml, `make run`'s Dagster home under .squak/.
    shutil.copy(ROOT / "workspace.yaml", tmp_path / "workspace.yaml")
    text = (tmp_path / "workspace.yaml").read_text()
    text = text.replace("working_directory: .", f"working_directory: {ROOT}")
    (tmp_path / "workspace.yaml").write_text(text)
    settings = Settings.from_env({"SQUAK_DATA_DIR": str(tmp_path / ".squak")})
    (tmp_path / "dagster.yaml").write_text(dev_instance_yaml(settings, ".squak/dagster"))
    saved = os.environ.get("DAGSTER_HOME")
    try:
        os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
        home = prepare_dagster_home(settings)
        with dg.DagsterInstance.from_config(str(home)) as instance:  # a run, as `make run` makes them
            run_id = dg.materialize([_noop], instance=instance).run_id
    finally:
        if saved is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = saved
    port, log = _free_port(), tmp_path / "dagster-dev.log"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SQUAK_DATA_DIR": str(tmp_path / ".squak")}
    server = subprocess.Popen([str(Path(sys.executable).parent / "dagster"), "dev", "-w", "workspace.yaml",
                               "-p", str(port)], cwd=tmp_path, env=env, stdout=log.open("w"),
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        data = _graphql(port, time.monotonic() + 240, server, log)
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
    nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
    assert nodes["reference/rate_decks"]["isObservable"]
    parents = {"/".join(d["path"]) for d in nodes["rating/rated_events"]["dependencyKeys"]}
    assert {"reference/rate_decks", "reference/rate_plans", "mediation/events"} <= parents
    assert "raw/cdr_drop_files" in {"/".join(d["path"]) for d in nodes["mediation/events"]["dependencyKeys"]}
    runs = {r["runId"] for r in data["runsOrError"]["results"]}
    assert run_id in runs, "the UI shows the runs made with the project's Dagster home"


@dg.asset(name="noop")
def _noop() -> None:
    return None
