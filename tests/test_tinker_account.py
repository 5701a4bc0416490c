"""Sharing and account endpoints of the Tinker API, through the real `tinker` SDK and its CLI against a
real `openrl serve`: checkpoint publishing, copy_weights, join_sampling_session, retrieve_futures,
the key's own metadata and deletion, the audit log, usage, and sessions (search, project, trace)."""
import datetime
import json
import os
import pathlib
import pickle
import sqlite3
import subprocess
import sys
import urllib.request
import uuid

import httpx
import numpy as np
import pytest

os.environ.setdefault("TINKER_TELEMETRY", "0")
import tinker  # noqa: E402
from tinker import types  # noqa: E402
from tinker.cli.auth_api import AuthApiError, TinkerAuthApi  # noqa: E402
from tinker.proto.response_conv import deserialize_sample_response  # noqa: E402

from tinker_server import SMOLLM2_NAME, create_key, rest_client, service_client, temporary_server  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::tinker.ExperimentalWarning")  # search_sessions is experimental

PROMPT = [1, 504, 3458, 314, 253, 1345, 282, 4649, 47]
DATA = [list(range(200, 224)), list(range(400, 416))]


def datum(tokens):
    return types.Datum(model_input=types.ModelInput.from_ints(tokens[:-1]),
                       loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)})


def tinker_cli(server, key, *args):
    """Runs the SDK's `tinker` command line against the server with `key`; returns its stdout."""
    env = dict(os.environ, TINKER_BASE_URL=server.url, TINKER_API_KEY=key, TINKER_TELEMETRY="0")
    proc = subprocess.run([str(pathlib.Path(sys.executable).parent / "tinker"), *args], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout


def api(server, key, method, path, headers=None, **kw):
    return httpx.request(method, server.url + "/api/v1" + path, headers={"X-API-Key": key, **(headers or {})},
                         timeout=60, **kw)


def prompt_logprobs(sampler):
    return np.array(sampler.compute_logprobs(types.ModelInput.from_ints(PROMPT)).result()[1:], dtype=np.float64)


@pytest.fixture(scope="module")
def bob(openrl_bin, server):
    return create_key(openrl_bin, server.data_dir, name="bob")


@pytest.fixture(scope="module")
def bob_svc(server, bob):
    client = service_client(server, bob)
    yield client
    client.close("success").result()


@pytest.fixture(scope="module")
def trained(svc):
    """Alice's run after one step (so its weights are not the base's), with a training and a
    sampler checkpoint."""
    tc = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=4, seed=5).result()
    tc.forward_backward([datum(t) for t in DATA], "cross_entropy").result()
    tc.optim_step(types.AdamParams(learning_rate=1e-2)).result()
    state = tc.save_state("shared").result().path
    sampler = tc.save_weights_for_sampler("shared-s").result().path
    return tc, state, sampler


