"""The authorization matrix: every role against the fixed archive, every endpoint and level.

Each user sees exactly the expected studies, series and instances (through limit/offset pages too, with
counts computed over what the user may see), and a study the user may not see answers exactly, byte for byte,
as it does from an archive that does not hold it.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.policies.conftest import USERS, World
from tests.policies.fixture_archive import BY_KEY, STUDIES, StudySpec

VISIBLE: dict[str, set[str]] = {
    "admin": {"S1", "S2", "S3", "S4", "S5"},
    "patient1": {"S1", "S2"},
    "patient3": {"S4"},
    "doctor_a": {"S2", "S3"},
    "chief": {"S3"},
    "radiologist": {"S1", "S3", "S4"},
    "researcher": {"S1", "S3"},
    "lawyer": {"S4"},
    "outsider": set(),
    "gh_admin": {"S1", "S3", "S4"},
    "auditor": set(),
}
ANONYMIZED = {"researcher"}
assert set(VISIBLE) == set(USERS)

STUDY_UID, SERIES_UID, SOP_UID = "0020000D", "0020000E", "00080018"
SERIES_COUNT, INSTANCE_COUNT = "00201206", "00201208"


def _name(world: World, user: str, uid: str) -> str:
    """The UID as this user's answers carry it: a pseudonym in an anonymized view."""
    return world.client.app.state.deid.pseudonym(uid) if user in ANONYMIZED else uid  # type: ignore[attr-defined]


def _shown_series(user: str, study: StudySpec) -> list[int]:
    return [i for i, s in enumerate(study.series) if not (user in ANONYMIZED and s.burned_in)]


def _values(answer: Any, tag: str) -> list[str]:
    if answer.status_code == 204:
        return []
    assert answer.status_code == 200, answer.text
    return [d[tag]["Value"][0] for d in answer.json()]


@pytest.mark.parametrize("user", sorted(USERS))
def test_search_levels_show_exactly_what_the_user_may_see(world: World, user: str) -> None:
    studies = [BY_KEY[k] for k in sorted(VISIBLE[user])]
    expected_studies = {_name(world, user, s.uid) for s in studies}
    expected_series = {_name(world, user, s.series_uid(i)) for s in studies for i in _shown_series(user, s)}
    expected_sops = {_name(world, user, s.sop_uid(i, n)) for s in studies for i in _shown_series(user, s)
                     for n in range(s.series[i].instances)}
    found = world.call(user, "GET", "/dicom-web/studies", params={"includefield": f"{SERIES_COUNT},{INSTANCE_COUNT}"})
    assert set(_values(found, STUDY_UID)) == expected_studies
    if found.status_code == 200:
        for dataset in found.json():
            spec = next(s for s in studies if _name(world, user, s.uid) == dataset[STUDY_UID]["Value"][0])
            shown = _shown_series(user, spec)
            assert dataset[SERIES_COUNT]["Value"] == [len(shown)]
            assert dataset[INSTANCE_COUNT]["Value"] == [sum(spec.series[i].instances for i in shown)]
    assert set(_values(world.call(user, "GET", "/dicom-web/series"), SERIES_UID)) == expected_series
    assert set(_values(world.call(user, "GET", "/dicom-web/instances"), SOP_UID)) == expected_sops


@pytest.mark.parametrize("user", sorted(USERS))
def test_pages_cover_the_visible_set_once(world: World, user: str) -> None:
    seen: list[str] = []
    for offset in range(0, 12):
        page = world.call(user, "GET", "/dicom-web/instances", params={"limit": "1", "offset": str(offset)})
        seen += _values(page, SOP_UID)
    expected = sum(BY_KEY[k].series[i].instances for k in VISIBLE[user] for i in _shown_series(user, BY_KEY[k]))
    assert len(seen) == len(set(seen)) == expected


