"""Getting weights out of the training API, through the real `tinker` SDK and tinker-cookbook:
save_weights_external (plain and age-encrypted), signed per-file download URLs, the checkpoint
archive (a tar behind a 302), checkpoint TTLs. The exported adapter is loaded by PEFT on the
transformers model of the same base and must give the server's own logprobs."""
import hashlib
import hmac
import io
import os
import subprocess
import tarfile
import time
import urllib.error
import urllib.request

import httpx
import numpy as np
import pytest
import torch

os.environ.setdefault("TINKER_TELEMETRY", "0")
import pyrage  # noqa: E402
from tinker import types  # noqa: E402

from tinker_server import SMOLLM2_NAME, create_key, rest_client  # noqa: E402

TEXT = "Exported adapters must load anywhere. Exported adapters must load anywhere."


@pytest.fixture(scope="module")
def trained(svc):
    """A LoRA run trained a few steps (so B != 0), its tokenizer and the base's local directory."""
    tc = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=8, seed=21).result()
    tok = tc.get_tokenizer()
    ids = tok(TEXT, add_special_tokens=False).input_ids
    d = types.Datum(model_input=types.ModelInput.from_ints(ids[:-1]),
                    loss_fn_inputs={"target_tokens": ids[1:], "weights": [1.0] * (len(ids) - 1)})
    for _ in range(3):
        tc.forward_backward([d], "cross_entropy").result()
        tc.optim_step(types.AdamParams(learning_rate=2e-3)).result()
    return tc, ids, tc.get_info().model_data.tokenizer_id


def fetch(url):
    with urllib.request.urlopen(url, timeout=60) as r:
        return r.read()


def status_of(url):
    try:
        fetch(url)
        return 200
    except urllib.error.HTTPError as e:
        return e.code


def peft_logprobs(base_dir, adapter_dir, ids):
    import peft
    import transformers
    base = transformers.AutoModelForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32)
    model = peft.PeftModel.from_pretrained(base, adapter_dir).eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids[:-1]])).logits[0]
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0].numpy()


def test_cookbook_download_of_a_training_checkpoint_loads_in_peft(server, svc, trained, tmp_path, monkeypatch):
    """tinker_cookbook.weights.download: loads the checkpoint into a new run, exports it encrypted to a
    fresh age key, fetches the files by their signed URLs, decrypts them with pyrage, deletes the export."""
    from tinker_cookbook import weights

    tc, ids, base_dir = trained
    state = tc.save_state("to-download").result().path
    sampler = tc.save_weights_and_get_sampling_client().result()
    ours = sampler.compute_logprobs(types.ModelInput.from_ints(ids)).result()[1:]
    base = svc.create_sampling_client(base_model=SMOLLM2_NAME).result()
    base_lp = base.compute_logprobs(types.ModelInput.from_ints(ids)).result()[1:]
    assert np.abs(np.array(ours) - np.array(base_lp)).max() > 0.05  # the adapter is not a no-op
    monkeypatch.setenv("TINKER_API_KEY", server.key)
    out = weights.download(tinker_path=state, output_dir=str(tmp_path / "adapter"), base_url=server.url)
    assert sorted(os.listdir(out)) == ["adapter_config.json", "adapter_model.safetensors"]
    np.testing.assert_allclose(peft_logprobs(base_dir, out, ids), ours, atol=1e-4)
    # The temporary export was deleted by the cookbook; the loaded copy's run lists no exports.
    rest = rest_client(server, server.key)
    for run in rest.list_training_runs(limit=100).result().training_runs:
        kinds = [c.checkpoint_type for c in rest.list_checkpoints(run.training_run_id).result().checkpoints]
        assert "external" not in kinds


