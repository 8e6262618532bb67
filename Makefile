# Hotline: the two commands are `make demo` and `make test`. Each installs what it needs.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
DEB_PACKAGES := build-essential python3-venv python3-dev libpri-dev libspandsp-dev libtiff-dev \
	dahdi-source libopenr2-dev libtonezone-dev espeak-ng sox libsndfile1 tshark \
	postgresql
DEMO_SECONDS ?=

.PHONY: demo test deps venv bench clean

# Debian packages: installed once; dahdi-source and libopenr2-dev go in one apt-get so that
# dahdi-dkms (a kernel module build) is never pulled in.
.stamp-deb: Makefile
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "== installing Debian packages:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@touch $@

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel setuptools

# Editable install: compiles the cffi modules and generates protobuf code from proto/.
.stamp-install: .stamp-deb $(PY) setup.py pyproject.toml $(wildcard cffi_build/*.py) $(wildcard proto/hotline/*.proto)
	$(PY) -m pip install -q "cffi>=1.16" "grpcio-tools>=1.60" setuptools wheel
	$(PY) setup.py protos
	$(PY) -m pip install -q --no-build-isolation -e . pytest pytest-timeout psycopg2-binary
	@touch $@

deps: .stamp-install

demo: deps
	OPENBLAS_NUM_THREADS=1 DEMO_SECONDS=$(DEMO_SECONDS) $(VENV)/bin/ctisim demo

# The storage tests run against SQLite and a real PostgreSQL server started here.
test: deps
	url=$$(bash scripts/pg-test-server.sh start) && \
	HOTLINE_TEST_PG_URL="$$url" HOTLINE_REQUIRE_PG=1 OPENBLAS_NUM_THREADS=1 \
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: deps
	OPENBLAS_NUM_THREADS=1 $(VENV)/bin/cardctl bench media --channels 960 --seconds 10
	OPENBLAS_NUM_THREADS=1 $(VENV)/bin/cardctl bench dtmf
	OPENBLAS_NUM_THREADS=1 $(VENV)/bin/ctictl bench acd --agents 5000 --queues 200

clean:
	rm -rf $(VENV) build *.egg-info .stamp-* hotline_proto/*_pb2.py* drivers/native/_*.so
