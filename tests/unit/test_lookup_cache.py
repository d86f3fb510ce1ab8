"""The executors' per-process lookup cache: one load for the keys not seen yet, kept for
its TTL, bounded, and a key the loader leaves out looked up again."""

from __future__ import annotations

from worker.executors.lookup_cache import LookupCache


class Loader:
    """Answers ``key * 10``, except for the keys it is told are gone (None) or absent."""

    def __init__(self, gone: frozenset[int] = frozenset(), absent: frozenset[int] = frozenset()):
        self.gone, self.absent = gone, absent
        self.calls: list[set[int]] = []

    def __call__(self, keys: set[int]) -> dict[int, int | None]:
        self.calls.append(set(keys))
        return {k: None if k in self.gone else k * 10 for k in keys if k not in self.absent}


def test_one_load_for_the_keys_not_seen_yet() -> None:
    cache: LookupCache[int, int | None] = LookupCache()
    load = Loader()
    assert cache.get_many({1, 2}, load) == {1: 10, 2: 20}
    assert cache.get_many({1, 2, 3}, load) == {1: 10, 2: 20, 3: 30}
    assert load.calls == [{1, 2}, {3}]


def test_none_is_kept_and_an_absent_key_is_looked_up_again() -> None:
    cache: LookupCache[int, int | None] = LookupCache()
    load = Loader(gone=frozenset({1}), absent=frozenset({2}))
    assert cache.get_many({1, 2}, load) == {1: None}
    assert cache.get_many({1, 2}, load) == {1: None}
    assert load.calls == [{1, 2}, {2}]


def test_an_entry_is_forgotten_after_its_ttl() -> None:
    now = [100.0]
    cache: LookupCache[int, int | None] = LookupCache(ttl_seconds=30, clock=lambda: now[0])
    load = Loader()
    cache.get_many({1}, load)
    now[0] += 29.9
    cache.get_many({1}, load)
    now[0] += 0.2
    cache.get_many({1}, load)
    assert load.calls == [{1}, {1}]


def test_past_its_bound_it_empties_and_refills() -> None:
    cache: LookupCache[int, int | None] = LookupCache(max_entries=3)
    load = Loader()
    cache.get_many({1, 2, 3}, load)
    cache.get_many({4}, load)  # over the bound: emptied, then 4 kept
    cache.get_many({1, 4}, load)
    assert load.calls == [{1, 2, 3}, {4}, {1}]