def test_external_weights_plain_and_encrypted_urls_ttl_delete(server, svc, trained, tmp_path):
    tc, ids, base_dir = trained
    rest = rest_client(server, server.key)
    plain = tc.save_weights_external("plain").result().path
    assert plain == f"tinker://{tc.model_id}/external_weights/plain"
    listed = {c.tinker_path: c for c in rest.list_checkpoints(tc.model_id).result().checkpoints}
    assert listed[plain].checkpoint_type == "external" and listed[plain].checkpoint_id == "external_weights/plain"
    resp = rest.get_external_weights_urls(plain).result()
    assert sorted(resp.urls) == ["adapter_config.json", "adapter_model.safetensors"]
    assert 3000 < resp.expires.timestamp() - time.time() <= 3600
    on_disk = server.data_dir / "checkpoints" / tc.model_id / "external_weights" / "plain"
    files = {}
    for name, url in resp.urls.items():
        files[name] = fetch(url)  # no API key: the URL is the credential
        assert files[name] == (on_disk / name).read_bytes()
    (tmp_path / "plain").mkdir()
    for name, data in files.items():
        (tmp_path / "plain" / name).write_bytes(data)
    ours = tc.save_weights_and_get_sampling_client().result().compute_logprobs(types.ModelInput.from_ints(ids)).result()[1:]
    np.testing.assert_allclose(peft_logprobs(base_dir, tmp_path / "plain", ids), ours, atol=1e-4)

    # Encrypted to three recipients — two age keys and an SSH key, which the SDK's docstring allows:
    # each identity (the SSH private key for the third) alone decrypts the same bytes; nothing plain stays.
    a, b = pyrage.x25519.Identity.generate(), pyrage.x25519.Identity.generate()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "exports", "-f", str(tmp_path / "id")],
                   check=True, capture_output=True, timeout=60)
    c = pyrage.ssh.Identity.from_buffer((tmp_path / "id").read_bytes())
    enc = tc.save_weights_external("sealed", ttl_seconds=7200, age_encryption_recipients=[
        str(a.to_public()), str(b.to_public()), (tmp_path / "id.pub").read_text().strip()]).result().path
    urls = rest.get_external_weights_urls(enc).result().urls
    assert sorted(urls) == ["adapter_config.json.age", "adapter_model.safetensors.age"]
    for name, url in urls.items():
        sealed = fetch(url)
        assert files[name[:-4]] not in sealed
        assert b"\n-> ssh-ed25519 " in sealed[:1000]
        for ident in (a, b, c):
            assert pyrage.decrypt(sealed, [ident]) == files[name[:-4]]
        with pytest.raises(pyrage.DecryptError):
            pyrage.decrypt(sealed, [pyrage.x25519.Identity.generate()])
    sealed_dir = server.data_dir / "checkpoints" / tc.model_id / "external_weights" / "sealed"
    assert sorted(p.name for p in sealed_dir.iterdir()) == sorted(urls)

    # TTL: set, listed, cleared; out of range is a 400 naming the field.
    rest.set_checkpoint_ttl_from_tinker_path(plain, 86400).result()
    exp = {c.tinker_path: c for c in rest.list_checkpoints(tc.model_id).result().checkpoints}[plain].expires_at
    assert exp is not None and 86000 < exp.timestamp() - time.time() <= 86400
    rest.set_checkpoint_ttl_from_tinker_path(plain, None).result()
    assert {c.tinker_path: c for c in rest.list_checkpoints(tc.model_id).result().checkpoints}[plain].expires_at is None
    r = httpx.put(f"{server.url}/api/v1/training_runs/{tc.model_id}/checkpoints/external_weights/plain/ttl",
                  json={"ttl_seconds": 60}, headers={"X-API-Key": server.key})
    assert r.status_code == 400 and "ttl_seconds" in r.json()["detail"]

    # Exports are not training state or sampler weights.
    with pytest.raises(Exception, match="training checkpoint"):
        svc.create_training_client_from_state(plain).result()
    with pytest.raises(Exception, match="export"):
        svc.create_sampling_client(model_path=plain).result()
    # Bad input is refused before it is queued.
    for body, field in [({"path": "x", "age_encryption_recipients": ["ssh-ed25519 AAAAC3Nza"]},
                         "age_encryption_recipients[0]"),
                        ({"path": "x", "age_encryption_recipients": [str(a.to_public()), "ecdsa-sha2-nistp256 AAAA"]},
                         "age_encryption_recipients[1]': age recipient: SSH keys of type ecdsa-sha2-nistp256"),
                        ({"path": "x", "age_encryption_recipients": ["age1notakey"]}, "age_encryption_recipients[0]"),
                        ({"path": "x", "ttl_seconds": 5}, "ttl_seconds"),
                        ({"path": "../x"}, "path"),
                        ({"path": "plain"}, "already exist")]:
        r = httpx.post(server.url + "/api/v1/save_weights_external", json={"model_id": tc.model_id, **body},
                       headers={"X-API-Key": server.key})
        assert r.status_code == 400 and field in r.json()["detail"], (body, r.text)

    # Deleting the export makes its URLs stop working at once.
    url = resp.urls["adapter_config.json"]
    rest.delete_checkpoint_from_tinker_path(plain).result()
    assert status_of(url) == 404


