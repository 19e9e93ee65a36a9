"""A registry of named things: the only list of those names. Registering a name twice is an error at import
(as torchvision's `register_model` refuses a duplicate); looking up an unknown name says which names exist."""
from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind  # "runtime", "artifact", "device": used in messages
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._items[name] = item
        return item

    def unregister(self, name: str) -> None:
        del self._items[name]

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(self.unknown(name)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> tuple[str, ...]:
        return tuple(self._items)

    def values(self) -> list[T]:
        return list(self._items.values())

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())

    def unknown(self, name: str) -> str:
        """The one-line complaint about a name that is not registered."""
        return f"unknown {self.kind} '{name}' (registered: {', '.join(self._items)})"


def load_object(reference: str) -> Any:
    """'package.module:attribute' -> the attribute, importing the module only now (as entry points do)."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)
