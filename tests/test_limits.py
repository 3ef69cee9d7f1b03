import threading

import pytest

from holysheep_lab.core.limits import RateLimit, RateLimiter, Retry, parse_reset, parse_retry_after
from holysheep_lab.errors import ConfigError, RateLimitError


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_rpm_allows_rpm_calls_per_sliding_minute():
    clock = FakeClock()
    rl = RateLimiter(RateLimit(rpm=60), clock=clock)
    assert [rl.acquire() for _ in range(60)] == [0.0] * 60
    assert rl.acquire() == pytest.approx(60.0)
    clock.t += 30
    assert rl.acquire() == pytest.approx(30.0)
    clock.t += 200
    assert rl.acquire() == 0.0


def test_no_sliding_window_ever_exceeds_rpm():
    clock = FakeClock()
    rl = RateLimiter(RateLimit(rpm=30), clock=clock)
    sends = []
    for i in range(200):
        clock.t += 0.05 * (i % 7)
        sends.append(clock.t + rl.acquire())
    sends.sort()
    for i, t in enumerate(sends):
        in_window = sum(1 for u in sends[i:] if u < t + 60 - 1e-9)
        assert in_window <= 30


def test_tpm_books_tokens_and_rejects_impossible_calls():
    clock = FakeClock()
    rl = RateLimiter(RateLimit(tpm=1000), clock=clock)
    assert rl.acquire(600) == 0.0
    assert rl.acquire(400) == 0.0
    assert rl.acquire(500) == pytest.approx(60.0)
    clock.t += 61
    assert rl.acquire(499) == 0.0  # 500 booked at +60 s still count
    with pytest.raises(RateLimitError, match="tpm"):
        rl.acquire(1001)


@pytest.mark.parametrize("t0", [3.3, 12_345.678])  # (3.3 + 60) - 60 < 3.3 in floating point
def test_a_full_token_window_waits_for_its_oldest_booking_whatever_the_rounding(t0):
    clock = FakeClock()
    clock.t = t0
    rl = RateLimiter(RateLimit(rpm=100, tpm=3100), clock=clock)
    assert [rl.acquire(1020) for _ in range(3)] == [0.0] * 3
    done = []
    worker = threading.Thread(target=lambda: done.append(rl.acquire(1020)), daemon=True)
    worker.start()
    worker.join(5)
    assert done == [pytest.approx(60.0)]  # it ended: the oldest booking leaves at its expiry


def test_pause_from_server_holds_every_caller():
    clock = FakeClock()
    rl = RateLimiter(None, clock=clock)
    assert rl.acquire() == 0.0
    rl.pause(2.5)
    assert rl.acquire() == pytest.approx(2.5)
    rl.observe_headers({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6s"})
    assert rl.acquire() == pytest.approx(6.0)


def test_limiter_is_thread_safe():
    rl = RateLimiter(RateLimit(rpm=100), clock=FakeClock())
    waits = []
    threads = [threading.Thread(target=lambda: waits.extend(rl.acquire() for _ in range(50))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    waits.sort()
    assert waits[:100] == [0.0] * 100 and waits[100:] == [60.0] * 100


def test_parse_headers():
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=1445412470.0) == 10.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    assert parse_reset("6m0s") == 360.0
    assert parse_reset("1h2m3.5s") == 3723.5
    assert parse_reset("20ms") == 0.02
    assert parse_reset("later") is None


def test_retry_backoff_is_bounded_and_jittered():
    r = Retry(max_attempts=5, backoff=1.0, max_backoff=4.0)
    assert [r.delay(n, rng=lambda: 1.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 4.0]
    assert [r.delay(n, rng=lambda: 0.0) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert r.delay(1, retry_after=7.0, rng=lambda: 0.0) == 7.0
    with pytest.raises(ConfigError):
        Retry(max_attempts=0)
    with pytest.raises(ConfigError):
        RateLimit(rpm=0)
