"""An alert burst on two chat replicas sharing one Investigation store: exactly once, nothing lost, the
concurrency bound held, and what the investigation machinery costs on top of the agent turn it runs.

Two chat replicas (separate processes) use one Kubernetes API for their Investigations: the emulator of
tests/harness (its own process) or the real kube-apiserver and etcd of tests/cluster (``--apiserver real``,
where the cached control plane exists). The model is the scripted fake LLM (its own process, answering each
investigation with a call of the ``diagnosis`` tool, no delay). The burst: ``--alerts`` distinct alerts and
as many repeats, each its own Alertmanager notification, shuffled and split across both replicas (a repeat goes to the other replica than its first
send), ``--senders`` in flight. Printed:

- correctness: every distinct alert created once (one ``created: true``), investigated exactly once over
  both replicas, none lost (all Diagnosed), the most Running at once per replica against
  ``AI_OPS_INVESTIGATIONS_CONCURRENCY``;
- alert-to-Investigation-created p50/p95 (the webhook's 202 comes after the create);
- overhead: the wall time from the first alert to the last diagnosis, against the same number of the same
  agent turns (the runner the workers call: same model, same script, same tools) run bare in the same two
  replicas at the same parallelism, without store, claims, leases or webhook. Target: at most 1.2x.

    .venv/bin/python benchmarks/alert_burst.py [--apiserver emulator|real] [--alerts 200] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import itertools

from _common import LOG_DIR, PYTHON, Child, free_port

NAMESPACE = "bench"
TARGET_RATIO = 1.2


# -- child processes ---------------------------------------------------------------------------------


def serve_emulator(port: int) -> None:
    """The Kubernetes API emulator (kmock + API-server semantics), namespace ``bench`` seeded."""
    import kmock

    from tests.harness.emulator import KubernetesApiEmulator

    async def main() -> None:
        async with KubernetesApiEmulator() as emulator, kmock.Server(emulator, port=port):
            emulator.seed_namespace(NAMESPACE)
            while True:
                # kmock keeps every request and scans that record per request: keep the recent ones only,
                # or thousands of status patches would measure kmock (as in operator_scale.py).
                del emulator._requests[:-10]
                await asyncio.sleep(0.2)

    asyncio.run(main())


def serve_replica(port: int, config: str, api_url: str, token: str, ca: str, concurrency: int) -> None:
    """One chat replica whose Investigations are in the given API server, plus two benchmark routes:
    ``GET /bench/stats`` (runs per investigation, most running at once) and ``POST /bench/bare`` (the same
    agent turns, run by the runner directly)."""
    import uvicorn
    from fastapi import Body

    from chat_service.app import create_app
    from chat_service.incidents.alertmanager import parse_notification
    from chat_service.incidents.episode import alert_spec, name_of
    from chat_service.incidents.service import build_incidents
    from chat_service.incidents.store import KubernetesInvestigationStore, StoredInvestigation
    from chat_service.settings import load_settings

    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per store request would be measured too
    settings = load_settings(
        {"config_path": Path(config), "investigations_concurrency": concurrency, "kubernetes_watch": False}
    )
    app = create_app(settings)
    services = app.state.services
    store = KubernetesInvestigationStore(
        api_url, NAMESPACE, token=token or None, ca_path=Path(ca) if ca else None, poll_seconds=1.0
    )
    # The store's API requests by kind and answer (e.g. "PATCH status 409": a claim another replica won).
    requests: Counter[str] = Counter()
    waited: Counter[str] = Counter()  # seconds spent waiting for the answers, per method
    send = store._request

    async def counted_request(method: str, path: str, **kwargs: Any) -> Any:
        began = time.perf_counter()
        response = await send(method, path, **kwargs)
        waited[method] += time.perf_counter() - began
        what = "status" if path.endswith("/status") else "event" if "/events" in path else "item"
        if path.rstrip("/") == store._collection:
            what = "collection"
        requests[f"{method} {what} {response.status_code}"] += 1
        return response

    store._request = counted_request  # type: ignore[method-assign]
    # The chat builds the Kubernetes store from its pod's service account; here it is given the URL.
    services.incidents = build_incidents(settings, services.engine, store=store)
    worker = services.incidents.worker
    assert worker is not None
    runner = worker.run
    runs: Counter[str] = Counter()
    active = {"now": 0, "max": 0}
    finished = {"count": 0, "last": 0.0}

    spans: list[tuple[str, float, float]] = []  # (name, run began, run ended): wall-clock times

    async def counted(item: StoredInvestigation) -> dict[str, Any]:
        runs[item.name] += 1
        active["now"] += 1
        active["max"] = max(active["max"], active["now"])
        began = time.time()
        try:
            return await runner(item)
        finally:
            active["now"] -= 1
            spans.append((item.name, began, time.time()))

    record = services.incidents.record

    async def recorded(item: StoredInvestigation) -> None:
        # Called once the outcome is stored, then the Events: the end of the machinery's work.
        await record(item)
        finished["count"] += 1
        finished["last"] = time.time()

    worker.run = counted
    worker.finished = recorded

    @app.get("/bench/stats")
    async def stats() -> dict[str, Any]:
        return {
            "runs": dict(runs),
            "max_running": active["max"],
            "finished": finished["count"],
            "last_finished_at": finished["last"],
            "requests": dict(requests),
            "waited": dict(waited),
            "spans": spans,
        }

    @app.post("/bench/bare")
    async def bare(body: dict[str, Any] = Body()) -> dict[str, Any]:  # noqa: B008 - FastAPI's way
        alerts = parse_notification(body["notification"]).alerts
        items = [
            StoredInvestigation(f"bare-{i}-{name_of(a)}"[:63], NAMESPACE, alert_spec(a), {}, "", "")
            for i, a in enumerate(alerts)
        ]
        queue = iter(items)
        phases: Counter[str] = Counter()
        reasons: list[str] = []

        async def one_lane() -> None:
            for item in queue:
                outcome = await runner(item)
                phases[outcome["phase"]] += 1
                if outcome.get("reason"):
                    reasons.append(outcome["reason"])

        began = time.perf_counter()
        await asyncio.gather(*(one_lane() for _ in range(int(body["concurrency"]))))
        return {"seconds": time.perf_counter() - began, "phases": dict(phases), "reasons": reasons[:1]}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- the run -----------------------------------------------------------------------------------------


def alert(i: int) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": {
            "alertname": f"BurstAlert{i % 7}",
            "namespace": "shop",
            "pod": f"web-{i}",
            "severity": ("critical", "warning")[i % 2],
        },
        "annotations": {"summary": f"web-{i} is failing"},
        "startsAt": "2026-01-01T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": f"{i:016x}",
    }


def notification(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": "{}:{}",
        "status": "firing",
        "receiver": "ai-ops",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


def write_config(llm_url: str, path: Path) -> None:
    from ai_ops_api.agent_config import AgentConfig, ModelEntry, ProviderEntry

    provider = ProviderEntry(name="p", type="openai_compatible", base_url=llm_url.removesuffix("/v1"))
    # The fake LLM answers the model `investigator` with a call of the diagnosis tool (_fake_llm_server.py).
    model = ModelEntry(name="main", model="investigator", provider=provider, default=True)
    path.write_text(AgentConfig(namespace=NAMESPACE, models=(model,)).finalize().to_json())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def idle_slots(
    stats: list[dict[str, Any]], created_at: dict[str, float], concurrency: int, bare_turn: float
) -> str:
    """Where the burst's wall time goes besides the turns: how long slots stood free while an
    Investigation was waiting unclaimed, how long it waited for a slot, and the turns' own length."""
    spans = [span for s in stats for span in s["spans"]]
    started = {name: began for name, began, _ in spans}
    moments = sorted({*created_at.values(), *(b for _, b, _ in spans), *(e for _, _, e in spans)})
    idle = 0.0
    for t0, t1 in itertools.pairwise(moments):
        middle = (t0 + t1) / 2
        waiting = sum(1 for n, c in created_at.items() if c <= middle < started.get(n, float("inf")))
        running = sum(1 for _, b, e in spans if b <= middle < e)
        idle += min(waiting, 2 * concurrency - running) * (t1 - t0)
    waits = [started[n] - c for n, c in created_at.items() if n in started]
    turns = [e - b for _, b, e in spans]
    return (
        f"slot-seconds free while an Investigation waited unclaimed: {idle:.1f}; created -> claimed "
        f"p50 {statistics.median(waits):.2f} s, p95 {percentile(waits, 95):.2f} s; a turn in the burst "
        f"p50 {statistics.median(turns) * 1000:.0f} ms (bare: {bare_turn * 1000:.0f} ms on average)"
    )


