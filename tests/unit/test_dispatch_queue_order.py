"""The dispatch queue's pure parts: numbering a pass in case order, and cursors."""

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridwatch.dispatch.queue import (
    CursorError,
    decode_cursor,
    encode_cursor,
    number_in_case_order,
)

# (entry id, case id, case sequence) as a pass reads them: entry ids unique, a case's
# sequences unique, in any order.
_passes = st.lists(
    st.tuples(st.sampled_from("abcd"), st.integers(1, 50)), unique=True, max_size=40
).map(lambda pairs: [(entry_id, case, seq) for entry_id, (case, seq) in enumerate(pairs)])


@given(entries=_passes, after=st.integers(0, 10**12))
def test_a_pass_takes_the_next_positions_and_keeps_each_case_in_sequence(entries, after):
    numbered = number_in_case_order(entries, after=after)

    assert [position for _, position in numbered] == list(
        range(after + 1, after + 1 + len(entries))
    )
    assert sorted(entry_id for entry_id, _ in numbered) == [e[0] for e in entries]
    by_entry = dict(numbered)
    for case in {e[1] for e in entries}:
        mine = sorted((seq, by_entry[entry_id]) for entry_id, c, seq in entries if c == case)
        positions = [position for _, position in mine]
        assert positions == sorted(positions)
        # The case keeps the slots its entries were read at; other cases keep theirs.
        slots = [after + 1 + index for index, e in enumerate(entries) if e[1] == case]
        assert positions == slots


def test_entries_read_out_of_case_order_are_put_back_in_it():
    entries = [(10, "GW-a", 3), (11, "GW-b", 1), (12, "GW-a", 2)]
    assert number_in_case_order(entries, after=7) == [(12, 8), (11, 9), (10, 10)]


@given(position=st.integers(0, 10**18 - 1))
def test_a_cursor_stands_for_its_position(position):
    cursor = encode_cursor(position)
    assert decode_cursor(cursor) == position
    assert cursor.isascii()
    assert "=" not in cursor


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not-a-cursor",
        "%%%",
        base64.urlsafe_b64encode(b"gwq1:-3").decode(),
        base64.urlsafe_b64encode(b"gwq1:").decode(),
        base64.urlsafe_b64encode(b"other:5").decode(),
        base64.urlsafe_b64encode(b"gwq1:" + b"9" * 19).decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_anything_else_is_not_a_cursor(cursor):
    with pytest.raises(CursorError):
        decode_cursor(cursor)