def test_publish_lets_other_keys_read_a_checkpoint_until_it_is_unpublished(server, svc, bob, bob_svc, trained):
    tc, state, sampler_path = trained
    rest, bob_rest = rest_client(server, server.key), rest_client(server, bob)
    alice_lp = prompt_logprobs(svc.create_sampling_client(model_path=sampler_path).result())
    base_lp = prompt_logprobs(svc.create_sampling_client(base_model=SMOLLM2_NAME).result())
    assert np.abs(alice_lp - base_lp).max() > 1e-3  # the checkpoint is not the base model

    def bob_reads():
        info = bob_rest.get_weights_info_by_tinker_path(state).result()
        assert (info.base_model, info.lora_rank) == (SMOLLM2_NAME, 4)
        bob_lp = prompt_logprobs(bob_svc.create_sampling_client(model_path=sampler_path).result())
        np.testing.assert_allclose(bob_lp, alice_lp, atol=1e-5)
        btc = bob_svc.create_training_client_from_state(state).result()
        got = btc.forward([datum(DATA[0])], "cross_entropy").result().loss_fn_outputs[0]["logprobs"].data
        want = tc.forward([datum(DATA[0])], "cross_entropy").result().loss_fn_outputs[0]["logprobs"].data
        np.testing.assert_allclose(got, want, atol=1e-5)
        # The run itself: another key's run is "accessible" through its published checkpoints only.
        run = bob_rest.get_training_run_by_tinker_path(state, access_scope="accessible").result()
        assert run.training_run_id == tc.model_id and run.last_checkpoint.tinker_path == state
        assert run.last_sampler_checkpoint.tinker_path == sampler_path and run.user_metadata == {}
        with pytest.raises(tinker.NotFoundError):  # not "owned"
            bob_rest.get_training_run(tc.model_id).result()

    def bob_is_refused():
        with pytest.raises(tinker.NotFoundError):
            bob_rest.get_training_run(tc.model_id, access_scope="accessible").result()
        with pytest.raises(tinker.NotFoundError):
            bob_rest.get_weights_info_by_tinker_path(state).result()
        with pytest.raises(tinker.NotFoundError):
            bob_svc.create_sampling_client(model_path=sampler_path).result()
        with pytest.raises(tinker.NotFoundError):
            bob_svc.create_training_client_from_state(state).result()

    bob_is_refused()
    r = api(server, bob, "GET", f"/training_runs/{tc.model_id}", params={"access_scope": "everything"})
    assert r.status_code == 400 and "access_scope" in r.json()["detail"], r.text
    tinker_cli(server, server.key, "checkpoint", "publish", state)  # the CLI is the caller
    rest.publish_checkpoint_from_tinker_path(sampler_path).result()
    public = {c.tinker_path: c.public for c in rest.list_checkpoints(tc.model_id).result().checkpoints}
    assert public == {state: True, sampler_path: True}
    assert {c.tinker_path: c.public for c in rest.list_user_checkpoints().result().checkpoints}[state] is True
    bob_reads()
    rest.publish_checkpoint_from_tinker_path(state).result()  # already public: a no-op, not a 409 the SDK retries
    with pytest.raises(tinker.NotFoundError):  # only the owner may (un)publish
        bob_rest.unpublish_checkpoint_from_tinker_path(state).result()
    tinker_cli(server, server.key, "checkpoint", "unpublish", state)
    rest.unpublish_checkpoint_from_tinker_path(sampler_path).result()
    assert not any(c.public for c in rest.list_checkpoints(tc.model_id).result().checkpoints)
    bob_is_refused()
    rest.unpublish_checkpoint_from_tinker_path(state).result()  # already private: a no-op
    assert not any(c.public for c in rest.list_checkpoints(tc.model_id).result().checkpoints)


def test_publication_is_durable_and_an_overwrite_makes_it_private(openrl_bin):
    with temporary_server(openrl_bin, "openrl-publish-") as srv:
        other = create_key(openrl_bin, srv.data_dir, name="other")
        svc = service_client(srv, srv.key)
        tc = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=2).result()
        kept, overwritten = tc.save_state("kept").result().path, tc.save_state("again").result().path
        for path in (kept, overwritten):
            rest_client(srv, srv.key).publish_checkpoint_from_tinker_path(path).result()
        tc.save_state("again", overwrite=True).result()  # new weights under a published name
        svc.close("success").result()
        srv.stop()
        srv.start()
        other_rest = rest_client(srv, other)
        assert other_rest.get_weights_info_by_tinker_path(kept).result().lora_rank == 2
        with pytest.raises(tinker.NotFoundError):
            other_rest.get_weights_info_by_tinker_path(overwritten).result()


