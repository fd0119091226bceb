"""The dbt project and its manifest (produced with `dbt parse` when missing or stale)."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

from dagster_dbt import DbtProject

from squak_pipelines.config import DBT_PROJECT_DIR, Settings


def venv_tool(name: str) -> str:
    """A console script of this environment (sys.prefix survives symlinked interpreters)."""
    for folder in (Path(sys.prefix) / "bin", Path(sys.executable).parent):
        if (folder / name).exists():
            return str(folder / name)
    return shutil.which(name) or name


def dbt_executable() -> str:
    return venv_tool("dbt")


def _newest_source_mtime(project_dir: Path) -> float:
    files = [project_dir / "dbt_project.yml", project_dir / "profiles.yml"]
    for sub in ("models", "macros", "tests"):
        files.extend((project_dir / sub).rglob("*") if (project_dir / sub).exists() else [])
    return max((f.stat().st_mtime for f in files if f.is_file()), default=0.0)


def ensure_manifest(settings: Settings | None = None, project_dir: Path = DBT_PROJECT_DIR) -> Path:
    """Run `dbt parse` if target/manifest.json is missing or older than the project files.
    Safe when many processes load the definitions at once (test workers, a benchmark, the
    UI): one parses under a lock while the others wait, and the manifest is written beside
    and renamed into place, so no process ever reads a half-written one."""
    settings = settings or Settings.from_env()
    target = project_dir / "target"
    manifest = target / "manifest.json"
    if _fresh(manifest, project_dir):
        return manifest
    target.mkdir(parents=True, exist_ok=True)
    with (target / ".manifest.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _fresh(manifest, project_dir):  # another process parsed while this one waited
            return manifest
        scratch = target / f".parse-{os.getpid()}"
        env = {**os.environ, **settings.dbt_env()}
        partial = target / "partial_parse.msgpack"  # dbt's parse cache, kept between parses
        try:
            scratch.mkdir(parents=True, exist_ok=True)
            if partial.exists():
                shutil.copy2(partial, scratch / partial.name)
            result = subprocess.run(
                [dbt_executable(), "parse", "--project-dir", str(project_dir),
                 "--profiles-dir", str(project_dir), "--target", settings.dbt_target,
                 "--target-path", str(scratch), "--quiet"],
                env=env, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise RuntimeError(f"dbt parse failed:\n{result.stdout}\n{result.stderr}")
            if (scratch / partial.name).exists():
                os.replace(scratch / partial.name, partial)
            os.replace(scratch / "manifest.json", manifest)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return manifest


def _fresh(manifest: Path, project_dir: Path) -> bool:
    return manifest.exists() and manifest.stat().st_mtime >= _newest_source_mtime(project_dir)


def dbt_project(settings: Settings | None = None) -> DbtProject:
    settings = settings or Settings.from_env()
    return DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR,
                      target=settings.dbt_target)