def _urls(world: World, user: str, study: StudySpec) -> list[str]:
    st, se, sop = (_name(world, user, u) for u in (study.uid, study.series_uid(0), study.sop_uid(0, 0)))
    base = f"/dicom-web/studies/{st}"
    instance = f"{base}/series/{se}/instances/{sop}"
    urls = [
        base, f"{base}/metadata", f"{base}/series", f"{base}/instances", f"{base}/series/{se}",
        f"{base}/series/{se}/metadata", f"{base}/series/{se}/instances", instance, f"{instance}/metadata",
        f"{instance}/frames/1", f"{instance}/bulkdata/7FE00010", f"{instance}/rendered", f"{instance}/thumbnail",
        f"{base}/series/{se}/rendered",
        f"/dicom-web/wado?requestType=WADO&studyUID={st}&seriesUID={se}&objectUID={sop}&contentType=application/dicom",
    ]
    if not (user in ANONYMIZED and any(s.burned_in for s in study.series)):
        urls.append(f"{base}/thumbnail")  # a study-level image of an anonymized view skips no series: withheld
    return urls


SEARCHES = ("/series", "/instances")


@pytest.mark.parametrize("user", sorted(USERS))
def test_every_retrieval_of_a_hidden_study_answers_as_if_absent(world: World, user: str) -> None:
    # A client learns UIDs from a search first; an anonymized view's pseudonyms resolve once handed out.
    world.call(user, "GET", "/dicom-web/instances")
    for study in STUDIES:
        for url in _urls(world, user, study):
            answer = world.call(user, "GET", url)
            if study.key in VISIBLE[user]:
                assert answer.status_code == 200, (user, url, answer.text)
                continue
            absent = world.absent("GET", url)
            if url.endswith(SEARCHES):
                assert answer.status_code == absent.status_code == 204, (user, url)
                continue
            assert (answer.status_code, answer.headers["content-type"], answer.content) == (
                absent.status_code, absent.headers["content-type"], absent.content), (user, url)
            assert answer.status_code == 404
        zipped = {"Accept": "application/zip"}
        study_url = f"/dicom-web/studies/{_name(world, user, study.uid)}"
        answer = world.call(user, "GET", study_url, headers=zipped)
        if study.key in VISIBLE[user]:
            assert (answer.status_code, answer.headers["content-type"]) == (200, "application/zip"), (user, study_url)
        else:
            assert answer.content == world.absent("GET", study_url, headers=zipped).content


def test_an_anonymized_study_is_reachable_only_by_its_pseudonyms(world: World) -> None:
    s1 = BY_KEY["S1"]
    original = world.call("researcher", "GET", f"/dicom-web/studies/{s1.uid}/metadata")
    assert original.status_code == 404
    assert original.content == world.absent("GET", f"/dicom-web/studies/{s1.uid}/metadata").content


def test_burned_in_series_are_withheld_from_anonymized_views(world: World) -> None:
    s3 = BY_KEY["S3"]
    pseudo = world.client.app.state.deid.pseudonym  # type: ignore[attr-defined]
    url = f"/dicom-web/studies/{pseudo(s3.uid)}/series/{pseudo(s3.series_uid(1))}/metadata"
    assert world.call("researcher", "GET", url).status_code == 404
    full = f"/dicom-web/studies/{s3.uid}/series/{s3.series_uid(1)}/metadata"
    assert world.call("radiologist", "GET", full).status_code == 200
    assert world.call("researcher", "GET", f"/dicom-web/studies/{pseudo(s3.uid)}/thumbnail").status_code == 404
    study = world.call("researcher", "GET", f"/dicom-web/studies/{pseudo(s3.uid)}/metadata")
    assert {d["0020000E"]["Value"][0] for d in study.json()} == {pseudo(s3.series_uid(0))}


@pytest.mark.parametrize("user", sorted(set(USERS) - {"admin"}))
def test_only_admins_delete(world: World, user: str) -> None:
    for study in STUDIES:
        url = f"/dicom-web/studies/{_name(world, user, study.uid)}"
        answer = world.call(user, "DELETE", url)
        if study.key in VISIBLE[user]:
            assert answer.status_code == 403, (user, url)
        else:
            absent = world.absent("DELETE", url)
            assert (answer.status_code, answer.content) == (absent.status_code, absent.content) == (404, absent.content)


def test_requests_without_a_valid_token_are_refused(world: World) -> None:
    assert world.client.get("/dicom-web/studies").status_code == 401
    bad = world.client.get("/dicom-web/studies", headers={"Authorization": "Bearer not.a.token"})
    assert bad.status_code == 401
    assert bad.headers["www-authenticate"].startswith("Bearer")
