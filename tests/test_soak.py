"""The soak, shortened: about 200 changes of every kind with kill -9 of the broker, the
publisher and a subscriber, while readers check every answer (see bench/soak.py; the
full run is `python -m bench.soak`)."""

from __future__ import annotations

from bench import soak


def test_200_changes_with_kills_give_only_right_answers_and_both_subscribers_converge(
    tmp_path,
):
    result = soak.run(changes=200, kills=3, readers=2, workdir=tmp_path)
    assert result["kills"] == {"broker": 1, "publisher": 1, "subscriber": 1}
    assert set(result["change_kinds"]) == set(soak.KINDS)
    assert result["answers"].get("ok", 0) > 100  # the readers did read, and checked
    assert result["wrong_200"] == 0, result["wrong_examples"]
    assert result["status_500"] == 0
    assert result["not_converged"] == {} and result["converged_s"] is not None