def test_signed_urls_refuse_tampering_expiry_and_other_keys(openrl_bin, server, trained):
    tc, _, _ = trained
    rest = rest_client(server, server.key)
    path = tc.save_weights_external("guarded").result().path
    url = rest.get_external_weights_urls(path).result().urls["adapter_config.json"]
    assert status_of(url) == 200
    assert status_of(url[:-1] + ("0" if url[-1] != "0" else "1")) == 403  # one hex digit of the signature
    assert status_of(url.replace("adapter_config.json", "adapter_model.safetensors")) == 403
    assert status_of(url.split("?")[0]) == 403
    # A correctly signed URL whose time has passed (signed here with the server's own key).

    key = (server.data_dir / "secrets" / "url_signing.key").read_bytes()
    assert oct((server.data_dir / "secrets" / "url_signing.key").stat().st_mode & 0o777) == "0o600"
    url_path = httpx.URL(url).path
    past = int(time.time()) - 10
    sig = hmac.new(key, f"{url_path}\n{past}".encode(), hashlib.sha256).hexdigest()
    expired = f"{server.url}{url_path}?expires={past}&signature={sig}"
    assert status_of(expired) == 403
    future = int(time.time()) + 60
    sig = hmac.new(key, f"{url_path}\n{future}".encode(), hashlib.sha256).hexdigest()
    assert status_of(f"{server.url}{url_path}?expires={future}&signature={sig}") == 200
    # Another API key sees neither the run's URLs nor its archive.
    other = create_key(openrl_bin, server.data_dir, name="other")
    for suffix in ("external_weights/guarded/external_weights_urls", "external_weights/guarded/archive"):
        r = httpx.get(f"{server.url}/api/v1/training_runs/{tc.model_id}/checkpoints/{suffix}",
                      headers={"X-API-Key": other})
        assert r.status_code == 404, r.text


def test_checkpoint_archive_is_a_tar_of_the_adapter_behind_a_302(server, trained, tmp_path):
    tc, ids, base_dir = trained
    state = tc.save_state("archived").result().path
    tc.save_weights_for_sampler("archived").result()
    for kind, want in [("weights", ["adapter_config.json", "adapter_model.safetensors", "openrl_checkpoint.json"]),
                       ("sampler_weights", ["adapter_config.json", "adapter_model.safetensors",
                                            "openrl_checkpoint.json"])]:
        r = httpx.get(f"{server.url}/api/v1/training_runs/{tc.model_id}/checkpoints/{kind}/archived/archive",
                      headers={"X-API-Key": server.key}, follow_redirects=False)
        assert r.status_code == 302, r.text
        assert r.headers["location"] == r.json()["url"] and "GMT" in r.headers["expires"]
        body = fetch(r.headers["location"])
        with tarfile.open(fileobj=io.BytesIO(body)) as tar:
            names = sorted(m.name for m in tar.getmembers())
            assert names == [f"archived/{n}" for n in want]  # the optimizer state stays on the server
            on_disk = server.data_dir / "checkpoints" / tc.model_id / kind / "archived"
            for n in want:
                assert tar.extractfile(f"archived/{n}").read() == (on_disk / n).read_bytes()
            if kind == "weights":
                tar.extractall(tmp_path, filter="data")
    sampler = tc.save_weights_and_get_sampling_client().result()
    ours = sampler.compute_logprobs(types.ModelInput.from_ints(ids)).result()[1:]
    np.testing.assert_allclose(peft_logprobs(base_dir, tmp_path / "archived", ids), ours, atol=1e-4)
    r = httpx.get(f"{server.url}/api/v1/training_runs/{tc.model_id}/checkpoints/weights/missing/archive",
                  headers={"X-API-Key": server.key}, follow_redirects=False)
    assert r.status_code == 404 and "does not exist" in r.json()["detail"]
    assert state.endswith("/weights/archived")
