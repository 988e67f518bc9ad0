"""Flag pairs of submissions whose graded code is near-identical once names, comments and layout are ignored.

    python -m autograder similarity DIR [--topic T | --handout PATH] [--threshold 0.8] [--json out.json]

How, step by step:

1. Take the graded code: every ``*.ipynb`` under DIR (any folder layout; ``.ipynb_checkpoints`` ignored),
   its graded cells by nbgrader ``grade_id`` (``gen3d.notebook.read_code_cells``). A notebook whose
   metadata was lost falls back to the code cell that defines ``def <grade_id>``. One *unit* = one
   graded function (or class), compared only with the same unit of the other notebook.
2. Normalise each unit with ``ast``: comments and layout vanish (``ast.unparse``), docstrings and other
   bare strings are dropped, and inside every function the arguments and local variables are renamed
   ``v0, v1, ...`` in order of first appearance (the notebook's module-level names, builtins,
   attributes and keywords keep theirs: they are the API every student must use; a name read but
   bound nowhere, like a stub's given ``return out``, counts as a local). Each statement becomes one
   normalised line that remembers its original text. A cell that does not parse is compared as text (comments and blanks
   stripped, whitespace collapsed); nothing here raises on a student's code.
3. Remove what every student shares: the lines of the handout's stub (signature, docstring, given
   checks, ``raise NotImplementedError``), normalised the same way, and, in a class of 3 or more, the
   lines found in every submission. Shared code is no evidence of copying.
4. Compare the remaining token sequences of the same unit with ``difflib.SequenceMatcher`` (ratio
   2M / (|a| + |b|), M = tokens in common, in order). Tokens rather than lines, because a copier who
   edits one sub-expression of a long line keeps most of its tokens; order-aware rather than a
   bag of n-grams, because an independently written solution uses the same vocabulary (torch, sum,
   v0, v1) in a different order. A multiset overlap (an upper bound of the ratio) skips hopeless pairs
   cheaply, so a class of 500 (125k pairs) stays tractable.
5. A unit is flagged at ``similarity >= threshold`` when both sides wrote at least ``min_tokens`` tokens of
   their own (a one-line function is too little evidence). A pair is reported when one unit is flagged;
   its similarity is the token-weighted mean over the units both wrote, and its shared lines (equal
   runs of normalised lines) are shown in the original text of both sides.

Limits: code reordered statement by statement, or rewritten with other library calls, is not caught;
short functions every student writes the same way (a one-liner) are not flagged on their own.
"""
from __future__ import annotations

import difflib
import itertools
import json
import re
import sys
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

from autograder.code_normalise import Line, module_names, normalise_source
from gen3d.notebook import NotebookError, read_code_cells

REPO = Path(__file__).resolve().parents[1]
TOKEN = re.compile(r"[A-Za-z_]\w*|\d[\w.]*|\S")
_LOCAL = re.compile(r"\bv\d+\b")
DEFAULT_THRESHOLD = 0.8
DEFAULT_MIN_TOKENS = 15


@dataclass
class Line:
    """One normalised statement (``text``) and the source it came from (``original``)."""

    text: str
    original: str


@dataclass
class Submission:
    """One notebook's graded units: ``{grade_id: [Line, ...]}``."""

    path: Path
    units: dict


@dataclass
class FunctionMatch:
    """One graded function compared across a pair; ``shared`` holds (original in a, original in b)."""

    function: str
    similarity: float
    tokens: int                      # tokens of their own in the smaller side
    flagged: bool
    shared: list = field(default_factory=list)


