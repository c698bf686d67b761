"""Registries: the one place where the names of pluggable parts are looked up.

Activations, architectures, coupling forms and study kinds each have a :class:`Registry`. A new
one is a class (or function) registered under a name, usually by defining a subclass (the base
classes register their subclasses in ``__init_subclass__``); specs, the command line and the
report then accept the name without any change to library code.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

__all__ = ["Registry"]


class Registry[T](Mapping[str, T]):
    """Name -> object, with errors that list the known names.

    Example:
        >>> ACTIVATIONS = Registry("activation")
        >>> ACTIVATIONS.register("sin", Sin())
        >>> ACTIVATIONS["sin"]
        >>> ACTIVATIONS.get_or_raise("cos")  # ValueError: unknown activation 'cos'; known: ...
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T) -> T:
        """Register ``obj`` under ``name`` (a later registration of the same name replaces it,
        so a class redefined in an interactive session takes effect)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} needs a non-empty string name, got {name!r}")
        self._items[name] = obj
        return obj

    def unregister(self, name: str) -> None:
        """Remove ``name`` (e.g. a test's temporary plugin); unknown names are ignored."""
        self._items.pop(name, None)

    def get_or_raise(self, name) -> T:
        """The object called ``name``; a ValueError lists the known names otherwise."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise ValueError(
                f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._items))}"
            ) from None

    def __getitem__(self, name: str) -> T:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(sorted(self._items))})"
