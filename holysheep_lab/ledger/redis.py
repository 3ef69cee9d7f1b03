"""A ledger in Redis, for a team sharing one budget from many machines.

Every state change is one Lua script (all-or-nothing, atomic on the server). Time comes from
the server's TIME inside the scripts, because the team's machines' clocks differ.

Keys (``P`` is the prefix, default ``hs:``):

- ``P b:<bucket>`` HASH: ``spent``, ``reserved`` (sum of the live reservations below) and one
  field ``r:<reservation id>`` = amount per reservation in flight. EXPIREAT window end + 1 day.
- ``P z:<bucket>`` ZSET: reservation ids scored by their expiry (ms). Every script touching a
  bucket first purges the ids whose score passed, subtracting their amounts from ``reserved``:
  a reservation left by a killed process stops counting at its expiry. Same EXPIREAT.
- ``P r:<reservation id>`` HASH: ``b:<bucket>`` = amount for each bucket it holds, ``.exp``,
  so ``release(id)`` finds its buckets. PEXPIRE ttl + 1 min (garbage collection only).
- ``P c:<claim key>``: the claim's expiry (ms); PEXPIREAT then.
- ``P seeded``: set by every `seed` (expires after a day). Once a client has a seeder (the
  Metering registers one: `use_seeder`), a reserve that finds it missing (Redis restarted empty,
  or a day passed) refuses to decide; the client relearns the spend from the log, seeds, and
  reserves again. So no process approves a call against a Redis that forgot today's spend,
  even one that never saw the outage.

Amounts travel as decimal strings and are added with HINCRBY (exact int64); the limit
comparison inside Lua uses doubles, exact up to 2**53 nanos (about $9M per bucket).
The release/settle scripts reach bucket keys named inside the reservation hash, so the
ledger needs a single Redis server (or a primary), not Redis Cluster.

Limit: a Redis that restarts *empty* forgets the reservations in flight at that moment; the
log holds only answered calls, so until those calls settle, other processes can approve up to
their worst cases on top. Run Redis with persistence (AOF) where that margin matters.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from holysheep_lab.core.clock import BUCKET_GRACE_S
from holysheep_lab.core.validate import positive_seconds
from holysheep_lab.errors import ConfigError, LedgerError, LedgerUnavailableError, MissingExtraError, redact
from holysheep_lab.ledger.base import BucketState, Charge, Refusal, Seeder
from holysheep_lab.ledger.common import ClosingContext, check_id, check_ttl, merge_charges, seed_items

__all__ = ["RedisLedger"]

_log = logging.getLogger("holysheep_lab")

# How long a reservation's own hash outlives its expiry (it is only needed to find buckets).
_RESERVATION_GC_MS = 60_000

_LUA_COMMON = r"""
local function s(n) return string.format('%d', n) end
local function now_ms(override)
  if override ~= '' then return tonumber(override) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function unreserve(b, a)
  if a ~= '0' then redis.call('HINCRBY', b, 'reserved', '-' .. a) end
end
local function purge(b, z, now)
  local ids = redis.call('ZRANGEBYSCORE', z, '-inf', s(now))
  if #ids == 0 then return end
  for _, rid in ipairs(ids) do
    local a = redis.call('HGET', b, 'r:' .. rid)
    if a then
      unreserve(b, a)
      redis.call('HDEL', b, 'r:' .. rid)
    end
  end
  redis.call('ZREMRANGEBYSCORE', z, '-inf', s(now))
end
local function drop_in(b, z, id)
  local a = redis.call('HGET', b, 'r:' .. id)
  if a then
    unreserve(b, a)
    redis.call('HDEL', b, 'r:' .. id)
  end
  redis.call('ZREM', z, id)
end
local function drop_reservation(rkey, id, prefix)
  local f = redis.call('HGETALL', rkey)
  for j = 1, #f, 2 do
    if string.sub(f[j], 1, 2) == 'b:' then
      local name = string.sub(f[j], 3)
      drop_in(prefix .. 'b:' .. name, prefix .. 'z:' .. name, id)
    end
  end
  redis.call('DEL', rkey)
  return #f > 0
end
local function state(b)
  local st = redis.call('HMGET', b, 'spent', 'reserved')
  return st[1] or '0', st[2] or '0'
