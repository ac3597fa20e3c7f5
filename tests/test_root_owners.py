"""Roots belong to the broker user that publishes them: pinning, refusals, hand-over.

In-process, on a real SQLite store: the broker's part (that `sender` is the
validated `user_id`) is tested against RabbitMQ in test_broker_trust.py.
"""

from __future__ import annotations

import pytest

from caterva2.broker.consumer import Refused
from caterva2.subscriber import server
from caterva2.subscriber.remote_roots import RemoteRoots
from caterva2.subscriber.store import Store

URL = "http://127.0.0.1:8001"


@pytest.fixture
def remote(tmp_path):
    roots = RemoteRoots(Store(tmp_path), tmp_path)
    yield roots
    roots.close()


def test_first_announcer_owns_the_root_and_others_are_refused_and_counted(remote):
    remote.announce("foo", URL, "e1", True, sender="pub-foo")
    with pytest.raises(Refused, match="belongs to 'pub-foo'"):
        remote.announce("foo", "http://evil:1", "e2", True, sender="intruder")
    entry = remote.names()["foo"]
    assert entry["http"] == URL and entry["owner"] == "pub-foo"
    assert entry["refused"] == 1 and "intruder" in entry["refusal"]


def test_messages_without_a_validated_sender_are_refused(remote):
    with pytest.raises(Refused, match="without a validated sender"):
        remote.announce("foo", URL, "e1", True, sender=None)
    assert "foo" not in remote.names()


def test_changes_from_anyone_but_the_owner_touch_nothing(remote, tmp_path):
    remote.announce("foo", URL, "e1", True, sender="pub-foo")
    remote.store.add_subscription("foo")
    remote.store.put_dataset("foo", "ds.b2nd", "v1", {"shape": [3]})
    with pytest.raises(Refused):
        remote.apply_change("foo", "ds.b2nd", "deleted", None, {}, sender="intruder")
    assert remote.store.dataset("foo", "ds.b2nd") == ("v1", {"shape": [3]})
    remote.apply_change("foo", "ds.b2nd", "deleted", None, {}, sender="pub-foo")
    assert remote.store.dataset("foo", "ds.b2nd") is None


def test_a_configured_owner_wins_over_the_first_announcer(tmp_path):
    remote = RemoteRoots(Store(tmp_path), tmp_path, owners={"foo": "pub-foo"})
    try:
        with pytest.raises(Refused, match="belongs to 'pub-foo'"):
            remote.announce("foo", URL, "e1", True, sender="early-bird")
        remote.announce("foo", URL, "e1", True, sender="pub-foo")
        assert remote.names()["foo"]["owner"] == "pub-foo"
    finally:
        remote.close()


def test_a_root_recorded_before_owners_existed_is_pinned_by_its_next_announcer(remote):
    remote.store.upsert_root("foo", URL, "e1", True)  # no owner, as after the migration
    remote.announce("foo", URL, "e2", True, sender="pub-foo")
    with pytest.raises(Refused):
        remote.announce("foo", URL, "e3", True, sender="intruder")


def test_operator_hands_a_root_over_to_another_publisher(remote, tmp_path, capsys):
    remote.announce("foo", URL, "e1", True, sender="old-pub")
    args = ["--statedir", str(tmp_path), "--hand-over", "foo=new-pub"]
    assert server.main(args) == 0
    assert "now belongs to broker user 'new-pub'" in capsys.readouterr().out
    with pytest.raises(Refused):
        remote.announce("foo", URL, "e2", True, sender="old-pub")
    remote.announce("foo", "http://new:8001", "e3", True, sender="new-pub")
    assert remote.names()["foo"]["http"] == "http://new:8001"
    # Without a user: the next announcer pins it.
    assert server.main(["--statedir", str(tmp_path), "--hand-over", "foo"]) == 0
    remote.announce("foo", URL, "e4", True, sender="third-pub")
    assert remote.names()["foo"]["owner"] == "third-pub"


@pytest.mark.parametrize(
    ("value", "error"), [("nope=x", "is not known"), ("../x=y", "Invalid root name")]
)
def test_hand_over_of_an_unknown_or_invalid_root_fails_clearly(tmp_path, capsys, value, error):
    Store(tmp_path)
    assert server.main(["--statedir", str(tmp_path), "--hand-over", value]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cat2sub: error:") and error in err
