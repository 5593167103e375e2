"""Names of the BPF helper functions, indexed by helper id (the ``imm`` of a helper call).

Ids 0-209 follow the order of ``enum bpf_func_id`` in the Linux 6.1 uapi header; 210 and 211
were added in Linux 6.2. Unknown ids get no name; callers print the number instead.
"""

from __future__ import annotations

HELPER_NAMES: tuple[str, ...] = (
    "unspec", "map_lookup_elem", "map_update_elem", "map_delete_elem",  # 0
    "probe_read", "ktime_get_ns", "trace_printk", "get_prandom_u32",  # 4
    "get_smp_processor_id", "skb_store_bytes", "l3_csum_replace", "l4_csum_replace",  # 8
    "tail_call", "clone_redirect", "get_current_pid_tgid", "get_current_uid_gid",  # 12
    "get_current_comm", "get_cgroup_classid", "skb_vlan_push", "skb_vlan_pop",  # 16
    "skb_get_tunnel_key", "skb_set_tunnel_key", "perf_event_read", "redirect",  # 20
    "get_route_realm", "perf_event_output", "skb_load_bytes", "get_stackid",  # 24
    "csum_diff", "skb_get_tunnel_opt", "skb_set_tunnel_opt", "skb_change_proto",  # 28
    "skb_change_type", "skb_under_cgroup", "get_hash_recalc", "get_current_task",  # 32
    "probe_write_user", "current_task_under_cgroup", "skb_change_tail", "skb_pull_data",  # 36
    "csum_update", "set_hash_invalid", "get_numa_node_id", "skb_change_head",  # 40
    "xdp_adjust_head", "probe_read_str", "get_socket_cookie", "get_socket_uid",  # 44
    "set_hash", "setsockopt", "skb_adjust_room", "redirect_map",  # 48
    "sk_redirect_map", "sock_map_update", "xdp_adjust_meta", "perf_event_read_value",  # 52
    "perf_prog_read_value", "getsockopt", "override_return", "sock_ops_cb_flags_set",  # 56
    "msg_redirect_map", "msg_apply_bytes", "msg_cork_bytes", "msg_pull_data",  # 60
    "bind", "xdp_adjust_tail", "skb_get_xfrm_state", "get_stack",  # 64
    "skb_load_bytes_relative", "fib_lookup", "sock_hash_update", "msg_redirect_hash",  # 68
    "sk_redirect_hash", "lwt_push_encap", "lwt_seg6_store_bytes", "lwt_seg6_adjust_srh",  # 72
    "lwt_seg6_action", "rc_repeat", "rc_keydown", "skb_cgroup_id",  # 76
    "get_current_cgroup_id", "get_local_storage", "sk_select_reuseport", "skb_ancestor_cgroup_id",  # 80
    "sk_lookup_tcp", "sk_lookup_udp", "sk_release", "map_push_elem",  # 84
    "map_pop_elem", "map_peek_elem", "msg_push_data", "msg_pop_data",  # 88
    "rc_pointer_rel", "spin_lock", "spin_unlock", "sk_fullsock",  # 92
    "tcp_sock", "skb_ecn_set_ce", "get_listener_sock", "skc_lookup_tcp",  # 96
    "tcp_check_syncookie", "sysctl_get_name", "sysctl_get_current_value", "sysctl_get_new_value",  # 100
    "sysctl_set_new_value", "strtol", "strtoul", "sk_storage_get",  # 104
    "sk_storage_delete", "send_signal", "tcp_gen_syncookie", "skb_output",  # 108
    "probe_read_user", "probe_read_kernel", "probe_read_user_str", "probe_read_kernel_str",  # 112
    "tcp_send_ack", "send_signal_thread", "jiffies64", "read_branch_records",  # 116
    "get_ns_current_pid_tgid", "xdp_output", "get_netns_cookie", "get_current_ancestor_cgroup_id",  # 120
    "sk_assign", "ktime_get_boot_ns", "seq_printf", "seq_write",  # 124
    "sk_cgroup_id", "sk_ancestor_cgroup_id", "ringbuf_output", "ringbuf_reserve",  # 128
    "ringbuf_submit", "ringbuf_discard", "ringbuf_query", "csum_level",  # 132
    "skc_to_tcp6_sock", "skc_to_tcp_sock", "skc_to_tcp_timewait_sock", "skc_to_tcp_request_sock",  # 136
    "skc_to_udp6_sock", "get_task_stack", "load_hdr_opt", "store_hdr_opt",  # 140
    "reserve_hdr_opt", "inode_storage_get", "inode_storage_delete", "d_path",  # 144
    "copy_from_user", "snprintf_btf", "seq_printf_btf", "skb_cgroup_classid",  # 148
    "redirect_neigh", "per_cpu_ptr", "this_cpu_ptr", "redirect_peer",  # 152
    "task_storage_get", "task_storage_delete", "get_current_task_btf", "bprm_opts_set",  # 156
    "ktime_get_coarse_ns", "ima_inode_hash", "sock_from_file", "check_mtu",  # 160
    "for_each_map_elem", "snprintf", "sys_bpf", "btf_find_by_name_kind",  # 164
    "sys_close", "timer_init", "timer_set_callback", "timer_start",  # 168
    "timer_cancel", "get_func_ip", "get_attach_cookie", "task_pt_regs",  # 172
    "get_branch_snapshot", "trace_vprintk", "skc_to_unix_sock", "kallsyms_lookup_name",  # 176
    "find_vma", "loop", "strncmp", "get_func_arg",  # 180
    "get_func_ret", "get_func_arg_cnt", "get_retval", "set_retval",  # 184
    "xdp_get_buff_len", "xdp_load_bytes", "xdp_store_bytes", "copy_from_user_task",  # 188
    "skb_set_tstamp", "ima_file_hash", "kptr_xchg", "map_lookup_percpu_elem",  # 192
    "skc_to_mptcp_sock", "dynptr_from_mem", "ringbuf_reserve_dynptr", "ringbuf_submit_dynptr",  # 196
    "ringbuf_discard_dynptr", "dynptr_read", "dynptr_write", "dynptr_data",  # 200
    "tcp_raw_gen_syncookie_ipv4", "tcp_raw_gen_syncookie_ipv6", "tcp_raw_check_syncookie_ipv4", "tcp_raw_check_syncookie_ipv6",  # 204
    "ktime_get_tai_ns", "user_ringbuf_drain", "cgrp_storage_get", "cgrp_storage_delete",  # 208
)

_BY_NAME: dict[str, int] = {name: idx for idx, name in enumerate(HELPER_NAMES)}


def helper_name(ident: int) -> str | None:
    """``bpf_<name>`` for a known helper id, else ``None`` (id 0 is ``unspec``: also ``None``)."""
    if 0 < ident < len(HELPER_NAMES):
        return "bpf_" + HELPER_NAMES[ident]
    return None


def helper_id(name: str) -> int | None:
    """Id of a helper given as ``map_lookup_elem`` or ``bpf_map_lookup_elem``; ``None`` if unknown."""
    key = name[4:] if name.startswith("bpf_") else name
    idx = _BY_NAME.get(key)
    return idx if idx else None
