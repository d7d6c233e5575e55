"""Answer normalisation (spec §2): one canonical string per answer, so that equal answers
written differently fall into the same group of the answer distribution.

Order of the rules, each applied to what the previous left:
1. strip whitespace, markdown bold, quotes and a trailing period;
2. unwrap LaTeX: `\\boxed{..}` (the last one; nested braces), `$..$`, `$$..$$`, `\\(..\\)`,
   `\\[..\\]`; `\\text{..}`-like commands keep their argument; `\\frac{a}{b}` becomes `a/b`;
3. drop an "answer:" / "final answer:" label, lower-case;
4. a multiple-choice answer becomes its letter (a-j) when it starts with an option marker:
   "(B) 12 cm", "B.", "B)", "B:", "[B]", "option C", "choice C" or a lone letter;
5. a number (optionally signed, with thousands commas, after a currency sign, before a unit in
   `UNITS`, or after "x =") becomes its canonical decimal: "3.00" -> "3", "1,000" -> "1000",
   "-0.50" -> "-0.5", ".5" -> "0.5", "50%" -> "50". Fractions stay as written ("1/2"): a
   Solver writing "0.5" and one writing "1/2" agree in value but not in form, and turning
   every ratio into a rounded decimal would merge answers that differ;
6. otherwise inner whitespace collapses to single spaces.
An answer that is empty after this is None (unparsable).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence

UNITS = frozenset({
    "%", "percent", "°", "degree", "degrees", "deg", "°c", "°f", "cm", "mm", "m", "km", "in",
    "inch", "inches", "ft", "feet", "foot", "meter", "meters", "metre", "metres", "kg", "g",
    "mg", "lb", "lbs", "l", "ml", "s", "sec", "secs", "second", "seconds", "min", "mins",
    "minute", "minutes", "h", "hr", "hrs", "hour", "hours", "day", "days", "year", "years",
    "dollar", "dollars", "usd", "$", "€", "£", "units", "unit", "cm²", "m²", "cm^2", "m^2",
    "km²", "sq cm", "sq m", "square units", "cm³", "m³", "cm^3", "m^3", "mph", "km/h", "m/s",
    "\\%", "^\\circ", "^{\\circ}", "\\circ", "^∘", "∘",
})
_TEXT_COMMANDS = ("text", "textbf", "textit", "mathrm", "mathbf", "operatorname", "mbox")
_WRAPPERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_EMPHASIS = "*\"'`"
_LABEL = re.compile(r"(?:final\s{1,3})?answer(?:\s{1,3}is\b|\s{0,3}[:=])\s{0,3}", re.IGNORECASE)
_OPTION = re.compile(
    r"(?:\((?P<paren>[a-j])\)|\[(?P<bracket>[a-j])\]|(?:option|choice)\s{1,3}\(?(?P<word>[a-j])\b"
    r"|(?P<marked>[a-j])(?:[.):]|$))"
)
_NUMBER = re.compile(
    r"(?:[a-z]\s{0,3}=\s{0,3})?(?P<currency>\\?[$€£])?\s{0,3}"
    r"(?P<number>[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?)\s{0,3}(?P<unit>[^\d\s].{0,15})?"
)
_WHITESPACE = re.compile(r"\s+")


def normalise_answer(text: str | None) -> str | None:
    """The canonical form of an answer, or None when nothing is left (rules above)."""
    if text is None:
        return None
    answer = _unwrap_latex(_strip(text))
    answer = _strip(_LABEL.sub("", answer, count=1) if _LABEL.match(answer) else answer)
    answer = answer.lower()
    if not answer:
        return None
    return _option_letter(answer) or _canonical_number(answer) or _WHITESPACE.sub(" ", answer)


def _strip(text: str) -> str:
    """Drop surrounding whitespace, markdown emphasis and quotes, and trailing periods."""
    start, end = 0, len(text)
    while start < end and (text[start].isspace() or text[start] in _EMPHASIS):
        start += 1
    while end > start and (text[end - 1].isspace() or text[end - 1] in _EMPHASIS + "."):
        end -= 1
    return text[start:end]


def _unwrap_latex(text: str) -> str:
    boxed = _last_command_argument(text, ("\\boxed", "\\fbox"))
    if boxed is not None:
        text = _strip(boxed)
    for opening, closing in _WRAPPERS:
        if len(text) > len(opening) + len(closing) and text.startswith(opening) \
                and text.endswith(closing):
            text = _strip(text[len(opening) : -len(closing)])
            break
    text = _replace_fractions(text)
    for command in _TEXT_COMMANDS:
        text = _replace_command(text, "\\" + command, lambda arg: arg)
    return _strip(text)


def _braced(text: str, start: int) -> int | None:
    """Index just past the brace group opening at text[start] == "{", or None if unbalanced."""
    depth = 0
    for index in range(start, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return index + 1
    return None


def _last_command_argument(text: str, commands: tuple[str, ...]) -> str | None:
    starts = [text.rfind(command + "{") for command in commands]
    start = max(starts)
    if start < 0:
        return None
    brace = text.index("{", start)
    end = _braced(text, brace)
    return text[brace + 1 : end - 1] if end is not None else text[brace + 1 :]


def _replace_command(text: str, command: str, render: Callable[..., str], arity: int = 1) -> str:
    """Replace every `command{a}..{z}` (arity brace groups) by render(a, .., z), in one left to
    right pass (linear: the output is built once, never re-scanned)."""
    out, cursor = [], 0
    while (start := text.find(command + "{", cursor)) >= 0:
        arguments, end = [], start + len(command)
        for _ in range(arity):
            closing = _braced(text, end) if text[end : end + 1] == "{" else None
            if closing is None:
                break
            arguments.append(text[end + 1 : closing - 1].strip())
            end = closing
        if len(arguments) < arity:
            break
        out.append(text[cursor:start])
        out.append(render(*arguments))
        cursor = end
    out.append(text[cursor:])
    return "".join(out)


def _replace_fractions(text: str) -> str:
    for command in ("\\dfrac", "\\tfrac", "\\frac"):
        text = _replace_command(text, command, lambda top, bottom: f"{top}/{bottom}", arity=2)
    return text


def _option_letter(answer: str) -> str | None:
    match = _OPTION.match(answer)
    if match is None:
        return None
    letter = next(group for group in match.groups() if group)
    rest = answer[match.end() :]
    # "b) 12" and "(b) 12 cm" carry a marker; a bare "a cat" or "b2" does not.
    if match.group("marked") and rest and not rest[0].isspace():
        return None
    return letter


def _canonical_number(answer: str) -> str | None:
    match = _NUMBER.fullmatch(answer)
    if match is None or not any(ch.isdigit() for ch in match.group("number")):
        return None
    unit = (match.group("unit") or "").strip()
    if unit and unit not in UNITS:
        return None
    raw = match.group("number").replace(",", "")
    negative = raw[0] in "-−"
    whole, _, fraction = raw.lstrip("+-−").partition(".")
    # Digit strings, not floats or Decimals: exact for any length ("0.1" stays "0.1").
    whole, fraction = whole.lstrip("0") or "0", fraction.rstrip("0")
    canonical = f"{whole}.{fraction}" if fraction else whole
    return "-" + canonical if negative and canonical != "0" else canonical


def dominant_answer(answers: Sequence[str | None]) -> str | None:
    """The most frequent non-null answer; a tie goes to the one drawn first (spec §2's rule)."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    top = max(counts.values())
    return next(a for a in answers if a is not None and counts[a] == top)
