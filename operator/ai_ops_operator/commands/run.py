"""``ai-ops operator``: run the operator in-cluster or against the current kubeconfig.

Settings come from flags or environment variables (see ``settings.py`` and docs/operator.md); a wrong
setting stops it at start with a clear message and exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from ai_ops_operator.runtime import settings as settings_module


def add_arguments(parser: argparse.ArgumentParser) -> None:
    settings_module.add_arguments(parser)


def configure_logging(level: str, log_format: str) -> None:
    import kopf

    kopf.configure(
        verbose=level == "DEBUG",
        log_format=kopf.LogFormat.JSON if log_format == "json" else kopf.LogFormat.FULL,
        log_refkey="object",
    )
    logging.getLogger().setLevel(level)
    # kopf logs every watch-event handler call at INFO ("Handler ... succeeded"): one line per event of
    # every watched Secret is noise, so its per-object logger speaks from WARNING unless debugging.
    if level != "DEBUG":
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        # One access line per liveness probe (every few seconds) is noise too.
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_module.resolve(args)
    except settings_module.SettingsError as exc:
        print(f"ai-ops operator: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    log = logging.getLogger("ai_ops.operator")

    from ai_ops_operator.runtime.kube import KubeClient
    from ai_ops_operator.runtime.operator import OperatorRuntime, StartupFailure

    try:
        kube = KubeClient.from_environment(settings.kubeconfig)
    except Exception as exc:  # kubeconfig missing or broken: say so, no traceback
        print(f"ai-ops operator: cannot load Kubernetes credentials: {exc}", file=sys.stderr)
        return 2
    runtime = OperatorRuntime(settings, kube)
    log.info(
        "starting: namespaces=%s configmap=%s deployment=%s probe-concurrency=%d allow-loopback=%s peering=%s",
        "*" if settings.clusterwide else ",".join(settings.namespaces),
        settings.configmap_name,
        settings.chat_deployment,
        settings.probe_concurrency,
        settings.allow_loopback,
        settings.peering_name or "standalone",
    )
    try:
        asyncio.run(runtime.run())
    except KeyboardInterrupt:
        return 130
    except StartupFailure as exc:
        print(f"ai-ops operator: {exc}", file=sys.stderr)
        return 2
    finally:
        kube.close()
    return 0
