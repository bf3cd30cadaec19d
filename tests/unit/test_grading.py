"""SPEC §4 Grading: one table per question kind, then points, totals, decoding and robustness."""

from __future__ import annotations

import itertools
from decimal import Decimal, Inexact, InvalidOperation, localcontext
from typing import Any, NoReturn

import pytest

from examctl.grading import (
    PERCENT_PLACES,
    POINTS_PLACES,
    UNPARSEABLE,
    AnswerGrade,
    AttemptTotals,
    decode_json,
    grade_answer,
    totals,
)

D = Decimal
POINTS = D("3")
FULL = "3.0000"
NONE = "0.0000"
NAN = float("nan")
INF = float("inf")
KINDS = ("single", "multiple", "text", "numeric")


def row(correct: object, answer: object, expected: str, id: str) -> Any:
    return pytest.param(correct, answer, expected, id=id)


def check(kind: str, correct: object, answer: object, expected: str) -> None:
    grade = grade_answer(kind, correct, answer, POINTS)
    assert str(grade.points_awarded) == expected
    assert grade.is_correct is (expected == FULL)


# --- single ----------------------------------------------------------------------------------

B = {"choice": "B"}
SINGLE_TABLE = [
    row(B, "B", FULL, "same-letter"),
    row(B, "A", NONE, "other-letter"),
    row(B, "b", NONE, "case-differs"),
    row(B, " B", NONE, "not-trimmed"),
    row(B, "", NONE, "empty-string"),
    row(B, ["B"], NONE, "list-answer"),
    row(B, {"choice": "B"}, NONE, "dict-answer"),
    row(B, True, NONE, "bool-answer"),
    row(B, UNPARSEABLE, NONE, "unparseable-answer"),
    row({"choice": "B", "note": "x"}, "B", FULL, "extra-key-ignored"),
    row({"choice": 2}, 2, FULL, "int-choice-int-answer"),
    row({"choice": 2}, "2", NONE, "int-choice-str-answer"),
    row({"choice": 2}, 2.0, NONE, "int-choice-float-answer"),
    row({"choice": 1}, True, NONE, "int-choice-bool-answer"),
    row({"choice": "2"}, 2, NONE, "str-choice-int-answer"),
    row({"choice": True}, True, NONE, "malformed-bool-choice"),
    row({"choice": 1.0}, 1.0, NONE, "malformed-float-choice"),
    row({"choice": None}, None, NONE, "malformed-null-choice"),
    row({"choice": ["B"]}, ["B"], NONE, "malformed-list-choice"),
    row({"choices": "B"}, "B", NONE, "malformed-missing-key"),
    row(["B"], "B", NONE, "malformed-list-key"),
    row("B", "B", NONE, "malformed-str-key"),
    row(UNPARSEABLE, "B", NONE, "malformed-unparseable-key"),
    row(None, "B", NONE, "malformed-null-key"),
]


@pytest.mark.parametrize(("correct", "answer", "expected"), SINGLE_TABLE)
def test_single__spec_table__awards_expected_points(
    correct: object, answer: object, expected: str
) -> None:
    check("single", correct, answer, expected)


# --- multiple --------------------------------------------------------------------------------

