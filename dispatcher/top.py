"""``xdp-dispatch top``: a live full-screen view of every chain's per-component rates.

curses (the system's ncurses) draws the screen and reads keys; what the screen shows is
``stats.top_lines`` (pure). Not a terminal: one plain sample of the rates, as
``stats --interval``.
"""

from __future__ import annotations

import curses
import sys
import time

from dispatcher import stats as st


def run(iface: str | None, netns: str | None, interval: float) -> int:
    if not (sys.stdout.isatty() and sys.stdin.isatty()):
        sys.stdout.write(st.text(st.sample(iface, netns, interval), interval))
        return 0
    curses.wrapper(_loop, iface, netns, interval)
    return 0


def _loop(scr: curses.window, iface: str | None, netns: str | None, interval: float) -> None:
    try:
        curses.curs_set(0)
    except curses.error:
        pass                                # a terminal without cursor control
    scr.timeout(100)
    prev = st.collect(iface, netns)
    t0 = time.monotonic()
    shown = st.rates(prev, prev, 1.0)       # zeros until the first interval has passed
    paused = False
    only: str | None = None
    while True:
        now = time.monotonic()
        if not paused and now - t0 >= interval:
            cur = st.collect(iface, netns)
            shown, prev, t0 = st.rates(prev, cur, now - t0), cur, now
        height, width = scr.getmaxyx()
        scr.erase()
        for y, line in enumerate(st.top_lines(shown, width - 1, height, paused=paused,
                                              interval=interval, only=only)):
            scr.addnstr(y, 0, line, width - 1)
        scr.refresh()
        key = scr.getch()
        if key in (ord("q"), ord("Q")):
            return
        if key in (ord("p"), ord(" ")):
            paused = not paused
        elif key == ord("a"):
            only = None
        elif key in (ord("\t"), curses.KEY_RIGHT, ord("n")):
            names = [i.interface for i in shown]
            if names:
                only = names[(names.index(only) + 1) % len(names)] if only in names \
                    else names[0]
