"""Grading of answers and attempts (SPEC §4 Grading): pure, deterministic, never float.

``grade_answer(kind, correct, answer, points)`` scores one answer; ``totals`` sums an attempt;
``decode_json`` turns stored JSON text into the values both take. Points are ``Decimal``.

| kind     | ``correct``                                            | answer              |
|----------|--------------------------------------------------------|---------------------|
| single   | ``{"choice": "B"}``                                    | ``"B"``             |
| multiple | ``{"choices": ["A", "C"], "partial_credit": false}``   | ``["C", "A"]``      |
| text     | ``{"accepted": ["Paris"], "case_sensitive": false}``   | ``" paris "``       |
| numeric  | ``{"value": 3.14, "tolerance": 0.005}``                | ``3.14``/``"3.14"`` |

General rules:

- An answer of the wrong shape, ``UNPARSEABLE``, ``None`` (unanswered) or of an unknown kind
  scores 0; ``grade_answer`` never raises, whatever the types of its arguments.
- A malformed ``correct`` (wrong type, missing key, bad option, ``UNPARSEABLE``) scores 0 for
  every answer. So do ``points`` that are not a ``Decimal``/``int``, negative, NaN or infinite,
  and points too large to be quantized within 1000 significant digits.
- Values must be of the exact built-in JSON types: ``bool`` is never an ``int``, subclasses are
  rejected. Unknown extra keys in ``correct`` are ignored. Kinds are matched case-sensitively.
- ``points`` is quantized to ``POINTS_PLACES`` (ROUND_HALF_EVEN) first; that is "full points".
  ``points_awarded`` is full points x credit in [0, 1], rounded exactly to ``POINTS_PLACES``
  (ROUND_HALF_EVEN). ``is_correct`` is true iff the answer fully matches the key (credit 1),
  which always means full points (with 0 points a right answer is correct and earns 0).

Per kind:

- single: ``choice`` is a str or int. Correct iff the answer has the same type and is equal
  ("B" != "b", "B" != " B", 1 != "1", 1 != 1.0).
- multiple: ``choices`` a non-empty list of distinct str; ``partial_credit`` optional bool
  (default false). The answer is a list of str, folded as a set (duplicates count once).
  Without partial credit: full points iff set(answer) == set(choices), else 0. With partial
  credit: right = |A & C|, wrong = |A - C|, credit max(0, (right - wrong) / len(choices)).
- text: ``accepted`` a non-empty list of str; ``case_sensitive`` optional bool (default
  false). Both sides are NFC-normalised, trimmed with inner white space collapsed
  (``" ".join(s.split())``) and, unless case-sensitive, ``str.casefold``-ed then NFC-normalised
  again. A blank answer (empty after trimming) is never correct.
- numeric: ``value`` and optional ``tolerance`` (default 0, must be >= 0) are int, float or
  str; answers are int, float or str. Floats are taken as ``Decimal(repr(x))`` (3.14 is exact);
  strings are stripped and must be plain ASCII decimals (``[+-]digits[.digits][e[+-]digits]``;
  no "NaN", "inf", "1_000", "3,14"). Non-finite values are malformed. Correct iff
  abs(answer - value) <= tolerance, computed exactly; if the difference needs more than 1000
  significant digits the answer scores 0.

``totals``: score = sum(awarded), max_score = sum(question_points) with each question's points
quantized to ``POINTS_PLACES`` as for a full award, both exact sums;
percent = 100 x score / max_score rounded exactly to ``PERCENT_PLACES`` (ROUND_HALF_EVEN);
passed is decided on the exact percent (score x 100 >= passing_score x max_score). When
max_score <= 0, percent is 0.00 and passed = 0 >= passing_score. Inputs that are not finite
``Decimal``/``int`` values raise ValueError.

``decode_json``: ``None`` stays ``None`` (unanswered); any decoding error, and the non-standard
constants NaN/Infinity, give ``UNPARSEABLE``.
"""

from __future__ import annotations

import enum
import json
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import (
    MAX_EMAX,
    MIN_EMIN,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    Inexact,
    InvalidOperation,
)
from fractions import Fraction
from typing import Final

__all__ = [
    "PERCENT_PLACES",
    "POINTS_PLACES",
    "UNPARSEABLE",
    "AnswerGrade",
    "AttemptTotals",
    "decode_json",
    "grade_answer",
    "totals",
]

POINTS_PLACES: Final = Decimal("0.0001")
PERCENT_PLACES: Final = Decimal("0.01")

