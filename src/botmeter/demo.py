"""``botmeter demo``: a simulated SMS chatbot that fills a store through the public ``Meter`` API.

dadacat is a cat persona on a Twilio number with LLMs behind it. Its users text from a few
countries and time zones, with a daily and a weekly rhythm, a few heavy users and a long tail;
new users keep joining and some leave. Each turn is an inbound SMS, an LLM call (several real
models, prompt caching, a reasoning model now and then), sometimes a weather, search or image API
call, and a reply SMS, with timings for each stage. Errors come as a low background plus incidents:
an OpenAI rate-limit burst, timeout clusters, carrier delivery failures, a revoked API key.

Every event goes through ``track_*`` with ``ts=`` and ``event_id=``, so the real path (validation,
buffer, writer, pricing, error categorising, user hashing, store) does the work.

Determinism and re-runs: the simulated world is a function of (seed, users, days) laid on the
calendar, not on the run. Each user-day draws from its own ``random.Random`` seeded by the world,
the user and the UTC day, incidents recur on calendar days, and each event's id names the same
things. A second run, even with a later ``end``, recreates identical events for the days already
stored, and the store skips them: re-running never doubles the data.
"""

from __future__ import annotations

import builtins
import math
import random
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .collect.meter import RecordingMeter
from .exceptions import InputError
from .store import open_store

__all__ = ["ADMIN_PHONES", "NEXT_STEP", "DemoResult", "print_summary", "run_demo", "stored_totals"]

DAY = 86_400.0
NEXT_STEP = "Next: [bold]botmeter status --store {store}[/] to see what is stored."
ADMIN_PHONES = ("+14155550100", "+14155550199")  # the bot's operators (fictional 555-01xx numbers)

# -- the world: users -------------------------------------------------------------------------

# How long users stay, as (share, mean days) of an exponential mixture: many try the bot for a day
# or two, some use it for weeks, a core for months.
_LIFETIMES = ((0.35, 2.5), (0.35, 25.0), (0.30, 150.0))
_MAX_LIFE_DAYS = 365

# (country, share, calling code, area/prefix codes, UTC offsets in hours, national digits after prefix)
_COUNTRIES: tuple[tuple[str, float, str, tuple[str, ...], tuple[float, ...], int], ...] = (
    ("US", 0.70, "1", ("212", "312", "415", "512", "206", "303", "617", "305", "404"), (-5, -6, -7, -8), 7),
    ("CA", 0.08, "1", ("416", "604", "514", "403", "613"), (-5, -8, -5, -7, -5), 7),
    ("GB", 0.08, "44", ("7700", "7911", "7400", "7825"), (0,), 6),
    ("IN", 0.06, "91", ("98", "97", "99", "90"), (5.5,), 8),
    ("MX", 0.05, "52", ("55", "33", "81"), (-6,), 8),
    ("DE", 0.03, "49", ("151", "160", "170", "176"), (1,), 8),
)

# Relative chance of a message by local hour: quiet at night, a midday bump, an evening peak.
_DIURNAL = (
    0.25, 0.12, 0.06, 0.04, 0.04, 0.06, 0.15, 0.45, 0.70, 0.80, 0.85, 0.95,
    1.10, 1.15, 0.95, 0.85, 0.85, 0.95, 1.10, 1.25, 1.35, 1.25, 0.95, 0.55,
)  # fmt: skip
_WEEKLY = (1.0, 0.97, 1.0, 1.0, 1.05, 1.3, 1.2)  # Monday..Sunday: a toy gets more use on weekends
_WEEKEND_HOURS = (0.9, 1.2, 1.2, 1.0, 1.0, 1.0, 0.7, 0.45, 0.5, 0.75)  # lie-ins, late nights: hours 0-9


@dataclass(slots=True)
class _User:
    key: str  # stable within the world: join day and rank
    phone: str
    tz: float  # UTC offset, hours
    joined: float
    leaves: float
    rate: float  # mean sessions on an active day
    arm: str  # "openai" or "anthropic": the model A/B test the bot runs
    spanish: bool


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:  # Knuth's loop is O(lam) and exp(-lam) underflows: the normal is close enough
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _expected_life_days() -> float:
    return sum(share * mean * (1 - math.exp(-_MAX_LIFE_DAYS / mean)) for share, mean in _LIFETIMES)


def _phone(rng: random.Random, country: tuple) -> str:
    _, _, code, prefixes, _, digits = country
    prefix = rng.choice(prefixes)
    if code == "1":  # NANP: area code + 555 exchange, a range kept for fiction
        return f"+1{prefix}555{rng.randrange(10_000):04d}"
    return f"+{code}{prefix}{rng.randrange(10**digits):0{digits}d}"


