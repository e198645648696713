"""The loop installs for a real user (issue 13, point 1): tuneform installed from a wheel, not
editable, in a fresh virtualenv, run outside this checkout.

- `tuneform init` there writes workflows whose install step names that same distribution (its
  version and the wheel's sha256), and that step, run for real with pip, installs exactly that
  file and refuses another one of the same name;
- `tuneform apply --backend hf-jobs` there, against the local Hub (tests/fakehub.py), submits one
  job, and the wheel it uploads (repacked from the installed files, no TUNEFORM_WHEEL) installs
  and imports as the same version;
- every install step runs pip with `-P`: a `pip/` package planted in the repository is not run;
- the install spec init writes for each kind of install (PEP 610 direct_url.json), and a hostile
  URL never reaches YAML or shell.

The fresh virtualenv has no pip and no dependencies of its own: a .pth file points it at a copy of
the dev virtualenv's site-packages without tuneform (symlinks), so it works offline and quickly.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import tuneform
from conftest import ROOT, Repo, demo_repo
from fakehub import USER_TOKEN, FakeHub
from test_hfjobs import DEMO, REPO
from tuneform.core.distribution import InstallSpec, Origin, install_spec
from tuneform.runfile.scaffold import ScaffoldError, render_workflow

TEMPLATES = ROOT / "src" / "tuneform" / "templates" / "init" / ".github" / "workflows"
NAMES = ("plan.yml", "comment.yml", "apply.yml", "report.yml")
VERSION = tuneform.__version__
COMMIT = "0123456789abcdef0123456789abcdef01234567"
PLANTED_PIP = "import pathlib, os\npathlib.Path(os.environ['CANARY']).write_text('the planted pip ran')\n"


@dataclass
class Venv:
    path: Path
    wheel: Path  # the wheel it was installed from

    @property
    def bin(self) -> Path:
        return self.path / "bin"

    def env(self, home: Path, **extra: str) -> dict[str, str]:
        """A clean environment with this virtualenv first on PATH (no PYTHONPATH, no HF_* or TUNEFORM_*)."""
        keep = {k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")}
        return keep | {"PATH": f"{self.bin}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "HF_HUB_OFFLINE": "1"} | extra


def _dependencies(tmp: Path) -> Path:
    """The dev virtualenv's site-packages without tuneform: one symlink per entry."""
    folder = tmp / "deps"
    if folder.is_dir():
        return folder
    folder.mkdir()
    for site in sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}):
        for entry in Path(site).iterdir():
            if not entry.name.lower().startswith(("tuneform", "__editable__")) and not (folder / entry.name).exists():
                (folder / entry.name).symlink_to(entry)
    return folder


def fresh_venv(path: Path, tmp: Path) -> Path:
    """A virtualenv of this interpreter, with no pip: dependencies come from `_dependencies`."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    [site] = (path / "lib").glob("python3*/site-packages")
    (site / "dev-dependencies.pth").write_text(str(_dependencies(tmp)) + "\n")
    return path


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A wheel of this tuneform, installed (not editable) in a fresh virtualenv."""
    from tuneform.backends.wheel import build_wheel

    tmp = tmp_path_factory.mktemp("install")
    wheel = build_wheel(tmp / "dist")
    venv = fresh_venv(tmp / "venv", tmp)
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps", "--no-index"]
    subprocess.run([*pip, "--disable-pip-version-check", str(wheel)], check=True)
    return Venv(venv, wheel)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def install_step(workflow: dict[str, Any]) -> str:
    [step] = [s for job in workflow["jobs"].values() for s in job["steps"] if "pip install" in s.get("run", "")]
    return str(step["run"])


def run_step(script: str, cwd: Path, env: dict[str, str], tmp: Path) -> subprocess.CompletedProcess[str]:
    """A workflow's `run:` script as the runner runs it (`shell: bash`)."""
    path = tmp / "step.sh"
    path.write_text(script)
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(path)], cwd=cwd, env=env, capture_output=True, text=True)


def plant_pip(repo: Path) -> None:
    (repo / "pip").mkdir()
    (repo / "pip" / "__init__.py").write_text(PLANTED_PIP)
    (repo / "pip" / "__main__.py").write_text(PLANTED_PIP)


# --- done means: init and apply from an installed wheel --------------------------------------------


