"""``xdp-dispatch agent``: keeps a config file's chains true on a running host (face layer).

``decide.py`` (pure): what an event means; ``service.py``: the event loop (inotify,
rtnetlink, signals, resync timer) around ``config.apply``; ``http.py``: /metrics,
/healthz, /readyz; ``sdnotify.py``: systemd's notify protocol."""
