"""The runbook index's pure core: sections, hybrid search, abstention, incremental updates, fallbacks."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from langchain_core.embeddings import Embeddings

from chat_service.runbooks.documents import OVERVIEW, RunbookDocument, RunbookMatch, split_sections
from chat_service.runbooks.embeddings import CachedEmbedder, LocalEmbeddings
from chat_service.runbooks.index import MIN_COVERAGE, MIN_COVERAGE_WITHOUT_VECTORS, RunbookIndex

CRASH = RunbookDocument(
    name="pod-crashloop",
    title="Pod stuck in CrashLoopBackOff",
    description="A container exits again and again and Kubernetes backs off restarting it.",
    tags=("kubernetes", "pods"),
    content=textwrap.dedent(
        """\
        ## Symptoms
        The pod shows CrashLoopBackOff and its restart count keeps growing.
        ## Diagnosis
        Read the log of the previous container:
        ```
        # not a heading: a comment in a shell block
        kubectl logs POD --previous
        ```
        ## Resolution
        Fix the configuration or roll back the Deployment.
        """
    ),
)
DNS = RunbookDocument(
    name="dns-failures",
    title="DNS resolution failing inside the cluster",
    description="Pods cannot resolve service or external names.",
    content="## Symptoms\nLookups answer NXDOMAIN or time out.\n## Diagnosis\nCheck the CoreDNS pods and their logs.",
)
BGP = RunbookDocument(
    name="bgp-session-down",
    title="BGP session down",
    description="A BGP peer of a router or of MetalLB is not Established.",
    content="## Diagnosis\nRun `birdc show protocols` or `vtysh -c 'show bgp summary'`.\n## Resolution\nCheck the peer.",
)


@pytest.fixture(scope="module")
def local() -> LocalEmbeddings:
    return LocalEmbeddings()


def test_sections_follow_the_headings_and_skip_those_in_code() -> None:
    sections = split_sections(CRASH)
    assert [s.heading for s in sections] == [OVERVIEW, "Symptoms", "Diagnosis", "Resolution"]
    assert "kubectl logs POD --previous" in sections[2].text
    assert "# not a heading" in sections[2].text
    assert sections[0].text.startswith("A container exits")
    assert "Tags: kubernetes, pods" in sections[0].text
    assert all(s.runbook == "pod-crashloop" and s.title == CRASH.title for s in sections)


def test_a_long_section_is_cut_into_parts() -> None:
    doc = RunbookDocument(
        "long", "Long", "## Steps\n" + "\n\n".join(f"step {i} " + "x" * 900 for i in range(10))
    )
    headings = [s.heading for s in split_sections(doc)]
    assert headings[1] == "Steps" and headings[2] == "Steps (2)"
    assert all(len(s.text) <= 4000 for s in split_sections(doc))


def test_match_needs_every_given_part() -> None:
    match = RunbookMatch(alert_names=("KubePodCrashLooping",), severities=("critical",), labels={"team": "a"})
    assert match.matches("KubePodCrashLooping", {"severity": "critical", "team": "a"})
    assert not match.matches("KubePodCrashLooping", {"severity": "warning", "team": "a"})
    assert not match.matches("Other", {"severity": "critical", "team": "a"})
    assert not RunbookMatch().matches("KubePodCrashLooping", {})


async def test_paraphrases_alert_words_and_typos_find_their_runbook(local: LocalEmbeddings) -> None:
    index = RunbookIndex(CachedEmbedder(local, local.model_id))
    await index.update([CRASH, DNS, BGP])
    for query, expected in [
        ("pod keeps crashing and restarting", "pod-crashloop"),
        ("CrashLoopBackOff in payments", "pod-crashloop"),
        ("crashloopbakoff", "pod-crashloop"),
        ("nslookup says NXDOMAIN for the service", "dns-failures"),
        ("bgp peer not established", "bgp-session-down"),
    ]:
        result = await index.search(query, limit=3)
        assert result.matched, query
        assert result.hits[0].runbook == expected, (query, result.hits)
        assert result.mode == "hybrid"


async def test_a_query_that_matches_nothing_says_so(local: LocalEmbeddings) -> None:
    index = RunbookIndex(CachedEmbedder(local, local.model_id))
    await index.update([CRASH, DNS, BGP])
    result = await index.search("write a poem about the sea", limit=3)
    assert not result.matched
    assert result.hits == ()


async def test_only_changed_runbooks_are_embedded_again(local: LocalEmbeddings) -> None:
    embedder = CachedEmbedder(local, local.model_id)
    index = RunbookIndex(embedder)
    first = await index.update([CRASH, DNS])
    assert first.embedded_sections == len(split_sections(CRASH)) + len(split_sections(DNS))
    again = await index.update([CRASH, DNS])
    assert (again.embedded_sections, again.changed_runbooks) == (0, 0)
    edited = RunbookDocument(DNS.name, DNS.title, DNS.content + "\n## Escalation\nPage the network team.")
    third = await index.update([CRASH, edited])
    # Only the new section and the overview (its description changed) reach the model.
    assert third.changed_runbooks == 1
    assert 1 <= third.embedded_sections <= 2
    assert (await index.search("page the network team", limit=1)).hits[0].runbook == "dns-failures"
    await index.update([CRASH])
    assert "dns-failures" not in {h.runbook for h in (await index.search("NXDOMAIN lookups", 5)).hits}


class _DownEmbeddings(Embeddings):
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        raise ConnectionError("connection refused")

    def embed_query(self, text: str) -> list[float]:
        raise ConnectionError("connection refused")


async def test_an_embedding_model_that_is_down_leaves_bm25_working() -> None:
    index = RunbookIndex(CachedEmbedder(_DownEmbeddings(), "down"))
    await index.update([CRASH, DNS, BGP])
    assert index.mode == "bm25"
    assert index.vector_error is not None and "ConnectionError" in index.vector_error
    result = await index.search("CrashLoopBackOff restart count", limit=2)
    assert result.matched and result.mode == "bm25"
    assert result.hits[0].runbook == "pod-crashloop"


async def test_without_vectors_a_partial_keyword_match_is_found_and_nonsense_still_abstains() -> None:
    # A third of the query's words in one section: the hybrid bar (MIN_COVERAGE) would refuse it, and with
    # the embedding model down keywords are all there is.
    index = RunbookIndex(CachedEmbedder(_DownEmbeddings(), "down"))
    await index.update([CRASH, DNS, BGP])
    query = "container logs show the app crashing at start"
    result = await index.search(query, limit=3)
    assert result.mode == "bm25" and MIN_COVERAGE_WITHOUT_VECTORS <= result.coverage < MIN_COVERAGE
    assert result.matched and result.hits[0].runbook == "pod-crashloop"
    for nonsense in ("write a poem about the sea", "kubernetes cluster upgrade plan"):
        assert not (await index.search(nonsense, limit=3)).matched, nonsense


async def test_an_index_build_leaves_nothing_in_the_log_below_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # bm25s would log each build at DEBUG on its own logger whatever the service's level.
    caplog.set_level(logging.DEBUG)
    index = RunbookIndex(None)
    await index.update([CRASH, DNS])
    assert [r.getMessage() for r in caplog.records if r.name.startswith("bm25s")] == []


async def test_the_cache_serves_a_second_embedder_of_the_same_model(
    local: LocalEmbeddings, redis_server
) -> None:  # type: ignore[no-untyped-def]
    import redis.asyncio

    client = redis.asyncio.from_url(redis_server.url)
    try:
        await client.flushdb()
        one = CachedEmbedder(local, local.model_id, redis=client)
        rows = await one.embed(["node not ready", "disk pressure"])
        two = CachedEmbedder(local, local.model_id, redis=client)  # another replica, or a restart
        again = await two.embed(["node not ready", "disk pressure"])
        assert (one.embedded_texts, two.embedded_texts) == (2, 0)
        assert np.allclose(rows, again)
    finally:
        await client.aclose()


def test_the_local_model_loads_with_no_network_at_all() -> None:
    # In a network namespace of its own nothing can be downloaded: loading and embedding must still work.
    code = (
        "from chat_service.runbooks.embeddings import LocalEmbeddings\n"
        "v = LocalEmbeddings().embed_query('node not ready')\n"
        "print(len(v))\n"
    )
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("unshare -n is not permitted here")
    done = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "256"