def test_copy_weights_shares_the_files_and_samples_identically(server, svc, bob, trained):
    tc, state, sampler_path = trained
    rest = rest_client(server, server.key)
    source = tc.save_weights_for_sampler("to-copy").result().path
    copy = rest.copy_weights(source, "proj-archive", ttl_seconds=7200).result()
    run_id = copy.split("/")[2]
    assert copy == f"tinker://{run_id}/sampler_weights/to-copy" and run_id != tc.model_id
    (listed,) = rest.list_checkpoints(run_id).result().checkpoints
    assert listed.tinker_path == copy and listed.expires_at is not None and not listed.public
    # Storage is shared: the copy's files are the source's (hard links), not duplicates.
    root = server.data_dir / "checkpoints"
    src_file = root / tc.model_id / "sampler_weights" / "to-copy" / "adapter_model.safetensors"
    dst_file = root / run_id / "sampler_weights" / "to-copy" / "adapter_model.safetensors"
    assert os.stat(src_file).st_ino == os.stat(dst_file).st_ino
    want = prompt_logprobs(svc.create_sampling_client(model_path=source).result())
    # The copy outlives its source, and samples exactly like it.
    rest.delete_checkpoint_from_tinker_path(source).result()
    np.testing.assert_allclose(prompt_logprobs(svc.create_sampling_client(model_path=copy).result()), want, atol=1e-6)
    # Its run cannot be trained.
    r = api(server, server.key, "POST", "/optim_step",
            json={"model_id": run_id, "seq_id": 1, "adam_params": {"learning_rate": 1e-4}})
    assert r.status_code == 400 and "copy_weights" in r.json()["detail"], r.text
    # A retry with the same X-Idempotency-Key gets the first copy; another body under it is refused.
    body = {"source_path": state, "destination_project_id": "proj-x"}
    idem = {"X-Idempotency-Key": str(uuid.uuid4())}
    first = api(server, server.key, "POST", "/copy_weights", json=body, headers=idem)
    again = api(server, server.key, "POST", "/copy_weights", json=body, headers=idem)
    assert first.status_code == 200 and again.json() == first.json(), (first.text, again.text)
    other = api(server, server.key, "POST", "/copy_weights", json={**body, "ttl_seconds": 3600}, headers=idem)
    assert other.status_code == 400 and "X-Idempotency-Key" in other.json()["detail"], other.text
    assert api(server, server.key, "POST", "/copy_weights", json=body).json() != first.json()
    # Into a slot of one of the key's sessions (the request's other form); a taken slot is refused.
    slot = {"source_path": state, "session_id": svc.holder.get_session_id(), "model_seq_id": 99}
    into = api(server, server.key, "POST", "/copy_weights", json=slot)
    assert into.json() == {"tinker_path": f"tinker://{svc.holder.get_session_id()}:train:99/weights/shared"}, into.text
    taken = api(server, server.key, "POST", "/copy_weights", json=slot)
    assert taken.status_code == 400 and "already holds" in taken.json()["detail"], taken.text
    # Another key copies only what it may read.
    with pytest.raises(tinker.NotFoundError):
        rest_client(server, bob).copy_weights(state, "bobs").result()
    rest.publish_checkpoint_from_tinker_path(state).result()
    try:
        bobs = rest_client(server, bob).copy_weights(state, "bobs").result()
        assert rest_client(server, bob).get_training_run_by_tinker_path(bobs).result().model_owner != \
            rest.get_training_run(tc.model_id).result().model_owner
    finally:
        rest.unpublish_checkpoint_from_tinker_path(state).result()


def test_retrieve_futures_reports_what_retrieve_future_returns(server, svc, bob):
    key = server.key
    session = api(server, key, "POST", "/create_session",
                  json={"tags": [], "user_metadata": {}, "sdk_version": "test"}).json()["session_id"]
    sampler = api(server, key, "POST", "/create_sampling_session",
                  json={"session_id": session, "sampling_session_seq_id": 0, "base_model": SMOLLM2_NAME}).json()
    sid = sampler["sampling_session_id"]

    def asample(seq_id, seed):
        r = api(server, key, "POST", "/asample", json={
            "sampling_session_id": sid, "seq_id": seq_id, "num_samples": 2,
            "prompt": {"chunks": [{"type": "encoded_text", "tokens": PROMPT}]},
            "sampling_params": {"max_tokens": 6, "seed": seed, "temperature": 1.0}})
        assert r.status_code == 200, r.text
        return r.json()["request_id"]

    def poll(clone, cursor, timeout=None, k=key):
        return api(server, k, "POST", "/retrieve_futures", json={
            "target": {"type": "sampling_session", "sampling_session_id": sid, "cloned_sampler_id": clone},
            "prev_cursor": cursor, "timeout": timeout})

    ids = [asample(i, 40 + i) for i in range(3)]
    clone_id = asample(2 * 10**9, 99)  # an unpickled client numbered 2: its own target
    done, cursor = {}, 0
    while len(done) < 3:
        r = poll(0, cursor)
        assert r.status_code == 200, r.text
        for c in r.json()["completions"]:
            done[c["request_id"]] = c
        assert r.json()["cursor"] >= cursor
        cursor = r.json()["cursor"]
    assert set(done) == set(ids) and all(c["state"] == "finished" for c in done.values())
    # Seen completions are not reported again; the clone's request only to the clone's poller.
    assert poll(0, cursor, timeout=0).json() == {"completions": [], "cursor": cursor}
    clone = poll(2, 0, timeout=10).json()["completions"]
    assert [c["request_id"] for c in clone] == [clone_id]
    assert poll(0, cursor, k=bob).status_code == 404
    # The payload retrieve_future returns is the one announced, and decodes to what the SDK's own
    # sampler (which polls retrieve_futures) returns for the same request.
    def sdk_polls():
        return sum(v for k, v in server.metrics().items()
                   if k.startswith("openrl_http_requests_total") and 'route="/api/v1/retrieve_futures"' in k)

    before = sdk_polls()
    for i, rid in enumerate(ids):
        r = api(server, key, "POST", "/retrieve_future", json={"request_id": rid},
                headers={"Accept": "application/x-protobuf, application/json"})
        assert len(r.content) == done[rid]["response_payload_uncompressed_size"]
        raw = deserialize_sample_response(r.content)
        sdk = svc.create_sampling_client(base_model=SMOLLM2_NAME).result().sample(
            types.ModelInput.from_ints(PROMPT), 2, types.SamplingParams(max_tokens=6, seed=40 + i, temperature=1.0)).result()
        assert [s.tokens for s in sdk.sequences] == [s.tokens for s in raw.sequences]
    assert sdk_polls() >= before + len(ids)  # each SDK sample was announced by its sampler's poll


