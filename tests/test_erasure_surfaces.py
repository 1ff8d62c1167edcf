"""Erasure as operators and users reach it: the HTTP routes and the CLI commands."""

from __future__ import annotations

import json
from pathlib import Path

from api_support import ADMIN, api_client, bearer, sample_items, token_for
from typer.testing import CliRunner

from ownrank import BaseEncoder, Engine
from ownrank.engine.receipts import verify_receipt
from ownrank.service.cli import app as cli_app

runner = CliRunner()


def test_erase_over_http_returns_a_receipt_anyone_can_verify(tmp_path: Path) -> None:
    with api_client(tmp_path / "data") as client:
        assert client.post("/items", json={"items": sample_items(12)}, headers=ADMIN).is_success
        me = bearer(token_for(client, "erin-5521"))
        events = {"events": [{"kind": "like", "item_id": "jazz-0"}]}
        assert client.post("/users/erin-5521/interactions", json=events, headers=me).is_success

        receipt = client.delete("/users/erin-5521", headers=me).json()
        assert receipt["existed"] and receipt["data_key_destroyed"]
        keys = client.get("/receipts/public-keys").json()["keys"]  # public, no credentials
        assert verify_receipt(receipt, keys)
        assert not verify_receipt({**receipt, "events_removed": 0}, keys)

        # the tombstone: a write racing in (or a stale device) gets 409, not a new user
        response = client.post("/users/erin-5521/interactions", json=events, headers=me)
        assert response.status_code == 409 and response.json()["code"] == "user_erased"

        audit = client.get("/users/erin-5521/audit", headers=ADMIN).json()
        assert audit["clean"] and audit["tombstone_erased_at"] is not None
        assert 0 < audit["chance_matches"]["user id"] < 1e-9  # 10 bytes: chance is nil
        assert client.get("/users/erin-5521/audit", headers=me).status_code == 403

        body = {"shared_statistics": False}
        assert client.post("/users/erin-5521/recreate", json=body, headers=me).is_success
        assert client.post("/users/erin-5521/interactions", json=events, headers=me).is_success
        exported = client.get("/users/erin-5521/export", headers=me).json()
        assert exported["consent"]["shared_statistics"] is False
        assert not client.get("/users/erin-5521/audit", headers=ADMIN).json()["clean"]


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(cli_app, list(args))
    return result.exit_code, result.output


def test_the_erasure_commands(tmp_path: Path, real_encoder: BaseEncoder) -> None:
    data = tmp_path / "data"
    with Engine(data, encoder=real_encoder) as engine:
        engine.catalog.upsert(
            [
                {"id": "a1", "title": "Pruning roses in late winter"},
                {"id": "a2", "title": "The Najdorf Sicilian explained"},
            ]
        )
        engine.interact("quinn-8080", [{"kind": "like", "item_id": "a1"}])
    code, out = run("backup", str(tmp_path / "bk"), "--data-dir", str(data))
    assert code == 0 and json.loads(out)["kind"] == "ownrank-data-backup"
    code, out = run("backup-keystore", str(tmp_path / "ks"), "--data-dir", str(data))
    assert code == 0 and json.loads(out)["kind"] == "ownrank-keystore-backup"

    code, _ = run("audit", "quinn-8080", "--data-dir", str(data))
    assert code == 1  # the user exists: not clean
    receipt_file = tmp_path / "receipt.json"
    code, out = run("erase", "quinn-8080", "--data-dir", str(data), "--out", str(receipt_file))
    assert code == 0 and json.loads(out)["events_removed"] == 1
    code, out = run("verify-receipt", str(receipt_file), "--data-dir", str(data))
    assert code == 0 and "valid" in out
    tampered = {**json.loads(receipt_file.read_text()), "existed": False}
    receipt_file.write_text(json.dumps(tampered))
    code, out = run("verify-receipt", str(receipt_file), "--data-dir", str(data))
    assert code == 1 and "invalid" in out

    code, out = run("compact", "--data-dir", str(data))
    assert code == 0 and "lmdb" in out
    code, out = run("audit", "quinn-8080", "--data-dir", str(data), "--json")
    assert code == 0 and json.loads(out)["clean"] is True
    code, out = run("audit", "quinn-8080", "--data-dir", str(data), "--term", "q")
    # one byte: expected thousands of times in random bytes, whether found this time or not
    assert code in (0, 1) and "term 1:" in out and "expected by chance" in out

    code, _ = run("restore", str(tmp_path / "bk"), "--data-dir", str(data))
    assert code == 0
    with Engine(data, encoder=real_encoder) as engine:  # the old copy cannot be read
        assert engine._users.record("quinn-8080") is None
        assert engine.last_reconcile is not None
        assert engine.last_reconcile.fenced_records_purged == 1
    code, out = run("rotate-signing-key", "--data-dir", str(data))
    assert code == 0 and out.startswith("ed25519:")
