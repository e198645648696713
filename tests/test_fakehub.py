"""The REAL huggingface_hub client against tests/fakehub.py: every call tuneform's hf-jobs backend relies on."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationCopy,
    CommitOperationDelete,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import (
    BadRequestError,
    GatedRepoError,
    HfHubHTTPError,
    JobNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from fakehub import OTHER_TOKEN, READ_TOKEN, USER_TOKEN, FakeHub

REPO = "acme/support-bot"


def blob(n: int, seed: str) -> bytes:
    """n pseudo-random bytes (incompressible, binary)."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}-{counter}".encode()).digest()
        counter += 1
    return bytes(out[:n])


def status_of(err: pytest.ExceptionInfo[HfHubHTTPError]) -> int:
    assert err.value.response is not None
    return err.value.response.status_code


def commit_keys(hub: FakeHub) -> list[tuple[str, str]]:
    """(key, path) of each operation line of the last commit request."""
    return [(line["key"], line["value"]["path"]) for line in hub.commit_requests[-1]["lines"][1:]]


# ---------------------------------------------------------------------------------------------------- auth


def test_whoami_tokens(fake_hub: FakeHub) -> None:
    me = fake_hub.api(USER_TOKEN).whoami()
    assert me["name"] == "alice" and [o["name"] for o in me["orgs"]] == ["acme"]
    assert me["auth"]["accessToken"]["role"] == "write"
    assert fake_hub.api(READ_TOKEN).whoami()["auth"]["accessToken"]["role"] == "read"
    with pytest.raises(HfHubHTTPError, match="Invalid user token") as err:
        fake_hub.api("hf_not_a_token").whoami()
    assert status_of(err) == 401
    # an unknown token is refused everywhere, as on the Hub
    with pytest.raises(HfHubHTTPError) as err:
        fake_hub.api("hf_not_a_token").list_jobs_hardware()
    assert err.value.server_message == "Invalid credentials in Authorization header"


# ------------------------------------------------------------------------------------------ repos + files