def test_join_sampling_session_numbers_the_clones(server, svc, bob):
    tc = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=2).result()
    sampler = tc.save_weights_and_get_sampling_client().result()
    sid = sampler._sampling_session_id

    def join(k=server.key):
        return api(server, k, "POST", "/join_sampling_session", json={"sampling_session_id": sid})

    assert [join().json()["client_counter"] for _ in range(2)] == [1, 2]
    assert join(bob).status_code == 404
    clone = pickle.loads(pickle.dumps(sampler))  # the SDK asks the server for the clone's number
    params = types.SamplingParams(max_tokens=4, seed=5)
    got = clone.sample(types.ModelInput.from_ints(PROMPT), 1, params).result().sequences[0].tokens
    assert got == sampler.sample(types.ModelInput.from_ints(PROMPT), 1, params).result().sequences[0].tokens
    assert join().json()["client_counter"] == 4


def test_a_key_reads_its_metadata_and_deletes_itself(openrl_bin, server, bob):
    carol = create_key(openrl_bin, server.data_dir, name="carol")
    auth = TinkerAuthApi(httpx.Client(timeout=30), base_url=server.url)  # `tinker auth login/logout`'s client
    me = auth.get_self_api_key(carol)
    assert me.name == "carol" and isinstance(me.key_id, int) and me.details.org_details.name
    assert auth.get_self_api_key(bob).name == "bob" and auth.get_self_api_key(bob).key_id != me.key_id
    rest_client(server, carol).list_training_runs().result()
    auth.delete_self_api_key(carol)
    with pytest.raises(AuthApiError, match="401"):
        auth.get_self_api_key(carol)
    with pytest.raises(tinker.AuthenticationError):
        rest_client(server, carol).list_training_runs().result()
    assert auth.get_self_api_key(bob).name == "bob"  # only the key that asked
    keys = {k["name"]: k for k in map(json.loads, subprocess.run(
        [str(openrl_bin), "keys", "list", "--data-dir", str(server.data_dir)],
        check=True, capture_output=True, text=True).stdout.splitlines())}
    assert keys["carol"]["revoked_at"] and not keys["bob"].get("revoked_at")
    db = sqlite3.connect(f"file:{server.data_dir / 'openrl.db'}?mode=ro", uri=True)
    assert db.execute("SELECT count(*) FROM audit_log WHERE event = 'api_key_delete' AND key_id = ?",
                      (keys["carol"]["id"],)).fetchone() == (1,)


def test_jwt_exchange_is_refused_with_a_readable_problem(server):
    r = api(server, server.key, "POST", "/auth/token", json={})
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json")
    assert "pjwt_auth_enabled" in r.json()["detail"]
    assert api(server, "tml-" + "0" * 48, "POST", "/auth/token", json={}).status_code == 401


