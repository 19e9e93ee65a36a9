"""Tasks: what a model's outputs are for, plugged into the verifier through verify.tasks.base.Task and registered
in converter.core.vocabulary.TASKS."""
from __future__ import annotations

from converter.core.registry import load_object
from converter.core.vocabulary import TASKS

from .base import GENERIC, Task


def task_named(name: str) -> Task:
    """The registered task called `name` (KeyError naming the registered ones otherwise)."""
    return load_object(TASKS[name].task)


def task_of(result) -> Task:
    """The task a model's result was verified with; the generic task when it is not registered here (a shard's
    results from a workbench with a task of its own): its report keeps every parity row, without that task's
    sections."""
    return task_named(result.task) if result.task in TASKS else GENERIC


def every_task() -> list[Task]:
    return [task_named(name) for name in TASKS]