def test_private_repo_upload_folder_lfs_and_download_back(fake_hub: FakeHub, tmp_path: Path) -> None:
    fake_hub.lfs_threshold = 512 * 1024  # a text file over this is LFS too
    fake_hub.multipart_chunk_size = 256 * 1024  # ... and objects over this go up in parts
    api = fake_hub.api()
    url = api.create_repo(REPO, private=True)
    assert url.repo_id == REPO and url == f"{fake_hub.url}/{REPO}"
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(REPO, private=True)
    assert status_of(err) == 409
    assert api.create_repo(REPO, private=True, exist_ok=True).repo_id == REPO
    info = api.model_info(REPO)
    assert info.private is True and [s.rfilename for s in info.siblings] == [".gitattributes"]
    with pytest.raises(RepositoryNotFoundError):  # bob cannot see alice's org's private repo
        fake_hub.api(OTHER_TOKEN).model_info(REPO)
    with pytest.raises(RepositoryNotFoundError):
        fake_hub.api(None).model_info(REPO)

    folder = tmp_path / "out"
    files = {
        "adapter_config.json": b'{"r": 8}\n',
        "adapter_model.safetensors": blob(200_000, "weights"),  # LFS by pattern, single PUT
        "logs/train.log": b"step 1 loss 2.0\n" * 40_000,  # 640 KB of text: LFS by size, 3 parts
        "tuneform/manifest.json": b'{"run_key": "abc"}\n',
    }
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    commit = api.upload_folder(repo_id=REPO, folder_path=folder, commit_message="train run-abc", commit_description="trained in #12")
    assert len(commit.oid) == 40 and commit.commit_url == f"{fake_hub.url}/{REPO}/commit/{commit.oid}"

    assert sorted(commit_keys(fake_hub)) == [
        ("file", "adapter_config.json"),
        ("file", "tuneform/manifest.json"),
        ("lfsFile", "adapter_model.safetensors"),
        ("lfsFile", "logs/train.log"),
    ]
    header = fake_hub.commit_requests[-1]["lines"][0]["value"]
    assert header == {"summary": "train run-abc", "description": "trained in #12"}
    assert len(fake_hub.requests_to("PUT", r"^/_lfs/[^/]+/part/\d+$")) == 3
    assert len(fake_hub.requests_to("PUT", r"^/_lfs/[^/]+$")) == 1
    assert len(fake_hub.requests_to("POST", r"/info/lfs/objects/verify$")) == 2
    assert all("authorization" not in r.headers for r in fake_hub.requests_to("PUT", r"^/_lfs/"))
    repo = fake_hub.repo(REPO)
    assert repo.read("logs/train.log") == files["logs/train.log"]

    detailed = api.model_info(REPO, files_metadata=True)
    lfs = {s.rfilename: s.lfs for s in detailed.siblings}
    assert lfs["adapter_model.safetensors"].sha256 == hashlib.sha256(files["adapter_model.safetensors"]).hexdigest()
    assert lfs["adapter_config.json"] is None
    assert sorted(api.list_repo_files(REPO)) == sorted([".gitattributes", *files])  # tree pages of 3
    top = {e.path: type(e).__name__ for e in api.list_repo_tree(REPO)}
    assert top == {
        ".gitattributes": "RepoFile",
        "adapter_config.json": "RepoFile",
        "adapter_model.safetensors": "RepoFile",
        "logs": "RepoFolder",
        "tuneform": "RepoFolder",
    }

    for rel, data in files.items():
        path = hf_hub_download(REPO, rel, revision=commit.oid, token=USER_TOKEN, endpoint=fake_hub.url)
        assert Path(path).read_bytes() == data, rel
    cdn = fake_hub.requests_to("GET", r"^/_cdn/")
    assert len(cdn) == 2 and all("authorization" not in r.headers for r in cdn)  # LFS bytes fetched from the signed URL

    snap = Path(snapshot_download(REPO, token=USER_TOKEN, endpoint=fake_hub.url, local_dir=tmp_path / "snap"))
    assert all((snap / rel).read_bytes() == data for rel, data in files.items())

    fake_hub.lfs_cdn_redirect = False  # LFS served directly with X-Linked-* headers works too
    direct = hf_hub_download(REPO, "adapter_model.safetensors", token=USER_TOKEN, endpoint=fake_hub.url, cache_dir=tmp_path / "c2")
    assert Path(direct).read_bytes() == files["adapter_model.safetensors"]

    # re-uploading identical files is a no-op the client decides from preupload's oids: no commit is sent
    before = len(fake_hub.commit_requests)
    again = api.upload_folder(repo_id=REPO, folder_path=folder, commit_message="again")
    assert again.oid == commit.oid and len(fake_hub.commit_requests) == before


