"""The log encryption key ring, the sealed columns' rules and the key settings (issue 14)."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest

from downtime_operator.adapters.encryption import LogKeyRing, key_id_of
from downtime_operator.adapters.log_keys import log_key_ring
from downtime_operator.adapters.sealed_columns import (
    open_stored,
    reseal_stored,
    seal_stored,
    stored_key_ids,
)
from downtime_operator.services.ports import SealedDataError
from downtime_operator.settings import LogEncryptionSettings, SettingsError, load_settings
from downtime_operator.settings.log_encryption import current_log_keys

RAW_A, RAW_B = bytes(range(32)), bytes(range(64, 96))
KEY_A, KEY_B = base64.b64encode(RAW_A).decode(), base64.b64encode(RAW_B).decode()
ROW = "5b0d3c0e-0000-4000-8000-000000000001"


def test_sealed_text_opens_only_in_its_place_and_under_its_key() -> None:
    ring = LogKeyRing({"A": RAW_A})
    sealed = ring.seal("token=secret", context=f"{ROW}/response_body")
    assert sealed.startswith("dtenc1:A:") and "secret" not in sealed
    assert sealed != ring.seal("token=secret", context=f"{ROW}/response_body")  # random nonce
    assert ring.open(sealed, context=f"{ROW}/response_body") == "token=secret"
    assert ring.open("written before keys", context="x") == "written before keys"

    with pytest.raises(SealedDataError, match=r"^encryption key A is not available: .*moved"):
        ring.open(sealed, context="another-row/response_body")
    flipped = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    with pytest.raises(SealedDataError, match="tampered"):
        ring.open(flipped, context=f"{ROW}/response_body")
    with pytest.raises(SealedDataError) as missing:
        LogKeyRing({"B": RAW_B}).open(sealed, context=f"{ROW}/response_body")
    assert str(missing.value) == "encryption key A is not available"
    assert missing.value.key_id == "A"


def test_without_keys_nothing_is_sealed_and_the_ring_shows_ids_only() -> None:
    assert LogKeyRing().seal("plain", context="x") == "plain"
    assert not LogKeyRing()
    ring = LogKeyRing({"B": RAW_B, "A": RAW_A})
    assert ring.active_id == "B" and ring.ids == ["B", "A"]
    assert LogKeyRing({"B": RAW_B, "A": RAW_A}, active="A").active_id == "A"
    shown = repr(ring)
    assert shown == "LogKeyRing(ids=['B', 'A'], active='B')"
    assert KEY_A not in shown and RAW_A.hex() not in shown
    with pytest.raises(ValueError, match="'C' is not in the key ring"):
        LogKeyRing({"A": RAW_A}, active="C")


def test_the_analysis_and_server_info_keep_their_counts_and_facts_in_clear() -> None:
    ring = LogKeyRing({"A": RAW_A})
    analysis = {
        "total_logs": 10,
        "error_count": 4,
        "warning_count": 1,
        "error_types": {"ConnectionError": 4},
        "top_errors": [["db-secret refused", 4]],
    }
    stored = seal_stored(ring, ROW, "log_analysis", json.dumps(analysis))
    assert stored is not None and "db-secret" not in stored and "ConnectionError" not in stored
    kept = json.loads(stored)
    assert (kept["total_logs"], kept["error_count"], kept["warning_count"]) == (10, 4, 1)
    assert json.loads(open_stored(ring, ROW, "log_analysis", stored) or "") == analysis

    server = {"http_version": "HTTP/1.1", "headers": {"Server": "secret-proxy"}, "addresses": []}
    stored = seal_stored(ring, ROW, "server_info", json.dumps(server))
    assert stored is not None and "secret-proxy" not in stored
    assert json.loads(stored)["http_version"] == "HTTP/1.1"
    assert json.loads(open_stored(ring, ROW, "server_info", stored) or "") == server

    records = json.dumps([{"message": "secret line"}])
    stored = seal_stored(ring, ROW, "logs_captured", records)
    assert stored is not None and json.loads(stored).startswith("dtenc1:A:")  # a JSON string
    assert open_stored(ring, ROW, "logs_captured", stored) == records
    assert open_stored(ring, ROW, "logs_captured", records) == records  # plain, as before keys


def test_resealing_moves_every_part_to_the_active_key_once() -> None:
    old = LogKeyRing({"A": RAW_A})
    stored = seal_stored(old, ROW, "log_analysis", json.dumps({"top_errors": [], "error_count": 0}))
    assert list(stored_key_ids("log_analysis", stored)) == ["A"]
    assert list(stored_key_ids("response_body", "plain body")) == [None]

    both = LogKeyRing({"B": RAW_B, "A": RAW_A})
    resealed = reseal_stored(both, ROW, "log_analysis", stored)
    assert resealed is not None and list(stored_key_ids("log_analysis", resealed)) == ["B"]
    assert reseal_stored(both, ROW, "log_analysis", resealed) is None  # already under B
    body = reseal_stored(both, ROW, "response_body", "plain body")
    assert body is not None and key_id_of(body) == "B"
    assert LogKeyRing({"B": RAW_B}).open(body, context=f"{ROW}/response_body") == "plain body"


def test_keys_come_inline_or_from_a_mounted_secret_in_order(tmp_path: Path) -> None:
    inline = load_settings(LogEncryptionSettings, {"LOG_ENCRYPTION_KEYS": f"B={KEY_B},A={KEY_A}"})
    assert list(inline.keys) == ["B", "A"]
    secret = tmp_path / "keys"
    secret.mkdir()
    (secret / "..data").mkdir()  # the kubelet's links are not keys
    (secret / "k2").write_text(KEY_B + "\n")
    (secret / "k1").write_text(KEY_A)
    mounted = load_settings(LogEncryptionSettings, {"LOG_ENCRYPTION_KEYS_FILE": str(secret)})
    assert list(mounted.keys) == ["k1", "k2"]
    assert current_log_keys(mounted) == {"k1": RAW_A, "k2": RAW_B}
    lines = tmp_path / "lines"
    lines.write_text(f"# newest first\nnew={KEY_B}\nold={KEY_A}\n")
    assert list(
        current_log_keys(
            load_settings(LogEncryptionSettings, {"LOG_ENCRYPTION_KEYS_FILE": str(lines)})
        )
    ) == ["new", "old"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"LOG_ENCRYPTION_KEYS": f"A={KEY_A[:-8]}"},
            "key 'A' must be the base64 of 32 random bytes",
        ),
        ({"LOG_ENCRYPTION_KEYS": f"A={KEY_A},A={KEY_B}"}, "key id 'A' is given twice"),
        ({"LOG_ENCRYPTION_KEYS": f"a b={KEY_A}"}, "key id 'a b' must be letters"),
        (
            {"LOG_ENCRYPTION_KEYS": f"A={KEY_A}", "LOG_ENCRYPTION_ACTIVE_KEY": "C"},
            "LOG_ENCRYPTION_ACTIVE_KEY: the key 'C' is not among the keys",
        ),
    ],
)
def test_bad_keys_are_refused_naming_the_id_never_the_key(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(LogEncryptionSettings, env)
    assert message in str(refused.value)
    assert KEY_A[:12] not in str(refused.value) and KEY_B[:12] not in str(refused.value)


def test_the_start_says_once_whether_captured_data_is_sealed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="downtime_operator.adapters.log_keys")
    assert not log_key_ring(load_settings(LogEncryptionSettings, {}))
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "are stored plain" in caplog.text
    caplog.clear()
    keys = load_settings(LogEncryptionSettings, {"LOG_ENCRYPTION_KEYS": f"B={KEY_B},A={KEY_A}"})
    assert log_key_ring(keys).active_id == "B"
    assert [r.getMessage() for r in caplog.records] == [
        "log encryption: captured data sealed with key B (keys: B, A)"
    ]