AC = {"choices": ["A", "C"], "partial_credit": False}
ABC_PARTIAL = {"choices": ["A", "B", "C"], "partial_credit": True}
MULTIPLE_TABLE = [
    row(AC, ["C", "A"], FULL, "same-set-other-order"),
    row(AC, ["A", "C"], FULL, "same-set"),
    row(AC, ["A", "A", "C"], FULL, "duplicates-folded"),
    row({"choices": ["A", "C"]}, ["A", "C"], FULL, "partial-credit-defaults-false"),
    row(AC, ["A"], NONE, "subset"),
    row(AC, ["A", "C", "D"], NONE, "superset"),
    row(AC, [], NONE, "empty-list"),
    row(AC, ["a", "c"], NONE, "case-differs"),
    row(AC, [" A", "C"], NONE, "not-trimmed"),
    row(AC, "AC", NONE, "str-answer"),
    row(AC, ("A", "C"), NONE, "tuple-answer"),
    row(AC, {"A": 1, "C": 1}, NONE, "dict-answer"),
    row(AC, [["A", "C"]], NONE, "nested-list"),
    row(AC, ["A", ["C"]], NONE, "unhashable-list-item"),
    row(AC, ["A", {"C": 1}], NONE, "unhashable-dict-item"),
    row(AC, ["A", "C", None], NONE, "null-item"),
    row(AC, ["A", "C", 1], NONE, "int-item"),
    row(AC, ["A", "C", True], NONE, "bool-item"),
    row(AC, UNPARSEABLE, NONE, "unparseable-answer"),
    row(ABC_PARTIAL, ["A", "B", "C"], FULL, "partial-all-right"),
    row(ABC_PARTIAL, ["C", "B", "A", "A"], FULL, "partial-all-right-duplicated"),
    row(ABC_PARTIAL, ["A", "B"], "2.0000", "partial-two-of-three"),
    row(ABC_PARTIAL, ["A"], "1.0000", "partial-one-of-three"),
    row(ABC_PARTIAL, ["A", "B", "D"], "1.0000", "partial-two-right-one-wrong"),
    row(ABC_PARTIAL, ["A", "B", "C", "D"], "2.0000", "partial-all-right-plus-wrong"),
    row(ABC_PARTIAL, ["A", "D"], NONE, "partial-one-right-one-wrong"),
    row(ABC_PARTIAL, ["D", "E"], NONE, "partial-negative-clipped-to-zero"),
    row(ABC_PARTIAL, [], NONE, "partial-empty-answer"),
    row(ABC_PARTIAL, ["A", 1], NONE, "partial-wrong-shape"),
    row({"choices": []}, [], NONE, "malformed-empty-choices"),
    row({"choices": "AC"}, ["A", "C"], NONE, "malformed-str-choices"),
    row({"choices": ["A", "A"]}, ["A"], NONE, "malformed-duplicate-choices"),
    row({"choices": ["A", 1]}, ["A"], NONE, "malformed-int-choice"),
    row({"choices": ["A", True]}, ["A"], NONE, "malformed-bool-choice"),
    row({"choices": [["A"]]}, [["A"]], NONE, "malformed-nested-choice"),
    row({"choices": ["A"], "partial_credit": "true"}, ["A"], NONE, "malformed-str-partial"),
    row({"choices": ["A"], "partial_credit": 1}, ["A"], NONE, "malformed-int-partial"),
    row({"choices": ["A"], "partial_credit": None}, ["A"], NONE, "malformed-null-partial"),
    row({"choice": "A"}, ["A"], NONE, "malformed-missing-key"),
    row(["A", "C"], ["A", "C"], NONE, "malformed-list-key"),
    row(UNPARSEABLE, ["A", "C"], NONE, "malformed-unparseable-key"),
]


@pytest.mark.parametrize(("correct", "answer", "expected"), MULTIPLE_TABLE)
def test_multiple__spec_table__awards_expected_points(
    correct: object, answer: object, expected: str
) -> None:
    check("multiple", correct, answer, expected)


def test_multiple__partial_credit_one_wrong_pick__third_of_points() -> None:
    grade = grade_answer("multiple", ABC_PARTIAL, ["A", "B", "D"], D("3"))
    assert grade == AnswerGrade(D("1.0000"), False)


def test_multiple__partial_credit_thirds__rounded_to_four_places() -> None:
    assert grade_answer("multiple", ABC_PARTIAL, ["A"], D("2")).points_awarded == D("0.6667")
    assert grade_answer("multiple", ABC_PARTIAL, ["A", "B"], D("2")).points_awarded == D("1.3333")


@pytest.mark.parametrize(
    ("points", "expected"),
    [("0.0001", "0.0000"), ("0.0003", "0.0002"), ("0.0005", "0.0002"), ("0.0007", "0.0004")],
)
def test_multiple__partial_credit_half_on_a_tie__rounds_half_even(
    points: str, expected: str
) -> None:
    key = {"choices": ["A", "B"], "partial_credit": True}
    grade = grade_answer("multiple", key, ["A"], D(points))
    assert str(grade.points_awarded) == expected


# --- text ------------------------------------------------------------------------------------

