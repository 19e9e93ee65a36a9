"""Tasks: what a model's outputs are for, plugged into the verifier through verify.tasks.base.Task and registered
in converter.core.vocabulary.TASKS."""
from __future__ import annotations

from converter.core.registry import load_object
from converter.core.vocabulary import TASKS

from .base import Task


def task_named(name: str) -> Task:
    """The registered task called `name` (KeyError naming the registered ones otherwise)."""
    return load_object(TASKS[name].task)


def every_task() -> list[Task]:
    return [task_named(name) for name in TASKS]