_POINTS_EXPONENT: Final = 4
_PERCENT_EXPONENT: Final = 2
_WORKING_DIGITS: Final = 1000
_NO_CREDIT: Final = Fraction(0)
_FULL_CREDIT: Final = Fraction(1)
_PLAIN_DECIMAL: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class _Sentinel(enum.Enum):
    UNPARSEABLE = "UNPARSEABLE"

    def __repr__(self) -> str:
        return self.value


UNPARSEABLE: Final = _Sentinel.UNPARSEABLE
"""Stands for stored JSON text that could not be decoded."""


@dataclass(frozen=True)
class AnswerGrade:
    points_awarded: Decimal
    is_correct: bool


@dataclass(frozen=True)
class AttemptTotals:
    score: Decimal
    max_score: Decimal
    percent: Decimal
    passed: bool


_ZERO_GRADE: Final = AnswerGrade(Decimal("0.0000"), False)


# --- decimal helpers -------------------------------------------------------------------------


def _context() -> Context:
    """A fresh (so thread-safe) context: wide exponents, no traps; callers inspect flags."""
    return Context(
        prec=_WORKING_DIGITS, rounding=ROUND_HALF_EVEN, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[]
    )


def _round_exact(value: Fraction, exponent: int) -> Decimal:
    """``value`` rounded half-even to ``exponent`` decimal places, with no double rounding."""
    scaled = round(value * 10**exponent)
    return Decimal(scaled).scaleb(-exponent, _context())


def _full_points(points: object) -> Decimal | None:
    """``points`` quantized to POINTS_PLACES, or None when they are malformed."""
    if type(points) is int:
        points = Decimal(points)
    if type(points) is not Decimal or not points.is_finite() or points < 0:
        return None
    quantized = points.quantize(POINTS_PLACES, context=_context())
    return quantized.copy_abs() if quantized.is_finite() else None


def _award(full: Decimal, credit: Fraction) -> AnswerGrade:
    if credit == _FULL_CREDIT:
        return AnswerGrade(full, True)
    return AnswerGrade(_round_exact(Fraction(full) * credit, _POINTS_EXPONENT), False)


# --- single ----------------------------------------------------------------------------------


def _grade_single(correct: object, answer: object) -> Fraction:
    if type(correct) is not dict:
        return _NO_CREDIT
    choice = correct.get("choice")
    if type(choice) is not str and type(choice) is not int:
        return _NO_CREDIT
    if type(answer) is type(choice) and answer == choice:
        return _FULL_CREDIT
    return _NO_CREDIT


# --- multiple --------------------------------------------------------------------------------


def _str_set(value: object, *, distinct: bool = False) -> frozenset[str] | None:
    """The items of a list of str as a set, or None for any other shape (or duplicates)."""
    if type(value) is not list or not all(type(item) is str for item in value):
        return None
    items = frozenset(value)
    return items if not distinct or len(items) == len(value) else None


def _multiple_key(correct: object) -> tuple[frozenset[str], bool] | None:
    if type(correct) is not dict:
        return None
    choices = _str_set(correct.get("choices"), distinct=True)
    partial = correct.get("partial_credit", False)
    if not choices or type(partial) is not bool:
        return None
    return choices, partial


def _grade_multiple(correct: object, answer: object) -> Fraction:
    key = _multiple_key(correct)
    picks = _str_set(answer)
    if key is None or picks is None:
        return _NO_CREDIT
    choices, partial_credit = key
    if picks == choices:
        return _FULL_CREDIT
    if not partial_credit:
        return _NO_CREDIT
    right, wrong = len(picks & choices), len(picks - choices)
    return Fraction(max(0, right - wrong), len(choices))


# --- text ------------------------------------------------------------------------------------


def _normalise_text(text: str, case_sensitive: bool) -> str:
    collapsed = " ".join(unicodedata.normalize("NFC", text).split())
    if case_sensitive:
        return collapsed
    return unicodedata.normalize("NFC", collapsed.casefold())


def _text_key(correct: object) -> tuple[list[str], bool] | None:
    if type(correct) is not dict:
        return None
    accepted = correct.get("accepted")
    case_sensitive = correct.get("case_sensitive", False)
    if type(accepted) is not list or not accepted or type(case_sensitive) is not bool:
        return None
    if not all(type(item) is str for item in accepted):
        return None
    return accepted, case_sensitive


