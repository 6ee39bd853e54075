"""Timing helpers: interleaving order and the summary statistics."""

from bench.timing import summarize, time_interleaved


def test_time_interleaved_alternates_and_counts_calls():
    calls = []
    samples = time_interleaved({'a': lambda: calls.append('a'), 'b': lambda: calls.append('b')},
                               rounds=3, warmup=1)
    assert calls == ['a', 'b'] + ['a', 'b'] * 3  # warm-up per function, then rounds
    assert {name: len(values) for name, values in samples.items()} == {'a': 3, 'b': 3}


def test_time_interleaved_synchronizes_around_each_call():
    events = []
    time_interleaved({'a': lambda: events.append('call')}, rounds=2, warmup=0,
                     synchronize=lambda: events.append('sync'))
    assert events == ['sync', 'call', 'sync'] * 2


def test_summarize_median_and_spread():
    stats = summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert stats['median_s'] == 3.0
    assert (stats['min_s'], stats['max_s'], stats['count']) == (1.0, 100.0, 5)
    assert stats['spread'] > 0
    assert summarize([2.0])['spread'] == 0.0