PARIS = {"accepted": ["Paris"], "case_sensitive": False}
PARIS_CS = {"accepted": ["Paris"], "case_sensitive": True}
TEXT_TABLE = [
    row(PARIS, "Paris", FULL, "exact"),
    row(PARIS, " paris ", FULL, "trimmed-and-case-folded"),
    row(PARIS, "PARIS", FULL, "upper-case"),
    row(PARIS, "\tParis\r\n", FULL, "other-white-space-trimmed"),
    row({"accepted": ["Paris"]}, "paris", FULL, "case-insensitive-by-default"),
    row(PARIS, "Pa ris", NONE, "inner-space-not-removed"),
    row(PARIS, "Paris.", NONE, "punctuation"),
    row(PARIS, "Pariss", NONE, "other-word"),
    row(PARIS, "", NONE, "empty"),
    row(PARIS, "   ", NONE, "blank"),
    row(PARIS, ["Paris"], NONE, "list-answer"),
    row(PARIS, 5, NONE, "int-answer"),
    row(PARIS, True, NONE, "bool-answer"),
    row(PARIS, UNPARSEABLE, NONE, "unparseable-answer"),
    row(PARIS_CS, "Paris", FULL, "case-sensitive-exact"),
    row(PARIS_CS, "  Paris  ", FULL, "case-sensitive-still-trimmed"),
    row(PARIS_CS, "paris", NONE, "case-sensitive-case-differs"),
    row({"accepted": ["Paris", "Paname"]}, "PANAME", FULL, "second-accepted-value"),
    row({"accepted": ["New  York"]}, " new   york ", FULL, "inner-space-collapsed"),
    row({"accepted": ["New York"]}, "new\u00a0york", FULL, "no-break-space-collapsed"),
    row({"accepted": ["New York"]}, "new\u3000york", FULL, "ideographic-space-collapsed"),
    row({"accepted": ["New York"]}, "NewYork", NONE, "space-missing"),
    row({"accepted": ["straße"]}, "STRASSE", FULL, "sharp-s-casefold"),
    row({"accepted": ["STRASSE"]}, "straße", FULL, "sharp-s-casefold-reversed"),
    row({"accepted": ["straße"], "case_sensitive": True}, "STRASSE", NONE, "sharp-s-cs"),
    row({"accepted": ["ΣΊΣΥΦΟΣ"]}, "σίσυφος", FULL, "final-sigma-casefold"),
    row({"accepted": ["FILE"]}, "\ufb01le", FULL, "fi-ligature-casefold"),
    row({"accepted": ["caf\u00e9"]}, "cafe\u0301", FULL, "composed-vs-decomposed"),
    row({"accepted": ["cafe\u0301"]}, "caf\u00e9", FULL, "decomposed-vs-composed"),
    row({"accepted": ["caf\u00e9"]}, "CAFE\u0301", FULL, "decomposed-upper-case"),
    row({"accepted": ["caf\u00e9"], "case_sensitive": True}, "cafe\u0301", FULL, "nfc-when-cs"),
    row({"accepted": ["cafe"]}, "caf\u00e9", NONE, "accent-matters"),
    row({"accepted": ["PARIS"]}, "\uff30\uff21\uff32\uff29\uff33", NONE, "fullwidth-is-not-nfc"),
    row({"accepted": [""]}, "", NONE, "blank-accepted-never-matches"),
    row({"accepted": ["", "Paris"]}, "  ", NONE, "blank-answer-never-correct"),
    row({"accepted": []}, "Paris", NONE, "malformed-empty-accepted"),
    row({"accepted": "Paris"}, "Paris", NONE, "malformed-str-accepted"),
    row({"accepted": ["Paris", 1]}, "Paris", NONE, "malformed-int-accepted-item"),
    row({"accepted": [["Paris"]]}, "Paris", NONE, "malformed-nested-accepted"),
    row({"accepted": ["Paris"], "case_sensitive": "false"}, "Paris", NONE, "malformed-str-cs"),
    row({"accepted": ["Paris"], "case_sensitive": 0}, "Paris", NONE, "malformed-int-cs"),
    row({"accepted": ["Paris"], "case_sensitive": None}, "Paris", NONE, "malformed-null-cs"),
    row({"accept": ["Paris"]}, "Paris", NONE, "malformed-missing-key"),
    row(["Paris"], "Paris", NONE, "malformed-list-key"),
    row(UNPARSEABLE, "Paris", NONE, "malformed-unparseable-key"),
]