end
"""

# KEYS: b1 z1 .. bn zn rkey. ARGV: now_override id ttl_ms gc_ms, then per bucket:
# name amount limit('' = none) expireat_s, then the seed marker key ('' = do not check).
_RESERVE = _LUA_COMMON + r"""
local now = now_ms(ARGV[1])
local id = ARGV[2]
local n = (#KEYS - 1) / 2
local rkey = KEYS[#KEYS]
local marker = ARGV[#ARGV]
if marker ~= '' and redis.call('EXISTS', marker) == 0 then return {'unseeded'} end
local held = redis.call('HGET', rkey, '.exp')
if held and tonumber(held) > now then return {'dup'} end
for i = 1, n do purge(KEYS[2*i-1], KEYS[2*i], now) end
for i = 1, n do
  local a = 4 * i
  local limit = ARGV[a+3]
  if limit ~= '' then
    local spent, reserved = state(KEYS[2*i-1])
    if tonumber(spent) + tonumber(reserved) + tonumber(ARGV[a+2]) > tonumber(limit) then
      return {'refused', s(i), spent, reserved}
    end
  end
end
redis.call('DEL', rkey)
local exp = s(now + tonumber(ARGV[3]))
for i = 1, n do
  local b, z, a = KEYS[2*i-1], KEYS[2*i], 4 * i
  local amount = ARGV[a+2]
  if amount ~= '0' then redis.call('HINCRBY', b, 'reserved', amount) end
  redis.call('HSET', b, 'r:' .. id, amount)
  redis.call('ZADD', z, exp, id)
  redis.call('EXPIREAT', b, ARGV[a+4])
  redis.call('EXPIREAT', z, ARGV[a+4])
  redis.call('HSET', rkey, 'b:' .. ARGV[a+1], amount)
end
redis.call('HSET', rkey, '.exp', exp)
redis.call('PEXPIRE', rkey, ARGV[4])
return {'ok'}
"""

# KEYS: b1 z1 .. bn zn rkey. ARGV: now_override id('' = none) prefix, then per bucket:
# amount expireat_s. Returns spent, reserved per bucket.
_SETTLE = _LUA_COMMON + r"""
local now = now_ms(ARGV[1])
local id = ARGV[2]
local n = (#KEYS - 1) / 2
-- The reservation hash may be gone (expired) while its bucket entries are not yet purged:
-- then drop the id from the buckets being settled (the same buckets as at reserve time).
if id ~= '' and not drop_reservation(KEYS[#KEYS], id, ARGV[3]) then
  for i = 1, n do drop_in(KEYS[2*i-1], KEYS[2*i], id) end
end
local out = {}
for i = 1, n do
  local b, z, a = KEYS[2*i-1], KEYS[2*i], 2 + 2 * i
  purge(b, z, now)
  redis.call('HINCRBY', b, 'spent', ARGV[a])
  redis.call('EXPIREAT', b, ARGV[a+1])
  local spent, reserved = state(b)
  out[#out+1] = spent
  out[#out+1] = reserved
end
return out
"""

# KEYS: rkey. ARGV: now_override id ttl_ms gc_ms prefix. 1 if renewed, 0 if not live.
_RENEW = _LUA_COMMON + r"""
local now = now_ms(ARGV[1])
local id = ARGV[2]
local rkey = KEYS[1]
local held = redis.call('HGET', rkey, '.exp')
if not held or tonumber(held) <= now then return 0 end
local exp = s(now + tonumber(ARGV[3]))
local f = redis.call('HGETALL', rkey)
for j = 1, #f, 2 do
  if string.sub(f[j], 1, 2) == 'b:' then
    -- XX: only a member still there (not purged) is moved; its amount stays in the bucket.
    redis.call('ZADD', ARGV[5] .. 'z:' .. string.sub(f[j], 3), 'XX', exp, id)
  end
end
redis.call('HSET', rkey, '.exp', exp)
redis.call('PEXPIRE', rkey, tonumber(ARGV[3]) + tonumber(ARGV[4]))
return 1
"""

# KEYS: rkey. ARGV: id prefix.
_RELEASE = _LUA_COMMON + r"""
drop_reservation(KEYS[1], ARGV[1], ARGV[2])
return 1
"""

# KEYS: b1 z1 .. bn zn. ARGV: now_override.
_SNAPSHOT = _LUA_COMMON + r"""
local now = now_ms(ARGV[1])
local out = {}
for i = 1, #KEYS / 2 do
  purge(KEYS[2*i-1], KEYS[2*i], now)
  local spent, reserved = state(KEYS[2*i-1])
  out[#out+1] = spent
  out[#out+1] = reserved
end
return out
"""

# KEYS: b1 .. bn. ARGV per bucket: spent expireat_s, then the seed marker key and its ttl
# (s). Raise only, never lower.
_SEED = r"""
for i = 1, #KEYS do
  local cur = redis.call('HGET', KEYS[i], 'spent')
  if not cur or tonumber(cur) < tonumber(ARGV[2*i-1]) then
    redis.call('HSET', KEYS[i], 'spent', ARGV[2*i-1])
  end
  redis.call('EXPIREAT', KEYS[i], ARGV[2*i])
end
redis.call('SET', ARGV[#ARGV - 1], '1', 'EX', ARGV[#ARGV])
return 1
"""

# A seeded Redis is relearned from the log at least this often (a cheap, raise-only re-seed).
_SEED_MARKER_TTL = 86_400

# KEYS: ckey. ARGV: now_override expires_ms. The value is the expiry, so an injected clock
# is honoured too; PEXPIREAT only collects the key (SET NX PXAT with the server's clock).
_CLAIM = _LUA_COMMON + r"""
local now = now_ms(ARGV[1])
local held = redis.call('GET', KEYS[1])
if held and tonumber(held) > now then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1
"""


def _where(url: str) -> str:
    """host:port/db (or the socket path) of a Redis URL: never its password."""
    try:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return parts.path or "unix socket"
        db = parts.path.lstrip("/") or "0"
        return f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}/{db}"
    except ValueError:
        return "redis"


def _password(url: str) -> str | None:
    """The password in a Redis URL (userinfo or ?password=), to redact it from any text."""
    try:
        parts = urlsplit(url)
        return parts.password or parse_qs(parts.query).get("password", [None])[0]
    except ValueError:
        return None


def _bucket_expiry(expires_at: float) -> int:
    return math.ceil(expires_at + BUCKET_GRACE_S)


class RedisLedger(ClosingContext):
    """Ledger in Redis: atomic across every process and machine that uses the same server.

    If Redis cannot be reached, calls raise `LedgerUnavailableError` (fail closed), unless
    `fail_open=True`: then `reserve` allows the call (returns None), `settle` and `release` do
    nothing (settle returns {}), and one warning is logged per outage; `snapshot`, `seed` and
    `claim` still raise, since they have no safe default. The client reconnects on its own when
    Redis is back, and reloads the scripts if the server lost them.

    `clock`: None uses the Redis server's TIME (use this: machines' clocks differ); a callable
    returning epoch seconds replaces it, for simulations and tests.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "hs:",
        fail_open: bool = False,
        clock: Callable[[], float] | None = None,
        socket_timeout: float = 2.0,
    ) -> None:
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:
            raise MissingExtraError("redis", "RedisLedger") from None
        if not isinstance(url, str):
            raise ConfigError(f"RedisLedger url must be a string such as 'redis://127.0.0.1:6379/0', not {type(url).__name__}.")
        if not isinstance(prefix, str):
            raise ConfigError(f"RedisLedger prefix must be a string such as 'hs:', not {prefix!r}.")
        socket_timeout = positive_seconds("RedisLedger socket_timeout", socket_timeout)
        self._where = _where(url)
        self._password = _password(url)
        self._prefix = prefix
        self._fail_open = bool(fail_open)
        self._clock = clock
        self._errors = redis.exceptions
        # A wrong password or missing ACL right is a configuration error, never an outage.
        self._auth_errors: tuple[type[Exception], ...] = tuple(
            getattr(redis.exceptions, name)
            for name in ("AuthenticationError", "AuthorizationError")
            if hasattr(redis.exceptions, name)
        )
        self._state_lock = threading.Lock()
        self._down = False
        self._closed = False
        self._seeder: Seeder | None = None
        self._relearn = False  # an outage ended: spend settled meanwhile may be missing
        try:
            # One immediate retry: after a server restart the pooled sockets are dead, and the
            # retry reconnects. Timeouts are not retried (the script may have run).
            self._client = redis.Redis.from_url(
                url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                retry=Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)),
                decode_responses=True,
            )
        except ValueError as exc:
            raise ConfigError(
                f"Bad Redis URL for RedisLedger ({redact(str(exc), self._password)}): use "
                "redis://[:password@]host:port/db, rediss://... or unix:///path"
            ) from None
        register = self._client.register_script
        self._reserve = register(_RESERVE)
        self._settle = register(_SETTLE)
        self._release = register(_RELEASE)
        self._renew = register(_RENEW)
        self._snapshot = register(_SNAPSHOT)
        self._seed = register(_SEED)
        self._claim = register(_CLAIM)

    def __repr__(self) -> str:
        mode = ", fail_open=True" if self._fail_open else ""
        return f"RedisLedger({self._where!r}, prefix={self._prefix!r}{mode})"

    # -- plumbing ----------------------------------------------------------------------------

    def _now_arg(self) -> str:
        return "" if self._clock is None else str(int(self._clock() * 1000))

    def _bkeys(self, bucket: str) -> tuple[str, str]:
        return f"{self._prefix}b:{bucket}", f"{self._prefix}z:{bucket}"

    def _run(
        self, op: str, script: Any, keys: list[str], args: list[Any], *, may_fail_open: bool
    ) -> Any:
        """Run one script; None means Redis was unreachable and the ledger is failing open."""
        if self._closed:
            raise LedgerError(f"This RedisLedger ({self._where}) is closed")
        errors = self._errors
        try:
            result = script(keys=keys, args=args, client=self._client)
        except self._auth_errors as exc:
            raise LedgerError(
                f"Redis at {self._where} refused our credentials during {op}: "
                f"{redact(str(exc), self._password)}"
            ) from None
        except (errors.ConnectionError, errors.TimeoutError) as exc:
            return self._outage(op, exc, may_fail_open)
        except errors.RedisError as exc:
            raise LedgerError(
                f"Redis ledger at {self._where} failed during {op}: "
                f"{redact(str(exc), self._password)}"
            ) from None
        if self._down:
            with self._state_lock:
                if self._down:
                    self._down = False
                    self._relearn = self._seeder is not None
                    _log.info("Redis ledger at %s is reachable again", self._where)
        return result

    def _outage(self, op: str, exc: Exception, may_fail_open: bool) -> None:
        reason = redact(str(exc), self._password) or type(exc).__name__
        if self._fail_open and may_fail_open:
            with self._state_lock:
                first, self._down = not self._down, True
            if first:
                _log.warning(
                    "Redis ledger at %s is unreachable (%s); fail_open=True, so calls go ahead "
                    "unbudgeted until it is back",
                    self._where,
                    reason,
                )
            return None
        self._down = True
        raise LedgerUnavailableError(
            f"Redis ledger at {self._where} is unreachable during {op} ({reason}); the call is "
            "refused (fail closed). Start Redis, or pass RedisLedger(..., fail_open=True) to let "
            "calls through unbudgeted while it is down."
        ) from None

    @property
    def shared(self) -> bool:
        return True  # every process and machine using the server and prefix

    def use_seeder(self, seeder: Seeder) -> None:
        """`seeder()` -> (spent, expires_at) as for `seed`, relearned from the call log.

        With a seeder, a Redis that lost its state (restarted without persistence) is re-seeded
        before it approves anything, and so is one that was unreachable (settles may be lost).
        """
        self._seeder = seeder

    def _reseed(self) -> None:
        assert self._seeder is not None
        self._relearn = False
        spent, expires_at = self._seeder()
        self.seed(spent, expires_at)

    # -- the Ledger protocol ------------------------------------------------------------------

    def reserve(self, reservation_id: str, charges: Sequence[Charge], ttl: float) -> Refusal | None:
        check_id(reservation_id)
        merged = merge_charges(charges)
        ttl = check_ttl(ttl)
        if self._relearn:
            self._reseed()
        keys: list[str] = []
        args: list[Any] = [self._now_arg(), reservation_id, max(1, int(ttl * 1000)),
                           int(ttl * 1000) + _RESERVATION_GC_MS]
        for c in merged:
            keys.extend(self._bkeys(c.bucket))
            limit = "" if c.limit is None else c.limit
            args += [c.bucket, c.amount, limit, _bucket_expiry(c.expires_at)]
        keys.append(f"{self._prefix}r:{reservation_id}")
        args.append(self._marker if self._seeder is not None else "")
        result = self._run("reserve", self._reserve, keys, args, may_fail_open=True)
        if result is not None and result[0] == "unseeded":
            _log.warning("Redis ledger at %s has no seeded spend (restarted?); relearning it from the log",
                         self._where)
            self._reseed()
            result = self._run("reserve", self._reserve, keys, args, may_fail_open=True)
            if result is not None and result[0] == "unseeded":
                raise LedgerError(f"Redis ledger at {self._where} lost its state again while being re-seeded")
        if result is None or result[0] == "ok":
            return None
        if result[0] == "dup":
            raise LedgerError(f"Reservation {reservation_id!r} is already in flight")
        c = merged[int(result[1]) - 1]
        assert c.limit is not None  # only limited charges are refused
        return Refusal(c.bucket, int(result[2]), int(result[3]), c.limit, c.amount)

    def settle(
        self, reservation_id: str | None, charges: Sequence[Charge]
    ) -> Mapping[str, BucketState]:
        merged = merge_charges(charges)
        keys: list[str] = []
        args: list[Any] = [self._now_arg(), reservation_id or "", self._prefix]
        for c in merged:
            keys.extend(self._bkeys(c.bucket))
            args += [c.amount, _bucket_expiry(c.expires_at)]
        keys.append(f"{self._prefix}r:{reservation_id or ''}")
        result = self._run("settle", self._settle, keys, args, may_fail_open=True)
        if result is None:
            return {}
        return {
            c.bucket: BucketState(int(result[2 * i]), int(result[2 * i + 1]))
            for i, c in enumerate(merged)
        }

    def renew(self, reservation_id: str, ttl: float) -> bool:
        check_id(reservation_id)
        ttl = check_ttl(ttl)
        ms = max(1, int(ttl * 1000))
        result = self._run(
            "renew",
            self._renew,
            [f"{self._prefix}r:{reservation_id}"],
            [self._now_arg(), reservation_id, ms, _RESERVATION_GC_MS, self._prefix],
            may_fail_open=True,
        )
        # Failing open, nothing is reserved in Redis: say renewed, as reserve said accepted.
        return result is None or bool(result)

    def release(self, reservation_id: str) -> None:
        self._run(
            "release",
            self._release,
            [f"{self._prefix}r:{reservation_id}"],
            [reservation_id, self._prefix],
            may_fail_open=True,
        )

    def snapshot(self, buckets: Sequence[str]) -> dict[str, BucketState]:
        names = list(dict.fromkeys(buckets))
        if not names:
            return {}
        keys = [k for b in names for k in self._bkeys(b)]
        result = self._run("snapshot", self._snapshot, keys, [self._now_arg()], may_fail_open=False)
        return {
            b: BucketState(int(result[2 * i]), int(result[2 * i + 1])) for i, b in enumerate(names)
        }

    @property
    def _marker(self) -> str:
        return f"{self._prefix}seeded"

    def seed(self, spent: Mapping[str, int], expires_at: Mapping[str, float]) -> None:
        items = seed_items(spent, expires_at)
        if not items and self._seeder is None:
            return
        keys = [self._bkeys(b)[0] for b, _, _ in items]
        args: list[Any] = [x for _, v, exp in items for x in (v, _bucket_expiry(exp))]
        args += [self._marker, _SEED_MARKER_TTL]
        self._run("seed", self._seed, keys, args, may_fail_open=False)

    def claim(self, key: str, expires_at: float) -> bool:
        result = self._run(
            "claim",
            self._claim,
            [f"{self._prefix}c:{key}"],
            [self._now_arg(), math.ceil(expires_at * 1000)],
            may_fail_open=False,
        )
        return bool(result)

    def close(self) -> None:
        self._closed = True
        self._client.close()
