"""`evaluator leaderboard` prints one page of the board and says where it sits in the whole."""

from __future__ import annotations

from evaluator.commands.client import format_leaderboard


def board(entries: list[dict], total: int, offset: int = 0) -> dict:
    return {"benchmark": "iris", "rules": {"metric": "accuracy", "direction": "maximize"}, "at": None,
            "frozen": False, "entries": entries, "total": total, "offset": offset, "limit": 2}


def entry(rank: int, who: str) -> dict:
    return {"rank": rank, "participant": who, "score": 0.5, "ci": None, "baseline": False, "name": None}


def test_a_page_of_a_longer_board_says_which_entries_it_shows():
    text = format_leaderboard(board([entry(3, "carol"), entry(3, "dave")], total=7, offset=2))
    assert "carol" in text and "entries 3-4 of 7" in text


def test_a_whole_board_and_an_empty_one_read_as_before():
    assert "entries" not in format_leaderboard(board([entry(1, "alice")], total=1))
    assert "(no succeeded runs yet)" in format_leaderboard(board([], total=0))
    assert "(no entries on this page)" in format_leaderboard(board([], total=3, offset=10))
