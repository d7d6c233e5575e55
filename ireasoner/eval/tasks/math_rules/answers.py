"""Rule-based scoring of MathVista and MathVerse responses: no LLM judge, no API key.

lmms-eval scores both benchmarks with an OpenAI model: MathVista asks it to *extract* the answer
from the response (then normalises and compares by rules), MathVerse asks it whether the whole
response matches the gold answer. Here the extraction is by rules (`final_answer_span`: the
`<answer>` body, the last `\\boxed{}`, what follows the last "answer is"/"Answer:", else the last
line), MathVista's own normalisation and string comparison follow, and MathVerse's free-form
answers are compared for mathematical equivalence with sympy (`equivalent`, LaTeX read by
latex2sympy2_extended, the maintained parser math-verify brings). lmms-eval's own latex2sympy2
does not import in the project's environments (docs/evaluation.md).
"""

from __future__ import annotations

import cmath
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

_ANSWER_TAG = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL | re.IGNORECASE)
_ANSWER_PHRASE = re.compile(
    r"(?:final answer|correct answer|correct option|the answer|answer)\s*(?:is|:|=)\s*:?\s*(.+)",
    re.IGNORECASE)
_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+")
_FRACTION = re.compile(r"(-?\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)")
# "b", "(B)", "B." alone; or an upper-case letter opening the span as an option label ("(B) 8/11",
# "B. 8/11", "B: 8/11"), which a sentence ("A triangle ...") does not.
_LETTER_ALONE = re.compile(r"\(?([A-Za-z])\)?[.:)]?")
_LETTER_LABEL = re.compile(r"^(?:\(([A-Z])\)|([A-Z])[.:)])(?:\s|$)")
_OPTION_WORD = re.compile(r"\b(?:option|choice)\s*\(?([A-Za-z])\)?(?![A-Za-z])", re.IGNORECASE)
# Units and decorations that do not change a value.
_DECORATIONS = (r"\left", r"\right", r"\!", r"\,", r"\;", r"\displaystyle", "$", r"\(", r"\)",
                r"\[", r"\]", "^{\\circ}", "^\\circ", "°", r"\%", "%")


