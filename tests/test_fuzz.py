"""Every public callable of papers30, given one wrong argument, raises ValueError or TypeError (tests/_fuzz.py).

Runs after every other test (conftest.py orders it last), replaying the first
valid call each public function, class and module forward received during
the run. The coverage test needs the whole suite; run alone, it is skipped.
"""

from __future__ import annotations

import copy
import inspect
import signal
from collections import Counter

import pytest

from tests import _fuzz

pytestmark = pytest.mark.fuzz
TIMEOUT_S = 20


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def outcome(call: _fuzz.Call, position: str | int, value) -> tuple[str, BaseException | None]:
    """Replay ``call`` with the argument at ``position`` (index or keyword) set to ``value``."""
    args, kwargs = list(copy.deepcopy(call.args)), copy.deepcopy(call.kwargs)
    if isinstance(position, int):
        args[position] = value
    else:
        kwargs[position] = value
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIMEOUT_S)
    try:
        if call.module is not None:
            copy.deepcopy(call.module)(*args, **kwargs)
        else:
            call.target(*args, **kwargs)
    except Hang as err:
        return "hang", err
    except (ValueError, TypeError) as err:
        return "clear", err
    except BaseException as err:  # noqa: BLE001 - the point is to catch everything else
        return "other", err
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return "accepted", None


def positions(call: _fuzz.Call):
    yield from range(len(call.args))
    yield from call.kwargs


def fuzz_all() -> tuple[Counter, list[str]]:
    counts: Counter = Counter()
    bad: list[str] = []
    for name, call in sorted(_fuzz.RECORDED.items()):
        try:
            params = inspect.signature(call.target).parameters
        except (TypeError, ValueError):
            params = {}
        for pos in positions(call):
            original = call.args[pos] if isinstance(pos, int) else call.kwargs[pos]
            optional = isinstance(pos, str) and pos in params and params[pos].default is None
            for wrong in _fuzz.wrong_values(original):
                if optional and wrong.value is None:
                    continue  # None is the parameter's own default, a valid input
                kind, err = outcome(call, pos, wrong.value)
                counts[kind] += 1
                where = f"{name}(argument {pos!r} = {wrong.label})"
                if kind in ("other", "hang"):
                    bad.append(f"{where}: {type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}")
                elif kind == "accepted" and wrong.must_raise:
                    counts["accepted, must raise"] += 1
                    bad.append(f"{where}: accepted without an error")
    return counts, bad


@pytest.fixture(scope="module")
def report():
    if not _fuzz.RECORDED:
        pytest.skip("no recorded calls: the fuzz replays calls made by the rest of the suite (run it whole)")
    return fuzz_all()


def test_wrong_arguments_raise_only_value_or_type_errors(report):
    counts, bad = report
    print(f"fuzz: {sum(v for k, v in counts.items() if k != 'accepted, must raise')} wrong calls over "
          f"{len(_fuzz.RECORDED)} callables: {dict(counts)}")
    assert bad == [], f"{len(bad)} wrong calls gave another exception, hung or were accepted:\n" + "\n".join(bad)


def test_every_public_callable_is_called_by_the_tests(request, report):
    """Reference: the package itself, walked for public functions and classes (no hand-kept list)."""
    if request.session.testscollected < 500:
        pytest.skip("coverage is judged on the whole suite only")
    missing = [name for name, obj in _fuzz.public_api().items() if name not in _fuzz.RECORDED
               and not (inspect.isclass(obj) and inspect.isabstract(obj))]
    assert missing == [], "public callables that no test calls (so none is fuzzed):\n" + "\n".join(missing)
