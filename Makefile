# xdp-dispatch: build, install and test entry points.
# Every target is a thin wrapper: the real work is in scripts/, so the same
# steps run without make (see README.md).

SHELL := /bin/bash
PYTHON ?= $(firstword $(wildcard .venv/bin/python) python3)
LINT_IMPORTS ?= $(firstword $(wildcard .venv/bin/lint-imports) lint-imports)

# BPF objects: bpf/*.c -> dispatcher/bpf/*.o (shipped inside the Python
# package), bpf/examples/*.c -> bpf/examples/*.o (committed next to sources).
BPF_SRCS      := $(wildcard bpf/*.c)
BPF_OBJS      := $(patsubst bpf/%.c,dispatcher/bpf/%.o,$(BPF_SRCS))
EXAMPLE_SRCS  := $(wildcard bpf/examples/*.c)
EXAMPLE_OBJS  := $(EXAMPLE_SRCS:.c=.o)
BPF_HEADERS   := $(wildcard bpf/include/*.h)

.PHONY: all bpf install demo test unittest hosttest vmtest lint bench clean mutation

all: bpf

bpf: $(BPF_OBJS) $(EXAMPLE_OBJS)

dispatcher/bpf/%.o: bpf/%.c $(BPF_HEADERS) scripts/bpf-cc.sh
	@mkdir -p $(@D)
	scripts/bpf-cc.sh $< $@

bpf/examples/%.o: bpf/examples/%.c $(BPF_HEADERS) scripts/bpf-cc.sh
	scripts/bpf-cc.sh $< $@

# Install the tool system-wide (root): /opt/xdp-dispatch/venv + /usr/local/bin/xdp-dispatch.
install:
	bash scripts/install.sh

demo:
	bash scripts/demo.sh

# Everything: installs test dependencies, then unit, host and VM tiers (root).
test:
	bash scripts/test.sh

unittest:
	$(PYTHON) -m pytest tests/unit -p no:cacheprovider

hosttest:
	@mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
	$(PYTHON) -m pytest tests/host -p no:cacheprovider -rfEs

# KERNELS="/boot/vmlinuz-..." to choose; default: newest 6.1 and 6.12 in /boot.
vmtest:
	bash scripts/vmtest.sh $(KERNELS)

# Mutation testing of the pure core by the unit tier (mutmut): a score per module.
# MODULES="dispatcher/config/plan.py ..." for some; CHANGED=1 for those changed since main.
mutation:
	bash scripts/mutation.sh $(if $(CHANGED),--changed) $(MODULES)

# ruff, mypy --strict, then the layer contracts of pyproject's [tool.importlinter].
lint:
	$(PYTHON) -m ruff check dispatcher tests
	$(PYTHON) -m mypy
	$(LINT_IMPORTS) --no-cache

bench:
	@if [ -f bench/run.py ]; then $(PYTHON) bench/run.py; else echo "bench/run.py not present"; fi

# Removes build and test leftovers; the committed BPF objects stay (use `make -B bpf` to rebuild).
clean:
	rm -rf build .vmtest *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -path ./.venv -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf
