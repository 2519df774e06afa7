"""papers30._checks: each helper's accept/reject table, worked by hand."""

from __future__ import annotations

import pytest
import torch

from papers30 import _checks


def test_tensor_returns_its_input_when_valid():
    x = torch.ones(2, 3)
    assert _checks.tensor("x", x, ndim=2, kind="float") is x
    assert _checks.tensor("x", x, ndim=(1, 2)) is x
    assert _checks.tensor("x", torch.ones(3, dtype=torch.int32), kind="int") is not None
    assert _checks.tensor("x", torch.ones(3, dtype=torch.bool), kind="bool") is not None


@pytest.mark.parametrize(
    "x,kw,exc,text",
    [
        ([1.0], {}, TypeError, "must be a torch.Tensor, got list"),
        (torch.ones(2), {"ndim": 2}, ValueError, r"must have 2 dimensions, got shape \(2,\)"),
        (torch.ones(2), {"ndim": (2, 3)}, ValueError, "must have 2 or 3 dimensions"),
        (torch.ones(2, dtype=torch.long), {"kind": "float"}, TypeError, "must be a floating-point tensor"),
        (torch.ones(2), {"kind": "int"}, TypeError, "must be an integer tensor"),
        (torch.ones(2, dtype=torch.bool), {"kind": "int"}, TypeError, "must be an integer tensor"),
        (torch.ones(2, dtype=torch.complex64), {"kind": "int"}, TypeError, "must be an integer tensor"),
        (torch.ones(2, dtype=torch.uint8), {"kind": "bool"}, TypeError, "must be a bool tensor"),
    ],
)
def test_tensor_rejects_naming_the_argument_first(x, kw, exc, text):
    with pytest.raises(exc, match=rf"^my_arg {text}"):
        _checks.tensor("my_arg", x, **kw)


def test_size_matches():
    _checks.size_matches("key", 3, 3, "length")
    with pytest.raises(ValueError, match="^key has length 4, expected 3$"):
        _checks.size_matches("key", 4, 3, "length")


@pytest.mark.parametrize("value", [1, 7, 2**40])
def test_positive_int_accepts(value):
    assert _checks.positive_int("n", value) == value


@pytest.mark.parametrize(
    "value,exc",
    [(0, ValueError), (-3, ValueError), (True, TypeError), (2.0, TypeError), ("2", TypeError), (None, TypeError)],
)
def test_positive_int_rejects(value, exc):
    with pytest.raises(exc, match="^n must be"):
        _checks.positive_int("n", value)


@pytest.mark.parametrize(
    "value,inclusive,ok",
    [
        (0, False, True),
        (0.5, False, True),
        (1.0, False, False),
        (1.0, True, True),
        (-0.01, True, False),
        (1.01, True, False),
        (float("nan"), True, False),
    ],
)
def test_probability_bounds_by_hand(value, inclusive, ok):
    if ok:
        got = _checks.probability("p", value, inclusive_one=inclusive)
        assert got == value and isinstance(got, float)
    else:
        with pytest.raises(ValueError, match="^p must be in"):
            _checks.probability("p", value, inclusive_one=inclusive)


@pytest.mark.parametrize("value", [True, "0.5", None, torch.tensor(0.5)])
def test_probability_rejects_non_numbers(value):
    with pytest.raises(TypeError, match="^p must be a float"):
        _checks.probability("p", value)


def test_one_of_returns_a_valid_choice():
    assert _checks.one_of("mode", "b", ("a", "b")) == "b"


@pytest.mark.parametrize("value, exc", [("c", ValueError), ("", ValueError), (None, TypeError),
                                        (1, TypeError), (["a"], TypeError)])
def test_one_of_rejects_naming_the_argument_and_the_options(value, exc):
    with pytest.raises(exc, match=r"^mode must be") as info:
        _checks.one_of("mode", value, ("a", "b"))
    if exc is ValueError:
        assert "('a', 'b')" in str(info.value)


def test_dataclass_fields_checks_each_annotation_by_hand():
    from dataclasses import dataclass

    @dataclass
    class Thing:
        n: int
        x: float
        name: str
        flag: bool
        values: list[float]
        maybe: int | None = None
        pair: tuple[int, str] = (1, "a")
        table: dict[str, int] | None = None

        def __post_init__(self):
            _checks.dataclass_fields(self)

    Thing(1, 2, "a", True, [1.0, 2])  # int is a float; defaults are fine
    Thing(1, 2.5, "a", False, [], maybe=3, pair=(2, "b"), table={"a": 1})
    bad = [dict(n="1"), dict(n=True), dict(x="0.5"), dict(name=3), dict(flag=1), dict(values=[1, "a"]),
           dict(values=(1.0,)), dict(maybe=1.5), dict(pair=(1, 2)), dict(pair=(1,)), dict(table={"a": "b"})]
    for change in bad:
        kwargs = dict(n=1, x=2.0, name="a", flag=True, values=[1.0]) | change
        field = next(iter(change))
        with pytest.raises(TypeError, match=f"^{field} must be"):
            Thing(**kwargs)


def test_dataclass_fields_shallow_checks_containers_by_kind_only():
    from dataclasses import dataclass

    @dataclass
    class Rows:
        n: int
        rows: list[list[int]]

        def __post_init__(self):
            _checks.dataclass_fields(self, deep=False)

    Rows(1, [[1, "a"]])  # elements are not looked at
    for change in [dict(n="1"), dict(rows="ab"), dict(rows=3)]:
        with pytest.raises(TypeError, match=f"^{next(iter(change))} must be"):
            Rows(**(dict(n=1, rows=[[1]]) | change))
