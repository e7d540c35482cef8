"""`git rev-list --parents` output parsed with array operations (io.history._parse_chunk): no git."""

from __future__ import annotations

import pytest

from bisector.core.errors import GitError
from bisector.io.history import _parse_chunk

A, B, C, D = (c * 40 for c in "abcd")


def names(arr) -> list[str]:
    return [x.decode() for x in arr.tolist()]


def test_lines_with_zero_one_and_two_parents_and_blank_lines() -> None:
    out = f"{D} {C} {B}\n\n{C} {A}\n{B} {A}\n{A}\n".encode()
    keys, counts, flat = _parse_chunk(out, 40, first_parent=False)
    assert names(keys) == [D, C, B, A]
    assert counts.tolist() == [2, 1, 1, 0]
    assert names(flat) == [C, B, A, A]


def test_first_parent_keeps_the_first_parent_of_a_merge_only() -> None:
    keys, counts, flat = _parse_chunk(f"{D} {C} {B}\n{C} {A}\n".encode(), 40, first_parent=True)
    assert counts.tolist() == [1, 1]
    assert names(flat) == [C, A]


def test_sha256_width_is_taken_as_given() -> None:
    long = "e" * 64
    keys, counts, flat = _parse_chunk(f"{long} {long.replace('e', 'f')}\n".encode(), 64, first_parent=False)
    assert names(keys) == [long] and names(flat) == ["f" * 64] and counts.tolist() == [1]


@pytest.mark.parametrize("line", [f"{A}  {B}", f"{A} {B[:-1]}x1", f"{A}{B}", f"{A} {B[:20]}", "warning: something odd"])
def test_an_unexpected_line_is_a_git_error_naming_it(line: str) -> None:
    with pytest.raises(GitError, match="unexpected line") as err:
        _parse_chunk(f"{C} {A}\n{line}\n".encode(), 40, first_parent=False)
    assert line[:30] in str(err.value)
