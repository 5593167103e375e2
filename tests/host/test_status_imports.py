"""What reading a real chain imports (VM tier: needs freplace to build one).

`status` of an interface running our dispatcher with components reads the config map and
the pins: no BTF, no object parser, no linker/loader. See tests/unit/test_import_cost.py
for the same check on an interface without programs (it runs everywhere).
"""

from __future__ import annotations

import pytest

from tests.objects import example
from tests.unit.test_import_cost import (
    STATUS_FORBIDDEN,
    UNLOAD_FORBIDDEN,
    heavy,
    modules_after,
)

pytestmark = [pytest.mark.host_kernel]


@pytest.mark.freplace
def test_status_of_a_chain_imports_only_what_it_needs(netns_veth) -> None:  # type: ignore[no-untyped-def]
    import dispatcher

    iface = netns_veth.host_if
    dispatcher.load(iface, [example("xdp_pass"), example("xdp_counter")], mode="skb")
    try:
        (st,) = dispatcher.status(iface)
        assert st.kind == "dispatcher" and len(st.programs) == 2
        code = ("from dispatcher.cli import main\n"
                f"assert main(['status', {iface!r}]) == 0\n"
                f"assert main(['status', {iface!r}, '--json']) == 0")
        mods = modules_after(code)
        assert "dispatcher.chain.observe" in mods
        assert heavy(mods, STATUS_FORBIDDEN) == []
    finally:
        dispatcher.unload(iface, all=True)


# Removing a chain never builds one (UNLOAD_FORBIDDEN: no ELF reader, linker, loader, OpenSSL).
@pytest.mark.parametrize("objs", [["xdp_pass"], ["xdp_pass", "xdp_counter"]],
                         ids=["one", "chain"])
def test_unload_all_imports_no_loader(netns_veth, objs: list[str]) -> None:  # type: ignore[no-untyped-def]
    import dispatcher

    iface = netns_veth.host_if
    dispatcher.load(iface, [example(o) for o in objs], mode="skb")
    try:
        mods = modules_after("from dispatcher.cli import main\n"
                             f"assert main(['unload', {iface!r}, '--all']) == 0")
        assert heavy(mods, UNLOAD_FORBIDDEN) == []
        assert dispatcher.status(iface)[0].kind == "none"
    finally:
        dispatcher.unload(iface, all=True)