def start_api_server(kind: str) -> tuple[Any, str, str, str]:
    """(handle to stop, URL, bearer token, CA file) of the Investigations' API server."""
    if kind == "emulator":
        port = free_port()
        child = Child(
            "emulator",
            [PYTHON, __file__, "--serve-emulator", str(port)],
            f"http://127.0.0.1:{port}/api/v1/namespaces/{NAMESPACE}",
        )
        child.wait_ready()
        return child, f"http://127.0.0.1:{port}", "", ""
    from kubernetes import client

    from tests.cluster.controlplane import ControlPlane, find_binaries
    from tests.cluster.helpers import install_crds

    plane = ControlPlane(find_binaries())
    plane.start()
    print(f"kube-apiserver and etcd ready in {plane.started_in:.1f} s")
    install_crds(plane)
    api = plane.api_client()
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    # The replicas' service account may do anything in the namespace (the chart's Role is narrower).
    client.RbacAuthorizationV1Api(api).create_namespaced_role_binding(
        NAMESPACE,
        {
            "metadata": {"name": "chat"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "chat", "namespace": NAMESPACE}],
        },
    )
    token = plane.service_account_token(NAMESPACE, "chat")
    api.close()
    return plane, plane.url, token, str(plane.certs.ca_cert)


async def run(args: argparse.Namespace) -> int:
    import httpx

    llm_port = free_port()
    llm_child = Child(
        "fake-llm",
        [PYTHON, str(Path(__file__).resolve().parent / "_fake_llm_server.py"), str(llm_port)],
        f"http://127.0.0.1:{llm_port}/v1/models",
        env={"AI_OPS_BENCH_INVESTIGATOR_DELAY": str(args.model_delay)},
    )
    llm_child.wait_ready()
    llm_url = f"http://127.0.0.1:{llm_port}/v1"
    children: list[Any] = [llm_child]
    failures: list[str] = []
    try:
        api, api_url, token, ca = start_api_server(args.apiserver)
        children.append(api)
        config = LOG_DIR / "agent-config.json"
        write_config(llm_url, config)
        ports = [free_port(), free_port()]
        replicas = [
            Child(
                f"replica-{n}",
                [
                    PYTHON,
                    __file__,
                    "--serve-replica",
                    str(port),
                    str(config),
                    api_url,
                    token,
                    ca,
                    str(args.concurrency),
                ],
                f"http://127.0.0.1:{port}/healthz",
                env={"AI_OPS_LOG_LEVEL": "WARNING"},
            )
            for n, port in enumerate(ports)
        ]
        children.extend(replicas)
        for replica in replicas:
            replica.wait_ready(timeout=300)  # a loaded machine imports slowly
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        clients = [
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120, limits=limits)
            for port in ports
        ]
        alerts = [alert(i) for i in range(args.alerts)]

        # Bare: the same turns, each replica running half of them at the workers' parallelism.
        await asyncio.gather(  # warm-up: model clients, first graph builds
            *(
                c.post("/bench/bare", json={"notification": notification(alert(10**6 + n)), "concurrency": 1})
                for n, c in enumerate(clients)
            )
        )
        measured = [c for c in children if isinstance(c, Child)]
        cpu_start = {c.name: c.cpu_seconds() for c in measured}
        began = time.perf_counter()
        bare = await asyncio.gather(
            *(
                c.post(
                    "/bench/bare",
                    json={"notification": notification(*alerts[n::2]), "concurrency": args.concurrency},
                )
                for n, c in enumerate(clients)
            )
        )
        bare_wall = time.perf_counter() - began
        cpu_bare = {c.name: c.cpu_seconds() - cpu_start[c.name] for c in measured}
        bare_phases = Counter[str]()
        for answer in bare:
            answer.raise_for_status()
            bare_phases.update(answer.json()["phases"])
            if answer.json()["reasons"]:
                print("a bare turn failed:", answer.json()["reasons"][0])

        # The burst: distinct i to replica i % 2, its repeat to the other one; shuffled, `senders` in flight.
        sends = [(i, i % 2) for i in range(args.alerts)] + [(i, 1 - i % 2) for i in range(args.alerts)]
        random.Random(7).shuffle(sends)
        created_latency: list[float] = []
        all_latency: list[float] = []
        created: Counter[str] = Counter()
        created_at: dict[str, float] = {}
        named: dict[int, str] = {}
        queue = iter(sends)
        resent = [0]

        async def sender() -> None:
            for i, replica in queue:
                started = time.perf_counter()
                for attempt in range(3):
                    # Sent again on a dropped connection (a keep-alive closed under load), as Alertmanager
                    # does: the receiver is idempotent, so a repeat is harmless.
                    try:
                        answer = await clients[replica].post(
                            "/api/alerts/alertmanager", json=notification(alerts[i])
                        )
                        break
                    except (httpx.ReadError, httpx.RemoteProtocolError):
                        resent[0] += 1
                        if attempt == 2:
                            raise
                elapsed = time.perf_counter() - started
                answer.raise_for_status()
                ((entry),) = answer.json()["investigations"]
                named[i] = entry["name"]
                all_latency.append(elapsed)
                if entry["created"]:
                    created_at[entry["name"]] = time.time()  # an upper bound: the 202 follows the create
                    created[entry["name"]] += 1
                    created_latency.append(elapsed)

        cpu_start = {c.name: c.cpu_seconds() for c in measured}
        burst_began = time.perf_counter()
        burst_began_at = time.time()  # the replicas' finishing times are wall-clock times of this machine
        await asyncio.gather(*(sender() for _ in range(args.senders)))
        burst_wall = time.perf_counter() - burst_began
        # Watched through the replicas' counters, not by listing: the watching must not load the store.
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            stats = [(await c.get("/bench/stats")).json() for c in clients]
            if sum(s["finished"] for s in stats) >= args.alerts:
                break
            await asyncio.sleep(0.1)
        machinery_wall = max(s["last_finished_at"] for s in stats) - burst_began_at
        cpu_burst = {c.name: c.cpu_seconds() - cpu_start[c.name] for c in measured}
        listed = (await clients[0].get("/api/investigations")).json()["investigations"]
        phases = Counter(i["phase"] for i in listed)
        failed = [i["name"] for i in listed if i["phase"] == "Failed"]
        if failed:
            reason = (await clients[0].get(f"/api/investigations/{failed[0]}")).json()["status"].get("reason")
            print(f"{len(failed)} failed, e.g. {failed[0]}: {reason}")
        for c in clients:
            await c.aclose()

        # -- figures -------------------------------------------------------------------------------------
        runs: Counter[str] = Counter()
        for s in stats:
            runs.update(s["runs"])
        names = set(named.values())
        print(
            f"API server: {args.apiserver}; {args.alerts} distinct alerts + {args.alerts} repeats, "
            f"{args.senders} senders, 2 replicas x concurrency {args.concurrency}"
        )
        print(
            f"distinct names {len(names)}, created once {sum(1 for n in names if created[n] == 1)}, "
            f"created twice or more {sum(1 for n in names if created[n] > 1)}"
        )
        once = sum(1 for n in names if runs[n] == 1)
        print(
            f"investigated exactly once {once}/{len(names)}; never {sum(1 for n in names if runs[n] == 0)}; "
            f"more than once {sum(1 for n in names if runs[n] > 1)}"
        )
        print(f"phases at the end: {dict(phases)} (bare turns: {dict(bare_phases)})")
        for n, s in enumerate(stats):
            print(
                f"replica {n}: {sum(s['runs'].values())} runs, most Running at once {s['max_running']} "
                f"(bound {args.concurrency})"
            )
        for n, s in enumerate(stats):
            print(
                f"replica {n} store requests: "
                + ", ".join(f"{k} {v}" for k, v in sorted(s["requests"].items()))
            )
            print(
                f"replica {n} mean answer time per method: "
                + ", ".join(
                    f"{m} {w / sum(v for k, v in s['requests'].items() if k.startswith(m + ' ')) * 1000:.0f} ms"
                    for m, w in sorted(s["waited"].items())
                )
            )
        print(f"resent after a dropped connection: {resent[0]}")
        print(idle_slots(stats, created_at, args.concurrency, bare_wall * 2 * args.concurrency / args.alerts))
        print(f"burst sent in {burst_wall:.2f} s ({2 * args.alerts / burst_wall:.0f} notifications/s)")
        print(
            f"alert -> Investigation created: p50 {statistics.median(created_latency) * 1000:.1f} ms, "
            f"p95 {percentile(created_latency, 95) * 1000:.1f} ms "
            f"(all sends incl. repeats: p50 {statistics.median(all_latency) * 1000:.1f} ms, "
            f"p95 {percentile(all_latency, 95) * 1000:.1f} ms)"
        )
        print(
            "CPU seconds (bare | burst): "
            + ", ".join(f"{name} {cpu_bare[name]:.1f} | {cpu_burst[name]:.1f}" for name in cpu_bare)
        )
        ratio = machinery_wall / bare_wall
        print(
            f"first alert -> last diagnosis {machinery_wall:.2f} s; the same {args.alerts} agent turns bare "
            f"{bare_wall:.2f} s; ratio {ratio:.2f}x (target <= {TARGET_RATIO}x)"
        )
        if len(names) != args.alerts or any(created[n] != 1 for n in names):
            failures.append("a distinct alert was not created exactly once")
        if once != args.alerts:
            failures.append("an alert was not investigated exactly once")
        if phases.get("Diagnosed", 0) != args.alerts:
            failures.append("not every investigation was Diagnosed (lost or failed)")
        if any(s["max_running"] > args.concurrency for s in stats):
            failures.append("a replica ran more than its concurrency bound at once")
    finally:
        for child in reversed(children):
            child.stop()
    for failure in failures:
        print(f"INCORRECT: {failure}")
    print(f"logs: {LOG_DIR}")
    return 1 if failures else 0


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--serve-emulator":
        serve_emulator(int(sys.argv[2]))
        return
    if len(sys.argv) > 2 and sys.argv[1] == "--serve-replica":
        port, config, api_url, token, ca, concurrency = sys.argv[2:8]
        serve_replica(int(port), config, api_url, token, ca, int(concurrency))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--apiserver", choices=("emulator", "real"), default="emulator")
    parser.add_argument("--alerts", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4, help="AI_OPS_INVESTIGATIONS_CONCURRENCY")
    parser.add_argument("--senders", type=int, default=32, help="notifications in flight")
    parser.add_argument(
        "--model-delay", type=float, default=0.0, help="seconds the fake model takes per answer (0: none)"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the diagnoses")
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