def test_errors_not_found_gated_and_read_only(fake_hub: FakeHub, tmp_path: Path) -> None:
    fake_hub.add_repo("meta/llama-tiny", {"config.json": "{}", "model.safetensors": blob(1000, "m")}, gated="manual")
    fake_hub.add_repo("bob/secret-data", {"train.jsonl": "{}\n"}, repo_type="dataset", private=True)
    fake_hub.add_repo("public/chat-data", {"train.jsonl": "{}\n"}, repo_type="dataset")
    api = fake_hub.api()

    # gated: metadata is public (like the Hub), files and auth_check raise GatedRepoError
    assert api.model_info("meta/llama-tiny").gated == "manual"
    with pytest.raises(GatedRepoError):
        hf_hub_download("meta/llama-tiny", "config.json", token=USER_TOKEN, endpoint=fake_hub.url)
    with pytest.raises(GatedRepoError):
        api.auth_check("meta/llama-tiny")
    with pytest.raises(GatedRepoError):
        fake_hub.api(None).auth_check("meta/llama-tiny")
    fake_hub.repo("meta/llama-tiny").gated_access.add("alice")
    api.auth_check("meta/llama-tiny")
    assert Path(hf_hub_download("meta/llama-tiny", "config.json", token=USER_TOKEN, endpoint=fake_hub.url)).read_text() == "{}"

    # datasets: readability checks
    main_sha = fake_hub.repo("public/chat-data", "dataset").resolve("main")
    assert api.dataset_info("public/chat-data", revision="main").sha == main_sha
    assert fake_hub.api(None).dataset_info("public/chat-data").sha == main_sha
    with pytest.raises(RepositoryNotFoundError):
        api.dataset_info("bob/secret-data")
    assert fake_hub.api(OTHER_TOKEN).dataset_info("bob/secret-data").private is True
    with pytest.raises(RevisionNotFoundError):
        api.dataset_info("public/chat-data", revision="v9")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("acme/nothing-here")
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download("public/chat-data", "nope.jsonl", repo_type="dataset", token=USER_TOKEN, endpoint=fake_hub.url)
    assert not api.file_exists("public/chat-data", "nope.jsonl", repo_type="dataset")
    assert api.revision_exists("public/chat-data", main_sha, repo_type="dataset")

    # writes: read-only token and foreign namespaces are 403
    api.create_repo(REPO)
    with pytest.raises(HfHubHTTPError) as err:
        fake_hub.api(READ_TOKEN).upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO)
    assert status_of(err) == 403
    with pytest.raises(HfHubHTTPError) as err:
        fake_hub.api(OTHER_TOKEN).create_repo("acme/bobs")
    assert status_of(err) == 403

    api.update_repo_settings(REPO, private=True, gated="auto")
    assert (api.model_info(REPO).private, api.model_info(REPO).gated) == (True, "auto")
    api.delete_repo(REPO)
    assert not api.repo_exists(REPO)


# ------------------------------------------------------------------------------------------- refs + commits


def test_tags_branches_history_and_parent_commit(fake_hub: FakeHub) -> None:
    api = fake_hub.api()
    api.create_repo(REPO)
    first = api.upload_file(path_or_fileobj=b"v1", path_in_repo="w.txt", repo_id=REPO, commit_message="v1").oid

    api.create_tag(REPO, tag="run-abc", revision=first, tag_message="run abc")
    refs = api.list_repo_refs(REPO)
    assert [(t.name, t.ref, t.target_commit) for t in refs.tags] == [("run-abc", "refs/tags/run-abc", first)]
    assert [(b.name, b.target_commit) for b in refs.branches] == [("main", first)]
    with pytest.raises(HfHubHTTPError) as err:
        api.create_tag(REPO, tag="run-abc")
    assert status_of(err) == 409
    api.create_tag(REPO, tag="run-abc", exist_ok=True)
    with pytest.raises(RevisionNotFoundError):
        api.create_tag(REPO, tag="run-def", revision="0" * 40)

    api.create_branch(REPO, branch="claim-x")
    with pytest.raises(HfHubHTTPError) as err:
        api.create_branch(REPO, branch="claim-x")
    assert status_of(err) == 409
    api.create_branch(REPO, branch="claim-x", exist_ok=True)
    api.delete_branch(REPO, branch="claim-x")
    assert [b.name for b in api.list_repo_refs(REPO).branches] == ["main"]

    second = api.create_commit(REPO, [CommitOperationAdd("w.txt", b"v2")], commit_message="v2", parent_commit=first).oid
    with pytest.raises(HfHubHTTPError) as err:  # someone moved main since `first`
        api.create_commit(REPO, [CommitOperationAdd("w.txt", b"v3")], commit_message="v3", parent_commit=first)
    assert status_of(err) == 412
    assert fake_hub.repo(REPO).resolve("main") == second

    for i in range(3):
        api.upload_file(path_or_fileobj=f"n{i}".encode(), path_in_repo=f"n{i}.txt", repo_id=REPO, commit_message=f"n{i}")
    history = api.list_repo_commits(REPO)  # 6 commits, pages of 3
    assert [c.title for c in history] == ["n2", "n1", "n0", "v2", "v1", "initial commit"]
    assert history[3].commit_id == second and history[0].authors == ["alice"]
    assert [c.title for c in api.list_repo_commits(REPO, revision="run-abc")] == ["v1", "initial commit"]
    assert api.model_info(REPO, revision="run-abc").sha == first
    path = hf_hub_download(REPO, "w.txt", revision="run-abc", token=USER_TOKEN, endpoint=fake_hub.url)
    assert Path(path).read_bytes() == b"v1"

    pr = api.create_commit(REPO, [CommitOperationAdd("w.txt", b"proposed")], commit_message="proposal", create_pr=True)
    assert (pr.pr_num, pr.pr_revision) == (1, "refs/pr/1")
    assert [p.ref for p in api.list_repo_refs(REPO, include_pull_requests=True).pull_requests] == ["refs/pr/1"]
    assert fake_hub.read_file(REPO, "w.txt", "refs/pr/1") == b"proposed" and fake_hub.read_file(REPO, "w.txt") == b"v2"


