# The two commands of the quick start, `make run` and `make test`, and `make cluster`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml setup.py shm/_codec.c appliance/client/_accumulator.c | sha1sum | cut -c1-12)

.PHONY: run cluster test lint bench clean

$(STAMP): pyproject.toml setup.py shm/_codec.c appliance/client/_accumulator.c
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

run: $(STAMP)
	mkdir -p data
	@printf '%s\n' "In another terminal, produce and consume (Ctrl-C here stops the appliance):" \
	  "  printf 'alice:hello\\nbob:hi\\n' | $(VENV)/bin/ringlog produce greetings --key-separator :" \
	  "  $(VENV)/bin/ringlog consume greetings --from-beginning --max-messages 2 --print-key"
	$(VENV)/bin/ringlog serve --override log.dirs=./data

# ZooKeeper (Debian's zookeeper package) and the three brokers of config/cluster
# on 127.0.0.11-13, data under ./data/cluster; prints what to try, Ctrl-C stops all.
cluster: $(STAMP)
	$(PY) -m loadtest.cluster

test: $(STAMP)
	$(VENV)/bin/ruff check .
	.ci/system-packages
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) -m loadtest.storage_bench

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