@pytest.mark.parametrize(("correct", "answer", "expected"), TEXT_TABLE)
def test_text__spec_table__awards_expected_points(
    correct: object, answer: object, expected: str
) -> None:
    check("text", correct, answer, expected)


# --- numeric ---------------------------------------------------------------------------------

PI = {"value": 3.14, "tolerance": 0.005}
NUMERIC_TABLE = [
    row(PI, 3.14, FULL, "float-equal"),
    row(PI, "3.14", FULL, "str-equal"),
    row(PI, " 3.14\n", FULL, "str-stripped"),
    row(PI, "+3.14", FULL, "explicit-plus"),
    row(PI, "314e-2", FULL, "exponent"),
    row(PI, "3.14E0", FULL, "upper-exponent"),
    row(PI, "3.1400000000000000000000000000000001", FULL, "more-digits-than-float"),
    row(PI, "3.145", FULL, "upper-boundary-exact"),
    row(PI, 3.145, FULL, "upper-boundary-float-exact"),
    row(PI, "3.135", FULL, "lower-boundary-exact"),
    row(PI, "3.1451", NONE, "just-above"),
    row(PI, "3.1349", NONE, "just-below"),
    row(PI, 3, NONE, "int-outside"),
    row(PI, "3,14", NONE, "decimal-comma"),
    row(PI, "3.14abc", NONE, "trailing-garbage"),
    row(PI, "3.14.0", NONE, "two-points"),
    row(PI, "", NONE, "empty"),
    row(PI, "  ", NONE, "blank"),
    row(PI, ".", NONE, "lone-point"),
    row(PI, "NaN", NONE, "nan-str"),
    row(PI, "inf", NONE, "inf-str"),
    row(PI, "-Infinity", NONE, "minus-infinity-str"),
    row(PI, NAN, NONE, "nan-float"),
    row(PI, INF, NONE, "inf-float"),
    row(PI, True, NONE, "bool-answer"),
    row(PI, [3.14], NONE, "list-answer"),
    row(PI, {"value": 3.14}, NONE, "dict-answer"),
    row(PI, "1e999999999", NONE, "huge-exponent"),
    row(PI, "1e99999999999999999999", NONE, "exponent-beyond-decimal"),
    row(PI, UNPARSEABLE, NONE, "unparseable-answer"),
    row({"value": 2}, 2, FULL, "default-tolerance-int"),
    row({"value": 2}, 2.0, FULL, "default-tolerance-float"),
    row({"value": 2}, "2.000", FULL, "default-tolerance-trailing-zeros"),
    row({"value": 2}, "2.0001", NONE, "default-tolerance-is-zero"),
    row({"value": 0}, "-0", FULL, "negative-zero"),
    row({"value": "0.1"}, 0.1, FULL, "str-value-float-answer"),
    row({"value": 0.1}, "0.1", FULL, "float-value-str-answer"),
    row({"value": "0.3"}, 0.1 + 0.2, NONE, "float-sum-is-not-0.3"),
    row({"value": -1.5, "tolerance": "0.5"}, "-1", FULL, "negative-upper-boundary"),
    row({"value": -1.5, "tolerance": "0.5"}, "-2", FULL, "negative-lower-boundary"),
    row({"value": -1.5, "tolerance": "0.5"}, "-0.99", NONE, "negative-outside"),
    row({"value": 10**30}, str(10**30), FULL, "big-int"),
    row({"value": 10**30}, 10**30 + 1, NONE, "big-int-off-by-one"),
    row({"value": 1000}, "1_000", NONE, "underscore-separator"),
    row({"value": 3}, "\u0663", NONE, "non-ascii-digit"),
    row({"value": 1, "tolerance": "1e3000"}, "1e-1500", NONE, "difference-beyond-1000-digits"),
    row({"value": "1e-1500", "tolerance": "1e-1500"}, "2e-1500", FULL, "tiny-but-exact"),
    row({"value": " 2 "}, 2, FULL, "str-value-stripped"),
    row({"tolerance": 1}, 1, NONE, "malformed-missing-value"),
    row({"value": True}, 1, NONE, "malformed-bool-value"),
    row({"value": None}, 0, NONE, "malformed-null-value"),
    row({"value": "abc"}, "abc", NONE, "malformed-str-value"),
    row({"value": "NaN"}, "NaN", NONE, "malformed-nan-str-value"),
    row({"value": NAN}, NAN, NONE, "malformed-nan-float-value"),
    row({"value": "inf"}, "inf", NONE, "malformed-inf-value"),
    row({"value": [1]}, 1, NONE, "malformed-list-value"),
    row({"value": 1, "tolerance": -0.1}, 1, NONE, "malformed-negative-tolerance"),
    row({"value": 1, "tolerance": "x"}, 1, NONE, "malformed-str-tolerance"),
    row({"value": 1, "tolerance": True}, 1, NONE, "malformed-bool-tolerance"),
    row({"value": 1, "tolerance": None}, 1, NONE, "malformed-null-tolerance"),
    row({"value": 1, "tolerance": INF}, 1, NONE, "malformed-inf-tolerance"),
    row([3.14], 3.14, NONE, "malformed-list-key"),
    row(3.14, 3.14, NONE, "malformed-bare-number-key"),
    row(UNPARSEABLE, 3.14, NONE, "malformed-unparseable-key"),
]


