# Sourced by scripts/test.sh and scripts/vmtest.sh: where the VM tier's kernels are.
#
# newest_kernel SERIES: the newest image of SERIES (6.1, 6.12, 7, ...) of Debian's plain
# -amd64 flavour (the -cloud one lacks 9p), or nothing. Debian 12 installs images as
# /boot/vmlinuz-RELEASE; sid's, unpacked by scripts/test.sh, are
# /lib/modules/RELEASE/vmlinuz (beside their modules, where the VM looks for them).
newest_kernel() {
    local f
    for f in /boot/vmlinuz-"$1".*-amd64 /lib/modules/"$1".*-amd64/vmlinuz; do
        case $f in *-cloud-amd64*|*-rt-amd64*) continue ;; esac
        [ -e "$f" ] && printf '%s %s\n' "$(kernel_release "$f")" "$f"
    done | sort -V | tail -n 1 | cut -d' ' -f2
}

# kernel_release IMAGE: RELEASE of /boot/vmlinuz-RELEASE or /lib/modules/RELEASE/vmlinuz.
kernel_release() {
    case $1 in
        */vmlinuz) basename "$(dirname "$1")" ;;
        */vmlinuz-*) basename "$1" | sed 's/^vmlinuz-//' ;;
        *) return 1 ;;
    esac
}