@dataclass
class Pair:
    """Two submissions with at least one near-identical graded function."""

    a: Path
    b: Path
    similarity: float                # token-weighted over the functions both wrote, in [0, 1]
    functions: list

    @property
    def flagged_functions(self) -> list[str]:
        return [m.function for m in self.functions if m.flagged]

    def to_dict(self) -> dict:
        return {"a": str(self.a), "b": str(self.b), "similarity": round(self.similarity, 4),
                "flagged_functions": self.flagged_functions,
                "functions": [{"function": m.function, "similarity": round(m.similarity, 4), "tokens": m.tokens,
                               "flagged": m.flagged, "shared": [{"a": x, "b": y} for x, y in m.shared]}
                              for m in self.functions]}


# ---------------------------------------------------------------- reading notebooks


def _defines(source: str, name: str) -> bool:
    return re.search(rf"^\s*(async\s+def|def|class)\s+{re.escape(name)}\b", source, re.MULTILINE) is not None


def read_submission(path: Path, unit_names: Sequence[str] = ()) -> Submission:
    """A notebook's graded units. Raises NotebookError / OSError when it is not a readable notebook."""
    cells = read_code_cells(path)
    sources: dict[str, list[str]] = {}
    for cell in cells:
        if cell.graded:
            sources.setdefault(cell.grade_id, []).append(cell.source)
    for name in unit_names:  # metadata lost: the last code cell that defines the name
        if name not in sources:
            defining = [c.source for c in cells if _defines(c.source, name)]
            if defining:
                sources[name] = defining[-1:]
    known_globals = module_names(cell.source for cell in cells)
    return Submission(Path(path), {name: [line for s in parts for line in normalise_source(s, known_globals)]
                                   for name, parts in sources.items()})


def find_notebooks(folder: Path) -> tuple[list[Path], list[Path]]:
    """(the ``*.ipynb`` under ``folder``, the other files), Jupyter's checkpoint copies left out."""
    notebooks, others = [], []
    for path in sorted(Path(folder).rglob("*")):
        if not path.is_file() or ".ipynb_checkpoints" in path.parts or path.name.startswith("."):
            continue
        (notebooks if path.suffix == ".ipynb" else others).append(path)
    return notebooks, others


def find_handout(notebooks: Sequence[Path], topic_name: str = "auto") -> Optional[Path]:
    """``assignments/<topic>/<notebook>`` of the named topic, or of the topic detected from the notebooks."""
    try:
        from autograder.topics import detect_topic, get_topic

        topic = None
        if topic_name != "auto":
            topic = get_topic(topic_name)
        for path in notebooks[:20] if topic is None else []:
            try:
                topic = detect_topic(path)
                break
            except (KeyError, OSError):
                continue
    except Exception as err:  # noqa: BLE001 - without a topic we still compare, minus common lines
        print(f"warning: could not look up the topic ({type(err).__name__}: {err})", file=sys.stderr)
        return None
    if topic is None:
        return None
    folder = REPO / "assignments" / topic.name
    candidates = [folder / Path(topic.notebook).name] + sorted(folder.glob("*.ipynb"))
    return next((p for p in candidates if p.is_file()), None)


# ---------------------------------------------------------------- 3-5. comparing


@dataclass
class _Unit:
    """One unit of one submission, shared code removed, ready to compare."""

    lines: list
    tokens: list
    counts: Counter


def _skeleton(line: Line) -> str:
    """The line with every local numbered alike: a stub line matches wherever the student's own locals
    shifted the numbering (``v5 = v4 * 2`` in the handout is ``v7 = v6 * 2`` in a longer submission)."""
    return _LOCAL.sub("v", line.text)


def _prepare(submissions: list[Submission], handout: Optional[Submission]) -> list[dict]:
    """Per submission ``{unit: _Unit}`` without the handout's lines and the lines every student has."""
    names = list(handout.units) if handout and handout.units else \
        list(dict.fromkeys(n for s in submissions for n in s.units))
    shared = {name: {_skeleton(line) for line in handout.units.get(name, [])} if handout else set()
              for name in names}
    if len(submissions) >= 3:
        for name in names:
            shared[name] |= set.intersection(*({_skeleton(line) for line in s.units.get(name, [])}
                                               for s in submissions))
    prepared = []
    for submission in submissions:
        units = {}
        for name in names:
            if name not in submission.units:
                continue
            lines = [line for line in submission.units[name] if _skeleton(line) not in shared[name]]
            tokens = [token for line in lines for token in TOKEN.findall(line.text)]
            units[name] = _Unit(lines, tokens, Counter(tokens))
        prepared.append(units)
    return prepared


