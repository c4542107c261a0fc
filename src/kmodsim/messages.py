"""Messages a run reports without stopping — depmod's warnings and errors above all — as typed
records: a code naming the event and the values it names. Their words live with the renderers
(depmod's, kmod's own words: :mod:`kmodsim.render.depmod`); the library never builds that text."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["DepmodMessage"]


class DepmodMessage(NamedTuple):
    """One line (or, for ``alias-duplicate``, two) of depmod's stderr: ``code`` (a key of
    :data:`kmodsim.render.depmod.DEPMOD_WORDS`) and the values the line names, as text."""
    code: str
    args: tuple[str, ...] = ()
