"""The secret and what it derives: pseudonyms, research IDs; stable across instances and restarts."""

from __future__ import annotations

import re
import stat
import threading
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from dicomweb.policies.deid import Deidentifier
from dicomweb.policies.deid.keys import load_secret
from dicomweb.settings import load_settings

UID = "1.2.826.0.1.3680043.8.498.1"
STRICT_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def test_same_secret_same_pseudonyms_other_secret_others() -> None:
    a, b, other = Deidentifier(b"s1", None), Deidentifier(b"s1", None), Deidentifier(b"s2", None)
    assert a.pseudonym(UID) == b.pseudonym(UID) != other.pseudonym(UID)
    assert a.research_patient_id("P1") == b.research_patient_id("P1") != other.research_patient_id("P1")
    assert a.pseudonym(UID) != a.pseudonym(UID + "0")


def test_research_id_format() -> None:
    deid = Deidentifier(b"s1", None)
    assert re.fullmatch(r"R[A-Z2-7]{16}", deid.research_patient_id("P1"))
    assert deid.research_patient_id("P1") != deid.research_patient_id("P2")


def test_secret_file_made_once_and_kept(tmp_path: Path) -> None:
    settings = load_settings(None, data_dir=tmp_path)
    first = Deidentifier.open(settings, None).pseudonym(UID)
    key = tmp_path / "auth" / "deid.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert Deidentifier.open(settings, None).pseudonym(UID) == first  # a restart derives the same
    configured = load_settings(None, data_dir=tmp_path, deid_secret="from settings")
    assert Deidentifier.open(configured, None).pseudonym(UID) == Deidentifier(b"from settings", None).pseudonym(UID)


def test_concurrent_first_starts_agree(tmp_path: Path) -> None:
    secrets: list[bytes] = []
    start = threading.Barrier(8)

    def load() -> None:
        start.wait()
        secrets.append(load_secret("", tmp_path))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(secrets) == 8 and len(set(secrets)) == 1
    assert [p.name for p in (tmp_path / "auth").iterdir()] == ["deid.key"]


_component = st.one_of(st.just("0"), st.integers(min_value=1, max_value=10**12).map(str))
uids = st.lists(_component, min_size=2, max_size=12).map(".".join).filter(lambda u: len(u) <= 64)


@settings(max_examples=300, deadline=None)
@given(uid=uids)
def test_pseudonym_is_a_valid_uid(uid: str) -> None:
    pseudonym = Deidentifier(b"prop", None).pseudonym(uid)
    assert len(pseudonym) <= 64
    assert STRICT_UID.match(pseudonym)
    assert pseudonym.startswith("2.25.")


@settings(max_examples=50, deadline=None)
@given(sample=st.sets(uids, min_size=1, max_size=200))
def test_pseudonyms_are_injective(sample: set[str]) -> None:
    deid = Deidentifier(b"prop", None)
    assert len({deid.pseudonym(u) for u in sample}) == len(sample)
