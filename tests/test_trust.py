"""The trust boundary (issue 13, point 2): which container gets HF_TOKEN, which namespace a job may
publish to, one output repository per run, and a job that runs exactly the wheel apply uploaded.

The allowlists are read from the base branch like budgets, so each test commits the settings on
main and changes the run in the working tree, as a pull request would. Jobs go to tests/fakehub.py
through the real huggingface_hub client; the container script runs for real under bash.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, RUN, SETTINGS, Repo, hub_demo_repo
from fakehub import USER_TOKEN, FakeHub
from tuneform.core.markup import md_code
from tuneform.runfile.settings import DEFAULT_IMAGE, Settings

EVIL_IMAGE = "mallory/steal-token:latest"
HF_RUN = RUN.replace("r: 8", "r: 6") + "compute: {backend: hf-jobs}\n"  # another key than runs/support.yaml: no rename


HUB_RUN = "runs/hub.yaml"  # a new file (no base): it plans `create` while the registry is not read


def plan(repo: Repo, *args: str) -> tuple[int, dict[str, Any]]:
    return repo.json("plan", "--format", "json", *args)


def hub_run(repo: Repo, text: str = HF_RUN) -> dict[str, Any]:
    """Write runs/hub.yaml in the working tree (as a pull request would) and plan it."""
    repo.write(HUB_RUN, text)
    code, planned = plan(repo, HUB_RUN)
    [run] = planned["runs"]
    return {"code": code, **run}


def settle(repo: Repo, settings: str) -> None:
    """Commit `settings` as pyproject.toml on main: the base branch every plan reads them from."""
    repo.write("pyproject.toml", settings)
    repo.git("add", "pyproject.toml")
    repo.git("commit", "-q", "-m", "settings")


def messages(entry: dict[str, Any]) -> str:
    return " | ".join(e["message"] for e in entry["errors"])


# ------------------------------------------------------------------------------------ allowlists


def test_an_image_outside_allowed_images_is_blocked_by_the_base_branchs_list(repo: Repo) -> None:
    # the pinned default image is allowed without any setting, and the plan says which image runs
    run = hub_run(repo)
    assert run["action"] == "create" and run["image"] == DEFAULT_IMAGE and run["code"] == 0, run

    # a pull request names its own image: blocked, with the setting to change; validate says the same
    evil = HF_RUN.replace("{backend: hf-jobs}", "{backend: hf-jobs, image: " + EVIL_IMAGE + "}")
    run = hub_run(repo, evil)
    assert run["code"] == 1 and run["action"] == "blocked" and run["image"] == EVIL_IMAGE, run
    [error] = run["errors"]
    assert error["field"] == "compute.image" and error["line"] == 15
    assert f"image '{EVIL_IMAGE}' (compute.image) is not allowed" in error["message"]
    assert "add it to [tool.tuneform] allowed_images on the base branch" in error["message"]
    code, validated = repo.json("validate", HUB_RUN, "--format", "json")
    assert code == 1 and "[tool.tuneform] allowed_images" in validated["files"][0]["errors"][0]["message"]
    text = " ".join(repo.cli("plan", HUB_RUN).output.split())  # rich wraps the note and the error
    assert "! blocked" in text and "allowed images or namespaces" in text and "[tool.tuneform] allowed_images" in text, text

    # the PR's own pyproject.toml cannot allow it: plan reads the base's (validate, the PR's own)
    repo.write("pyproject.toml", SETTINGS + f'allowed_images = ["{EVIL_IMAGE}"]\n')
    assert hub_run(repo, evil)["action"] == "blocked"
    assert repo.json("validate", HUB_RUN, "--format", "json")[0] == 0

    # once main allows it, the same run plans to train; the default image is then outside the list
    settle(repo, SETTINGS + f'allowed_images = ["{EVIL_IMAGE}"]\n')
    assert hub_run(repo, evil)["action"] == "create"
    run = hub_run(repo)
    assert run["action"] == "blocked" and "(the default image)" in messages(run), run


def test_an_output_repo_outside_allowed_namespaces_is_blocked(repo: Repo) -> None:
    # default: the repository's own namespace (acme) only
    run = hub_run(repo, HF_RUN + "output: {repo: mallory/support}\n")
    assert run["code"] == 1 and run["action"] == "blocked" and run["output_repo"] == "mallory/support", run
    [error] = run["errors"]
    assert error["field"] == "output.repo" and error["line"] == 16
    assert "namespace 'mallory'" in error["message"] and "(allowed: acme)" in error["message"]
    assert "add 'mallory' to [tool.tuneform] allowed_namespaces on the base branch" in error["message"]
    assert repo.json("validate", HUB_RUN, "--format", "json")[0] == 1
    assert hub_run(repo, HF_RUN + "output: {repo: acme/support-v2}\n")["action"] == "create"
    assert hub_run(repo)["output_repo"] == "acme/hub"

    # allowed_namespaces replaces the default: listing mallory alone drops acme
    settle(repo, SETTINGS + 'allowed_namespaces = ["mallory"]\n')
    assert hub_run(repo)["action"] == "blocked"
    assert hub_run(repo, HF_RUN + "output: {repo: mallory/support}\n")["action"] == "create"

    # no namespace and no list: no hf-jobs run may publish anywhere, and the error says what to set
    settle(repo, SETTINGS.replace('namespace = "acme"\n', ""))
    run = hub_run(repo, HF_RUN + "output: {repo: acme/support}\n")
    assert run["action"] == "blocked" and "set [tool.tuneform] namespace (or allowed_namespaces)" in messages(run), run
    assert Settings(namespace=None).publish_namespaces == [] and Settings(namespace="acme").publish_namespaces == ["acme"]


def test_the_local_backend_runs_no_container_and_publishes_to_no_hub(repo: Repo) -> None:
    """The allowlists guard what gets HF_TOKEN; a local run gets no image and is not checked."""
    run = hub_run(repo, HF_RUN.replace("backend: hf-jobs", "backend: local") + "output: {repo: mallory/support}\n")
    assert run["action"] == "create" and run["image"] is None, run


def test_the_plan_comment_shows_flavor_output_repo_and_image_escaped(repo: Repo) -> None:
    image = "ghcr.io/acme/x|y:@v1"  # a `|` would split the table's cell; `@` would mention someone
    settle(repo, SETTINGS + f'allowed_images = ["{image}"]\n')
    run = hub_run(repo, HF_RUN.replace("{backend: hf-jobs}", '{backend: hf-jobs, image: "' + image + '"}'))
    assert run["code"] == 0 and run["image"] == image
    markdown = repo.cli("plan", HUB_RUN, "--format", "markdown").output
    header = next(line for line in markdown.splitlines() if line.startswith("| | run"))
    [row] = [line for line in markdown.splitlines() if line.startswith("| + |")]
    assert "| flavor |" in header and "| publishes to | image |" in header
    # the row has as many cells as the header: the image's `|` stayed inside its cell
    cells = re.split(r"(?<!\\)\|", row)
    assert len(cells) == len(header.split("|")), row
    assert md_code(image, cell=True) in row
    assert md_code(image, cell=True) != image and "@\u2060" in md_code(image, cell=True)
    assert md_code("acme/hub", cell=True) in row and f"| {run['flavor']} |" in row
    # the terminal's plan says the same, a line per run under its table (the image verbatim)
    text = repo.cli("plan", HUB_RUN, "--format", "text").output
    assert f"  {HUB_RUN} publishes to acme/hub, image {image}" in text.splitlines()


# ------------------------------------------------------------------------- one repository per run


def test_two_runs_publishing_to_one_output_repo_are_invalid_naming_both(repo: Repo) -> None:
    # explicit: both name acme/bot (one in other letter case: the Hub's ids are case-insensitive)
    repo.write("runs/support.yaml", RUN + "output: {repo: acme/bot}\n")
    repo.write("runs/other.yaml", RUN.replace("r: 8", "r: 4") + "output: {repo: acme/Bot}\n")
    code, validated = repo.json("validate", "--format", "json")
    assert code == 1
    by_path = {f["path"]: f for f in validated["files"]}
    for path, other in (("runs/support.yaml", "runs/other.yaml"), ("runs/other.yaml", "runs/support.yaml")):
        [error] = by_path[path]["errors"]
        assert error["field"] == "output.repo" and error["line"] == 15, error
        assert f"{path} and {other} both publish to" in error["message"] and "its own output.repo" in error["message"]
    code, planned = plan(repo)
    assert code == 1 and [r["action"] for r in planned["runs"]] == ["invalid", "invalid"]
    assert all("both publish to" in messages(r) for r in planned["runs"])

    # default repos: a run named `support` in another file publishes to acme/support, like runs/support.yaml
    repo.write("runs/support.yaml", RUN)
    repo.write("runs/other.yaml", "name: support\n" + RUN.replace("r: 8", "r: 4"))
    code, validated = repo.json("validate", "--format", "json")
    assert code == 1 and all("both publish to acme/support" in f["errors"][0]["message"] for f in validated["files"])
    assert [r["action"] for r in plan(repo)[1]["runs"]] == ["invalid", "invalid"]

    # each its own: both valid
    repo.write("runs/other.yaml", RUN.replace("r: 8", "r: 4"))
    assert repo.json("validate", "--format", "json")[0] == 0


# --------------------------------------------------------------------------- apply and the job


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_hub: FakeHub) -> Repo:
    """The demo repo on the fake Hub (as in test_hfjobs), its run publishing to acme/demo."""
    run = (ROOT / "runs/demo.yaml").read_text().replace("repo: tuneform-demo/demo, private: false", "repo: acme/demo, private: true")
    return hub_demo_repo(tmp_path, monkeypatch, fake_hub, run)


def test_apply_refuses_an_image_from_the_environment_outside_the_list_and_pins_the_bundle(
    demo: Repo, fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # TUNEFORM_HF_IMAGE on the applying machine meets the same list: refused, nothing uploaded or submitted
    monkeypatch.setenv("TUNEFORM_HF_IMAGE", EVIL_IMAGE)
    result = demo.cli("apply", "--backend", "hf-jobs", "--no-wait", "runs/demo.yaml")
    assert result.exit_code == 1 and "not applicable" in result.output and "allowed_images" in result.output, result.output
    assert "(TUNEFORM_HF_IMAGE)" in result.output
    assert not fake_hub.jobs and not fake_hub.requests_to("POST", r"/commit/")

    # listed on main, the override is what the job runs in
    demo.write("pyproject.toml", f'[tool.tuneform]\nnamespace = "acme"\nmax_usd_per_run = 5\nallowed_images = ["{EVIL_IMAGE}"]\n')
    demo.commit("allow the override")
    result = demo.cli("apply", "--backend", "hf-jobs", "--no-wait", "runs/demo.yaml")
    assert result.exit_code == 0, result.output
    [job] = fake_hub.jobs.values()
    payload = job.payload
    assert payload["dockerImage"] == EVIL_IMAGE

    # the job fetches the bundle by the commit apply made, and knows the wheel's sha256
    env = payload["environment"]
    repo = fake_hub.repo("acme/demo")
    [branch] = [b for b in repo.branches if b.startswith("tuneform/jobs/")]
    assert env["TUNEFORM_REVISION"] == repo.branches[branch] and "TUNEFORM_BRANCH" not in env
    [wheel] = [path for path in repo.files_at(env["TUNEFORM_REVISION"]) if path.endswith(".whl")]
    uploaded = fake_hub.read_file("acme/demo", wheel, revision=env["TUNEFORM_REVISION"])
    assert hashlib.sha256(uploaded).hexdigest() == env["TUNEFORM_WHEEL_SHA256"]


def tiny_wheel(folder: Path, value: str) -> Path:
    """A real, installable wheel of a one-module package `trusttiny` whose VALUE is `value`."""
    import base64

    folder.mkdir(parents=True)
    info = "trusttiny-1.0.dist-info"
    files = {
        "trusttiny/__init__.py": f"VALUE = {value!r}\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: trusttiny\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    wheel = folder / "trusttiny-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return wheel


def test_the_container_installs_only_the_wheel_apply_uploaded(fake_hub: FakeHub, tmp_path: Path) -> None:
    """The job's download-and-install part of CONTAINER_SCRIPT, run by bash against the fake Hub."""
    from tuneform.backends.hfjobs import CONTAINER_SCRIPT, INSTALL_SCRIPT, HfJobs, jobs_branch

    assert CONTAINER_SCRIPT.startswith(INSTALL_SCRIPT)  # the job runs exactly this part first
    api = fake_hub.api()
    api.create_repo("acme/demo", private=True)
    key = "a" * 64
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "run.json").write_text("{}")
    wheel = tiny_wheel(tmp_path / "built", "uploaded")
    commit = HfJobs(api, "acme", lambda line: None).upload("acme/demo", key, bundle, wheel)
    assert fake_hub.repo("acme/demo").branches[jobs_branch(key)] == commit

    # whoever can write the output repo swaps the wheel on the branch before the container starts
    swapped = tiny_wheel(tmp_path / "swapped", "swapped")
    api.upload_file(
        path_or_fileobj=str(swapped), path_in_repo=f"tuneform-job/{swapped.name}", repo_id="acme/demo", revision=jobs_branch(key)
    )
    assert fake_hub.repo("acme/demo").branches[jobs_branch(key)] != commit

    def install(revision: str) -> tuple[subprocess.CompletedProcess[str], Path]:
        work = tmp_path / f"container-{len(list(tmp_path.glob('container-*')))}"
        work.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TUNEFORM_", "PIP_", "PYTHON"))}
        env.update(fake_hub.client_env(USER_TOKEN))  # HF Jobs gives the token as an environment variable
        env.update(
            {
                "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
                "HOME": str(work),
                "TMPDIR": str(work),
                "HF_HOME": str(work / "hf"),
                "PIP_NO_INDEX": "1",
                "PIP_NO_DEPS": "1",
                "PIP_TARGET": str(work / "site"),
                "TUNEFORM_REPO": "acme/demo",
                "TUNEFORM_REVISION": revision,
                "TUNEFORM_WHEEL_SHA256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
            }
        )
        done = subprocess.run(["bash", "-c", INSTALL_SCRIPT], env=env, cwd=work, capture_output=True, text=True, timeout=300)
        return done, work / "site"

    # by the upload's commit: the wheel apply built, whatever the branch holds now
    done, site = install(commit)
    assert done.returncode == 0, done.stderr
    assert (site / "trusttiny" / "__init__.py").read_text() == "VALUE = 'uploaded'\n"

    # bytes that are not that wheel (here the branch's head, which holds the swap): refused, nothing installed
    done, site = install(jobs_branch(key))
    assert done.returncode != 0 and "refusing to install" in done.stderr, done.stderr
    assert not site.exists() or not any(site.iterdir())


