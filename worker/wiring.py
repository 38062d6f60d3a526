"""The composition root: every part of sendq is built here, from ``Settings``, and nowhere else.

Each entry point asks a ``Root`` for what it needs:

    actors       root.pipeline(), root.keeper()
    webhooks     root.webhook_app()          (with root.admin() mounted)
    CLI          root.producer(), root.store(), root.operations(), root.limiter()
    demo, bench  the same, on a Root of their own settings
    producer API root.producer()             (worker.enqueue.enqueue and friends)

Parts are built once per Root and kept. Async parts bind to the event loop that
first uses them (redis.asyncio, httpx), so they are built lazily, on the loop
that will run them: a dramatiq worker's event-loop thread, or uvicorn's loop.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import redis
import redis.asyncio as aioredis

from worker.alerts import Alerter
from worker.breaker import AsyncBreakers, Breakers, Policy
from worker.broker import async_reconnect_retry, redis_url
from worker.carriers import CarrierResolver, load_overrides
from worker.expiry import ExpirySweeper
from worker.exposure import AsyncExposure, Exposure, ExposurePolicy, policy_from_settings
from worker.holds import AsyncHolds, Holds
from worker.inbound_log import AsyncInboundLog
from worker.leases import LeaseSweeper, OrphanSweeper
from worker.maintenance import HoldKeeper
from worker.optouts import AsyncOptoutList
from worker.overdue import ReceiptTimeouts
from worker.producer import Campaigns, Producer, Regions
from worker.providers import registry, transport
from worker.providers.base import Provider
from worker.quiet import policies_from_settings
from worker.ratelimit import AsyncLimiter, Limiter
from worker.retry import Backoff
from worker.sendpath import Parts, Pipeline, PipelineConfig, default_gates, recheck_gates
from worker.sendpath.feedback import CarrierFeed
from worker.settings import BreakerSettings, Settings
from worker.store import AsyncStore, Store
from worker.watch import (
    Layout,
    PairStatus,
    Watch,
    WatchCounters,
    WatchCountersSync,
    watch_status,
)

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from worker.admin import Admin
    from worker.hearing import Hearing, Orgs, ReplyOrder
    from worker.inbound_log import InboundLog
    from worker.operations import Operations
    from worker.optouts import OptoutList

DEFAULT_REDIS_POOL_SIZE = 64


def breaker_policy(cfg: BreakerSettings) -> Policy:
    return Policy(
        window_s=cfg.window_s,
        min_calls=cfg.min_calls,
        failure_rate=cfg.failure_rate,
        consecutive=cfg.consecutive,
        cooldown_s=cfg.cooldown_s,
        cooldown_max_s=cfg.cooldown_max_s,
        probes=cfg.probes,
        probe_timeout_s=cfg.probe_timeout_s,
    )


class Root:
    """Builds each part once, from one ``Settings``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # -- synchronous parts: producers, operators, status ------------------

    @cached_property
    def url(self) -> str:
        """The configured Redis URL, or the embedded server's (started if need be)."""
        return redis_url(self.settings)

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def store(self) -> Store:
        return self._store

    @cached_property
    def _store(self) -> Store:
        return Store(self.redis)

    def producer(self) -> Producer:
        return self._producer

    @cached_property
    def _producer(self) -> Producer:
        regions = Regions(self.settings.default_region, self.settings.regions())
        campaigns = Campaigns(self.settings.default_org, self._orgs(), self._deadlines_ms())
        return Producer(
            self.redis, queue=self.settings.worker.queue, regions=regions, campaigns=campaigns
        )

    def limiter(self) -> Limiter:
        return Limiter(self.redis)

    def carrier_breakers(self) -> Breakers:
        return Breakers(self.redis, "carrier", breaker_policy(self.settings.breakers.carrier))

    def provider_breakers(self) -> Breakers:
        return Breakers(self.redis, "provider", breaker_policy(self.settings.breakers.provider))

    def holds(self) -> Holds:
        return Holds(self.redis)

    def operations(self) -> Operations:
        from worker.operations import Operations

        return Operations(
            carriers=self.carrier_breakers(),
            providers=self.provider_breakers(),
            holds=self.holds(),
            alert_urls=list(self.settings.alerts.urls),
            provider_names=self.settings.routed_providers(),
            known_providers=registry.names(),
            exposure=Exposure(self.redis, self.exposure_policy()),
        )

    def optouts(self) -> OptoutList:
        from worker.optouts import OptoutList

        return OptoutList(self.redis)

    def inbound_log(self) -> InboundLog:
        from worker.inbound_log import InboundLog

        return InboundLog(self.redis)

    def admin(self) -> Admin:
        from worker.admin import Admin

        return Admin(self.operations(), self.store(), watch=self.watch_status)

    # -- asynchronous parts: workers and the webhook app ------------------

    @cached_property
    def async_redis(self) -> aioredis.Redis:
        return aioredis.Redis.from_url(
            self.url,
            max_connections=DEFAULT_REDIS_POOL_SIZE,
            health_check_interval=15,
            retry=async_reconnect_retry(),
        )

    @cached_property
    def providers(self) -> dict[str, Provider]:
        return registry.build_all(self.settings)

    def exposure_policy(self) -> ExposurePolicy:
        return policy_from_settings(self.settings.limits.carrier, self.settings.receipts.timeout_s)

    @cached_property
    def async_exposure(self) -> AsyncExposure:
        return AsyncExposure(self.async_redis, self.exposure_policy())

    @cached_property
    def watch_counters(self) -> WatchCounters:
        return WatchCounters(self.async_redis, Layout.of(self.settings.watch))

    def watch_status(self) -> list[PairStatus]:
        """Each carrier x campaign's signals beside the others' and the baseline (sync)."""
        reader = WatchCountersSync(self.redis, Layout.of(self.settings.watch))
        return watch_status(reader, self.settings.watch)

    @cached_property
    def async_optouts(self) -> AsyncOptoutList:
        return AsyncOptoutList(self.async_redis)

    @cached_property
    def async_inbound_log(self) -> AsyncInboundLog:
        return AsyncInboundLog(self.async_redis)

    @cached_property
    def async_store(self) -> AsyncStore:
        return AsyncStore(self.async_redis)

    @cached_property
    def alerter(self) -> Alerter:
        return Alerter(self.settings.alerts.urls)

    @cached_property
    def async_carrier_breakers(self) -> AsyncBreakers:
        cfg = self.settings.breakers.carrier
        return AsyncBreakers(
            self.async_redis, "carrier", breaker_policy(cfg), cache_ms=cfg.cache_ms
        )

    @cached_property
    def async_provider_breakers(self) -> AsyncBreakers:
        cfg = self.settings.breakers.provider
        return AsyncBreakers(
            self.async_redis, "provider", breaker_policy(cfg), cache_ms=cfg.cache_ms
        )

    @cached_property
    def carriers(self) -> CarrierResolver:
        cfg = self.settings.carriers
        overrides = load_overrides(cfg.override_file) if cfg.override_file else {}
        lookup = None
        if cfg.lookup == "twilio" and self.settings.twilio_auth_token is not None:
            lookup = transport.make_client(
                base_url=cfg.lookup_url,
                auth=(
                    self.settings.providers.twilio.account_sid,
                    self.settings.twilio_auth_token.get_secret_value(),
                ),
                timeout_s=self.settings.providers.twilio.timeout_s,
            )
        return CarrierResolver(
            self.async_redis, overrides=overrides, lookup=lookup, cache_ttl_s=cfg.cache_ttl_s
        )

    @cached_property
    def carrier_feed(self) -> CarrierFeed:
        return CarrierFeed(
            self.async_carrier_breakers,
            self.carriers,
            self.alerter,
            self.settings.breakers.carrier.ambiguous_weight,
        )

    def pipeline_config(self) -> PipelineConfig:
        w = self.settings.worker
        return PipelineConfig(
            queue=w.queue,
            public_url=self.settings.webhooks.public_url,
            routes=self.settings.routes,
            numbers={
                name: getattr(self.settings.providers, name).numbers for name in self.providers
            },
            max_attempts=w.max_attempts,
            backoff=Backoff(base_ms=w.retry_base_ms, cap_ms=w.retry_cap_ms),
            lease_ms=int(w.send_lease_s * 1000),
            limits=self.settings.limits,
            unconfirmed_wait_ms=int(w.unconfirmed_wait_s * 1000),
            on_unconfirmed=w.on_unconfirmed,
            orgs=self._orgs(),
            default_org=self.settings.default_org,
            campaign_send_before_ms=self._deadlines_ms(),
            quiet=policies_from_settings(self.settings.campaigns),
            receipt_timeout_ms=int(self.settings.receipts.timeout_s * 1000),
        )

    def _orgs(self) -> dict[str, str]:
        return {name: self.settings.org_of(name) for name in self.settings.campaigns}

    def _deadlines_ms(self) -> dict[str, int]:
        return {
            name: int(c.send_before.timestamp() * 1000)
            for name, c in self.settings.campaigns.items()
            if c.send_before is not None
        }

    def _numbers(self, provider: str) -> list[str]:
        return list(getattr(self.settings.providers, provider).numbers)

    def parts(self) -> Parts:
        return Parts(
            store=self.async_store,
            providers=self.providers,
            provider_breakers=self.async_provider_breakers,
            carrier_breakers=self.async_carrier_breakers,
            limiter=AsyncLimiter(self.async_redis),
            carriers=self.carriers,
            feed=self.carrier_feed,
            alerter=self.alerter,
            optouts=self.async_optouts,
            exposure=self.async_exposure,
            watch=self.watch_counters,
        )

    @cached_property
    def pipeline(self) -> Pipeline:
        parts = self.parts()
        config = self.pipeline_config()
        return Pipeline(config, parts, default_gates(parts, config), recheck_gates(parts, config))

    def keeper(self) -> HoldKeeper:
        w = self.settings.worker
        carrier = self.settings.breakers.carrier
        return HoldKeeper(
            AsyncHolds(self.async_redis, w.queue),
            # Only claims go through it: the workers' probe count and timeout.
            AsyncBreakers(self.async_redis, "carrier", breaker_policy(carrier), cache_ms=0),
            LeaseSweeper(self.async_redis, queue=w.queue, lease_ms=int(w.send_lease_s * 1000)),
            OrphanSweeper(self.async_redis, queue=w.queue, orphan_after_s=w.orphan_after_s),
            expiry=ExpirySweeper(self.async_redis),
            exposure=self.async_exposure,
            overdue=ReceiptTimeouts(self.async_redis, timeout_s=self.settings.receipts.timeout_s),
            watch=Watch(
                self.watch_counters,
                self.settings.watch,
                self.async_carrier_breakers,
                self.alerter,
            ),
            sweep_s=w.sweep_s,
        )

    def hearing(self) -> Hearing:
        from worker.hearing import Hearing, Reading, Replies

        s = self.settings
        return Hearing(
            self.async_inbound_log,
            self.async_optouts,
            orgs=self.orgs(),
            reading=Reading(
                tuple(s.optouts.keywords), tuple(s.optouts.optin_keywords), s.optouts.possible
            ),
            replies=Replies(
                stop={name: o.stop_reply for name, o in s.orgs.items() if o.stop_reply},
                help={name: o.help_reply for name, o in s.orgs.items() if o.help_reply},
            ),
            send_reply=self._send_reply,
            watch=self.watch_counters,
        )

    def orgs(self) -> Orgs:
        """Which organisations a text to each of our numbers concerns."""
        from worker.hearing import Orgs

        s = self.settings
        by_number: dict[str, list[str]] = {}
        served = [(c, s.org_of(c)) for c in s.routes] + [(c, s.org_of(c)) for c in s.campaigns]
        for campaign, org in served:
            route = s.routes.get(campaign) or s.routes["default"]
            for provider in route:
                for number in s.providers.section(provider).numbers:
                    orgs = by_number.setdefault(number, [])
                    if org not in orgs:
                        orgs.append(org)
        return Orgs(s.default_org, self._orgs(), by_number, tuple(s.orgs))

    async def _send_reply(self, order: ReplyOrder) -> str:
        from starlette.concurrency import run_in_threadpool

        from worker.models import DEFAULT_CAMPAIGN, SendJob
        from worker.producer import Reply

        job = SendJob(
            to=order.to,
            body=order.body,
            campaign=order.campaign or DEFAULT_CAMPAIGN,
            key=f"reply:{order.inbound_id}:{order.kind}",
        )
        reply = Reply(order.inbound_id, order.kind, order.provider, order.sender)
        accepted = await run_in_threadpool(self.producer().enqueue_reply, job, reply)
        return accepted.message_id

    def webhook_app(self) -> Starlette:
        from worker.sendpath.optout_feed import OptoutFeed
        from worker.webhooks import create_app

        token = self.settings.admin_token
        return create_app(
            store=self.async_store,
            providers=self.providers,
            public_url=self.settings.webhooks.public_url,
            feed=self.carrier_feed,
            hearing=self.hearing(),
            optout_feed=OptoutFeed(self.async_optouts, self.settings.org_of),
            admin=self.admin(),
            admin_token=token.get_secret_value() if token else None,
            receipt_timeout_ms=int(self.settings.receipts.timeout_s * 1000),
            exposure=self.async_exposure,
            watch=self.watch_counters,
        )


_root: Root | None = None


def root() -> Root:
    """This process's Root, from the configured settings (raises ConfigError on a bad config)."""
    global _root
    if _root is None:
        from worker.settings import get_settings

        _root = Root(get_settings())
    return _root


def webhook_app() -> Starlette:
    """The app ``sendq webhooks`` serves; also ``uvicorn --factory worker.wiring:webhook_app``."""
    from worker import logs

    logs.configure(root().settings.log_level)
    return root().webhook_app()
