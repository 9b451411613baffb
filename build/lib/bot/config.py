"""Settings from the environment, read from `.env` when present; `.env.example` lists them all."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from bot.engine.scheduler import CANDIDATE_UNITS, Limits
from bot.engine.sessions import PRECISIONS, PROVIDERS
from bot.stores.channel_settings import SQLITE_PREFIX, check_database_url


class ConfigError(ValueError):
    """A setting with a value the bot cannot use; the message names the variable."""


def load_dotenv(path: Path = Path(".env")) -> None:
    """Put `KEY=value` lines of `path` into os.environ; variables already set win."""
    if not path.is_file():
        return
    for key, value in read_dotenv(path).items():
        os.environ.setdefault(key, value)


def read_dotenv(path: Path) -> dict[str, str]:
    """The `KEY=value` lines of a .env file (comments and blank lines skipped, quotes removed)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip().removeprefix("export ").strip()
        if not sep or not key.isidentifier():
            raise ConfigError(f"{path}:{number}: expected KEY=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def _int(name: str, default: int, low: int = 0) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < low:
        raise ConfigError(f"{name} must be at least {low}")
    return value


def _candidates(max_batch: int, name: str = "CANDIDATES") -> tuple[int | None, dict[str, int]]:
    """CANDIDATES (or ABOUT_CANDIDATES): a number for every style (`8`), numbers for named
    styles (`songci=8, tang=16`), or both (`12,songci=8`: songci 8, every other style 12);
    unset, each style's own. Each from 1 to MAX_BATCH (a poem's candidate rows are in the
    batch)."""
    raw = os.environ.get(name, "").strip()
    every: int | None = None
    styles: dict[str, int] = {}
    for item in (part.strip() for part in raw.split(",") if part.strip()):
        style, _, number = item.rpartition("=")
        style = style.strip()
        try:
            value = int(number)
        except ValueError:
            raise ConfigError(
                f"{name}: {item!r} is not a whole number or STYLE=NUMBER "
                f"(e.g. {name}=8 or {name}=songci=8,tang=16)"
            ) from None
        if not 1 <= value <= max_batch:
            raise ConfigError(
                f"{name}: {item!r} must be from 1 to MAX_BATCH ({max_batch}): a poem's "
                "rows are in the batch"
            )
        if "=" in item and not style:
            raise ConfigError(f"{name}: {item!r} names no style before its '='")
        if style in styles or (not style and every is not None):
            raise ConfigError(f"{name} sets {style or 'every style'} twice")
        if style:
            styles[style] = value
        else:
            every = value
    return every, styles


def _float(name: str, default: float, low: float = 0.0) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not value >= low:
        raise ConfigError(f"{name} must be at least {low}")
    return value


def _switch(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "on", "true", "yes"):
        return True
    if raw in ("0", "off", "false", "no"):
        return False
    raise ConfigError(f"{name}={raw!r} must be on or off")


def _port(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    port = _int(name, 0, 1)
    if port > 65535:
        raise ConfigError(f"{name} must be a TCP port, 1-65535")
    return port


def _ids(name: str) -> frozenset[int]:
    raw = os.environ.get(name, "")
    try:
        return frozenset(int(part) for part in raw.replace(",", " ").split())
    except ValueError:
        raise ConfigError(f"{name} must be Discord ids separated by commas") from None


RETRAIN_WORKERS = ("local", "queue")


def _shards() -> tuple[int | None, tuple[int, ...] | None]:
    """SHARD_COUNT and SHARD_IDS (this process's shards, default all of them)."""
    count = _int("SHARD_COUNT", 0, 1) or None
    raw = os.environ.get("SHARD_IDS", "").replace(",", " ").split()
    if not raw:
        return count, None
    if count is None:
        raise ConfigError("SHARD_IDS needs SHARD_COUNT")
    try:
        ids = tuple(sorted({int(part) for part in raw}))
    except ValueError:
        raise ConfigError("SHARD_IDS must be shard numbers separated by commas") from None
    if not all(0 <= i < count for i in ids):
        raise ConfigError(f"SHARD_IDS must be between 0 and SHARD_COUNT - 1 ({count - 1})")
    return count, ids


@dataclass(frozen=True)
class Settings:
    discord_token: str = field(default="", repr=False)
    guild_ids: frozenset[int] = frozenset()
    admin_ids: frozenset[int] = frozenset()
    models_dir: Path = Path("models")
    database_url: str = "sqlite:///data/poembot.sqlite3"
    providers: str = "auto"
    precision: str | None = None  # fp32 or int8 for every style; None: each style's own
    ort_threads: int = 0  # onnxruntime's threads for this process (0: one per core)
    gc_seconds: float = 0.5  # the event loop collects garbage this often (0: Python's own way)
    api_base_url: str = ""
    gateway_url: str = ""
    limits: Limits = field(default_factory=Limits)
    default_style: str = "shakespeare"
    default_length: int = 400
    default_temperature: float = 0.8
    # Each line of a form written this many times, the best one kept; None: each style's own
    # (its card's poem.candidates, else DEFAULT_CANDIDATES). `style_candidates` sets it for
    # named styles (CANDIDATES=songci=8,tang=16), over both.
    candidates: int | None = None
    style_candidates: dict[str, int] = field(default_factory=dict)
    candidate_unit: str = "line"  # or "poem": whole poems as candidates
    # The same for a poem about a theme (ABOUT_CANDIDATES, as CANDIDATES): None, each style's
    # own (bot.poems.candidates_for).
    about_candidates: int | None = None
    style_about_candidates: dict[str, int] = field(default_factory=dict)
    # A poem asked with no theme takes one of its style's own (its card's
    # poem.default_themes) where the style names some (bot.poems.theme_for); off: never.
    default_themes: bool = True
    user_cooldown: float = 3.0
    channel_concurrency: int = 4
    stream_edit_seconds: float = 1.0  # a /poem reply is edited at most this often; 0: not at all
    retrain_timeout: float = 7200.0
    max_corpus_bytes: int = 20_000_000
    log_level: str = "INFO"
    web_host: str = "127.0.0.1"
    web_port: int | None = None  # None: the page only when there is no token (on 8000)
    shard_count: int | None = None  # None: one connection to Discord, no sharding
    shard_ids: tuple[int, ...] | None = None  # None: every shard of shard_count
    retrain_worker: str = "local"  # local: the bot runs jobs; queue: `python -m bot worker`
    worker_heartbeat: float = 5.0  # seconds; a job is failed after three missed
    live_poll_seconds: float = 30.0

    @property
    def shared(self) -> bool:
        """Whether DATABASE_URL names PostgreSQL, shared by several processes."""
        return not self.database_url.startswith(SQLITE_PREFIX)

    @classmethod
    def from_env(cls) -> Settings:
        providers = os.environ.get("ORT_PROVIDERS", "auto").strip().lower() or "auto"
        if providers not in PROVIDERS:
            raise ConfigError(f"ORT_PROVIDERS must be one of {', '.join(PROVIDERS)}")
        precision = os.environ.get("MODEL_PRECISION", "").strip().lower() or None
        if precision is not None and precision not in PRECISIONS:
            raise ConfigError(f"MODEL_PRECISION must be one of {', '.join(PRECISIONS)}")
        limits = Limits(
            max_batch=_int("MAX_BATCH", Limits.max_batch, 1),
            max_queue=_int("MAX_QUEUE", Limits.max_queue, 0),
            deadline=_float("REQUEST_DEADLINE_SECONDS", Limits.deadline, 1.0),
            max_length=_int("MAX_LENGTH", Limits.max_length, 1),
            max_prompt=_int("MAX_PROMPT", Limits.max_prompt, 0),
        )
        default_length = _int("DEFAULT_LENGTH", 400, 1)
        if default_length > limits.max_length:
            raise ConfigError("DEFAULT_LENGTH must not exceed MAX_LENGTH")
        candidates, style_candidates = _candidates(limits.max_batch)
        about_candidates, style_about_candidates = _candidates(limits.max_batch, "ABOUT_CANDIDATES")
        candidate_unit = os.environ.get("CANDIDATE_UNIT", "").strip().lower() or "line"
        if candidate_unit not in CANDIDATE_UNITS:
            raise ConfigError(f"CANDIDATE_UNIT must be one of {', '.join(CANDIDATE_UNITS)}")
        database_url = os.environ.get("DATABASE_URL", "").strip() or cls.database_url
        try:
            check_database_url(database_url)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        shard_count, shard_ids = _shards()
        retrain_worker = os.environ.get("RETRAIN_WORKER", "").strip().lower() or "local"
        if retrain_worker not in RETRAIN_WORKERS:
            raise ConfigError(f"RETRAIN_WORKER must be one of {', '.join(RETRAIN_WORKERS)}")
        if retrain_worker == "queue" and database_url.startswith(SQLITE_PREFIX):
            raise ConfigError("RETRAIN_WORKER=queue needs DATABASE_URL to name PostgreSQL")
        return cls(
            shard_count=shard_count,
            shard_ids=shard_ids,
            retrain_worker=retrain_worker,
            worker_heartbeat=_float("WORKER_HEARTBEAT_SECONDS", 5.0, 0.1),
            live_poll_seconds=_float("LIVE_POLL_SECONDS", 30.0, 0.1),
            discord_token=os.environ.get("DISCORD_TOKEN", "").strip(),
            guild_ids=_ids("DISCORD_GUILD_IDS"),
            admin_ids=_ids("BOT_ADMIN_IDS"),
            models_dir=Path(os.environ.get("MODELS_DIR", "models")),
            database_url=database_url,
            providers=providers,
            precision=precision,
            ort_threads=_int("ORT_THREADS", 0, 0),
            gc_seconds=_float("GC_SECONDS", 0.5),
            api_base_url=os.environ.get("DISCORD_API_BASE_URL", "").strip(),
            gateway_url=os.environ.get("DISCORD_GATEWAY_URL", "").strip(),
            limits=limits,
            default_style=os.environ.get("DEFAULT_STYLE", "shakespeare").strip(),
            default_length=default_length,
            default_temperature=_float("DEFAULT_TEMPERATURE", 0.8),
            candidates=candidates,
            style_candidates=style_candidates,
            candidate_unit=candidate_unit,
            about_candidates=about_candidates,
            style_about_candidates=style_about_candidates,
            default_themes=_switch("DEFAULT_THEMES", True),
            user_cooldown=_float("USER_COOLDOWN_SECONDS", 3.0),
            channel_concurrency=_int("CHANNEL_MAX_POEMS", 4, 1),
            stream_edit_seconds=_float("STREAM_EDIT_SECONDS", 1.0),
            retrain_timeout=_float("RETRAIN_TIMEOUT_SECONDS", 7200.0, 1.0),
            max_corpus_bytes=_int("MAX_CORPUS_BYTES", 20_000_000, 1),
            log_level=os.environ.get("LOG_LEVEL", "INFO").upper(),
            web_host=os.environ.get("WEB_HOST", "").strip() or "127.0.0.1",
            web_port=_port("WEB_PORT"),
        )