def _new_user(world: str, day: int, rank: int) -> _User:
    rng = random.Random(f"{world}:user:{day}:{rank}")
    country = rng.choices(_COUNTRIES, weights=[c[1] for c in _COUNTRIES])[0]
    tz = rng.choice(country[4])
    local_hour = rng.choices(range(24), weights=_DIURNAL)[0] + rng.random()
    joined = day * DAY + (local_hour - tz) * 3600
    u = rng.random()
    mean = _LIFETIMES[-1][1]
    for share, days in _LIFETIMES:
        if u < share:
            mean = days
            break
        u -= share
    life = min(rng.expovariate(1 / mean), _MAX_LIFE_DAYS)
    return _User(
        key=f"{day}.{rank}",
        phone=_phone(rng, country),
        tz=tz,
        joined=joined,
        leaves=joined + life * DAY,
        rate=min(rng.lognormvariate(math.log(0.75), 0.95), 14.0),  # a long tail and a few heavy users
        arm="anthropic" if rng.random() < 0.15 else "openai",
        spanish=country[0] == "MX" and rng.random() < 0.6,
    )


def _population(world: str, users: int, days: int, lo: float, hi: float) -> list[_User]:
    """Users whose stay overlaps [lo, hi): joins are a daily Poisson process on the calendar."""
    rate = users / (days + _expected_life_days())  # joins per day that keep about `users` in a window
    found = []
    for day in range(math.floor(lo / DAY) - _MAX_LIFE_DAYS - 1, math.floor(hi / DAY) + 1):
        joins = _poisson(random.Random(f"{world}:joins:{day}"), rate)
        for rank in range(joins):
            user = _new_user(world, day, rank)
            if user.joined < hi and user.leaves > lo:
                found.append(user)
    return found


_WEIGHTS: dict[tuple[float, int], list[float]] = {}


def _hour_weights(tz: float, day: int) -> list[float]:
    """Chance of a session in each UTC hour of ``day`` for a user at UTC offset ``tz``."""
    key = (tz, day % 7)
    weights = _WEIGHTS.get(key)
    if weights is None:
        weights = []
        for hour in range(24):
            local = day * 24 + hour + tz
            local_hour = int(local % 24)
            weekday = (math.floor(local / 24) + 3) % 7  # 1970-01-01 was a Thursday
            w = _DIURNAL[local_hour] * _WEEKLY[weekday]
            if weekday >= 5 and local_hour < len(_WEEKEND_HOURS):
                w *= _WEEKEND_HOURS[local_hour]
            weights.append(w)
        _WEIGHTS[key] = weights
    return weights


_DIURNAL_MEAN = sum(_DIURNAL) / 24

# -- the world: incidents ---------------------------------------------------------------------

# kind -> (every how many days, UTC start hours range, duration hours range, failure probability)
_INCIDENTS = {
    "rate_limit": (11, (17.5, 21.0), (1.5, 3.0), 0.45),  # an OpenAI rate-limit burst, US afternoon
    "timeout": (9, (0.0, 22.0), (0.5, 2.0), 0.3),  # the provider is slow: client timeouts
    "carrier": (13, (12.0, 20.0), (2.0, 5.0), 0.4),  # one country's carriers drop messages
    "auth": (23, (15.0, 20.0), (0.6, 1.4), 1.0),  # a rotated API key that was not deployed
}


@dataclass(frozen=True, slots=True)
class _Incident:
    kind: str
    start: float
    end: float
    p: float
    country: str | None = None


def _incidents(seed: int, day: int) -> tuple[_Incident, ...]:
    found = []
    for kind, (every, starts, hours, p) in _INCIDENTS.items():
        phase = random.Random(f"{seed}:phase:{kind}").randrange(every)
        if (day + phase) % every:
            continue
        rng = random.Random(f"{seed}:incident:{kind}:{day}")
        start = day * DAY + rng.uniform(*starts) * 3600
        country = rng.choice(("+1", "+1", "+44", "+52")) if kind == "carrier" else None
        found.append(_Incident(kind, start, start + rng.uniform(*hours) * 3600, p, country))
    return tuple(found)


# -- errors shaped like the client libraries' (the attributes botmeter reads; no imports) -------