def _grade_text(correct: object, answer: object) -> Fraction:
    key = _text_key(correct)
    if key is None or type(answer) is not str:
        return _NO_CREDIT
    accepted, case_sensitive = key
    given = _normalise_text(answer, case_sensitive)
    if given and any(given == _normalise_text(item, case_sensitive) for item in accepted):
        return _FULL_CREDIT
    return _NO_CREDIT


# --- numeric ---------------------------------------------------------------------------------


def _parse_decimal_text(text: str) -> Decimal | None:
    stripped = text.strip()
    if _PLAIN_DECIMAL.fullmatch(stripped) is None:
        return None
    try:
        return Decimal(stripped)
    except (ArithmeticError, ValueError):  # an exponent beyond what Decimal can hold
        return None


def _to_decimal(value: object) -> Decimal | None:
    """A finite Decimal from an int, float or plain decimal string; None otherwise."""
    if type(value) is int:
        number: Decimal | None = Decimal(value)
    elif type(value) is float:
        number = Decimal(repr(value))
    elif type(value) is str:
        number = _parse_decimal_text(value)
    else:
        return None
    return number if number is not None and number.is_finite() else None


def _numeric_key(correct: object) -> tuple[Decimal, Decimal] | None:
    if type(correct) is not dict:
        return None
    value = _to_decimal(correct.get("value"))
    tolerance = _to_decimal(correct.get("tolerance", 0))
    if value is None or tolerance is None or tolerance < 0:
        return None
    return value, tolerance


def _grade_numeric(correct: object, answer: object) -> Fraction:
    key = _numeric_key(correct)
    given = _to_decimal(answer)
    if key is None or given is None:
        return _NO_CREDIT
    value, tolerance = key
    context = _context()
    difference = context.subtract(given, value)
    if context.flags[Inexact] or context.flags[InvalidOperation]:
        return _NO_CREDIT
    return _FULL_CREDIT if difference.copy_abs() <= tolerance else _NO_CREDIT


# --- public API ------------------------------------------------------------------------------

_GRADERS: Final[dict[str, Callable[[object, object], Fraction]]] = {
    "single": _grade_single,
    "multiple": _grade_multiple,
    "text": _grade_text,
    "numeric": _grade_numeric,
}


def grade_answer(kind: str, correct: object, answer: object, points: Decimal) -> AnswerGrade:
    """Score one answer; never raises (see the module docstring for the rules)."""
    grader = _GRADERS.get(kind) if type(kind) is str else None
    full = _full_points(points)
    if grader is None or full is None or answer is None:
        return _ZERO_GRADE
    return _award(full, grader(correct, answer))


def _exact_sum(values: Iterable[Decimal], what: str) -> Decimal:
    context = _context()
    total = Decimal(0)
    for value in values:
        total = context.add(total, _finite(value, what))
    if context.flags[Inexact]:
        raise ValueError(f"{what}: sum needs more than {_WORKING_DIGITS} digits")
    return total


def _as_full_points(points: Decimal) -> Decimal:
    """A question's points as a right answer earns them: finer than POINTS_PLACES, quantized
    like the award (3 x 0.333333 gives a perfect attempt 0.9999 of 0.9999, not of 0.999999)."""
    value = _finite(points, "question_points")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -_POINTS_EXPONENT:
        return value.quantize(POINTS_PLACES, context=_context())
    return value


def _finite(value: object, what: str) -> Decimal:
    if type(value) is int:
        return Decimal(value)
    if type(value) is not Decimal or not value.is_finite():
        raise ValueError(f"{what}: expected a finite Decimal, got {value!r}")
    return value


def totals(
    awarded: Iterable[Decimal], question_points: Iterable[Decimal], passing_score: Decimal
) -> AttemptTotals:
    """Score, max score, percent and pass/fail of one attempt (see the module docstring)."""
    score = _exact_sum(awarded, "awarded")
    max_score = _exact_sum(map(_as_full_points, question_points), "question_points")
    passing = Fraction(_finite(passing_score, "passing_score"))
    if max_score <= 0:
        return AttemptTotals(score, max_score, Decimal("0.00"), passing <= 0)
    exact_percent = Fraction(score) * 100 / Fraction(max_score)
    percent = _round_exact(exact_percent, _PERCENT_EXPONENT)
    return AttemptTotals(score, max_score, percent, exact_percent >= passing)


def _reject_constant(name: str) -> object:
    raise ValueError(f"non-standard JSON constant {name}")


def decode_json(text: str | bytes | None) -> object:
    """``json.loads(text)``; ``None`` stays ``None``; any error gives ``UNPARSEABLE``."""
    if text is None:
        return None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, TypeError, RecursionError):
        return UNPARSEABLE