def test_restore_copies_tagged_files_to_main(fake_hub: FakeHub) -> None:
    """The restore flow: main := files of tag run-aaa, by server-side LFS copy, without uploading the weights."""
    api = fake_hub.api()
    api.create_repo(REPO, private=True)
    weights_a, weights_b = blob(150_000, "a"), blob(150_000, "b")
    api.create_commit(
        REPO,
        [CommitOperationAdd("adapter_model.safetensors", weights_a), CommitOperationAdd("tuneform/manifest.json", b'{"key": "aaa"}')],
        commit_message="run-aaa",
    )
    api.create_tag(REPO, tag="run-aaa")
    api.create_commit(
        REPO,
        [
            CommitOperationAdd("adapter_model.safetensors", weights_b),
            CommitOperationAdd("tuneform/manifest.json", b'{"key": "bbb"}'),
            CommitOperationAdd("extra.txt", b"only in bbb"),
        ],
        commit_message="run-bbb",
    )
    api.create_tag(REPO, tag="run-bbb")
    batches_before = len(fake_hub.requests_to("POST", r"/info/lfs/objects/batch$"))

    tagged = set(api.list_repo_files(REPO, revision="run-aaa"))
    on_main = set(api.list_repo_files(REPO))
    ops = [CommitOperationCopy(p, p, src_revision="run-aaa") for p in sorted(tagged - {".gitattributes"})]
    ops += [CommitOperationDelete(p) for p in sorted(on_main - tagged)]
    restored = api.create_commit(REPO, ops, commit_message="restore run-aaa")

    keys = {path: key for key, path in commit_keys(fake_hub)}
    assert keys == {"adapter_model.safetensors": "lfsFile", "tuneform/manifest.json": "file", "extra.txt": "deletedFile"}
    lfs_line = next(line["value"] for line in fake_hub.commit_requests[-1]["lines"] if line["key"] == "lfsFile")
    assert lfs_line == {"path": "adapter_model.safetensors", "algo": "sha256", "oid": hashlib.sha256(weights_a).hexdigest()}
    assert len(fake_hub.requests_to("POST", r"/info/lfs/objects/batch$")) == batches_before  # nothing uploaded
    assert set(api.list_repo_files(REPO)) == tagged
    got = hf_hub_download(REPO, "adapter_model.safetensors", revision=restored.oid, token=USER_TOKEN, endpoint=fake_hub.url)
    assert Path(got).read_bytes() == weights_a
    assert fake_hub.read_file(REPO, "tuneform/manifest.json") == b'{"key": "aaa"}'
    with pytest.raises(RemoteEntryNotFoundError):  # deleting what is not there
        api.create_commit(REPO, [CommitOperationDelete("extra.txt")], commit_message="again")


# ---------------------------------------------------------------------------------------------------- jobs


