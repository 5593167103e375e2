# Sourced inside the VM (by guest.sh and bench.sh): serve the venv and the standard
# library from RAM when scripts/vmtest.sh left tarballs of them (see there). Needs $repo.
stage=$repo/.vmtest/python
if [ -s "$stage/venv.tar" ] && [ -s "$stage/stdlib.tar" ] && [ -s "$stage/stdlib.path" ]; then
    stdlib=$(cat "$stage/stdlib.path")
    mkdir -p /run/xdpd-py/venv /run/xdpd-py/stdlib
    # The checkout first (when packed): the RAM copy goes over $repo with the real
    # .vmtest (results, read by the host) bound into it; then the venv over its .venv.
    if [ -s "$stage/repo.tar" ]; then
        mkdir -p /run/xdpd-repo
        if tar -C /run/xdpd-repo -xf "$stage/repo.tar" &&
            mkdir -p /run/xdpd-repo/.venv /run/xdpd-repo/.vmtest &&
            mount --bind "$repo/.vmtest" /run/xdpd-repo/.vmtest &&
            mount --rbind /run/xdpd-repo "$repo"; then
            echo "guest: the checkout served from RAM"
        else
            echo "guest: could not stage the checkout in RAM; using 9p" >&2
        fi
    fi
    if tar -C /run/xdpd-py/venv -xf "$stage/venv.tar" &&
        tar -C /run/xdpd-py/stdlib -xf "$stage/stdlib.tar" &&
        mount --bind /run/xdpd-py/venv "$repo/.venv" &&
        mount --bind /run/xdpd-py/stdlib "$stdlib"; then
        echo "guest: venv and $stdlib served from RAM, up $(cut -d" " -f1 /proc/uptime)s"
    else
        echo "guest: could not stage Python in RAM; using 9p" >&2
    fi
fi

