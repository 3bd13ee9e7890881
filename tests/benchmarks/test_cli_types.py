"""The benchmark scripts' argument types: each bad value is refused with a line quoting it."""

import argparse

import pytest

from benchmarks.cli_types import at_least, finite_at_least, int_list


def test_at_least_takes_the_range_and_quotes_what_it_refuses():
    assert at_least(1)("3") == 3 and at_least(0, 5)("5") == 5
    for bad, text in [("0", "expected an integer >= 1, got '0'"), ("x", "expected an integer >= 1, got 'x'")]:
        with pytest.raises(argparse.ArgumentTypeError, match=text):
            at_least(1)(bad)
    with pytest.raises(argparse.ArgumentTypeError, match=r"expected an integer in 0..5, got '6'"):
        at_least(0, 5)("6")


def test_finite_at_least_refuses_nan_inf_and_small_values():
    assert finite_at_least(0.0)("0.5") == 0.5
    for bad in ("nan", "inf", "-1", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match=repr(bad)):
            finite_at_least(0.0)(bad)


def test_int_list_checks_every_item():
    assert int_list(1)("5,10") == [5, 10]
    for bad in ("5,-3", "5,,6", "", "a"):
        with pytest.raises(argparse.ArgumentTypeError):
            int_list(1)(bad)


def test_a_parser_turns_a_refusal_into_one_usage_line(capsys):
    p = argparse.ArgumentParser(prog="bench")
    p.add_argument("--seeds", type=at_least(1))
    with pytest.raises(SystemExit) as exit_:
        p.parse_args(["--seeds", "-3"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "bench: error: argument --seeds: expected an integer >= 1, got '-3'")