def run(api, key: str = "abc", **kw):
    args = {
        "image": "ghcr.io/acme/tuneform:0.1",
        "command": ["tuneform", "job", "/bundle"],
        "env": {"TUNEFORM_RUN": key},
        "secrets": {"HF_TOKEN": "hf_secret_value"},
        "flavor": "a10g-small",
        "timeout": "2h",
        "labels": {"tuneform-run": key, "tuneform": "1"},
        "namespace": "acme",
    }
    args.update(kw)
    return api.run_job(**args)


def test_run_inspect_list_cancel_jobs(fake_hub: FakeHub) -> None:
    api = fake_hub.api()
    job = run(api)
    assert job.status.stage == "SCHEDULING" and job.owner.name == "acme" and job.owner.type == "org"
    assert job.url == f"{fake_hub.url}/jobs/acme/{job.id}"
    stored = fake_hub.job(job.id).payload
    assert stored["flavor"] == "a10g-small" and stored["timeoutSeconds"] == 7200
    assert stored["secrets"] == {"HF_TOKEN": "hf_secret_value"} and stored["arguments"] == []
    assert stored["dockerImage"] == "ghcr.io/acme/tuneform:0.1" and "spaceId" not in stored
    assert stored["labels"]["tuneform-run"] == "abc" and "name" in stored["labels"]  # the client always adds `name`

    fake_hub.start_job(job.id)
    seen = api.inspect_job(job_id=job.id, namespace="acme")
    assert seen.status.stage == "RUNNING" and seen.secrets == ["HF_TOKEN"] and seen.started_at is not None
    assert seen.environment == {"TUNEFORM_RUN": "abc"} and seen.flavor == "a10g-small"
    with pytest.raises(JobNotFoundError):
        api.inspect_job(job_id="0" * 24, namespace="acme")

    # 8 more jobs, 7 of them for run "key7": list by label through 3 pages of 3
    for i in range(7):
        run(api, "key7", name=f"try-{i}")
    run(api, "other")
    found = list(api.list_jobs(labels={"tuneform-run": "key7"}, namespace="acme"))
    assert sorted(j.labels["name"] for j in found) == [f"try-{i}" for i in range(7)]
    pages = fake_hub.requests_to("GET", r"^/api/jobs/acme$")
    assert len(pages) == 3 and ("label", "tuneform-run=key7") in pages[-1].query
    assert [j.id for j in api.list_jobs(status="RUNNING", namespace="acme")] == [job.id]

    api.cancel_job(job_id=job.id, namespace="acme")
    canceled = api.inspect_job(job_id=job.id, namespace="acme")
    assert canceled.status.stage == "CANCELED" and canceled.finished_at is not None
    updated = api.update_job_labels(job_id=job.id, labels={"tuneform-run": "abc", "state": "superseded"}, namespace="acme")
    assert updated.labels == {"tuneform-run": "abc", "state": "superseded"}

    hardware = {h.name: h for h in api.list_jobs_hardware()}
    assert hardware["a10g-small"].unit_cost_usd * 60 == pytest.approx(1.00, rel=1e-3)
    assert hardware["h200"].accelerator.vram == "141 GB" and hardware["cpu-basic"].accelerator is None

    with pytest.raises(BadRequestError, match="Invalid flavor 'h100'"):
        run(api, flavor="h100")
    with pytest.raises(BadRequestError, match="Invalid label"):
        run(api, labels={"run key": "x"})
    with pytest.raises(HfHubHTTPError) as err:
        run(fake_hub.api(READ_TOKEN))
    assert status_of(err) == 403
    fake_hub.out_of_credits.add("acme")
    with pytest.raises(HfHubHTTPError, match="insufficient credits") as err:
        run(api)
    assert status_of(err) == 402
    assert len(fake_hub.job_requests) == len(fake_hub.jobs) + 4  # rejected payloads are kept too