def final_answer_span(response: str) -> str:
    """Where a response states its final answer: the last `<answer>` body, else the last
    `\\boxed{...}`, else what follows the last "answer is" / "Answer:" on its line, else the
    last non-empty line. The project's Solver writes the first; Qwen's chat style the others."""
    tagged = _ANSWER_TAG.findall(response)
    if tagged and tagged[-1].strip():
        return tagged[-1].strip()
    boxed = _last_boxed(response)
    if boxed is not None:
        return boxed.strip()
    phrases = [m.group(1) for line in response.splitlines()
               if (m := _ANSWER_PHRASE.search(line))]
    if phrases:
        return phrases[-1].strip().rstrip(".").strip()
    lines = [line.strip() for line in response.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def choice_letter(span: str, choices: Sequence[str] | None = None) -> str | None:
    """The option letter a final-answer span names: "B", "(B)", "B.", "B) 8/11", "option B";
    failing that, the one option (of `choices`) whose text the span is or contains."""
    letters = [chr(ord("A") + i) for i in range(len(choices))] if choices else None
    stripped = span.strip().strip("*").strip()
    for match in (_LETTER_ALONE.fullmatch(stripped), _LETTER_LABEL.match(stripped),
                  _OPTION_WORD.search(stripped)):
        letter = next((g for g in match.groups() if g), "").upper() if match else ""
        if letter and (letters is None or letter in letters):
            return letter
    if not choices:
        return None
    text = _plain(stripped)
    exact = [i for i, choice in enumerate(choices) if _plain(choice) == text]
    contained = [i for i, choice in enumerate(choices)
                 if _plain(choice) and re.search(rf"(?<!\w){re.escape(_plain(choice))}(?!\w)", text)]
    found = exact or (contained if len(contained) == 1 else [])
    return letters[found[0]] if found else None


@dataclass(frozen=True)
class MathVistaScore:
    extraction: str  # the final-answer span the rules read
    prediction: str | None  # normalised as MathVista does; None when nothing could be read
    correct: bool


def score_mathvista(response: str, question_type: str, answer_type: str,
                    choices: Sequence[str] | None, precision: float | None,
                    answer: str) -> MathVistaScore:
    """MathVista's normalisation (lmms-eval's `normalize_extracted_answer`) applied to the
    rule-extracted answer, then its string comparison (`safe_equal`). Unlike MathVista, a
    multiple-choice answer that names no option scores 0 instead of being mapped to the option
    closest in edit distance."""
    span = final_answer_span(response)
    prediction: str | None = None
    if question_type == "multi_choice":
        letter = choice_letter(span, choices)
        if letter is not None and choices:
            prediction = choices[ord(letter) - ord("A")]
    elif answer_type in ("integer", "float"):
        value = last_number(span)
        if value is not None and math.isfinite(value):
            prediction = (str(int(value)) if answer_type == "integer"
                          else str(round(value, int(precision or 0))))
    elif answer_type == "list":
        prediction = _number_list(span)
    correct = prediction is not None and prediction.strip() == str(answer).strip()
    return MathVistaScore(span, prediction, correct)


def score_mathverse(response: str, answer: str, question_type: str) -> bool:
    """A multiple-choice answer is its option letter; a free-form one must be `equivalent`."""
    span = final_answer_span(response)
    if question_type == "multi-choice":
        return choice_letter(span) == answer.strip().upper()
    return any(equivalent(candidate, answer) for candidate in _answer_candidates(span))


def last_number(text: str) -> float | None:
    """The last number written in `text`: plain (1,000.5), a fraction (3/4, \\frac{3}{4}) or a
    LaTeX expression with a value (2\\sqrt{3}); None when there is none."""
    cleaned = _undecorate(text)
    if "\\" in cleaned:
        value = _latex_value(cleaned)
        if value is not None:
            return value
    fractions = list(_FRACTION.finditer(cleaned))
    numbers = list(_NUMBER.finditer(cleaned))
    if fractions and (not numbers or fractions[-1].end() >= numbers[-1].end()):
        numerator, denominator = (float(g) for g in fractions[-1].groups())
        return numerator / denominator if denominator else None
    return float(numbers[-1].group().replace(",", "")) if numbers else None


def equivalent(predicted: str, gold: str) -> bool:
    """Whether two final answers are the same: equal after normalising the text, or, when both
    are mathematical (a digit or a LaTeX command in each), the same value at three points
    (relative tolerance 1e-3, absolute 5e-3; 2 decimals, as lmms-eval's MathVision rules). The
    left side of an equation is dropped ("y=2x+1" is 2x+1); tuples compare element by
    element."""
    left, right = _normal_text(predicted), _normal_text(gold)
    if not left or not right:
        return False
    if left == right:
        return True
    if not (_is_math(left) and _is_math(right)):
        return False
    left_items, right_items = _tuple_items(left), _tuple_items(right)
    if len(left_items) != len(right_items):
        return False
    return all(_same_value(a, b) for a, b in zip(left_items, right_items, strict=True))


def _answer_candidates(span: str) -> list[str]:
    """The span, then its last inline math ($...$), then what follows its last " is " or "=":
    a sentence ("The area is $24\\sqrt{2}$ square units.") still yields its value."""
    candidates = [span]
    inline = re.findall(r"\$([^$]+)\$", span)
    if inline:
        candidates.append(inline[-1])
    tail = re.split(r"\s+is\s+|=", span)[-1]
    if tail != span:
        candidates.append(tail)
    return candidates


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for index in range(begin, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            if depth == 0:
                return text[begin:index]
            depth -= 1
    return None


def _plain(text: str) -> str:
    return re.sub(r"\s+", " ", _undecorate(text).strip().strip(".").lower())


def _undecorate(text: str) -> str:
    text = re.sub(r"\\(?:text|mathrm|mbox|textbf)\{([^{}]*)\}", r"\1", text)
    text = text.replace(r"\dfrac", r"\frac").replace(r"\tfrac", r"\frac").replace("√", r"\sqrt ")
    for decoration in _DECORATIONS:
        text = text.replace(decoration, "")
    return text


def _normal_text(text: str) -> str:
    text = _plain(text)
    text = re.sub(r"\s*(cm|mm|km|m|units?|degrees?|°)\^?\{?\d?\}?$", "", text)  # trailing units
    return text.replace(" ", "").rstrip(".")


def _is_math(text: str) -> bool:
    return bool(re.search(r"\d|\\[a-z]+", text))


def _tuple_items(text: str) -> list[str]:
    if len(text) > 2 and text[0] in "([" and text[-1] in ")]" and "," in text:
        return text[1:-1].split(",")
    return [text]


def _latex_value(text: str) -> float | None:
    expression = _to_sympy(text)
    if expression is None or expression.free_symbols:
        return None
    try:
        value = complex(expression.evalf())
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return value.real if abs(value.imag) < 1e-12 else None


def _to_sympy(text: str):
    """A sympy expression with a value, or None (unreadable, or a relation or truth value such
    as "a<b"). An equation stands for its right side."""
    import sympy
    from latex2sympy2_extended import latex2sympy  # with math-verify; parses in milliseconds

    text = text.rpartition("=")[2].strip() or text
    try:
        expression = latex2sympy(text.replace(",", "") if _NUMBER.fullmatch(text) else text)
    except Exception:  # latex2sympy2 raises bare Exceptions on anything it cannot read
        return None
    return expression if isinstance(expression, sympy.Expr) else None


def _same_value(left: str, right: str) -> bool:
    a, b = _to_sympy(left), _to_sympy(right)
    if a is None or b is None:
        return False
    symbols = sorted(a.free_symbols | b.free_symbols, key=str)
    for point in (0.37, 1.61, 2.9):
        values = {symbol: point + 0.13 * i for i, symbol in enumerate(symbols)}
        try:
            x, y = complex(a.subs(values).evalf()), complex(b.subs(values).evalf())
        except (TypeError, ValueError, ZeroDivisionError, OverflowError):
            return False
        if not cmath.isclose(x, y, rel_tol=1e-3, abs_tol=5e-3):
            return False
    return True


def _number_list(span: str) -> str | None:
    """"[2007, 2008]" as MathVista writes list answers (a Python list of numbers)."""
    bracketed = re.search(r"\[([^\[\]]*)\]", span)
    if bracketed is None:
        return None
    try:
        numbers = [float(item) for item in bracketed.group(1).split(",")]
    except ValueError:
        return None
    return str([int(n) if n.is_integer() else n for n in numbers])