def test_init_from_an_installed_wheel_pins_that_wheel_and_its_install_step_installs_only_it(installed: Venv, tmp_path: Path) -> None:
    where = subprocess.run(
        [installed.bin / "python", "-c", "import tuneform; print(tuneform.__file__)"],
        cwd=tmp_path,
        env=installed.env(tmp_path),
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(installed.path)), "the test must run the installed tuneform, not this checkout"

    done = subprocess.run(
        [installed.bin / "tuneform", "init", "repo", "--format", "json"],
        cwd=tmp_path,
        env=installed.env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    digest = sha256(installed.wheel)
    assert json.loads(done.stdout)["install"] == {
        "requirement": f"tuneform=={VERSION}",
        "sha256": digest,
        "source": "archive",
        "warning": None,
    }
    text = subprocess.run(
        [installed.bin / "tuneform", "init", "repo2"], cwd=tmp_path, env=installed.env(tmp_path), capture_output=True, text=True
    )
    assert (
        f"the workflows install tuneform=={VERSION} (sha256 {digest}), the tuneform running now (installed from a distribution file)"
        in text.stdout
    )
    assert text.returncode == 0 and "warning" not in text.stdout + text.stderr
    repo = tmp_path / "repo"
    workflows = {name: yaml.safe_load((repo / ".github/workflows" / name).read_text()) for name in NAMES}
    assert {(w["env"]["TUNEFORM_REQUIREMENT"], w["env"]["TUNEFORM_SHA256"]) for w in workflows.values()} == {
        (f"tuneform=={VERSION}", digest)
    }

    # plan.yml's install step, run with real pip in another fresh virtualenv, in the new repository
    # (holding a planted pip/), with the wheel on a local index: it installs exactly that file.
    plant_pip(repo)
    step = install_step(workflows["plan.yml"])
    index = installed.wheel.parent

    def install(target: Path, links: Path) -> subprocess.CompletedProcess[str]:
        venv = Venv(fresh_venv(target, tmp_path), installed.wheel)
        env = venv.env(tmp_path, RUNNER_TEMP=str(tmp_path), CANARY=str(tmp_path / "canary"), PIP_NO_INDEX="1", PIP_FIND_LINKS=str(links))
        return run_step(step, repo, env | workflows["plan.yml"]["env"], tmp_path)

    done = install(tmp_path / "runner", index)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (tmp_path / "canary").exists(), "the step ran the pip/ of the repository"
    found = subprocess.run(
        [
            tmp_path / "runner/bin/python",
            "-P",
            "-c",
            "import tuneform, importlib.metadata as m; print(tuneform.__file__, m.version('tuneform'))",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.split() == [str(next((tmp_path / "runner/lib").glob("python3*/site-packages")) / "tuneform/__init__.py"), VERSION]

    # another file with the same name (a changed wheel) is refused before anything is installed
    other = tmp_path / "other"
    other.mkdir()
    with zipfile.ZipFile(installed.wheel) as source, zipfile.ZipFile(other / installed.wheel.name, "w") as copy:
        for item in source.infolist():
            copy.writestr(item, source.read(item))
        copy.comment = b"changed"
    done = install(tmp_path / "runner2", other)
    assert done.returncode != 0 and "hash" in (done.stdout + done.stderr).lower(), done.stdout + done.stderr
    assert not list((tmp_path / "runner2/lib").glob("python3*/site-packages/tuneform"))


def test_apply_from_an_installed_wheel_submits_one_job_with_that_wheel(installed: Venv, tmp_path: Path, fake_hub: FakeHub) -> None:
    demo: Repo = demo_repo(tmp_path / "demo", DEMO)
    env = installed.env(tmp_path, TUNEFORM_HOME=str(tmp_path / "registry"), TUNEFORM_RETRY_DELAY="0.05") | fake_hub.client_env(USER_TOKEN)
    done = subprocess.run(
        [installed.bin / "tuneform", "apply", "--backend", "hf-jobs", "--no-wait", "runs/demo.yaml"],
        cwd=demo.path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(fake_hub.requests_to("POST", r"^/api/jobs/acme$")) == 1 and len(fake_hub.jobs) == 1, done.stdout

    repo = fake_hub.repo(REPO)
    uploaded = {path: repo.read(path, oid) for oid, commit in repo.commits.items() for path in commit.files if path.endswith(".whl")}
    [(path, data)] = uploaded.items()
    assert path.endswith(f"/tuneform-{VERSION}-py3-none-any.whl")
    wheel = tmp_path / Path(path).name
    wheel.write_bytes(data)

    # repacked from the installed files: the same files as the wheel it was installed from, and a
    # RECORD whose hashes are right (pip itself does not check them)
    with zipfile.ZipFile(installed.wheel) as original, zipfile.ZipFile(wheel) as repacked:
        record_name = f"tuneform-{VERSION}.dist-info/RECORD"
        assert sorted(original.namelist()) == sorted(repacked.namelist())
        for name in original.namelist():
            if name != record_name:
                assert original.read(name) == repacked.read(name), name
        rows = [line.split(",") for line in repacked.read(record_name).decode().splitlines()]
        assert sorted(row[0] for row in rows) == sorted(repacked.namelist())
        for name, digest, size in rows:
            if name != record_name:
                data = repacked.read(name)
                assert digest == "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                assert size == str(len(data))

    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--disable-pip-version-check", "--target", str(target)]
    subprocess.run([*pip, str(wheel)], check=True)
    probe = "import sys; sys.path.insert(0, sys.argv[1]); import tuneform, importlib.metadata as m; print(tuneform.__file__, tuneform.__version__, m.version('tuneform'))"
    found = subprocess.run([sys.executable, "-P", "-c", probe, str(target)], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert found.stdout.split() == [str(target / "tuneform/__init__.py"), VERSION, VERSION]


# --- the install step never runs the repository's own pip -------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_the_install_step_does_not_run_a_pip_folder_of_the_checkout(name: str, tmp_path: Path) -> None:
    """The step of each template, run in a checkout holding pip/: with -P, this interpreter's real
    pip answers (tuneform is already installed here; no index); without -P, the planted one runs."""
    workflow = yaml.safe_load(render_workflow((TEMPLATES / name).read_text(), InstallSpec(f"tuneform=={VERSION}", "", "index")))
    plant_pip(tmp_path)
    canary = tmp_path / "canary"
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "RUNNER_TEMP": str(tmp_path),
        "CANARY": str(canary),
        "PIP_NO_INDEX": "1",
        "TUNEFORM_BACKEND": "hf-jobs",
    } | workflow["env"]
    step = install_step(workflow)
    assert step.count("python -P -m pip") == 2
    done = run_step(step, tmp_path, env, tmp_path)
    assert done.returncode == 0 and "already satisfied" in done.stdout, done.stdout + done.stderr
    assert not canary.exists()
    done = run_step(step.replace("python -P -m pip", "python -m pip"), tmp_path, env, tmp_path)
    assert canary.exists(), "without -P the planted pip/ runs: the test would not see the difference"


def test_the_requirement_reaches_pip_exactly_and_unsafe_values_are_refused(tmp_path: Path) -> None:
    """A URL with every character the spec lets through ends up as one argv word, unchanged."""
    url = "https://example.com/a'b(c);d&e!f*g+h,i=j%20k~l/tuneform.git"
    spec = install_spec(Origin("vcs", VERSION, url=url, commit=COMMIT))
    assert spec == InstallSpec(f"tuneform @ git+{url}@{COMMIT}", "", "vcs")
    workflow = yaml.safe_load(render_workflow((TEMPLATES / "apply.yml").read_text(), spec))
    assert workflow["env"]["TUNEFORM_REQUIREMENT"] == spec.requirement
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "python").write_text('#!/bin/bash\nprintf "%s\\0" "$@" >> "$ARGS"\n')
    (shims / "python").chmod(0o755)
    env = {"PATH": f"{shims}:/usr/bin:/bin", "ARGS": str(tmp_path / "args"), "RUNNER_TEMP": str(tmp_path), "TUNEFORM_BACKEND": "local"}
    done = run_step(install_step(workflow), tmp_path, env | workflow["env"], tmp_path)
    assert done.returncode == 0, done.stderr
    args = (tmp_path / "args").read_text().split("\0")[:-1]
    assert args[-1] == f"tuneform[train] @ git+{url}@{COMMIT}"

    for hostile in ('https://x/"; touch pwned; "', "https://x/${{ secrets.HF_TOKEN }}", "https://x/a b", "https://x/$(id)", "https://x/\n"):
        fallback = install_spec(Origin("vcs", VERSION, url=hostile, commit=COMMIT))
        assert fallback.requirement == f"tuneform=={VERSION}" and fallback.warning and "TUNEFORM_REQUIREMENT" in fallback.warning
        if " " not in hostile:  # a space is harmless inside the quotes; the rest would escape them or be evaluated
            with pytest.raises(ScaffoldError, match="cannot write the install requirement"):
                render_workflow(
                    "env:\n  TUNEFORM_REQUIREMENT: __TUNEFORM_REQUIREMENT__\n", InstallSpec(f"tuneform @ git+{hostile}@{COMMIT}", "", "vcs")
                )


# --- the spec for each kind of install (PEP 610) ----------------------------------------------------


def test_each_kind_of_install_gets_its_own_requirement() -> None:
    digest = "ab" * 32
    assert install_spec(Origin("index", "1.2.3")) == InstallSpec("tuneform==1.2.3", "", "index")
    assert install_spec(Origin("vcs", "1.2.3", url="https://github.com/o/tuneform", commit=COMMIT)).requirement == (
        f"tuneform @ git+https://github.com/o/tuneform@{COMMIT}"
    )
    assert install_spec(Origin("vcs", "1.2.3", url="ssh://git@github.com/o/tuneform.git", commit=COMMIT)).requirement == (
        f"tuneform @ git+https://github.com/o/tuneform.git@{COMMIT}"
    )
    for unreachable in (Origin("vcs", "1.2.3", url="file:///home/me/tuneform", commit=COMMIT), Origin("vcs", "1.2.3", url="https://h/t")):
        spec = install_spec(unreachable)
        assert spec.requirement == "tuneform==1.2.3" and "not an http(s) or ssh git URL with a commit" in (spec.warning or "")
    assert install_spec(Origin("archive", "1.2.3", url="file:///tmp/tuneform-1.2.3-py3-none-any.whl", sha256=digest)) == (
        InstallSpec("tuneform==1.2.3", digest, "archive")
    )
    remote = "https://example.com/tuneform-1.2.3-py3-none-any.whl"
    assert install_spec(Origin("archive", "1.2.3", url=remote, sha256=digest)) == InstallSpec(f"tuneform @ {remote}", digest, "archive")
    unhashed = install_spec(Origin("archive", "1.2.3", url="file:///tmp/t.whl"))
    assert unhashed.requirement == "tuneform==1.2.3" and unhashed.sha256 == "" and "no sha256" in (unhashed.warning or "")
    assert "TUNEFORM_REQUIREMENT" in (install_spec(Origin("unknown", "1.2.3")).warning or "")


def _checkout(path: Path) -> tuple[Repo, Path]:
    """A source checkout of a package with a bare remote `origin` at an https-like URL."""
    remote = path.parent / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    repo = Repo.init(path)
    repo.write("README.md", "tuneform\n")
    repo.commit("initial")
    repo.git("remote", "add", "origin", str(remote))
    repo.git("push", "-q", "origin", "main")
    repo.git("fetch", "-q", "origin")
    repo.git("remote", "set-url", "origin", "git@github.com:acme/tuneform.git")  # as GitHub's clone URL reads
    return repo, remote


def test_a_source_checkout_is_installed_from_its_remote_at_head_only_when_clean_and_pushed(tmp_path: Path) -> None:
    repo, _ = _checkout(tmp_path / "src")
    head = repo.git("rev-parse", "HEAD").strip()
    checkout = Origin("directory", "1.2.3", url=repo.path.as_uri(), editable=True)
    assert install_spec(checkout) == InstallSpec(f"tuneform @ git+https://github.com/acme/tuneform.git@{head}", "", "checkout")

    repo.write("README.md", "changed\n")
    dirty = install_spec(checkout)
    assert dirty.requirement == "tuneform==1.2.3" and "uncommitted changes" in (dirty.warning or "")
    assert 'TUNEFORM_REQUIREMENT: "tuneform==1.2.3"' in (dirty.warning or ""), "the warning names the line to edit"

    for remote in ("ssh://git@github.com/acme/tuneform.git", "https://github.com/acme/tuneform.git"):
        repo.git("checkout", "-q", "README.md")
        repo.git("remote", "set-url", "origin", remote)
        assert install_spec(checkout).requirement == f"tuneform @ git+https://github.com/acme/tuneform.git@{head}"
    repo.git("remote", "set-url", "origin", str(tmp_path / "remote.git"))  # a local path: no runner can reach it
    local = install_spec(checkout)
    assert local.requirement == "tuneform==1.2.3" and "on no remote branch with an http(s) or ssh URL" in (local.warning or "")

    repo.git("remote", "set-url", "origin", "https://github.com/acme/tuneform.git")
    repo.write("README.md", "changed\n")
    repo.commit("not pushed")
    unpushed = install_spec(checkout)
    assert unpushed.requirement == "tuneform==1.2.3" and "on no remote branch" in (unpushed.warning or "")
