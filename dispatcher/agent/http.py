"""The agent's HTTP endpoints (stdlib ``http.server`` in a thread): ``/metrics`` (the
chains' component counters and the agent's own metrics, through prometheus_client),
``/healthz`` (the loop is alive) and ``/readyz`` (the first apply succeeded)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from dispatcher.errors import UsageError


class AgentMetrics:
    """The agent's own metrics, in a private registry (with the component counters)."""

    def __init__(self, namespaces: Callable[[], Sequence[str | None]]) -> None:
        from dispatcher.stats import LiveCollector

        self.registry = reg = CollectorRegistry(auto_describe=True)
        self.reconciles = Counter(
            "xdp_dispatch_agent_reconciles", "Reconciles by trigger and outcome",
            ["trigger", "outcome"], registry=reg)
        self.apply_seconds = Histogram(
            "xdp_dispatch_agent_apply_duration_seconds", "Time of each plan/apply",
            ["scope"], registry=reg,
            buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.drift = Gauge("xdp_dispatch_agent_drift",
                           "1 while an interface differs from the config (on_drift: report, "
                           "or a repair failed)", ["interface", "netns"], registry=reg)
        self.last_success = Gauge("xdp_dispatch_agent_last_success_timestamp_seconds",
                                  "Unix time of the last successful reconcile", registry=reg)
        self.generation = Gauge("xdp_dispatch_agent_config_generation",
                                "Valid config versions loaded since the agent started",
                                registry=reg)
        self.config_errors = Counter("xdp_dispatch_agent_config_errors",
                                     "Config edits refused (the last good config stays)",
                                     registry=reg)
        self.config_valid = Gauge("xdp_dispatch_agent_config_valid",
                                  "1 if the config file as it is now is in force", registry=reg)
        self.ready = Gauge("xdp_dispatch_agent_ready", "1 after the first successful apply",
                           registry=reg)
        self.interfaces = Gauge("xdp_dispatch_agent_interfaces",
                                "Interfaces the agent keeps a chain on", registry=reg)
        reg.register(LiveCollector(namespaces))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class Server:
    """``ThreadingHTTPServer`` on ``listen`` (HOST:PORT) serving the three endpoints."""

    def __init__(self, listen: str, metrics: AgentMetrics, ready: Callable[[], bool],
                 alive: Callable[[], bool]) -> None:
        host, sep, port = listen.rpartition(":")
        if not sep or not port.isdigit():
            raise UsageError(f"--listen {listen}: expected HOST:PORT (e.g. 127.0.0.1:9720) "
                             "or none")
        host = host.strip("[]")

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802  (http.server's naming)
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, metrics.exposition(), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    ok = alive()
                    self._send(200 if ok else 503, b"ok\n" if ok else b"stalled\n")
                elif path == "/readyz":
                    ok = ready()
                    self._send(200 if ok else 503, b"ready\n" if ok else b"not ready\n")
                else:
                    self._send(404, b"not found: /metrics, /healthz, /readyz\n")

            def _send(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return          # scrapes are not decisions: not logged

        try:
            self.httpd = ThreadingHTTPServer((host, int(port)), Handler)
        except OSError as e:
            raise UsageError(f"--listen {listen}: {e.strerror or e}") from None
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="agent-http",
                                       kwargs={"poll_interval": 3600}, daemon=True)

    @property
    def address(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"{host.decode() if isinstance(host, bytes) else host}:{port}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        # not shutdown(): it waits for the serving loop's next poll (an hour: the loop
        # sleeps in select, no periodic wake-ups); the thread is a daemon, the process ends
        self.httpd.server_close()
