"""A compact set of seen ``custom_id``\\s for duplicate detection over files of any length.

A Python ``set`` of strings costs about 100 bytes per id; this open-addressing table of 64-bit
string hashes costs 16 bytes (8 at the worst load), so a ten-million-line file needs ~160 MB
less. The price is a false "duplicate" when two different ids share a 64-bit SipHash: about one
chance in 3·10⁷ for a million ids.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

_EMPTY = 0
_MASK64 = (1 << 64) - 1


class IdSet:
    """Remembers hashes of strings; ``add`` says whether the string was new."""

    def __init__(self, capacity: int = 1024) -> None:
        """:param capacity: ids expected; the table grows past them, by rehashing every id."""
        size = 1
        while size < capacity * 2:
            size <<= 1
        self._slots = array("Q", bytes(8 * size))
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, key: str) -> bool:
        """Record ``key``; return ``False`` if it (or a hash twin) was seen before."""
        h = (hash(key) & _MASK64) or 1  # 0 marks an empty slot
        if not self._insert(h):
            return False
        self._count += 1
        if self._count * 2 > len(self._slots):
            self._grow()
        return True

    def add_all(self, keys: Iterable[str]) -> None:
        """`add` each of ``keys``, in one loop: a resume adds the id of every line it skips
        (`skip.skip_in_steps`), and a call per id was most of that."""
        slots, mask, count = self._slots, len(self._slots) - 1, self._count
        for key in keys:
            h = (hash(key) & _MASK64) or 1
            i = h & mask
            while (current := slots[i]) != _EMPTY and current != h:
                i = (i + 1) & mask
            if current == _EMPTY:
                slots[i] = h
                count += 1
                if count * 2 > len(slots):
                    self._count = count
                    self._grow()
                    slots, mask = self._slots, len(self._slots) - 1
        self._count = count

    def __contains__(self, key: str) -> bool:
        """Whether ``key`` (or a hash twin) was added."""
        slots = self._slots
        mask = len(slots) - 1
        h = (hash(key) & _MASK64) or 1
        i = h & mask
        while (current := slots[i]) != _EMPTY:
            if current == h:
                return True
            i = (i + 1) & mask
        return False

    def update(self, other: IdSet) -> None:
        """Add every id ``other`` holds."""
        for h in other._slots:
            if h != _EMPTY and self._insert(h):
                self._count += 1
                if self._count * 2 > len(self._slots):
                    self._grow()

    def _insert(self, h: int) -> bool:
        slots = self._slots
        mask = len(slots) - 1
        i = h & mask
        while True:
            current = slots[i]
            if current == _EMPTY:
                slots[i] = h
                return True
            if current == h:
                return False
            i = (i + 1) & mask

    def _grow(self) -> None:
        old = self._slots
        self._slots = array("Q", bytes(16 * len(old)))
        for h in old:
            if h != _EMPTY:
                self._insert(h)
