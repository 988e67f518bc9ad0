"""The registry of graded topics: every module ``tNN_<name>.py`` here defining ``TOPIC`` is a topic.

Adding a topic = adding a module (and its mutants in ``autograder/mutants/mNN_<name>.py``); the grader
itself is not edited.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
from pathlib import Path

from autograder.spec import Topic


EXTRA_PATH_ENV = "AUTOGRADER_TOPIC_PATH"  # extra folders of topic modules (the kit's own tests use it)


def _extra_modules():
    for folder in filter(None, os.environ.get(EXTRA_PATH_ENV, "").split(os.pathsep)):
        for path in sorted(Path(folder).glob("t*.py")):
            spec = importlib.util.spec_from_file_location(f"autograder_extra_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            yield module


def all_topics() -> dict[str, Topic]:
    """``{topic name: Topic}`` for every topic module, in name order."""
    modules = [importlib.import_module(f"{__name__}.{info.name}")
               for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name)
               if info.name.startswith("t")]
    topics: dict[str, Topic] = {}
    for module in modules + list(_extra_modules()):
        topic = getattr(module, "TOPIC", None)
        if isinstance(topic, Topic):
            topics[topic.name] = topic
    return dict(sorted(topics.items()))


def get_topic(name: str) -> Topic:
    """The topic called ``name``; its own module ``t<name>`` is imported first (the grading child needs
    no other), then every topic module is searched."""
    try:
        topic = getattr(importlib.import_module(f"{__name__}.t{name}"), "TOPIC", None)
    except ImportError:
        topic = None
    if isinstance(topic, Topic) and topic.name == name:
        return topic
    topics = all_topics()
    if name not in topics:
        raise KeyError(f"unknown topic {name!r}; known topics: {sorted(topics) or 'none'}")
    return topics[name]


def detect_topic(notebook: Path) -> Topic:
    """The topic a notebook belongs to: by its folder name, then its file name, then its graded names."""
    notebook = Path(notebook)
    topics = all_topics()
    for topic in topics.values():
        if topic.name in notebook.parts or notebook.parent.name == topic.name:
            return topic
    for topic in topics.values():
        if Path(topic.notebook).name == notebook.name:
            return topic
    text = notebook.read_text(encoding="utf-8", errors="replace")
    scored = sorted(((sum(f"def {f}" in text or f"class {f}" in text for f in t.functions), name)
                     for name, t in topics.items()), reverse=True)
    if scored and scored[0][0] > 0:
        return topics[scored[0][1]]
    raise KeyError(f"{notebook}: cannot tell which topic this notebook is; pass --topic "
                   f"(one of {sorted(topics) or 'none'})")
