"""The progress text of `sessions`, `status` and the headless line (issue 11, bug 8)."""

from tui.cli import _progress


def test_progress_is_floored_and_100_only_when_all_done() -> None:
    assert _progress(263, 264) == "263/264 done (99%)"
    assert _progress(264, 264) == "264/264 done (100%)"
    assert _progress(0, 0) == "0 units"
