"""Normalise Python source for the similarity check: comments, layout, docstrings and local names vanish.

Each statement becomes one :class:`Line`: its normalised text (``ast.unparse`` with the arguments and
locals of every function renamed ``v0, v1, ...`` in order of first appearance) and the original source
it came from, so that a report can show what two students share in their own words. Source that does
not parse is normalised as text (comments and blank lines stripped, whitespace collapsed). Nothing here
raises on a student's code. Used by :mod:`autograder.similarity`.
"""
from __future__ import annotations

import ast
import builtins
import copy
import re
import textwrap
from dataclasses import dataclass
from typing import Iterable, Optional

_BODIES = ("body", "orelse", "finalbody", "handlers", "cases")


@dataclass
class Line:
    """One normalised statement (``text``) and the source it came from (``original``)."""

    text: str
    original: str



def module_names(sources: Iterable[str]) -> set[str]:
    """Builtins and the names a notebook's cells bind at top level (imports, definitions, assignments).

    A name a function reads that is none of these nor bound in the function stands for a local the
    student writes (a stub's given ``return out`` after ``# YOUR CODE HERE``), so it is renamed too."""
    names = set(dir(builtins))
    for source in sources:
        try:
            tree = ast.parse(_strip_magics(source))
        except (SyntaxError, ValueError):
            continue
        for top in tree.body:
            is_definition = isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            for node in [top] if is_definition else ast.walk(top):  # not the definitions' own locals
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
                elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    names.add(node.name)
                elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    names.add(node.id)
    return names


def _local_names(function: ast.AST, known_globals: Optional[set] = None) -> list[str]:
    """Arguments and locals of ``function`` (nested scopes included), in order of first appearance.

    known_globals: when given, a name read but bound neither here nor there counts as a local too."""
    bound, declared_outside = set(), set()
    for node in ast.walk(function):
        if known_globals is not None and isinstance(node, ast.Name) and node.id not in known_globals:
            bound.add(node.id)
        if isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node is not function:
            bound.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            declared_outside.update(node.names)
    seen = []
    for node in sorted((n for n in ast.walk(function) if hasattr(n, "lineno")),
                       key=lambda n: (n.lineno, n.col_offset)):
        name = node.arg if isinstance(node, ast.arg) else node.id if isinstance(node, ast.Name) else \
            getattr(node, "name", None) if node is not function else None
        if isinstance(name, str) and name in bound and name not in declared_outside and name not in seen:
            seen.append(name)
    return seen


class _Renamer(ast.NodeTransformer):
    """Rename the names of ``mapping`` wherever they are bound or read."""

    def __init__(self, mapping: dict):
        self.mapping = mapping

    def visit_Name(self, node):
        node.id = self.mapping.get(node.id, node.id)
        return node

    def visit_arg(self, node):
        node.arg = self.mapping.get(node.arg, node.arg)
        self.generic_visit(node)
        return node

    def visit_ExceptHandler(self, node):
        node.name = self.mapping.get(node.name, node.name) if node.name else None
        self.generic_visit(node)
        return node


def _rename_locals(body: list, known_globals: Optional[set] = None) -> None:
    """In place: every function in ``body`` (methods of classes included) gets canonical local names."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            mapping = {name: f"v{i}" for i, name in enumerate(_local_names(node, known_globals))}
            renamer = _Renamer(mapping)
            for child in ast.iter_child_nodes(node):  # the function's own name stays
                renamer.visit(child)
            for inner in ast.walk(node):
                if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and inner is not node:
                    inner.name = mapping.get(inner.name, inner.name)
        elif isinstance(node, ast.ClassDef):
            _rename_locals(node.body, known_globals)


def _is_bare_string(node: ast.AST) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines())


def _header_end(node: ast.AST, source: list[str]) -> int:
    """Last source line (1-based) of a compound statement's header: the line ending in ':'."""
    first_body = min((child.lineno for name in _BODIES for child in getattr(node, name, []) or []
                      if hasattr(child, "lineno")), default=node.lineno + 1)
    for lineno in range(node.lineno, max(first_body, node.lineno + 1)):
        if _strip_comment(source[lineno - 1]).rstrip().endswith(":"):
            return lineno
    return node.lineno


def _original(source: list[str], start: int, end: int) -> str:
    return textwrap.dedent("\n".join(source[start - 1:end])).strip()


def _statement_lines(node: ast.AST, source: list[str]) -> list[Line]:
    """Normalised lines of one statement (renamed already), recursing into blocks."""
    if _is_bare_string(node):
        return []
    blocks = [name for name in _BODIES if isinstance(getattr(node, name, None), list)]
    if not blocks:
        return [Line(_one_line(ast.unparse(node)), _original(source, node.lineno, node.end_lineno or node.lineno))]
    header = copy.copy(node)
    for name in blocks:
        setattr(header, name, [])
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    lines = [Line(_one_line(ast.unparse(header)), _original(source, start, _header_end(node, source)))]
    for name in blocks:
        for child in getattr(node, name):
            if isinstance(child, ast.match_case):
                lines.append(Line(f"case {ast.unparse(child.pattern)}:", _original(
                    source, child.pattern.lineno, child.pattern.lineno)))
                lines += [line for stmt in child.body for line in _statement_lines(stmt, source)]
            else:
                lines += _statement_lines(child, source)
    return lines


def _strip_comment(line: str) -> str:
    """The line without a trailing ``# comment`` (a '#' inside a string literal is rare enough here)."""
    return re.sub(r"(^|\s)#.*$", "", line) if "#" in line else line


def _text_lines(source: str) -> list[Line]:
    """Fallback for a cell that does not parse: comments and blank lines out, whitespace collapsed."""
    lines = []
    for raw in source.splitlines():
        text = " ".join(_strip_comment(raw).split())
        if text:
            lines.append(Line(text, raw.strip()))
    return lines


def _strip_magics(source: str) -> str:
    """IPython magics and shell escapes (``%...``, ``!...``) blanked out, line numbers kept."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def normalise_source(source: str, known_globals: Optional[set] = None) -> list[Line]:
    """The normalised lines of one cell's code (see the module docstring, step 2).

    known_globals: the notebook's :func:`module_names`; without it only names bound in a function are renamed."""
    source = _strip_magics(source)
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):  # ValueError: null bytes
        return _text_lines(source)
    _rename_locals(tree.body, known_globals)
    lines = source.splitlines()
    try:
        return [line for node in tree.body for line in _statement_lines(node, lines)]
    except Exception:  # noqa: BLE001 - an AST corner this normaliser misses must not stop a class's check
        return _text_lines(source)