@pytest.mark.filterwarnings("ignore:DEPRECATED:FutureWarning")  # TrainingClient.load_state
def test_audit_log_shows_the_actions_in_order(openrl_bin, server):
    dave, eve = create_key(openrl_bin, server.data_dir, name="dave"), create_key(openrl_bin, server.data_dir, name="eve")
    svc = service_client(server, dave)
    rest = rest_client(server, dave)
    tc = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=2).result()
    path = tc.save_state("audited").result().path
    tc.load_state(path).result()
    rest.publish_checkpoint_from_tinker_path(path).result()
    eve_svc = service_client(server, eve)
    rest_client(server, eve).get_weights_info_by_tinker_path(path).result()
    eve_svc.create_training_client_from_state(path).result()  # eve reads dave's published checkpoint
    rest.unpublish_checkpoint_from_tinker_path(path).result()
    rest.delete_checkpoint_from_tinker_path(path).result()
    rest.assign_session_project(svc.holder.get_session_id(), "audited-project").result()
    log = tinker.AdminClient(base_url=server.url, api_key=dave).get_audit_log().result().entries
    assert [e.event for e in log] == ["training_run_create", "checkpoint_create", "checkpoint_read",
                                      "checkpoint_publish", "checkpoint_read", "checkpoint_unpublish",
                                      "checkpoint_delete", "session_project_set"]
    assert [e.timestamp for e in log] == sorted(e.timestamp for e in log)
    reads = [e for e in log if e.event == "checkpoint_read"]
    assert [e.purpose for e in reads] == ["load_state", "load_state"] and all(e.tinker_path == path for e in reads)
    assert reads[0].event_details["actor"] != reads[1].event_details["actor"]  # dave's own, then eve's
    checkpoints = tinker.AdminClient(base_url=server.url, api_key=dave).get_audit_log("checkpoints").result().entries
    assert [e.event for e in checkpoints] == [e.event for e in log if e.event.startswith("checkpoint_")]
    yesterday = datetime.datetime.now(datetime.timezone.utc).date() - datetime.timedelta(days=1)
    assert tinker.AdminClient(base_url=server.url, api_key=dave).get_audit_log(day=yesterday).result().entries == []
    eve_log = tinker.AdminClient(base_url=server.url, api_key=eve).get_audit_log().result().entries
    assert [e.event for e in eve_log] == ["training_run_create", "checkpoint_read"]
    for client in (svc, eve_svc):
        client.close("success").result()


def test_answered_requests_keep_their_audit_records_and_usage_through_kill_9(openrl_bin, tmp_path):
    """Audit records are committed before the action is answered, and usage before the result it was
    counted for: killing the server right after the answers loses none of them."""
    from tinker_server import Server
    key = create_key(openrl_bin, tmp_path, name="grace")
    srv = Server(openrl_bin, tmp_path).start()
    try:
        svc = service_client(srv, key)
        tc = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=2).result()
        path = tc.save_state("kept").result().path
        rest = rest_client(srv, key)
        rest.publish_checkpoint_from_tinker_path(path).result()
        rest.unpublish_checkpoint_from_tinker_path(path).result()
        tc.forward_backward([datum(DATA[0])], "cross_entropy").result()
    finally:
        srv.kill9()  # at once: nothing is given a second to be flushed
    db = sqlite3.connect(f"file:{tmp_path / 'openrl.db'}?mode=ro", uri=True)
    events = [e for (e,) in db.execute("SELECT event FROM audit_log ORDER BY seq")]
    usage = dict(db.execute("SELECT kind, SUM(quantity) FROM usage_hours GROUP BY kind").fetchall())
    db.close()
    assert events == ["training_run_create", "checkpoint_create", "checkpoint_publish", "checkpoint_unpublish"]
    assert usage == {"checkpoint": 1, "training": len(DATA[0]) - 1}