@pytest.mark.parametrize(("correct", "answer", "expected"), NUMERIC_TABLE)
def test_numeric__spec_table__awards_expected_points(
    correct: object, answer: object, expected: str
) -> None:
    check("numeric", correct, answer, expected)


# --- every kind ------------------------------------------------------------------------------

RIGHT_ANSWERS = [
    ("single", B, "B"),
    ("multiple", AC, ["A", "C"]),
    ("text", PARIS, "paris"),
    ("numeric", PI, "3.14"),
]


@pytest.mark.parametrize(("kind", "correct", "answer"), RIGHT_ANSWERS)
def test_any_kind__unanswered__scores_zero(kind: str, correct: object, answer: object) -> None:
    assert grade_answer(kind, correct, None, POINTS) == AnswerGrade(D(NONE), False)


@pytest.mark.parametrize(("kind", "correct", "answer"), RIGHT_ANSWERS)
def test_any_kind__unparseable_answer__scores_zero(
    kind: str, correct: object, answer: object
) -> None:
    assert grade_answer(kind, correct, UNPARSEABLE, POINTS) == AnswerGrade(D(NONE), False)


@pytest.mark.parametrize(("kind", "correct", "answer"), RIGHT_ANSWERS)
def test_any_kind__right_answer_with_zero_points__correct_with_zero(
    kind: str, correct: object, answer: object
) -> None:
    assert grade_answer(kind, correct, answer, D("0")) == AnswerGrade(D(NONE), True)


@pytest.mark.parametrize("kind", ["essay", "Single", "SINGLE", " single", "", None, 1, ["single"]])
def test_unknown_kind__scores_zero(kind: Any) -> None:
    assert grade_answer(kind, B, "B", POINTS) == AnswerGrade(D(NONE), False)


# --- points ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        (D("1"), "1.0000"),
        (D("2.5"), "2.5000"),
        (D("1.00005"), "1.0000"),
        (D("1.00015"), "1.0002"),
        (D("-0"), "0.0000"),
        (D("1E-2000"), "0.0000"),
        (D("1E+20"), "100000000000000000000.0000"),
        (7, "7.0000"),
    ],
)
def test_points__valid__quantized_to_four_places_half_even(points: Any, expected: str) -> None:
    grade = grade_answer("single", B, "B", points)
    assert str(grade.points_awarded) == expected
    assert grade.is_correct is True


@pytest.mark.parametrize(
    "points",
    [
        D("-1"),
        D("-0.0001"),
        D("NaN"),
        D("sNaN"),
        D("Infinity"),
        D("-Infinity"),
        D("1E+2000"),
        1.0,
        "1",
        True,
        None,
        [D("1")],
    ],
)
def test_points__malformed__score_zero_even_for_right_answer(points: Any) -> None:
    assert grade_answer("single", B, "B", points) == AnswerGrade(D(NONE), False)