def _upper_bound(a: _Unit, b: _Unit) -> float:
    """``SequenceMatcher.ratio`` can be no higher than the multiset overlap of the tokens."""
    return 2.0 * sum((a.counts & b.counts).values()) / (len(a.tokens) + len(b.tokens))


def _shared_lines(a: _Unit, b: _Unit) -> list[tuple[str, str]]:
    matcher = difflib.SequenceMatcher(None, [l.text for l in a.lines], [l.text for l in b.lines], autojunk=False)
    return [(a.lines[block.a + k].original, b.lines[block.b + k].original)
            for block in matcher.get_matching_blocks() for k in range(block.size)]


def _compare(name: str, a: _Unit, b: _Unit, threshold: float, min_tokens: int) -> FunctionMatch:
    similarity = difflib.SequenceMatcher(None, a.tokens, b.tokens, autojunk=False).ratio()
    tokens = min(len(a.tokens), len(b.tokens))
    flagged = similarity >= threshold and tokens >= min_tokens
    return FunctionMatch(name, similarity, tokens, flagged, _shared_lines(a, b) if flagged else [])


def _could_flag(a: _Unit, b: _Unit, threshold: float, min_tokens: int) -> bool:
    return min(len(a.tokens), len(b.tokens)) >= min_tokens and _upper_bound(a, b) >= threshold


def _compare_pair(a: dict, b: dict, threshold: float, min_tokens: int) -> Optional[list[FunctionMatch]]:
    """Every unit both wrote, when at least one is flagged; None otherwise (the cheap test first)."""
    common = [n for n in a if n in b and a[n].tokens and b[n].tokens]
    candidates = [n for n in common if _could_flag(a[n], b[n], threshold, min_tokens)]
    if not any(_compare(n, a[n], b[n], threshold, min_tokens).flagged for n in candidates):
        return None
    return [_compare(n, a[n], b[n], threshold, min_tokens) for n in common]


def _weighted(matches: list[FunctionMatch], a: dict, b: dict) -> float:
    weights = [len(a[m.function].tokens) + len(b[m.function].tokens) for m in matches]
    return sum(m.similarity * w for m, w in zip(matches, weights)) / max(sum(weights), 1)