def test_usage_counts_what_the_engine_did(openrl_bin, server):
    frank = create_key(openrl_bin, server.data_dir, name="frank")
    svc = service_client(server, frank)
    tc = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=2).result()
    train = [datum(t) for t in DATA]
    tc.forward_backward(train, "cross_entropy").result()
    tc.forward(train[:1], "cross_entropy").result()
    tc.optim_step(types.AdamParams(learning_rate=1e-4)).result()
    trained_tokens = 2 * sum(len(t) - 1 for t in DATA) - (len(DATA[1]) - 1)  # forward_backward + forward
    ckpt = tc.save_weights_for_sampler("usage").result().path
    sampler = tc.save_weights_and_get_sampling_client().result()  # in memory: not a checkpoint
    res = sampler.sample(types.ModelInput.from_ints(PROMPT), 3, types.SamplingParams(max_tokens=5, seed=1)).result()
    sampled = sum(len(s.tokens) for s in res.sequences)
    hour = datetime.datetime.now(datetime.timezone.utc).replace(minute=0, second=0, microsecond=0)
    window = [(hour - datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
              (hour + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")]
    usage = json.loads(tinker_cli(server, frank, "--format", "json", "billing", "usage", *window))
    totals = {}
    for row in usage["data"]:
        info = row["event_info"]
        totals[info["type"]] = totals.get(info["type"], 0) + info.get("token_count", info.get("count", 0))
        assert row["estimated_cost_usd"] is None and row["session_id"] == svc.holder.get_session_id()
    assert totals == {"training": trained_tokens, "sampling_prefill": 3 * len(PROMPT), "sampling_sample": sampled,
                      "checkpoint": 1}
    storage = tinker.AdminClient(base_url=server.url, api_key=frank).get_current_checkpoint_storage_usage().result()
    (item,) = storage.data
    ckpt_dir = server.data_dir / "checkpoints" / tc.model_id / "sampler_weights" / "usage"
    assert item.checkpoint_count == 1 and item.size_bytes == sum(f.stat().st_size for f in ckpt_dir.iterdir())
    assert ckpt.endswith("/usage")
    r = api(server, frank, "GET", "/billing/usage/events",
            params={"starting_on": hour.strftime("%Y-%m-%dT%H:30:00Z"), "ending_before": window[1]})
    assert r.status_code == 400 and "starting_on" in r.json()["detail"]
    svc.close("success").result()


def test_sessions_search_project_and_trace(openrl_bin, server, bob, tmp_path):
    svc = tinker.ServiceClient(base_url=server.url, api_key=server.key, project_id="proj-a",
                               display_name="Nightly sweep 7", user_metadata={"team": "rl"})
    other = tinker.ServiceClient(base_url=server.url, api_key=server.key, display_name="nightly eval")
    other.create_sampling_client(base_model=SMOLLM2_NAME).result()  # makes its session
    tc = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=2).result()
    tc.forward_backward([datum(DATA[0])], "cross_entropy").result()
    tc.save_state("s").result()
    sampler = tc.save_weights_and_get_sampling_client().result()
    sampler.sample(types.ModelInput.from_ints(PROMPT), 1, types.SamplingParams(max_tokens=3, seed=2)).result()
    session = svc.holder.get_session_id()
    rest, bob_rest = rest_client(server, server.key), rest_client(server, bob)

    def search(**kw):
        return rest.search_sessions(types.SessionSearchRequest(**kw)).result()

    (hit,) = search(display_name="SWEEP nightly").sessions  # every word, in any case
    assert len(search(display_name="nightly").sessions) == 2
    assert (hit.session_id, hit.project_id, hit.checkpoints_count, hit.status.type) == (session, "proj-a", 1, "active")
    assert hit.user_metadata == {"team": "rl"} and hit.checkpoint_storage_bytes > 0
    assert search(user_metadata={"team": "rl"}).sessions[0].session_id == session
    assert search(user_metadata={"team": "sl"}).sessions == []
    rest.assign_session_project(session, "proj-b").result()
    assert [s.session_id for s in search(project_ids=["proj-b"]).sessions] == [session]
    assert search(project_ids=["proj-a"]).sessions == []
    with pytest.raises(tinker.NotFoundError):
        bob_rest.assign_session_project(session, "bobs").result()
    assert session not in [s.session_id for s in bob_rest.search_sessions(types.SessionSearchRequest()).result().sessions]
    # Newest first, a page at a time, no session twice.
    first = search(limit=1)
    second = search(limit=1, cursor=first.next_cursor)
    assert first.next_cursor is not None and first.sessions[0].session_id != second.sessions[0].session_id
    assert first.sessions[0].created_at >= second.sessions[0].created_at
    # The trace holds the session's requests; the CLI downloads it.
    url = rest.export_session_trace(session).result()
    events = json.load(urllib.request.urlopen(url))["traceEvents"]
    names = {e["name"] for e in events if e["ph"] == "X"}
    assert {"forward_backward", "save_weights", "sample"} <= names, names
    out = tmp_path / "t.pftrace"
    tinker_cli(server, server.key, "session", "export-trace", session, "-o", str(out))
    assert {e["name"] for e in json.loads(out.read_text())["traceEvents"] if e["ph"] == "X"} == names
    with pytest.raises(tinker.NotFoundError):
        bob_rest.export_session_trace(session).result()
    svc.close("errored", "test").result()
    other.close("success").result()
    (closed,) = search(session_id=session).sessions
    assert closed.status.type == "client_finished" and closed.status.reason.type == "errored"
    finished = types.ClientFinishedSessionStatusQuery(reasons=["errored"])
    assert [s.session_id for s in search(statuses=[finished]).sessions] == [session]
    assert session not in [s.session_id for s in search(statuses=[types.ActiveSessionStatusQuery()]).sessions]