class _ClientError(Exception):
    def __init__(self, message: str, *, status_code: int | None = None, body: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.body = body


class RateLimitError(_ClientError):
    pass


class APITimeoutError(_ClientError):
    pass


class AuthenticationError(_ClientError):
    pass


class BadRequestError(_ClientError):
    pass


class InternalServerError(_ClientError):
    pass


class OverloadedError(_ClientError):
    pass


class APIConnectionError(_ClientError):
    pass


def _rate_limit(model: str, rng: random.Random) -> RateLimitError:
    msg = (
        f"Rate limit reached for {model} in organization org-Dd4c4tQx9k2LmN on requests per min (RPM): "
        f"Limit 500, Used 500, Requested 1. Please try again in {rng.randrange(80, 900)}ms."
    )
    return RateLimitError(
        msg, status_code=429, body={"message": msg, "type": "requests", "code": "rate_limit_exceeded"}
    )


def _llm_failure(kind: str, provider: str, model: str, rng: random.Random) -> _ClientError:
    if kind == "rate_limit":
        return _rate_limit(model, rng)
    if kind == "timeout":
        return APITimeoutError("Request timed out.")
    if kind == "auth":
        msg = "Incorrect API key provided: sk-proj-****************************Xq2M."
        return AuthenticationError(msg, status_code=401, body={"message": msg, "code": "invalid_api_key"})
    if kind == "network":
        return APIConnectionError("Connection error.")
    if provider == "anthropic":
        return OverloadedError(
            "Overloaded",
            status_code=529,
            body={"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        )
    msg = "The server had an error while processing your request. Sorry about that!"
    return InternalServerError(msg, status_code=500, body={"message": msg, "type": "server_error"})


def _as_bot_code(fn: Callable) -> Callable:
    # botmeter counts its own files as library code when it looks for the frame that raised, so the
    # bot's handlers below are re-homed under the bot's module name, where a real bot has them.
    code = fn.__code__.replace(co_filename="<dadacat/handlers.py>")
    return types.FunctionType(code, {"__name__": "dadacat.handlers", "__builtins__": builtins}, fn.__name__)


@_as_bot_code
def lookup_reminder(reminders: dict, key: str) -> str:
    return reminders[key]


@_as_bot_code
def format_forecast(report: dict) -> str:
    return "{:.0f}°F".format(report["temp"])


# -- message texts ----------------------------------------------------------------------------


def _lines(block: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in block.strip().splitlines() if line.strip())


def _words(text: str) -> tuple[str, ...]:
    return tuple(word.strip() for word in text.split(","))


_CITIES = _words(
    "Boston, Austin, Seattle, Toronto, London, Mumbai, Chicago, Denver, Vancouver, Monterrey, Berlin"
)
_TOPICS = _words(
    "cats, the moon, pizza, dinosaurs, taxes, coffee, space, robots, my boss, mondays, birds, boxes, socks"
)
_THINGS = _words("nap spot, snack, color, song, movie, planet, word, toy")
_TASKS = _words(
    "call mom, feed the cat, take my meds, buy milk, pay rent, water the plants, stretch, email Sam"
)
_CONCEPTS = _words(
    "gravity, inflation, black holes, the internet, photosynthesis, compound interest, jazz, tides"
)
_CONDITIONS = _words("sunny, cloudy, rainy, windy, foggy, snowing a little, humid")
_USER_EMOJI = (" 😂", " 🙏", " ❤️", " 🐱", " lol", "??", " pls", "!!")

_ASK: dict[str, tuple[str, ...]] = {
    "hello": _lines("""
        hi dadacat
        hey kitty
        hello?
        hi! a friend told me about you
        who is this
    """),
    "chat": _lines("""
        good morning cat
        are you a real cat?
        what are you doing
        i'm bored
        tell me something weird
        do you like {topic}?
        what's your favorite {thing}?
        i had a long day
        do cats dream
        what do you think about {topic}
        say something nice
        ok
        lol
        why
        tell me more
    """),
    "joke": _lines("""
        tell me a joke about {topic}
        make me laugh
        another one
        a joke pls
    """),
    "question": _lines("""
        why do birds sing in the morning?
        what is {concept}?
        how do i remember to {task}?
        explain {concept} like i'm five
        is {topic} good for you?
        how far is the moon
        what should i cook tonight? i have eggs, rice and a sad onion
    """),
    "puzzle": _lines("""
        what's {a} times {b}?
        if 3 cats catch 3 mice in 3 minutes, how many cats catch 100 mice in 100 minutes?
        is {a} a prime number
        riddle me this: what has keys but no locks?
        a train leaves {city} at {h}pm going 60mph, when does it reach {city2}, 180 miles away?
    """),
    "weather": _lines("""
        weather in {city}?
        is it going to rain in {city} tomorrow
        do i need a jacket today
        how hot is it in {city}
    """),
    "search": _lines("""
        who won the game last night
        news about {topic}
        look up the best {thing} for cats
        when does the {city} farmers market open
    """),
    "image": _lines("""
        draw me a cat in space
        send a picture of a {topic} cat
        draw yourself
        make a meme about {topic}
    """),
    "reminder": _lines("""
        remind me to {task} at {h}pm
        remind me to {task} tomorrow
        what are my reminders
        cancel my reminder to {task}
    """),
}
_ASK_ES = _lines("""
    hola gato
    ¿qué estás haciendo?
    cuéntame un chiste
    ¿cómo está el clima en Monterrey?
    gracias gatito
    ¿te gusta la pizza?
    jaja
""")
_INTENTS = ("chat", "joke", "question", "puzzle", "weather", "search", "image", "reminder")
_INTENT_WEIGHTS = (42, 12, 16, 4, 7, 5, 4, 6)

_OPENERS = _words("Meow., Mrrp!, Purr..., *stretches*, Hmph., *blinks slowly*, Mew?, *yawns*, Oh. It's you.")
_BODY = _lines("""
    I was napping, but fine.
    Cats invented {topic}, everyone knows this.
    The answer is simple: more naps.
    I asked the moon and it said {topic}.
    {topic} is overrated. Boxes are not.
    Honestly? I knocked it off the table.
    Here is what I know about {topic}: it is warm and I want to sit on it.
    My whiskers say yes, my tail says maybe.
    I would help, but there is a sunbeam.
    Humans worry about {concept}. Cats worry about dinner.
    Try turning it off and on again, then pet me.
    That reminds me of the time I sat on a keyboard and sent 400 emails.
    You may scratch behind my ears now.
    Fun fact: I have nine lives and I spent two of them on {topic}.
    Let me consult the ancient scrolls. *chews them*
    The short version is {concept}, the long version involves a lot of yarn.
    I have thoughts. They are about tuna.
""")
_CLOSERS = _words(
    "Now feed me., That is all., Bring snacks., Purr., Ask me again after my nap., You're welcome."
)
_REPLY_EMOJI = ("😺", "🐟", "😼", "🐾", "✨", "😹", "🙀", "💤", "🧶")
_APOLOGY = "Mrrp... my brain is napping. Try again in a minute? 😿"
_RESET_REPLY = "Memory wiped. Who are you again? 😼"


def _fill(template: str, rng: random.Random) -> str:
    if "{" not in template:
        return template
    return template.format(
        topic=rng.choice(_TOPICS),
        thing=rng.choice(_THINGS),
        task=rng.choice(_TASKS),
        concept=rng.choice(_CONCEPTS),
        city=rng.choice(_CITIES),
        city2=rng.choice(_CITIES),
        a=rng.randrange(3, 999),
        b=rng.randrange(3, 99),
        h=rng.randrange(1, 12),
    )


def _reply(rng: random.Random, intent: str) -> str:
    if intent == "weather":
        text = f"{rng.choice(_CITIES)}: {rng.randrange(28, 98)}°F and {rng.choice(_CONDITIONS)}. "
        return text + _fill(rng.choice(_BODY), rng)  # "°" is not GSM-7: a UCS-2 reply
    if intent == "puzzle":
        return f"{rng.randrange(2, 9999)}. Obviously. {rng.choice(_CLOSERS)}"
    if intent == "image":
        return "Here is your masterpiece: https://img.dadacat.example/" + f"{rng.getrandbits(40):010x}.png"
    parts = [rng.choice(_OPENERS)]
    sentences = min(12, 1 + int(rng.lognormvariate(0.1, 0.85)))
    parts.extend(_fill(rng.choice(_BODY), rng) for _ in range(sentences))
    if rng.random() < 0.5:
        parts.append(rng.choice(_CLOSERS))
    text = " ".join(parts)
    if rng.random() < 0.22:
        text += " " + rng.choice(_REPLY_EMOJI)
    return text


# -- the simulation ---------------------------------------------------------------------------

# provider, model, base latency ms, ms per output token
_MODELS: dict[str, tuple[str, str, float, float]] = {
    "mini": ("openai", "gpt-4o-mini", 350.0, 9.0),
    "big": ("openai", "gpt-4o", 550.0, 14.0),
    "reasoning": ("openai", "o4-mini", 900.0, 6.0),
    "haiku": ("anthropic", "claude-haiku-4-5", 450.0, 8.0),
    "sonnet": ("anthropic", "claude-sonnet-4-5", 900.0, 16.0),
    "finetune": ("openai", "ft:gpt-4o-mini-2024-07-18:dadacat:purr-v2:9xQ2bLm1", 400.0, 9.0),
    "local": ("ollama", "catnip-7b-q4", 800.0, 35.0),
}
_SYSTEM_TOKENS = {
    "openai": 520,
    "anthropic": 4_300,
    "ollama": 520,
}  # the anthropic arm sends tools + examples
_TOOL_TOKENS = {"weather": 180, "search": 850, "image": 60, "reminder": 40}
# (provider, name, cost per call USD, median latency ms)
_APIS = {
    "weather": ("openweathermap", "onecall", 0.0015, 180.0),
    "search": ("serpapi", "google_search", 0.015, 750.0),
    "image": ("openai", "images.generate", 0.04, 9_000.0),
}
_DELIVERY = (
    (30003, "Unreachable destination handset"),
    (30006, "Landline or unreachable carrier"),
    (30008, "Unknown error"),
    (30007, "Message filtered by carrier"),
)


class _Sim:
    """Emits one world's events for the window [lo, hi) through a Meter."""

    def __init__(self, meter: RecordingMeter, world: str, seed: int, lo: float, hi: float) -> None:
        self.meter = meter
        self.world = world
        self.seed = seed
        self.lo = lo
        self.hi = hi
        self.tracked = 0
        self.prefix = ""
        self.k = 0
        self.incidents: tuple[_Incident, ...] = ()
        self.sms, self.llm, self.api = meter.track_sms, meter.track_llm_call, meter.track_api_call
        self.err, self.timing, self.activity = meter.track_error, meter.track_timing, meter.track_activity

    def emit(self, call: Callable[..., None], ts: float, *args: Any, **fields: Any) -> None:
        # Ids count every event of the user-day, emitted or not, so they do not depend on the window.
        self.k += 1
        if self.lo <= ts < self.hi:
            call(*args, ts=ts, event_id=f"{self.prefix}{self.k}", channel="sms", **fields)
            self.tracked += 1

    def incident(self, kind: str, ts: float) -> _Incident | None:
        for inc in self.incidents:
            if inc.kind == kind and inc.start <= ts < inc.end:
                return inc
        return None

    # -- a day --------------------------------------------------------------------------------

    def day(self, day: int, population: list[_User]) -> None:
        self.incidents = _incidents(self.seed, day - 1) + _incidents(self.seed, day)
        start, end = day * DAY, (day + 1) * DAY
        for user in population:
            if user.joined < end and user.leaves > start:
                self.user_day(user, day)
        for i, phone in enumerate(ADMIN_PHONES):
            self.admin_day(i, phone, day)

    def user_day(self, user: _User, day: int) -> None:
        rng = random.Random(f"{self.world}:{user.key}:{day}")
        self.prefix, self.k = f"demo:{self.world}:{user.key}:{day}:", 0
        start = day * DAY
        weights = _hour_weights(user.tz, day)
        novelty = 1.8 if start - user.joined < 2 * DAY else 1.0  # new users play with it more
        expected = user.rate * novelty * sum(weights) / 24 / _DIURNAL_MEAN
        hours = rng.choices(range(24), weights=weights, k=_poisson(rng, expected))
        starts = sorted(start + (h + rng.random()) * 3600 for h in hours)
        first = start <= user.joined < start + DAY
        if first:
            starts = [user.joined, *(t for t in starts if t > user.joined)]
        free_at = 0.0
        for n, t in enumerate(starts):
            if t >= user.leaves:
                break
            free_at = self.session(rng, user, max(t, free_at + 60), hello=first and n == 0)

    def session(self, rng: random.Random, user: _User, t: float, *, hello: bool) -> float:
        """One conversation (a session after an idle gap starts a new one). Returns when it ended."""
        turns = min(20, 1 + int(rng.lognormvariate(0.65, 0.85)))
        conv = f"c_{rng.getrandbits(48):012x}"
        history = 0
        cache: tuple[str, int, float] | None = None  # (model, prompt tokens, ts) of the last call
        for turn in range(turns):
            if turn >= 2 and rng.random() < 0.04:
                self.emit(
                    self.sms,
                    t,
                    direction="in",
                    text=rng.choice(("reset", "start over", "/reset")),
                    user=user.phone,
                    conversation=conv,
                )
                self.emit(self.activity, t + 0.01, "reset", user=user.phone, conversation=conv)
                conv, history, cache = f"c_{rng.getrandbits(48):012x}", 0, None
                t = self.reply(rng, user.phone, conv, t, _RESET_REPLY, 40.0)
                t += rng.lognormvariate(math.log(20), 0.8)
                continue
            intent = "hello" if hello and turn == 0 else rng.choices(_INTENTS, weights=_INTENT_WEIGHTS)[0]
            if user.spanish and rng.random() < 0.7:
                text = rng.choice(_ASK_ES)
            else:
                text = _fill(rng.choice(_ASK[intent]), rng)
                if rng.random() < 0.08:
                    text += rng.choice(_USER_EMOJI)
            self.emit(self.sms, t, direction="in", text=text, user=user.phone, conversation=conv)
            t, history, cache = self.turn(rng, user, conv, t, intent, text, history, cache)
            # the user reads and types: seconds to minutes, now and then a long pause
            gap = rng.lognormvariate(math.log(35), 0.9)
            if rng.random() < 0.05:
                gap += rng.uniform(300, 1500)
            t += min(gap, 1800)
        return t

    def turn(
        self,
        rng: random.Random,
        user: _User,
        conv: str,
        t: float,
        intent: str,
        text: str,
        history: int,
        cache: tuple[str, int, float] | None,
    ) -> tuple[float, int, tuple[str, int, float] | None]:
        who = {"user": user.phone, "conversation": conv}
        elapsed = rng.uniform(15, 60)  # ms since the inbound SMS: webhook, history lookup
        failed = False
        if intent in ("image", "reminder"):
            self.emit(self.activity, t + elapsed / 1000, f"feature:{intent}", **who)
        if intent == "reminder" and rng.random() < 0.015:
            try:  # a reminder id that a cancelled reminder left behind
                lookup_reminder({}, f"r{rng.randrange(10_000)}")
            except KeyError as exc:
                self.emit(self.err, t + elapsed / 1000, exc, stage="reminder", **who)
        api = _APIS.get(intent)
        if api is not None:
            provider, name, cost, median = api
            ms = rng.lognormvariate(math.log(median), 0.4)
            elapsed += ms
            if intent == "image" and rng.random() < 0.04:
                msg = "Your request was rejected as a result of our safety system."
                exc = BadRequestError(
                    msg, status_code=400, body={"message": msg, "code": "content_policy_violation"}
                )
                self.emit(self.err, t + elapsed / 1000, exc, provider=provider, stage="image", **who)
                failed = True
            elif intent != "image" and rng.random() < 0.006:
                self.emit(
                    self.err,
                    t + elapsed / 1000,
                    "HTTPError",
                    status_code=503,
                    provider=provider,
                    stage=intent,
                    message=f"503 Server Error: Service Unavailable for url: https://api.{provider}.com/v1/{name}",
                    **who,
                )
            else:
                self.emit(
                    self.api,
                    t + elapsed / 1000,
                    provider=provider,
                    name=name,
                    cost_usd=cost,
                    latency_ms=ms,
                    **who,
                )
            if intent == "weather" and rng.random() < 0.01:
                try:  # the weather API answered without a temperature
                    format_forecast({"temp": None})
                except TypeError as exc:
                    self.emit(self.err, t + elapsed / 1000, exc, stage="weather", **who)

        reply = _reply(rng, intent) if not failed else "Hiss. I'm not allowed to draw that one. 🙀"
        llm_ms, answered, cache = self.llm_call(
            rng, user, conv, t, elapsed, intent, text, reply, history, cache
        )
        elapsed += llm_ms
        self.emit(self.timing, t + elapsed / 1000, "llm", llm_ms, **who)
        if answered is None:
            reply = _APOLOGY
        else:
            history += answered
        sent = self.reply(rng, user.phone, conv, t, reply, elapsed, failed=answered is None)
        return sent, history, cache

    def llm_call(
        self,
        rng: random.Random,
        user: _User,
        conv: str,
        t: float,
        elapsed: float,
        intent: str,
        text: str,
        reply: str,
        history: int,
        cache: tuple[str, int, float] | None,
    ) -> tuple[float, int | None, tuple[str, int, float] | None]:
        """The LLM call with retries: (ms spent, tokens the turn adds to history or None, cache state)."""
        who = {"user": user.phone, "conversation": conv}
        u = rng.random()
        if u < 0.006:
            route = "finetune"
        elif u < 0.009:
            route = "local"
        elif intent == "puzzle":
            route = "reasoning"
        elif intent in ("question", "search") and rng.random() < 0.3:
            route = "sonnet" if user.arm == "anthropic" else "big"
        else:
            route = "haiku" if user.arm == "anthropic" else "mini"
        provider, model, base_ms, per_token = _MODELS[route]
        system = _SYSTEM_TOKENS[provider]
        user_tokens = len(text) // 4 + 2
        prompt = system + history + user_tokens + _TOOL_TOKENS.get(intent, 0)
        reply_tokens = len(reply) // 4 + 2
        reasoning = min(int(rng.lognormvariate(math.log(700), 0.7)), 12_000) if route == "reasoning" else 0
        spent = 0.0
        for attempt in range(3):
            now = t + (elapsed + spent) / 1000
            kind = self.llm_failure(rng, provider, now, user)
            if kind is None:
                break
            exc = _llm_failure(kind, provider, model, rng)
            if kind == "timeout":
                spent += 20_000  # the bot's client timeout
            else:
                spent += rng.lognormvariate(math.log(150), 0.4)
            self.emit(self.err, t + (elapsed + spent) / 1000, exc, provider=provider, stage="llm", **who)
            if kind == "auth" or attempt == 2 or (kind == "timeout" and attempt == 1):
                return spent, None, cache
            spent += (0.5 * 2**attempt + rng.random()) * 1000  # back off
        cached = write = 0
        now = t + (elapsed + spent) / 1000
        warm = cache is not None and cache[0] == model and now - cache[2] < 300
        if provider == "openai":
            # automatic prefix caching: 1024+ tokens, in steps of 128, best effort
            if warm and cache[1] >= 1024 and rng.random() < 0.85:
                cached = cache[1] // 128 * 128
        elif provider == "anthropic":
            # cache breakpoints after the tools and after the last message; the shared system part stays
            # warm while traffic lasts
            cached = cache[1] if warm else (system if rng.random() < 0.9 else 0)
            cached = min(cached, prompt)
            write = prompt - cached
        out = reply_tokens + reasoning
        ms = (base_ms + per_token * out + 0.02 * prompt) * rng.lognormvariate(0, 0.3)
        if rng.random() < 0.015:
            ms += rng.uniform(3_000, 12_000)  # a stall now and then
        if self.incident("timeout", now) and provider == "openai":
            ms *= 3  # the slow hour: calls that finish are slow too
        spent += ms
        self.emit(
            self.llm,
            t + (elapsed + spent) / 1000,
            provider=provider,
            model=model,
            input_tokens=prompt,
            output_tokens=out,
            cached_tokens=cached,
            reasoning_tokens=reasoning,
            cache_write_tokens=write,
            latency_ms=round(ms, 1),
            stage="reply",
            **who,
        )
        # the tool result stays in the conversation, so this prompt is a prefix of the next one
        return spent, user_tokens + _TOOL_TOKENS.get(intent, 0) + reply_tokens, (model, prompt, now)

    def llm_failure(self, rng: random.Random, provider: str, ts: float, user: _User) -> str | None:
        u = rng.random()
        if provider == "openai":
            if self.incident("auth", ts):
                return "auth"
            inc = self.incident("rate_limit", ts)
            if inc and u < inc.p:
                return "rate_limit"
            inc = self.incident("timeout", ts)
            if inc and u < inc.p:
                return "timeout"
        if u < 0.0015:
            return "rate_limit" if provider == "openai" else "upstream"
        if u < 0.0035:
            return "timeout"
        if u < 0.0045 or (provider == "anthropic" and u < 0.008):
            return "upstream"
        if u < 0.005:
            return "network"
        return None

    def reply(
        self,
        rng: random.Random,
        phone: str,
        conv: str,
        t: float,
        text: str,
        elapsed: float,
        failed: bool = False,
    ) -> float:
        """The outbound SMS and the stage timings; returns when it was sent. An apology instead of an
        answer is marked failed (properties {"failed": true}): the user got no reply to the message."""
        who = {"user": phone, "conversation": conv}
        send_ms = rng.lognormvariate(math.log(220), 0.35)
        if rng.random() < 0.005:
            send_ms += rng.uniform(2_000, 6_000)
        elapsed += send_ms
        sent = t + elapsed / 1000
        self.emit(self.timing, sent, "sms_send", send_ms, provider="twilio", **who)
        marked = {"properties": {"failed": True}} if failed else {}
        self.emit(self.sms, sent, direction="out", text=text, **who, **marked)
        self.emit(self.timing, sent, "reply", elapsed, **who)
        inc = self.incident("carrier", sent)
        p = inc.p if inc and phone.startswith(inc.country or "") else 0.003
        if rng.random() < p:
            code, msg = _DELIVERY[0 if inc and rng.random() < 0.7 else rng.randrange(len(_DELIVERY))]
            self.emit(
                self.err,
                sent + rng.uniform(2, 25),
                "TwilioRestException",
                code=code,
                status_code=400,
                provider="twilio",
                message=msg,
                stage="sms_delivery",
                **who,
            )
        return sent

    def admin_day(self, i: int, phone: str, day: int) -> None:
        rng = random.Random(f"{self.world}:admin{i}:{day}")
        self.prefix, self.k = f"demo:{self.world}:admin{i}:{day}:", 0
        conv = f"c_{rng.getrandbits(48):012x}"
        commands = ["status"] * _poisson(rng, 1.5) + ["costs"] * _poisson(rng, 0.6)
        times = sorted(day * DAY + rng.uniform(13, 23) * 3600 for _ in commands)  # US working hours
        for command, t in zip(rng.sample(commands, len(commands)), times, strict=True):
            self.emit(self.sms, t, direction="in", text=f"/{command}", user=phone, conversation=conv)
            self.emit(self.activity, t + 0.02, f"admin:{command}", user=phone, conversation=conv)
            if command == "status":
                text = (
                    f"dadacat ok | up {rng.randrange(1, 40)}d | msgs today {rng.randrange(300, 3000)} | "
                    f"p95 {rng.uniform(1.5, 4):.1f}s | errors {rng.uniform(0.1, 2):.1f}%"
                )
            else:
                text = (
                    f"spend today ${rng.uniform(2, 9):.2f}: llm ${rng.uniform(1, 5):.2f}, "
                    f"sms ${rng.uniform(1, 4):.2f}, apis ${rng.uniform(0, 1):.2f}. "
                    f"month ${rng.uniform(60, 200):.2f}"
                )
            self.reply(rng, phone, conv, t, text, rng.uniform(30, 90))


# -- running and summarising ------------------------------------------------------------------


@dataclass
class DemoResult:
    """What a demo run did and what the store holds for the simulated window."""

    store: str  # the store URL
    path: Path | None  # the store file, when it is one
    events: int  # track calls made in this run
    added: int  # events new to the store (fewer than ``events`` when a run repeats an earlier one)
    seconds: float
    start: datetime
    end: datetime
    spooled: int = 0  # events waiting in the spool because the store was busy (written later)
    dropped: int = 0  # events the meter had to drop (none, unless something went wrong)
    summary: dict[str, Any] = field(default_factory=dict)


def run_demo(
    store: str = "duckdb://botmeter.duckdb",
    *,
    days: int = 30,
    users: int = 300,
    seed: int = 7,
    bot: str = "dadacat",
    end: datetime | None = None,
    progress: bool = True,
    console: Console | None = None,
) -> DemoResult:
    """Simulates ``days`` days of the dadacat SMS bot ending at ``end`` (default: now, UTC) into ``store``.

    The same seed, users and days give the same events, whatever the end, for the days two runs
    share; events already stored are not stored again. A naive ``end`` is taken as UTC.
    """
    if days < 1 or users < 1:
        raise InputError(f"days and users must be >= 1, got days={days!r}, users={users!r}")
    began = time.perf_counter()
    end = datetime.now(UTC) if end is None else end if end.tzinfo else end.replace(tzinfo=UTC)
    end = end.astimezone(UTC)
    start = end - timedelta(days=days)
    lo, hi = start.timestamp(), end.timestamp()
    world = f"{seed}:{users}:{days}"
    target = open_store(store)
    before = target.count()
    meter = RecordingMeter(bot=bot, store=store, enabled=True)
    sim = _Sim(meter, world, seed, lo, hi)
    # Sessions that began the day before the window can spill into it.
    day_range = range(math.floor(lo / DAY) - 1, math.floor(hi / DAY) + 1)
    try:
        population = _population(world, users, days, lo - DAY, hi)
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("days"),
            TimeElapsedColumn(),
            console=console,
            disable=not progress,
            transient=False,
        ) as bar:
            task = bar.add_task(f"Simulating {bot}", total=len(day_range))
            for day in day_range:
                sim.day(day, population)
                bar.update(
                    task,
                    advance=1,
                    description=f"Simulating {bot} {datetime.fromtimestamp(day * DAY, UTC):%b %d}",
                )
                if meter.stats().get("buffered", 0) > min(30_000, meter.config.max_buffer // 2):
                    meter.flush(timeout=120)  # let the writer catch up rather than grow the buffer
            bar.update(task, description=f"Writing {sim.tracked:,} events")
            meter.flush(timeout=300)
    finally:
        meter.close(timeout=300)
    stats = meter.stats()
    path = getattr(target, "path", None)
    result = DemoResult(
        store=store,
        path=Path(path) if path is not None else None,
        events=sim.tracked,
        added=target.count() - before,
        seconds=0.0,
        start=start,
        end=end,
        spooled=stats.get("spool_events", 0),
        dropped=stats.get("dropped", 0),
    )
    result.summary = stored_totals(target, bot, start, end)
    result.seconds = time.perf_counter() - began
    return result


def stored_totals(store: Any, bot: str, start: datetime, end: datetime) -> dict[str, Any]:
    """Totals of ``bot``'s events in [start, end), read back through the reader (read-only)."""
    from .analyse.query import FigureUnavailable
    from .analyse.reader import Reader

    try:
        reader = Reader(store)
        with reader.session():
            inventory = reader.inventory(bot, start=start, end=end)
            kw: dict[str, Any] = {"start": start, "end": end, "interval": None, "filters": {"bot": bot}}

            def total(metric: str, **more: Any) -> Any:
                return reader.query(metric, **kw, **more).total()

            def rows(metric: str, by: str) -> list[dict[str, Any]]:
                return reader.query(metric, by=by, **kw).rows

            messages = {r["direction"]: r["count"] for r in rows("messages", "direction")}
            by_provider = [(r["provider"], r["sum"]) for r in rows("cost_usd", "provider") if r["sum"]]
            by_category = [(r["category"], r["count"]) for r in rows("errors", "category") if r["count"]]
            p95 = total("reply_latency_s", stat="p95")
            out = {
                "events": inventory["events"],
                "cost_usd": _steady(total("cost_usd") or 0.0),
                "cost_by_provider": {
                    p: _steady(c) for p, c in sorted(by_provider, key=lambda pc: (-pc[1], pc[0] or ""))
                },
                "users": total("active_users"),
                "conversations": total("conversations"),
                "messages_in": messages.get("in", 0),
                "messages_out": messages.get("out", 0),
                "errors": total("errors"),
                "errors_by_category": dict(sorted(by_category, key=lambda cn: (-cn[1], cn[0] or ""))),
                "p95_reply_ms": None if p95 is None else p95 * 1000,
                "llm_calls": total("llm_calls"),
                "unpriced_llm_calls": total("unpriced_calls"),
            }
    except FigureUnavailable:  # a store that cannot list its events (CloudWatch): no totals
        return {}
    first, last = inventory["first_event"], inventory["last_event"]
    return {
        **out,
        "start": start,
        "end": end,
        "first_event": None if first is None else first.replace(tzinfo=UTC),
        "last_event": None if last is None else last.replace(tzinfo=UTC),
    }


def _steady(usd: float) -> float:
    # Sums of float costs differ in their last bits with the order they were added in (the rollups
    # of a store filled in two runs, or in one): ten decimals say the same total every time.
    return round(usd, 10)


def print_summary(result: DemoResult, console: Console) -> None:
    """A short table of what the demo stored, where it is, and what to run next."""
    s = result.summary
    title = f"{result.events:,} events in {result.seconds:.1f}s"
    if result.events > result.added:
        title += f" ({result.events - result.added:,} were stored already)"
    table = Table(title=title, show_header=False, title_justify="left", box=None, padding=(0, 2, 0, 0))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    if s:
        days = (s["end"] - s["start"]) / timedelta(days=1)
        table.add_row(
            "Period", f"{s['start']:%Y-%m-%d %H:%M} to {s['end']:%Y-%m-%d %H:%M} UTC ({days:g} days)"
        )
        table.add_row("Users", f"{s['users']:,} [dim]who sent a message")
        table.add_row("Conversations", f"{s['conversations']:,}")
        table.add_row("Messages", f"{s['messages_in']:,} in, {s['messages_out']:,} out")
        providers = ", ".join(f"{p} ${c:,.2f}" for p, c in s["cost_by_provider"].items())
        table.add_row("Cost", f"${s['cost_usd']:,.2f} [dim]{providers}")
        unpriced = (
            f" [dim]{s['unpriced_llm_calls']:,} unpriced (unknown model)" if s["unpriced_llm_calls"] else ""
        )
        table.add_row("LLM calls", f"{s['llm_calls']:,}{unpriced}")
        categories = ", ".join(f"{c} {n}" for c, n in s["errors_by_category"].items())
        table.add_row("Errors", f"{s['errors']:,} [dim]{categories}")
        p95 = s["p95_reply_ms"]
        table.add_row(
            "Reply p95", "-" if p95 is None else f"{p95 / 1000:.2f}s [dim]from inbound SMS to reply sent"
        )
    table.add_row("Store", str(result.path or result.store))
    console.print(table)
    if result.spooled:
        console.print(
            f"[yellow]{result.spooled:,} events wait in the spool (the store was busy); they follow."
        )
    if result.dropped:
        console.print(f"[red]{result.dropped:,} events were dropped.")
    console.print(NEXT_STEP.format(store=result.store))
