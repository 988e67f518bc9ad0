"""Convert between a plain-text "percent" script and a solution notebook with nbgrader metadata.

The ``.ipynb`` under ``solutions/`` is the one source of truth; this tool only makes editing it in a
text editor pleasant. Cell markers in the script:

    # %% [markdown]            a markdown cell (every line starts with "# ")
    # %% [helper] imports      code the graded cells need (imports, constants): taken by the loader,
                               locked in the handout; grade_id "helper_imports", tag "helper"
    # %% [graded] get_rays     an nbgrader autograded-answer cell whose grade_id is what it defines
    # %%                       an ordinary code cell (training, plots): never run by the grader

    python -m autograder.nbtools to-notebook script.py notebook.ipynb
    python -m autograder.nbtools to-script notebook.ipynb script.py
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import nbformat

MARKER = re.compile(r"^# %%(?:\s+\[(?P<kind>markdown|helper|graded)\])?(?:\s+(?P<name>[A-Za-z_][\w]*))?\s*$")
HELPER_TAG = "helper"


def nbgrader_meta(kind: str, name: str) -> dict:
    """nbgrader cell metadata for a helper (locked, read-only) or graded (autograded answer) cell."""
    if kind == "graded":
        return {"grade": False, "solution": True, "locked": False, "grade_id": name, "schema_version": 3}
    return {"grade": False, "solution": False, "locked": True, "grade_id": f"helper_{name}",
            "schema_version": 3}


def _cell_from_block(kind: str | None, name: str | None, lines: list[str], where: str):
    text = "\n".join(lines).strip("\n")
    if kind == "markdown":
        body = [line[2:] if line.startswith("# ") else line.lstrip("#") for line in text.splitlines()]
        return nbformat.v4.new_markdown_cell("\n".join(body))
    cell = nbformat.v4.new_code_cell(text)
    if kind in ("helper", "graded"):
        if not name:
            raise ValueError(f"{where}: '# %% [{kind}]' needs a name, e.g. '# %% [{kind}] get_rays'")
        cell.metadata["nbgrader"] = nbgrader_meta(kind, name)
        if kind == "helper":
            cell.metadata["tags"] = [HELPER_TAG]
    return cell


def script_to_notebook(text: str, source: str = "<script>") -> nbformat.NotebookNode:
    """Parse a percent script into a notebook (no outputs)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    kind, name, block, start = None, None, [], 1
    seen_block = False
    for number, line in enumerate(text.splitlines(), start=1):
        match = MARKER.match(line)
        if match:
            if seen_block and "\n".join(block).strip():
                nb.cells.append(_cell_from_block(kind, name, block, f"{source}:{start}"))
            kind, name, block, start, seen_block = match["kind"], match["name"], [], number, True
            continue
        if line.startswith("# %%"):
            raise ValueError(f"{source}:{number}: unrecognised cell marker {line!r}")
        block.append(line)
    if "\n".join(block).strip():
        nb.cells.append(_cell_from_block(kind, name, block, f"{source}:{start}"))
    ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.metadata]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"{source}: duplicate grade_id(s) {dupes}")
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{index:03d}"
    return nb


def notebook_to_script(nb: nbformat.NotebookNode) -> str:
    """The inverse of :func:`script_to_notebook` (outputs are dropped)."""
    chunks = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "markdown":
            body = "\n".join(("# " + line) if line else "#" for line in cell.source.splitlines())
            chunks.append("# %% [markdown]\n" + body)
        elif meta.get("solution"):
            chunks.append(f"# %% [graded] {meta['grade_id']}\n{cell.source}")
        elif meta.get("locked") and str(meta.get("grade_id", "")).startswith("helper_"):
            chunks.append(f"# %% [helper] {meta['grade_id'][len('helper_'):]}\n{cell.source}")
        else:
            chunks.append(f"# %%\n{cell.source}")
    return "\n\n".join(chunks) + "\n"


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a notebook or report is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def notebook_text(nb: nbformat.NotebookNode) -> str:
    """Canonical JSON text of a notebook (sorted keys, 1-space indent, trailing newline)."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.nbtools", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    to_nb = sub.add_parser("to-notebook", help="percent script -> notebook")
    to_nb.add_argument("script", type=Path)
    to_nb.add_argument("notebook", type=Path)
    to_py = sub.add_parser("to-script", help="notebook -> percent script")
    to_py.add_argument("notebook", type=Path)
    to_py.add_argument("script", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "to-notebook":
            nb = script_to_notebook(args.script.read_text(encoding="utf-8"), str(args.script))
            write_text_atomic(args.notebook, notebook_text(nb))
        else:
            nb = nbformat.read(args.notebook, as_version=4)
            write_text_atomic(args.script, notebook_to_script(nb))
    except (OSError, ValueError, nbformat.reader.NotJSONError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
