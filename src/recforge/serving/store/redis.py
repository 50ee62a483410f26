"""The Redis feature store: the same features as the SQLite backend, in a Redis server.

Keys (under a prefix, default ``recforge:``): a hash ``u:USER`` (``s`` session id, ``e``
session events, ``l`` last active, ``c:TYPE`` counts, ``g:GENRE`` preferences), a list
``r:USER`` (the recent items), the sets ``users`` and ``applied`` (every applied event id),
the hash ``pop`` (per item, the popularity score and its reference time, as
``"SCORE TIME"``) and the string ``settings``.

`apply` is one Lua script (atomic: the event ids and the features change together, or not
at all), computing the same floating-point operations in the same order as
`recforge.serving.store.base.FeatureRules` and storing numbers with 17 significant digits,
so both backends hold the same bits. A read is one pipeline (one round trip). The script
builds its keys from the prefix, so it needs a single Redis node (not a cluster).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from recforge.errors import InputError
from recforge.serving.events import Event
from recforge.serving.store.base import FeatureRules, FeatureStore, UserFeatures, UserState

#: separates genres in the script's arguments; `_UNKNOWN` marks an item without genres known
_SEP, _UNKNOWN = "\x1f", "\x1e"
_APPLY = r"""
local P = ARGV[1]
local alpha, window = tonumber(ARGV[2]), tonumber(ARGV[3])
local gap, half_life = tonumber(ARGV[4]), tonumber(ARGV[5])
local keep = 1 - alpha
local function fmt(x) return string.format('%.17g', x) end
local applied = 0
for i = 6, #ARGV, 7 do
  local user, item, kind = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if redis.call('SADD', P .. 'applied', ARGV[i]) == 1 then
    applied = applied + 1
    local ukey = P .. 'u:' .. user
    redis.call('SADD', P .. 'users', user)
    redis.call('HINCRBY', ukey, 'c:' .. kind, 1)
    if ARGV[i + 5] == '0' then
      local t = tonumber(ARGV[i + 4])
      redis.call('RPUSH', P .. 'r:' .. user, item)
      redis.call('LTRIM', P .. 'r:' .. user, -window, -1)
      local genres = ARGV[i + 6]
      if genres ~= '\30' then
        local has, seen, out = {}, {}, {}
        for g in string.gmatch(genres, '[^\31]+') do has[g] = true end
        local flat = redis.call('HGETALL', ukey)
        for j = 1, #flat, 2 do
          if string.sub(flat[j], 1, 2) == 'g:' then
            local g = string.sub(flat[j], 3)
            seen[g] = true
            local x = 0
            if has[g] then x = 1 end
            out[#out + 1] = flat[j]
            out[#out + 1] = fmt(keep * tonumber(flat[j + 1]) + alpha * x)
          end
        end
        for g in pairs(has) do
          if not seen[g] then
            out[#out + 1] = 'g:' .. g
            out[#out + 1] = fmt(keep * 0 + alpha * 1)
          end
        end
        if #out > 0 then redis.call('HSET', ukey, unpack(out)) end
      end
      local last = redis.call('HGET', ukey, 'l')
      if (not last) or t - tonumber(last) > gap then
        redis.call('HINCRBY', ukey, 's', 1)
        redis.call('HSET', ukey, 'e', 1)
      else
        redis.call('HINCRBY', ukey, 'e', 1)
      end
      if (not last) or t > tonumber(last) then redis.call('HSET', ukey, 'l', fmt(t)) end
      local old = redis.call('HGET', P .. 'pop', item)
      local score, ref = 1, t
      if old then
        local space = string.find(old, ' ', 1, true)
        score, ref = tonumber(string.sub(old, 1, space - 1)), tonumber(string.sub(old, space + 1))
        if t >= ref then
          score = score * 2 ^ (-(t - ref) / half_life) + 1
          ref = t
        else
          score = score + 2 ^ (-(ref - t) / half_life)
        end
      end
      redis.call('HSET', P .. 'pop', item, fmt(score) .. ' ' .. fmt(ref))
    end
  end
end
return applied
"""


def split_url(url: str) -> tuple[str, str]:
    """``redis://host:port/db?prefix=p`` -> (the URL without ``prefix``, the key prefix;
    default ``recforge:``)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [value for key, value in query if key == "prefix"]
    rest = [(key, value) for key, value in query if key != "prefix"]
    if len(prefixes) > 1 or (prefixes and not prefixes[0]):
        raise InputError(f"feature store URL {url!r}: give prefix= once, non-empty")
    return urlunsplit(parts._replace(query=urlencode(rest))), (prefixes or ["recforge:"])[0]


class RedisFeatureStore(FeatureStore):
    """The Redis backend (module docstring) at ``url`` (``redis://...[?prefix=p]``)."""

    def __init__(self, url: str, rules: FeatureRules) -> None:
        import redis

        super().__init__(rules)
        self.url = url
        server_url, self.prefix = split_url(url)
        try:
            self._redis = redis.Redis.from_url(server_url, decode_responses=True)
            self._check_settings()
        except (redis.RedisError, ValueError) as exc:
            raise InputError(f"feature store {url}: {exc}") from None
        self._script = self._redis.register_script(_APPLY)

    def _check_settings(self) -> None:
        mine = json.dumps(self.rules.settings(), sort_keys=True)
        key = self.prefix + "settings"
        #: whether this opening created the store (its prefix held no recforge settings)
        self.created = bool(self._redis.set(key, mine, nx=True))
        theirs = self._redis.get(key)
        if theirs != mine:
            raise InputError(f"was built with settings {theirs}, not {mine} (rebuild it with "
                             "`recforge features rebuild`)")

    def _apply(self, events: list[Event]) -> int:
        rules = self.rules
        args: list[Any] = [self.prefix, repr(rules.alpha), rules.window,
                           repr(rules.session_gap), repr(rules.half_life)]
        for e in events:
            genres = rules.item_genres.get(e.item_id)
            args += [e.event_id, e.user_id, e.item_id, e.event, repr(float(e.timestamp)),
                     "1" if e.event in rules.passive else "0",
                     _UNKNOWN if genres is None else _SEP.join(sorted(genres))]
        return int(self._script(args=args))

    def users(self, user_ids: Sequence[str]) -> list[UserFeatures]:
        pipe = self._redis.pipeline(transaction=True)
        for uid in user_ids:
            pipe.hgetall(f"{self.prefix}u:{uid}")
            pipe.lrange(f"{self.prefix}r:{uid}", 0, -1)
        replies = pipe.execute()
        return [_state(replies[2 * i], replies[2 * i + 1]).features(uid)
                for i, uid in enumerate(user_ids)]

    def _popularity_raw(self, item_ids: Sequence[str]) -> list[tuple[float, float] | None]:
        if not item_ids:
            return []
        return [None if pair is None else _pair(pair)
                for pair in self._redis.hmget(self.prefix + "pop", list(item_ids))]

    def applied_count(self) -> int:
        return int(self._redis.scard(self.prefix + "applied"))

    def snapshot(self) -> dict[str, Any]:
        user_ids = sorted(self._redis.smembers(self.prefix + "users"))
        pipe = self._redis.pipeline(transaction=True)
        pipe.hgetall(self.prefix + "pop")
        pipe.scard(self.prefix + "applied")
        popularity, applied = pipe.execute()
        return {"users": {f.user_id: f.to_dict() for f in self.users(user_ids)},
                "popularity": {item: list(_pair(pair)) for item, pair in popularity.items()},
                "applied": int(applied)}

    def _keys(self) -> list[str]:
        return list(self._redis.scan_iter(match=_glob_escape(self.prefix) + "*", count=1000))

    def is_empty(self) -> bool:
        """Whether the prefix holds nothing but this store's settings."""
        return set(self._keys()) <= {self.prefix + "settings"}

    def clear(self) -> int:
        """Delete every key under this store's prefix (then write the settings again);
        returns how many were deleted."""
        keys = self._keys()
        for start in range(0, len(keys), 1000):
            self._redis.delete(*keys[start:start + 1000])
        self._check_settings()
        return len(keys)

    def close(self) -> None:
        self._redis.close()


def _pair(text: str) -> tuple[float, float]:
    """A popularity value ``"score reference-time"``."""
    score, ref = text.split(" ")
    return float(score), float(ref)


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _state(fields: dict[str, str], recent: list[str]) -> UserState:
    """A user's state from their hash and recent list."""
    state = UserState(recent=list(recent))
    for key, value in fields.items():
        if key.startswith("g:"):
            state.prefs[key[2:]] = float(value)
        elif key.startswith("c:"):
            state.counts[key[2:]] = int(value)
    state.last_active = float(fields["l"]) if "l" in fields else None
    state.session_id = int(fields.get("s", 0))
    state.session_events = int(fields.get("e", 0))
    return state
