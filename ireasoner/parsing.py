"""Parsing of Solver traces and Proposer questions (spec §2, "Step parsing").

Never raises on any string, and every pattern here is linear-time: tags are found by one scan
with bounded whitespace, then paired in Python, so no regex spans an unbounded region.

Tags (`<think>`, `<answer>`, `<step>`, `<question>`) match case-insensitively and tolerate up to
four spaces inside the brackets (`< Answer >`, `</ answer>`).

Trace status codes (`TraceParse.issues` lists every one that applies, most severe first;
`TraceParse.status` is the first of them, or "ok"):
- "no_answer"     no `<answer>` tag: `answer` is None.
- "truncated"     an `<answer>` opened and never closed: `answer` is the text after it
                  (the model may have stopped or been cut off; callers that want strictness
                  treat this status as unparsable).
- "empty_answer"  the chosen answer body is blank: `answer` is None.
- "no_steps"      no step could be extracted.
- "no_think"      no `<think>` tag: steps come from the text before the answer instead.
Several complete answers: the LAST one wins (the model's final word).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SEVERITY = ("no_answer", "truncated", "empty_answer", "no_steps", "no_think")

# "<answer>", "</ Answer >", ... ; the bounded \s{0,4} keep the scan linear.
_TAG = re.compile(r"<\s{0,4}(/?)\s{0,4}(think|answer|step|question|rationale)\s{0,4}>", re.IGNORECASE)
# A line (after leading markdown "- * # >") that opens a step: "Step 3", "3." or "3)", with an
# optional "**", then ":", ".", "-" or ")"; group "rest" is the step's own text.
_LINE_MARKER = re.compile(
    r"(?:step[ \t]{0,3}\d+|\d+[.)](?=[\s*]|$))[ \t]{0,3}(?:\*\*)?[ \t]{0,3}[:.)-]?"
    r"[ \t]{0,3}(?:\*\*)?(?P<rest>.*)",
    re.IGNORECASE | re.DOTALL,
)
# "Step 2:" in the middle of a line (the spec's own one-line format) also opens a step; the
# capital S and the colon keep "as in step 2 above" from splitting a sentence.
_INLINE_STEP = re.compile(r"(?<=[^\s*#>-])[ \t]+(?=(?:\*\*)?Step[ \t]{0,3}\d+[ \t]{0,3}(?:\*\*)?:)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_MARKDOWN_LEAD = " \t-*#>"


@dataclass(frozen=True)
class TraceParse:
    think: str | None  # the <think> body, None without a <think> tag
    answer: str | None  # the chosen answer body, stripped, not normalised
    steps: tuple[str, ...]  # at most max_steps, in order
    steps_total: int  # steps found before the max_steps cap
    words_before_answer: int  # L_i of Eq. 5: whitespace words (tags excluded) before <answer>
    issues: tuple[str, ...]  # status codes above, most severe first

    @property
    def status(self) -> str:
        return self.issues[0] if self.issues else "ok"


@dataclass(frozen=True)
class QuestionParse:
    question: str | None
    status: str  # "ok", "no_question", "empty_question", or "truncated" (tag never closed)
    # The Proposer's <rationale> (why the question is non-trivial but solvable): stored in the
    # questions table for inspection, never shown to the Solver. None when absent or empty.
    rationale: str | None = None


@dataclass(frozen=True)
class _Block:
    start: int  # index of the opening tag's "<"
    body_start: int
    body_end: int  # len(text) for a block never closed
    closed: bool


def parse_trace(text: str, max_steps: int) -> TraceParse:
    """Split a Solver completion into think body, steps and answer (spec §2)."""
    if max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}")
    tags = list(_TAG.finditer(text))
    answer_block = _chosen_block(tags, "answer", len(text))
    reasoning_end = answer_block.start if answer_block else len(text)
    think_block = _first_block(tags, "think", reasoning_end)
    if think_block is not None:
        region_start = think_block.body_start
        region_end = min(think_block.body_end, reasoning_end)
    else:
        region_start, region_end = 0, reasoning_end
    region = text[region_start:region_end]
    region_tags = [t for t in tags if region_start <= t.start() and t.end() <= region_end]
    all_steps = _steps(region, region_start, region_tags)
    think = region if think_block is not None else None
    answer = None
    if answer_block is not None:
        answer = _TAG.sub(" ", text[answer_block.body_start : answer_block.body_end]).strip()
    issues = _issues(answer_block, answer, all_steps, think)
    return TraceParse(
        think=think,
        answer=answer or None,
        steps=tuple(all_steps[:max_steps]),
        steps_total=len(all_steps),
        words_before_answer=len(_TAG.sub(" ", text[:reasoning_end]).split()),
        issues=issues,
    )


def parse_question(text: str) -> QuestionParse:
    """The body of the last complete `<question>` of a Proposer output, stripped, and the body
    of its last `<rationale>`."""
    tags = list(_TAG.finditer(text))
    rationale_block = _chosen_block(tags, "rationale", len(text))
    rationale = None
    if rationale_block is not None:
        body = text[rationale_block.body_start : rationale_block.body_end]
        rationale = _TAG.sub(" ", body).strip() or None
    block = _chosen_block(tags, "question", len(text))
    if block is None:
        return QuestionParse(None, "no_question", rationale)
    end = block.body_end
    if not block.closed and rationale_block is not None and rationale_block.start > block.start:
        end = rationale_block.start  # an unclosed question ends where the rationale begins
    question = _TAG.sub(" ", text[block.body_start : end]).strip()
    if not question:
        return QuestionParse(None, "empty_question", rationale)
    return QuestionParse(question, "ok" if block.closed else "truncated", rationale)


def _issues(answer_block: _Block | None, answer: str | None, steps: list[str],
            think: str | None) -> tuple[str, ...]:
    found = set()
    if answer_block is None:
        found.add("no_answer")
    elif not answer:
        found.add("empty_answer")
    elif not answer_block.closed:
        found.add("truncated")
    if not steps:
        found.add("no_steps")
    if think is None:
        found.add("no_think")
    return tuple(code for code in SEVERITY if code in found)


def _blocks(tags: list[re.Match[str]], name: str, end: int) -> list[_Block]:
    """Pair the `name` tags: an opening tag starts a block, the next closing tag ends it; an
    opening tag inside an open block ends that block (a forgotten closing tag); a block still
    open at the last tag runs to `end`."""
    blocks: list[_Block] = []
    open_tag: re.Match[str] | None = None
    for tag in tags:
        if tag.group(2).lower() != name:
            continue
        closing = tag.group(1) == "/"
        if open_tag is not None:
            blocks.append(_Block(open_tag.start(), open_tag.end(), tag.start(), closing))
            open_tag = None
        if not closing:
            open_tag = tag
    if open_tag is not None:
        blocks.append(_Block(open_tag.start(), open_tag.end(), end, False))
    return blocks


def _chosen_block(tags: list[re.Match[str]], name: str, end: int) -> _Block | None:
    """The last closed block; failing that, the last block left open."""
    blocks = _blocks(tags, name, end)
    closed = [b for b in blocks if b.closed]
    if closed:
        return closed[-1]
    return blocks[-1] if blocks else None


def _first_block(tags: list[re.Match[str]], name: str, before: int) -> _Block | None:
    """The first block opening before `before`, cut off there if it was never closed."""
    blocks = [b for b in _blocks(tags, name, before) if b.start < before]
    return blocks[0] if blocks else None


def _steps(region: str, offset: int, tags: list[re.Match[str]]) -> list[str]:
    """Steps of a reasoning region: <step> blocks, else marker lines, else sentences."""
    step_tags = [t for t in tags if t.group(2).lower() == "step"]
    if any(t.group(1) != "/" for t in step_tags):
        blocks = _blocks(step_tags, "step", offset + len(region))
        raw = [region[b.body_start - offset : b.body_end - offset] for b in blocks]
    else:
        plain = _TAG.sub(" ", region)
        raw = _marker_steps(plain)
        if not raw:
            raw = _SENTENCE_END.split(plain)
    steps = [_TAG.sub(" ", s).strip() for s in raw]
    return [s for s in steps if s]


def _marker_steps(region: str) -> list[str]:
    """Lines opening with a step marker start a step; other lines continue the current one.
    Lines before the first marker are preamble, not a step."""
    steps: list[list[str]] = []
    for line in _INLINE_STEP.sub("\n", region).splitlines():
        marker = _LINE_MARKER.match(line.lstrip(_MARKDOWN_LEAD))
        if marker is not None:
            steps.append([marker.group("rest").strip()])
        elif steps:
            steps[-1].append(line.strip())
    return ["\n".join(part for part in lines if part) for lines in steps]