def test_points__awarded__always_quantized_to_points_places() -> None:
    for kind, correct, answer in RIGHT_ANSWERS:
        awarded = grade_answer(kind, correct, answer, D("1.5")).points_awarded
        assert awarded.as_tuple().exponent == POINTS_PLACES.as_tuple().exponent


# --- determinism and robustness --------------------------------------------------------------


def _all_table_rows() -> list[tuple[str, object, object]]:
    tables = {
        "single": SINGLE_TABLE,
        "multiple": MULTIPLE_TABLE,
        "text": TEXT_TABLE,
        "numeric": NUMERIC_TABLE,
    }
    return [(kind, *p.values[:2]) for kind, table in tables.items() for p in table]


def test_grading__repeated_and_under_a_hostile_decimal_context__same_results() -> None:
    cases = _all_table_rows()
    first = [grade_answer(kind, c, a, POINTS) for kind, c, a in cases]
    assert [grade_answer(kind, c, a, POINTS) for kind, c, a in cases] == first
    with localcontext() as context:
        context.prec = 2
        context.Emax = 10
        context.traps[Inexact] = True
        context.traps[InvalidOperation] = True
        assert [grade_answer(kind, c, a, POINTS) for kind, c, a in cases] == first


class Hostile:
    """Raises from every dunder a careless grader might call."""

    def _boom(self, *args: object) -> NoReturn:
        raise RuntimeError("touched")

    __eq__ = __lt__ = __le__ = __gt__ = __ge__ = __hash__ = __bool__ = _boom
    __len__ = __iter__ = __str__ = __repr__ = __float__ = __index__ = _boom


ODD_VALUES: list[object] = [
    None,
    True,
    False,
    0,
    -1,
    10**400,
    1.5,
    -0.0,
    NAN,
    INF,
    -INF,
    "",
    " ",
    "B",
    "NaN",
    "1e999999999",
    "\u0663",
    "\x00",
    "\ud800",
    b"B",
    [],
    [None],
    [[]],
    [{}],
    ["A", ["C"]],
    [Hostile()],
    {},
    {"choice": []},
    {"choice": {}},
    {"choices": [[1]]},
    {"choices": ["A"], "partial_credit": []},
    {"accepted": [None]},
    {"accepted": [{}], "case_sensitive": []},
    {"value": {}},
    {"value": "1", "tolerance": [1]},
    {"value": D("1")},
    (1, 2),
    {1, 2},
    frozenset(),
    object(),
    Hostile(),
    D("NaN"),
    D("sNaN"),
    D("-Infinity"),
    UNPARSEABLE,
    *(key for _, key, _ in RIGHT_ANSWERS),
    *(answer for _, _, answer in RIGHT_ANSWERS),
]
ODD_KINDS: list[Any] = [*KINDS, "essay", None, 1, [], Hostile()]
ODD_POINTS: list[Any] = [D("1"), D("0"), D("NaN"), D("sNaN"), -1, Hostile()]


def test_grade_answer__odd_values_of_every_type__never_raises() -> None:
    for kind, correct, answer, points in itertools.product(
        ODD_KINDS, ODD_VALUES, ODD_VALUES, ODD_POINTS
    ):
        grade = grade_answer(kind, correct, answer, points)
        assert type(grade) is AnswerGrade
        assert D(0) <= grade.points_awarded <= D(1)
        assert grade.points_awarded.as_tuple().exponent == -4


# --- totals ----------------------------------------------------------------------------------


def test_totals__spec_example__sums_and_percent() -> None:
    result = totals([D("1.0000"), D("0.5000")], [D("2"), D("2")], D("37.5"))
    assert result == AttemptTotals(D("1.5"), D("4"), D("37.50"), True)


def test_totals__exactly_at_passing_score__passes() -> None:
    assert totals([D("3")], [D("4")], D("75")).passed is True


def test_totals__a_hair_below_passing_score__fails() -> None:
    assert totals([D("2.9999")], [D("4")], D("75")).passed is False


def test_totals__passed_decided_on_unrounded_percent() -> None:
    result = totals([D("2")], [D("3")], D("66.67"))
    assert result.percent == D("66.67")
    assert result.passed is False
    assert totals([D("2")], [D("3")], D("66.66")).passed is True


