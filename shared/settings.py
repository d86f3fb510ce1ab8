"""All configuration, read once from the environment (12-factor) and typed.

Common infrastructure variables keep their conventional names (``DATABASE_URL``,
``REDIS_URL``, ``SECRET_KEY``, the providers' ``*_API_KEY``); everything that is
jobyard's own is prefixed ``JOBYARD_``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.pricing import DEFAULT_MODEL_PRICES, ModelPrice
from shared.simulated_latency import parse_latency

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _var_dir() -> Path:
    """Where local state lives: ``JOBYARD_VAR_DIR``, else ``var/`` of the checkout (or of
    the working directory when jobyard is installed as a package)."""
    if os.environ.get("JOBYARD_VAR_DIR"):
        return Path(os.environ["JOBYARD_VAR_DIR"])
    base = PROJECT_ROOT if (PROJECT_ROOT / "pyproject.toml").exists() else Path.cwd()
    return base / "var"


VAR_DIR = _var_dir()
# Signs tokens only where nothing else is set (tests, a first look): `jobyard create-token`
# refuses it, since an API started by `make up` or deployed has a key of its own.
DEVELOPMENT_SECRET_KEY = "dev-only-insecure-secret-key-change-me"


def _alias(name: str) -> AliasChoices:
    """Accept both the conventional name and the ``JOBYARD_``-prefixed one."""
    return AliasChoices(name, f"JOBYARD_{name}")


class Settings(BaseSettings):
    """Typed settings; one instance per process (see :func:`get_settings`)."""

    model_config = SettingsConfigDict(env_prefix="JOBYARD_", extra="ignore")

    # Infrastructure
    database_url: str = Field(
        default=f"sqlite:///{VAR_DIR / 'jobyard.db'}", validation_alias=_alias("DATABASE_URL")
    )
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", validation_alias=_alias("REDIS_URL"))
    secret_key: str = Field(default=DEVELOPMENT_SECRET_KEY, validation_alias=_alias("SECRET_KEY"))
    # PostgreSQL connections per process, and as many again when busy. A worker process's
    # threads (claimers, completer, heartbeat, fan-outs) each hold one at a time.
    db_pool_size: int = Field(default=20, ge=1)
    # An API process serves up to WORKER_CONNECTIONS requests at once on gevent, and would
    # open a connection for each: its requests queue for these instead (at most twice
    # this many open), waiting at most the pool timeout (then 503 with Retry-After), so
    # that API processes x this x 2 stays within PostgreSQL's max_connections.
    api_db_pool_size: int = Field(default=5, ge=1)
    db_pool_timeout_seconds: float = Field(default=10.0, gt=0)
    max_request_bytes: int = 4 * 1024 * 1024
    # A request's body is read whole before the app sees it (api/request_body.py): in at
    # most this long, with no wait for data longer than the idle time, else 408 in the
    # family's envelope. Meanwhile a slow client holds one of gevent's greenlets, not a
    # worker (deploy/gunicorn.conf.py).
    request_body_timeout_seconds: float = Field(default=60.0, gt=0)
    request_body_idle_seconds: float = Field(default=15.0, gt=0)

    # Logs of the API and the workers (shared/logs.py): "json", one object per line with
    # the job, execution, task and organisation ids (for a log collector), or "text" for
    # eyes (`make up` sets it). JOBYARD_LOG_LEVEL is the API's level (the workers take
    # celery's --loglevel).
    log_format: Literal["json", "text"] = "json"
    log_level: str = "INFO"

    # What one request may hold beyond its size (api/request_limits.py): a deeper JSON
    # body, a longer number, NaN or Infinity are a 400; a longer URL 414; more or longer
    # header fields 431, each in the family's envelope. gunicorn's own limits
    # (deploy/gunicorn.conf.py) are set above these: beyond its, it answers its HTML page.
    max_json_depth: int = Field(default=64, ge=1, le=500)  # below Python's recursion limit
    max_json_number_digits: int = Field(default=100, ge=20, le=4000)  # Python's limit: 4300
    # The request target (path and query as sent); gunicorn's request line stops at 8190.
    max_url_bytes: int = Field(default=4096, ge=256, le=8000)
    max_header_bytes: int = Field(default=8190, ge=1024, le=65_536)  # name, ": " and value
    max_header_count: int = Field(default=100, ge=16, le=10_000)

    # Live progress (GET /api/jobs/{id}/events, server-sent events). A stream holds a
    # greenlet of gunicorn's gevent worker and a Redis connection for as long as it is
    # open, so a process serves at most this many at once (503 beyond: a bound on Redis
    # connections and on the process's share of WORKER_CONNECTIONS), each for at most this
    # long (the client reconnects after its ``timeout`` event). A comment every heartbeat
    # keeps proxies from closing it.
    sse_max_streams_per_process: int = Field(default=100, ge=1)
    sse_max_stream_seconds: float = Field(default=3600.0, gt=0)
    sse_heartbeat_seconds: float = Field(default=15.0, gt=0)
    # A browser's EventSource cannot send headers, and an API key never goes in a URL: a
    # stream token (POST /api/jobs/{id}/events/token) opens one job's stream, for this long.
    sse_token_ttl_seconds: int = Field(default=300, ge=10, le=3600)

    # Execution lifecycle
    max_attempts: int = Field(default=3, ge=1)
    # The longest one attempt may hold its lease, even in a live worker (a hung call). A
    # dead worker's leases are released sooner, when its heartbeat stops.
    lease_seconds: int = Field(default=600, ge=1)
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    worker_dead_after_seconds: float = Field(default=20.0, gt=0)
    # Executions per ``executions.run`` message: claimed in one statement.
    group_size: int = Field(default=100, ge=1, le=10_000)
    # Executions one worker process holds in flight at once (claimed, their calls on its
    # event loop). A call that ends frees its place; the worker claims the next group as
    # soon as a group's worth is free. Bounded by memory: 10-20 MB of RSS per 1,000 in
    # flight with the simulated provider (docs/benchmarks.md, (d)), more with real SDKs.
    worker_capacity: int = Field(default=10_000, ge=1, le=1_000_000)
    # On a warm shutdown (SIGTERM) a worker stops claiming and lets its calls end for up
    # to this long; it then hands what is still running back (leases released, attempt
    # not spent), so another worker runs it at once.
    worker_drain_seconds: float = Field(default=20.0, ge=0)
    # The broker holds about this many groups per live worker process, unclaimed (never
    # more than its capacity): enough to refill a worker's freed capacity at once, few
    # enough that a small job waits behind little. What is in flight is bounded by the
    # workers' capacity, not here.
    dispatch_queue_groups: int = Field(default=8, ge=1)
    # A worker tops dispatch up after it claims, at most this often: each fill is a few
    # queries under the dispatch lock (10% of a busy worker's CPU at 0.05 s), and the
    # queued groups cover far longer than this.
    refill_interval_seconds: float = Field(default=0.25, ge=0)
    # Outcomes are written in batches: at most this many, or after this long.
    finish_batch_size: int = Field(default=500, ge=1)
    finish_flush_seconds: float = Field(default=0.05, gt=0)
    # A throttled call waits in the event loop up to this long; longer waits give the
    # attempt back and come again with a countdown.
    throttle_inline_wait_seconds: float = Field(default=30.0, ge=0)
    # A pending execution whose message was published this long ago and never claimed
    # is presumed lost (a flushed Redis) and handed out again, when the queue is empty.
    redispatch_after_seconds: int = Field(default=300, ge=1)
    # A retry nobody claimed this long after it was due lost its countdown message.
    lost_retry_grace_seconds: float = Field(default=15.0, gt=0)
    # A job whose fan-out was not published (broker down at accept time) after this long.
    undispatched_after_seconds: int = Field(default=10, ge=0)
    # A fan-out that wrote no chunk for this long lost its worker: published again.
    fanout_stalled_after_seconds: float = Field(default=60.0, gt=0)
    sweep_interval_seconds: float = Field(default=10.0, gt=0)
    schedule_tick_seconds: float = Field(default=15.0, gt=0)
    fanout_chunk_size: int = Field(default=5000, ge=1)
    # Executions a request writes itself when it accepts a job whose items it carries (a
    # batch's inline inputs): they exist when it answers; the fan-out writes the rest.
    executions_written_at_accept: int = Field(default=1000, ge=1)
    max_executions_per_job: int = Field(default=200_000, ge=1)
    # Quotas (shared/engine/quotas.py). What one request may create, across every job it
    # creates (a cached-jobs trigger makes one job per cached job)...
    max_executions_per_request: int = Field(default=200_000, ge=1)
    max_jobs_per_request: int = Field(default=1_000, ge=1)
    # ... and the work an organisation may have unfinished at once: executions pending or
    # retrying, and jobs pending or processing. Beyond either, creates answer 429.
    max_active_executions_per_organisation: int = Field(default=1_000_000, ge=1)
    max_active_jobs_per_organisation: int = Field(default=2_000, ge=1)
    # Idempotency-Key: how long a key's answer is kept, and how long a request holding a
    # key may run before another request with that key may take it over (its process died).
    idempotency_key_ttl_seconds: int = Field(default=86_400, ge=60)
    # Points where this process kills itself (comma-separated names, e.g.
    # ``idempotency.before_store``): for the tests that prove what a crash there leaves
    # behind (shared/failpoints.py). Empty, and so off, unless a test sets it.
    failpoints: str = ""
    retry_backoff_base_seconds: float = Field(default=2.0, gt=0)
    # Countdowns stay well below the Redis visibility timeout; longer waits are dispatch's.
    retry_backoff_cap_seconds: float = Field(default=300.0, gt=0)
    broker_visibility_timeout_seconds: int = 3600
    publish_timeout_seconds: float = Field(default=2.0, gt=0)

    # Simulated AI provider (offline). Every result it writes says ``simulated: true``.
    simulate_providers: bool = Field(default=False, validation_alias=_alias("SIMULATE"))
    simulated_latency_ms: float = Field(default=200.0, ge=0)
    simulated_latency_jitter_ms: float = Field(default=0.0, ge=0)  # extra, uniform in [0, j]
    # A distribution instead of the two above (shared/simulated_latency.py):
    # "constant:MS", "uniform:MIN_MS:MAX_MS" or "lognormal:MEDIAN_MS:P99_MS".
    simulated_latency: str | None = None
    simulated_failure_rate: float = Field(default=0.0, ge=0, le=1)

    # Real AI providers: a provider is configured when its key (or endpoint) is set. Base
    # URLs default to each vendor's own (None = the SDK's default).
    provider_timeout_seconds: float = Field(default=60.0, gt=0)
    # Connections per vendor client and process: a smaller pool than the calls one process
    # holds in flight (JOBYARD_WORKER_CAPACITY) queues calls inside the client.
    provider_max_connections: int = Field(default=1000, ge=1)
    openai_base_url: str | None = Field(default=None, validation_alias=_alias("OPENAI_BASE_URL"))
    anthropic_base_url: str | None = Field(
        default=None, validation_alias=_alias("ANTHROPIC_BASE_URL")
    )
    gemini_base_url: str | None = Field(default=None, validation_alias=_alias("GEMINI_BASE_URL"))
    perplexity_base_url: str = Field(
        default="https://api.perplexity.ai", validation_alias=_alias("PERPLEXITY_BASE_URL")
    )
    deepseek_base_url: str | None = Field(
        default=None, validation_alias=_alias("DEEPSEEK_BASE_URL")
    )
    # Global limits per provider key (or "provider:api-key-fingerprint" is derived), shared
    # by every worker through Redis. Rates use the `limits` notation ("600/minute").
    provider_rate_limits: dict[str, str] = Field(default_factory=dict)
    provider_concurrency: dict[str, int] = Field(default_factory=dict)
    openai_api_key: str | None = Field(default=None, validation_alias=_alias("OPENAI_API_KEY"))
    anthropic_api_key: str | None = Field(
        default=None, validation_alias=_alias("ANTHROPIC_API_KEY")
    )
    gemini_api_key: str | None = Field(default=None, validation_alias=_alias("GEMINI_API_KEY"))
    perplexity_api_key: str | None = Field(
        default=None, validation_alias=_alias("PERPLEXITY_API_KEY")
    )
    deepseek_api_key: str | None = Field(default=None, validation_alias=_alias("DEEPSEEK_API_KEY"))
    search_endpoint_url: str | None = None
    # DeepSeek on Vertex AI takes one-hour OAuth tokens, not a key: with this on, the
    # client gets (and refreshes) them from Google's Application Default Credentials
    # (GOOGLE_APPLICATION_CREDENTIALS, or the machine's service account).
    deepseek_vertex_auth: bool = Field(
        default=False, validation_alias=_alias("DEEPSEEK_VERTEX_AUTH")
    )

    # Web search: providers whose search tool is offered to the model (a project can still
    # ask for the bare model). DeepSeek has none; the search endpoint always searches.
    web_search_providers: list[str] = Field(
        default_factory=lambda: ["openai", "anthropic", "google-generative-ai", "perplexity"]
    )
    web_search_max_uses: int = Field(default=5, ge=1)  # searches per answer (Anthropic)
    # The cap on an answer's length; an answer cut off there is a failure, never a success.
    max_answer_tokens: int = Field(default=4096, ge=16)
    # Gemini's grounding links are vertexaisearch redirects: each is resolved to its target
    # (one HEAD request) so sources name real pages; off leaves url empty, domain from title.
    resolve_source_redirects: bool = True
    # USD prices by vendor model; entries given here replace the defaults they name.
    model_prices: dict[str, ModelPrice] = Field(default_factory=dict)

    def price_of(self, vendor_model: str) -> ModelPrice | None:
        """The price of ``vendor_model``: this setting's entry, else the default table."""
        return self.model_prices.get(vendor_model) or DEFAULT_MODEL_PRICES.get(vendor_model)

    # Outbound URLs given by users (batch input files, callbacks) may reach loopback and
    # private addresses only when this is on (development and tests; never in production).
    allow_private_urls: bool = False
    # A batch's input file: at most this large, fetched within this long.
    input_file_max_bytes: int = Field(default=4 * 1024 * 1024, ge=1)
    input_file_timeout_seconds: float = Field(default=20.0, gt=0)

    # Knowledge bases' ``openai`` embedder: any OpenAI-compatible embeddings endpoint. Its
    # key falls back to OPENAI_API_KEY, and with that key the base URL falls back to
    # OPENAI_BASE_URL (a key is only ever sent to the endpoint configured with it); else
    # OpenAI's. A KB keeps the dimensions it was created with: changing the model or the
    # dimensions later means building the KBs that use this embedder again.
    embeddings_base_url: str | None = None
    embeddings_api_key: str | None = None
    embeddings_model: str = "text-embedding-3-small"
    embeddings_dimensions: int = Field(default=1536, ge=1)
    embeddings_batch_size: int = Field(default=512, ge=1, le=2048)  # OpenAI takes 2,048 inputs
    embeddings_timeout_seconds: float = Field(default=30.0, gt=0)

    # Encrypts the URLs (credentials) of registered source databases at rest (a Fernet key:
    # ``python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key())"``).
    # Unset: derived from SECRET_KEY, which is fine on a laptop; set it in production, and
    # keep it, or the stored sources cannot be read.
    data_source_key: str | None = None
    # Keys the URLs may still be encrypted with (comma-separated Fernet keys): they are
    # read with any of them and written with data_source_key. After a rotation, run
    # ``jobyard rotate-source-key``, then drop the old key from here.
    data_source_previous_keys: str = ""
    # Source databases are tenants' servers: every call to one has a deadline enforced on
    # our side (shared/kb/source_connections.py), whatever the server does. Connecting
    # (TCP, TLS and the handshake) takes at most this long...
    source_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    # ... a connection check in a request (POST /databases, and the table check of a new
    # sync job) at most this long in all ...
    source_check_seconds: float = Field(default=5.0, gt=0, le=60)
    # ... and an organisation has at most this many checks at once, across every API
    # process (Redis); beyond it a check answers 429 at once, so one tenant's server
    # cannot hold every request thread.
    source_checks_per_organisation: int = Field(default=2, ge=1)
    # A sync run's reads: each statement at most this long (PostgreSQL's
    # statement_timeout; PyMySQL's read and write timeouts), and one step of a run (the
    # plan, or one batch) on one connection at most this long in all.
    source_statement_timeout_seconds: float = Field(default=300.0, gt=0)
    source_read_seconds: float = Field(default=900.0, gt=0)
    # Where the certificate files a source URL may name live (sslrootcert, sslcert,
    # sslkey; ssl_ca, ssl_cert, ssl_key): an operator's directory on the API and worker
    # hosts. Unset: a source URL may name no certificate file.
    source_certs_dir: Path | None = None
    # KB sync runs: rows per batch (one execution each), and the active (not completed)
    # sync jobs an organisation may have (the seed's "100 active jobs per account").
    kb_sync_batch_rows: int = Field(default=1000, ge=1, le=100_000)
    kb_sync_max_active_jobs: int = Field(default=100, ge=1)

    # Webhooks: the wait before each attempt (Svix's: at once, 5 s, 5 min, 30 min, 2 h,
    # 5 h, 10 h, 10 h), jittered by up to 10%; a 2xx delivers, 410 stops trying.
    webhook_retry_schedule: list[float] = Field(
        default_factory=lambda: [0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0]
    )
    webhook_timeout_seconds: float = Field(default=15.0, gt=0)
    # The sender process (``jobyard sender``) wakes on a Redis kick after each commit that
    # wrote messages, and looks anyway this often (a lost kick, a retry falling due).
    webhook_poll_seconds: float = Field(default=1.0, gt=0)
    webhook_concurrency: int = Field(default=1024, ge=1)  # requests in flight per sender
    # Per receiver (origin) and sender process: requests in flight (kept-alive connections)
    webhook_receiver_concurrency: int = Field(default=64, ge=1)
    # The circuit breaker (shared.webhooks.receivers): attempts failed in a row that open
    # it, and how long it stays open (doubling each time it opens again, up to the max).
    webhook_breaker_failures: int = Field(default=10, ge=1)
    webhook_breaker_seconds: float = Field(default=5.0, gt=0)
    webhook_breaker_max_seconds: float = Field(default=300.0, gt=0)
    # A data point's callback carries its response (what GET .../jobs/{id}/response
    # answers) when that is at most this many bytes of JSON, else a link to it.
    callback_max_response_bytes: int = Field(default=256 * 1024, ge=0)
    # The API's address as its clients reach it: links in callbacks start with it.
    public_url: str = Field(default="http://127.0.0.1:5000", pattern=r"^https?://[^/?#]+(/.*)?$")

    # Auth
    jwt_ttl_seconds: int = 7 * 24 * 3600
    api_rate_limit: str = "1200 per minute"

    # Workers send task events (Flower shows tasks live from them).
    task_events: bool = True

    # Prometheus metrics. The API answers /metrics only on its own listener (gunicorn
    # binds METRICS_BIND, by default 127.0.0.1:<metrics_port>), never on the public port.
    # Worker processes serve theirs on worker_metrics_address:worker_metrics_port, one
    # process per host (the others write to PROMETHEUS_MULTIPROC_DIR). 0 turns one off.
    metrics_port: int = Field(default=9100, ge=0, le=65535)
    worker_metrics_port: int = Field(default=9101, ge=0, le=65535)
    worker_metrics_address: str = "127.0.0.1"

    # Flower (monitoring): its loopback port and basic auth
    flower_port: int = Field(default=5555, ge=1, le=65535, validation_alias=_alias("FLOWER_PORT"))
    flower_user: str = Field(default="admin", validation_alias=_alias("FLOWER_USER"))
    flower_password: str = Field(default="admin", validation_alias=_alias("FLOWER_PASSWORD"))

    # The API's second local port (make up; empty: none): the address the Smart DB seed's
    # examples call, where /docs and /openapi.json are Smart DB's (api/docs_home.py).
    # gunicorn binds it only when BIND is unset (deploy/gunicorn.conf.py).
    smartdb_port: int | None = Field(
        default=8000, ge=1, le=65535, validation_alias=_alias("SMARTDB_PORT")
    )

    @field_validator("simulated_latency")
    @classmethod
    def _latency_distribution(cls, value: str | None) -> str | None:
        if value is not None and value.strip():
            parse_latency(value)  # a clear error at start-up, not at the first call
            return value.strip()
        return None

    @field_validator("smartdb_port", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return this process's settings, read from the environment on first use."""
    return Settings()


def reset_settings_cache() -> None:
    """Forget the cached settings (tests that change the environment call this)."""
    get_settings.cache_clear()