def find_similar(paths: Iterable[Path], handout: Optional[Path] = None, threshold: float = DEFAULT_THRESHOLD,
                 min_tokens: int = DEFAULT_MIN_TOKENS, skipped: Optional[list] = None) -> list[Pair]:
    """Pairs of notebooks in ``paths`` with a near-identical graded function, most similar first.

    handout:   the stub notebook students received; its lines never count as similarity.
    threshold: in [0, 1], the per-function similarity from which a function is flagged.
    skipped:   when given, receives ``(path, reason)`` for every file that is not a readable notebook.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    stub = read_submission(Path(handout)) if handout else None
    unit_names = list(stub.units) if stub else []
    submissions = []
    for path in dict.fromkeys(Path(p) for p in paths):
        if handout and path.resolve() == Path(handout).resolve():
            continue
        try:
            submissions.append(read_submission(path, unit_names))
        except (NotebookError, OSError) as err:
            if skipped is not None:
                skipped.append((path, str(err)))
    prepared = _prepare(submissions, stub)
    pairs = []
    for (i, a), (j, b) in itertools.combinations(enumerate(prepared), 2):
        matches = _compare_pair(a, b, threshold, min_tokens)
        if matches:
            pairs.append(Pair(submissions[i].path, submissions[j].path, _weighted(matches, a, b), matches))
    return sorted(pairs, key=lambda p: (-p.similarity, -len(p.flagged_functions), str(p.a), str(p.b)))


# ---------------------------------------------------------------- command line


def format_pair(pair: Pair, root: Path, max_lines: int = 12) -> str:
    """A pair as text: the pair's similarity, then each function, then the shared lines of the flagged ones."""
    a, b = (_relative(p, root) for p in (pair.a, pair.b))
    out = [f"{pair.similarity:.2f}  A: {a}   B: {b}   (flagged: {', '.join(pair.flagged_functions)})"]
    for match in pair.functions:
        mark = "FLAGGED" if match.flagged else ""
        out.append(f"    {match.function:<28} {match.similarity:.2f}  ({match.tokens} tokens)  {mark}".rstrip())
        for left, right in match.shared[:max_lines]:
            out.append(textwrap.indent(left, "        A| "))
            out.append(textwrap.indent(right, "        B| "))
        if len(match.shared) > max_lines:
            out.append(f"        ... and {len(match.shared) - max_lines} more shared lines")
    return "\n".join(out)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def cmd_similarity(args) -> int:
    """The ``similarity`` sub-command; exit 0 when the check ran, 2 for bad input."""
    root = Path(args.dir)
    if not root.is_dir():
        print(f"error: {root}: no such folder", file=sys.stderr)
        return 2
    if not 0.0 <= args.threshold <= 1.0:
        print(f"error: --threshold must lie in [0, 1], got {args.threshold}", file=sys.stderr)
        return 2
    notebooks, others = find_notebooks(root)
    handout = Path(args.handout) if args.handout else find_handout(notebooks, args.topic)
    if handout is not None and not handout.is_file():
        print(f"error: handout {handout}: no such file", file=sys.stderr)
        return 2
    notebooks = [p for p in notebooks if handout is None or p.resolve() != handout.resolve()]
    skipped: list = []
    pairs = find_similar(notebooks, handout, args.threshold, args.min_tokens, skipped)
    for path, reason in skipped:
        print(f"skipped {_relative(path, root)}: {reason}")
    if others:
        print(f"ignored {len(others)} files that are not .ipynb (e.g. {_relative(others[0], root)})")
    print(f"handout: {handout or 'none found (only lines found in every submission are ignored)'}")
    compared = len(notebooks) - len(skipped)
    print(f"{len(pairs)} pairs with a graded function at or above {args.threshold:.2f} "
          f"({compared} notebooks, {compared * (compared - 1) // 2} pairs compared)\n")
    for pair in pairs:
        print(format_pair(pair, root) + "\n")
    if args.json:
        from autograder.report import write_atomic

        data = {"threshold": args.threshold, "min_tokens": args.min_tokens, "handout": str(handout or ""),
                "notebooks": compared, "skipped": [{"path": str(p), "reason": r} for p, r in skipped],
                "pairs": [pair.to_dict() for pair in pairs]}
        write_atomic(args.json, json.dumps(data, indent=2) + "\n")
    return 0


def register(subparsers) -> None:
    """Add the ``similarity`` sub-command to ``python -m autograder``'s sub-parsers."""
    p = subparsers.add_parser("similarity", help="flag pairs of submissions with near-identical graded code")
    p.add_argument("dir", help="folder of submissions (every *.ipynb under it, any layout)")
    p.add_argument("--topic", default="auto", help="topic whose handout's code is ignored (default: detect)")
    p.add_argument("--handout", help="the stub notebook students received (default: assignments/<topic>/)")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help="per-function similarity in [0, 1] from which a pair is flagged")
    p.add_argument("--min-tokens", type=int, default=DEFAULT_MIN_TOKENS,
                   help="a function must have this many tokens of its own to be flagged")
    p.add_argument("--json", help="also write the pairs as JSON here")
    p.set_defaults(func=cmd_similarity)