# ------------------------------------------------------------------------------- the default image

# Unsloth's image tags, as shared/reference/hf-jobs.md reads them from unslothai/unsloth's
# docker/DOCKERHUB.md: releases `<version>` and `core-<version>`, daily pins `nightly-YYYY.MM.DD`
# and `core-nightly-YYYY.MM.DD` (kept 60 days); `latest`, `studio` and `core` are rebuilt daily,
# so they pin nothing. `core-` leaves out the Studio web UI: the variant for scripts.
UNSLOTH_VERSION = r"\d{4}\.\d{1,2}\.\d+"
PINNED_CORE_TAG = re.compile(rf"core-(?:{UNSLOTH_VERSION}|nightly-\d{{4}}\.\d{{2}}\.\d{{2}})")


def test_the_default_image_is_a_pinned_unsloth_core_tag_of_the_version_tuneform_ran() -> None:
    reference, _, digest = DEFAULT_IMAGE.partition("@")
    name, _, tag = reference.rpartition(":")
    assert name == "unsloth/unsloth" and PINNED_CORE_TAG.fullmatch(tag), DEFAULT_IMAGE
    assert not digest or re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    # the Unsloth release tuneform's GPU runs and benchmarks used (scripts/fetch_gpu_wheels.sh, Makefile)
    for pinned_by in ("scripts/fetch_gpu_wheels.sh", "Makefile"):
        [version] = set(re.findall(rf"unsloth==({UNSLOTH_VERSION})", (ROOT / pinned_by).read_text()))
        assert tag == f"core-{version}", pinned_by
    assert Settings().allowed_images == [DEFAULT_IMAGE]