def test_follow_logs_through_a_dropped_stream(fake_hub: FakeHub) -> None:
    api = fake_hub.api()
    job = run(api)
    fake_hub.start_job(job.id)
    fake_hub.append_log(job.id, "loading model", "step 1 loss 2.0")
    fake_hub.faults.drop_logs(job.id, after_events=2)  # "===== Job started" + "loading model", then cut

    fake_hub.sse_keepalive_s = 0.05  # idle comments while the client waits: it must skip them

    def finish_later() -> None:
        fake_hub.wait_until(lambda: len(fake_hub.requests_to("GET", rf"/{job.id}/logs$")) >= 2)
        threading.Event().wait(0.3)
        fake_hub.append_log(job.id, "step 2 loss 1.5", "done")
        fake_hub.complete_job(job.id)

    helper = threading.Thread(target=finish_later)
    helper.start()
    lines = list(api.fetch_job_logs(job_id=job.id, namespace="acme", follow=True))
    helper.join()
    assert lines == ["loading model", "step 1 loss 2.0", "step 2 loss 1.5", "done"]
    assert len(fake_hub.requests_to("GET", rf"/{job.id}/logs$")) == 2

    # a finished job: plain fetch replays everything and returns; tail only the last lines
    assert list(api.fetch_job_logs(job_id=job.id, namespace="acme")) == lines
    assert list(api.fetch_job_logs(job_id=job.id, namespace="acme", tail=2)) == ["step 2 loss 1.5", "done"]


def test_runner_hook_and_failing_job(fake_hub: FakeHub) -> None:
    api = fake_hub.api()

    def runner(job) -> None:  # plays the container
        fake_hub.start_job(job.id)
        fake_hub.append_log(job.id, f"running {' '.join(job.payload['command'])}")
        fake_hub.complete_job(job.id)

    fake_hub.on_job_submitted = runner
    done = api.wait_for_job(run(api).id, namespace="acme", poll_interval=0.05, timeout=10)
    assert done.status.stage == "COMPLETED"
    assert list(api.fetch_job_logs(job_id=done.id, namespace="acme")) == ["running tuneform job /bundle"]

    fake_hub.faults.fail_next_job("CUDA out of memory", logs=["Traceback ...", "torch.OutOfMemoryError"])
    failed = api.wait_for_job(run(api).id, namespace="acme", poll_interval=0.05, timeout=10)
    assert (failed.status.stage, failed.status.message) == ("ERROR", "CUDA out of memory")
    assert list(api.fetch_job_logs(job_id=failed.id, namespace="acme")) == ["Traceback ...", "torch.OutOfMemoryError"]
    assert not fake_hub.hook_errors


# -------------------------------------------------------------------------------------------------- faults


def test_server_errors_and_rate_limits(fake_hub: FakeHub) -> None:
    """huggingface_hub retries (with backoff, >= 1 s) only where it uses http_backoff: preupload, LFS batch/PUT/
    verify, and the 2nd+ pages of paginated listings. Commits, repo/job calls and first pages surface the error."""
    api = fake_hub.api()
    api.create_repo(REPO)

    fake_hub.faults.fail("POST", r"/preupload/", 500)
    api.upload_file(path_or_fileobj=b"hello", path_in_repo="a.txt", repo_id=REPO)
    assert [r.status for r in fake_hub.requests_to("POST", r"/preupload/")] == [500, 200]

    fake_hub.faults.fail("POST", r"/commit/main$", 500)
    with pytest.raises(HfHubHTTPError) as err:
        api.upload_file(path_or_fileobj=b"bye", path_in_repo="b.txt", repo_id=REPO)
    assert status_of(err) == 500 and "Internal Error" in str(err.value)

    fake_hub.faults.fail("POST", r"^/api/jobs/acme$", 500)
    with pytest.raises(HfHubHTTPError) as err:
        run(api)
    assert status_of(err) == 500 and not fake_hub.jobs

    fake_hub.faults.rate_limit("POST", r"^/api/jobs/acme$", retry_after=30)
    with pytest.raises(HfHubHTTPError) as err:
        run(api)
    assert status_of(err) == 429 and err.value.response.headers["Retry-After"] == "30"
    assert "Date" in err.value.response.headers

    fake_hub.faults.rate_limit("POST", r"/info/lfs/objects/batch$", retry_after=0)  # client sleeps 0 + 1 s
    api.upload_file(path_or_fileobj=blob(2000, "w"), path_in_repo="w.safetensors", repo_id=REPO)
    assert [r.status for r in fake_hub.requests_to("POST", r"/info/lfs/objects/batch$")] == [429, 200]

    for i in range(4):
        run(api, f"k{i}")
    fake_hub.faults.fail("GET", r"^/api/jobs/acme$", 503)
    with pytest.raises(HfHubHTTPError) as err:  # the first page is not retried
        list(api.list_jobs(namespace="acme"))
    assert status_of(err) == 503
    fake_hub.faults.fail("GET", r"^/api/jobs/acme\?.*cursor=3", 500)  # the second page fails once: retried
    assert len(list(api.list_jobs(namespace="acme"))) == 4
    assert [r.status for r in fake_hub.requests_to("GET", r"^/api/jobs/acme$")][-3:] == [200, 500, 200]


