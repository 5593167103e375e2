"""Crafted Ethernet/IPv4 frames for BPF_PROG_TEST_RUN."""

from __future__ import annotations

import socket
import struct

SRC_MAC = bytes.fromhex("020000000001")
DST_MAC = bytes.fromhex("020000000002")


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def ipv4(proto: int, payload: bytes, src: str = "192.0.2.1", dst: str = "192.0.2.2") -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, proto, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    hdr = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:]
    return DST_MAC + SRC_MAC + b"\x08\x00" + hdr + payload


def udp_packet(sport: int = 1234, dport: int = 5678, payload: bytes = b"hello",
               src: str = "192.0.2.1", dst: str = "192.0.2.2") -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    return ipv4(17, udp, src, dst)


def tcp_packet(sport: int = 1234, dport: int = 80, src: str = "192.0.2.1",
               dst: str = "192.0.2.2") -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 0, 0, 5 << 4, 2, 1024, 0, 0)
    return ipv4(6, tcp, src, dst)


def icmp_echo(src: str = "192.0.2.1", dst: str = "192.0.2.2") -> bytes:
    body = struct.pack("!BBHHH", 8, 0, 0, 1, 1) + b"ping" * 8
    body = body[:2] + struct.pack("!H", _csum(body)) + body[4:]
    return ipv4(1, body, src, dst)


def arp_packet() -> bytes:
    return b"\xff" * 6 + SRC_MAC + b"\x08\x06" + bytes(28)
