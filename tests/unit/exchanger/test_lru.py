"""The digest LRU shared by the verifier's and the gateway's caches."""

from __future__ import annotations

import threading

from exchanger.lru import DigestLru


def test_the_least_recently_used_entry_goes_first() -> None:
    lru = DigestLru[int](2)
    lru.put(b"a", 1)
    lru.put(b"b", 2)
    assert lru.get(b"a") == 1  # a is now the most recent
    lru.put(b"c", 3)
    assert (lru.get(b"a"), lru.get(b"b"), lru.get(b"c")) == (1, None, 3)


def test_a_size_of_zero_keeps_nothing_and_discard_forgets() -> None:
    empty = DigestLru[int](0)
    empty.put(b"a", 1)
    assert empty.get(b"a") is None
    lru = DigestLru[int](4)
    lru.put(b"a", 1)
    lru.discard(b"a")
    lru.discard(b"never")
    assert lru.get(b"a") is None


def test_threads_sharing_it_never_exceed_the_size() -> None:
    lru = DigestLru[int](50)

    def fill(offset: int) -> None:
        for n in range(2_000):
            lru.put((offset + n).to_bytes(4, "big"), n)
            lru.get((offset + n // 2).to_bytes(4, "big"))

    threads = [threading.Thread(target=fill, args=(k * 10_000,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    kept = [n for k in range(4) for n in range(2_000)
            if lru.get((k * 10_000 + n).to_bytes(4, "big")) is not None]
    assert 0 < len(kept) <= 50