def test_readme_metadata_is_validated_like_the_hub(fake_hub) -> None:
    """The client posts a README.md's front matter to /api/validate-yaml before committing it."""
    import pytest

    from fakehub import USER_TOKEN

    api = fake_hub.api(USER_TOKEN)
    api.create_repo("acme/card", private=True)
    api.upload_file(
        path_or_fileobj=b"---\nlibrary_name: peft\ntags:\n- tuneform\n---\n# card\n", path_in_repo="README.md", repo_id="acme/card"
    )
    assert fake_hub.read_file("acme/card", "README.md", "main").startswith(b"---\nlibrary_name: peft")
    with pytest.raises(ValueError, match="Invalid metadata"):
        api.upload_file(path_or_fileobj=b"---\n- just\n- a list\n---\n", path_in_repo="README.md", repo_id="acme/card")


def test_lost_replies_after_the_server_acted(fake_hub: FakeHub) -> None:
    """drop(after=True): the branch, commit, tag or job exists, only the answer is lost (the client sees a
    transport error); drop(after=False): the connection closes before anything was done."""
    import httpx

    api = fake_hub.api()
    api.create_repo(REPO)
    repo = fake_hub.repo(REPO)

    fake_hub.faults.drop("POST", r"/branch/claim$")
    with pytest.raises(httpx.TransportError):
        api.create_branch(REPO, branch="claim")
    assert "claim" in repo.branches
    assert [r.status for r in fake_hub.requests_to("POST", r"/branch/claim$")] == [200]  # the answer it would have had

    fake_hub.faults.drop("POST", r"/commit/main$")
    with pytest.raises(httpx.TransportError):
        api.upload_file(path_or_fileobj=b"v1", path_in_repo="a.txt", repo_id=REPO)
    assert fake_hub.read_file(REPO, "a.txt") == b"v1"

    fake_hub.faults.drop("POST", r"/tag/main$")
    with pytest.raises(httpx.TransportError):
        api.create_tag(REPO, tag="v1")
    assert repo.tags["v1"] == repo.branches["main"]

    fake_hub.faults.drop("POST", r"^/api/jobs/acme$")
    with pytest.raises(httpx.TransportError):
        run(api)
    assert len(fake_hub.jobs) == 1

    # an error answer is lost the same way: the second branch creation is refused (409), unseen
    fake_hub.faults.drop("POST", r"/branch/claim$")
    with pytest.raises(httpx.TransportError):
        api.create_branch(REPO, branch="claim")
    assert [r.status for r in fake_hub.requests_to("POST", r"/branch/claim$")] == [200, 409]

    fake_hub.faults.drop("POST", r"/branch/other$", after=False)
    with pytest.raises(httpx.TransportError):
        api.create_branch(REPO, branch="other")
    assert "other" not in repo.branches
    api.create_branch(REPO, branch="other")  # one-shot: the next request is answered
    assert "other" in repo.branches