@pytest.mark.parametrize(
    ("score", "max_score", "percent"),
    [("1", "3", "33.33"), ("2", "3", "66.67"), ("1", "800", "0.12"), ("3", "800", "0.38")],
)
def test_totals__percent__rounded_half_even_to_two_places(
    score: str, max_score: str, percent: str
) -> None:
    result = totals([D(score)], [D(max_score)], D("0"))
    assert str(result.percent) == percent
    assert result.percent.as_tuple().exponent == PERCENT_PLACES.as_tuple().exponent


def test_totals__no_questions__zero_percent_and_fails_positive_passing_score() -> None:
    assert totals([], [], D("50")) == AttemptTotals(D("0"), D("0"), D("0.00"), False)


@pytest.mark.parametrize(("passing", "passed"), [("0", True), ("-1", True), ("0.01", False)])
def test_totals__max_score_zero__passed_iff_zero_reaches_passing_score(
    passing: str, passed: bool
) -> None:
    result = totals([D("0")], [D("0")], D(passing))
    assert (result.percent, result.passed) == (D("0.00"), passed)


def test_totals__negative_max_score__treated_as_zero_percent() -> None:
    assert totals([D("0")], [D("-2")], D("50")).percent == D("0.00")


def test_totals__sums_exactly__no_float_or_context_rounding() -> None:
    assert totals([D("0.1")] * 3, [D("0.1")] * 3, D("100")).score == D("0.3")
    big = totals([D("1E+30"), D("1")], [D("1E+30"), D("1")], D("100"))
    assert big.score == D(10**30 + 1)
    assert (big.percent, big.passed) == (D("100.00"), True)


def test_totals__points_finer_than_four_places__a_perfect_attempt_scores_max_and_passes() -> None:
    points = [D("0.333333")] * 3
    awarded = [grade_answer("single", {"choice": "B"}, "B", p).points_awarded for p in points]

    result = totals(awarded, points, D("100"))

    assert result == AttemptTotals(D("0.9999"), D("0.9999"), D("100.00"), True)


def test_totals__generators_and_ints__accepted() -> None:
    int_points: list[Any] = [2, 2]
    result = totals((D(n) for n in (1, 2)), iter(int_points), D(75))
    assert result == AttemptTotals(D("3"), D("4"), D("75.00"), True)


@pytest.mark.parametrize(
    ("awarded", "points", "passing"),
    [
        ([D("NaN")], [D("1")], D("50")),
        ([D("1")], [D("Infinity")], D("50")),
        ([D("1")], [D("1")], D("NaN")),
        ([1.0], [D("1")], D("50")),
        ([D("1")], [True], D("50")),
    ],
)
def test_totals__non_finite_or_non_decimal_input__raises_value_error(
    awarded: Any, points: Any, passing: Any
) -> None:
    with pytest.raises(ValueError):
        totals(awarded, points, passing)


# --- decode_json -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, None),
        ("null", None),
        ('"B"', "B"),
        ('["C", "A"]', ["C", "A"]),
        (b'{"choice": "B"}', {"choice": "B"}),
        (" 3.14 ", 3.14),
        ('"caf\\u00e9"', "caf\u00e9"),
    ],
)
def test_decode_json__valid__decoded(text: str | bytes | None, expected: object) -> None:
    assert decode_json(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "{",
        "B",
        "'B'",
        "[1,]",
        "NaN",
        "[Infinity]",
        '{"value": -Infinity}',
        b"\xff\xfe\xfa",
        "[" * 100_000,
        "1" * 5000,
        5,
        ["B"],
    ],
)
def test_decode_json__corrupt__unparseable(text: Any) -> None:
    assert decode_json(text) is UNPARSEABLE


def test_decode_json__round_trip_through_grading() -> None:
    grade = grade_answer(
        "multiple", decode_json(b'{"choices":["A","C"]}'), decode_json('["C","A"]'), D(1)
    )
    assert grade == AnswerGrade(D("1.0000"), True)


def test_unparseable__is_a_singleton_with_a_readable_repr() -> None:
    assert repr(UNPARSEABLE) == "UNPARSEABLE"
    assert decode_json("{") is decode_json("[") is UNPARSEABLE
