"""Read-only multi-valued mappings for request headers and query parameters."""
from __future__ import annotations

from typing import Iterator


class MultiDict:
    """Keeps every (key, value) pair in order; `d[key]` and `get` give the first value."""

    __slots__ = ("_items", "_first")

    def __init__(self, items: list[tuple[str, str]]):
        self._items = items
        self._first: dict[str, str] = {}
        for key, value in items:
            self._first.setdefault(self._key(key), value)

    @staticmethod
    def _key(key: str) -> str:
        return key

    def __getitem__(self, key: str) -> str:
        return self._first[self._key(key)]

    def get(self, key: str, default=None):
        return self._first.get(self._key(key), default)

    def getall(self, key: str) -> list[str]:
        key = self._key(key)
        return [v for k, v in self._items if self._key(k) == key]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._key(key) in self._first

    def __iter__(self) -> Iterator[str]:
        return iter(self._first)

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def keys(self):
        return self._first.keys()

    def __eq__(self, other):
        return isinstance(other, MultiDict) and self._items == other._items

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._items!r})"


class Headers(MultiDict):
    """Request header fields: names compare case-insensitively; items() gives lowercase names."""

    __slots__ = ()

    @staticmethod
    def _key(key: str) -> str:
        return key.lower()
