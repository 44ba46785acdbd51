# callfork: make install | make demo | make test | make bench
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# pipecat's real serializers (Twilio and Vobiz) check our stream messages in the tests; they live in
# their own venv so pipecat's pins never constrain callfork's own dependencies
SERIALIZERS := .venv-serializers
SER_STAMP   := $(SERIALIZERS)/.installed

.PHONY: install demo test bench serve clean servers

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "installing python3 (apt)"; apt-get update && apt-get install -y python3 python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip >/dev/null
	$(BIN)/pip install -e '.[test]'
	touch $(STAMP)

demo: install
	$(BIN)/callfork demo

serve: install
	$(BIN)/callfork serve

$(SER_STAMP): Makefile
	$(PYTHON) -m venv $(SERIALIZERS)
	$(SERIALIZERS)/bin/pip install --upgrade pip >/dev/null
	$(SERIALIZERS)/bin/pip install 'pipecat-ai==1.14.0' 'pipecat-vobiz==0.0.3'
	touch $(SER_STAMP)

# the scenarios wait on real-time audio: TEST_WORKERS pytest workers (pytest-xdist) share the time
TEST_WORKERS ?= 4

# the cluster tests start real servers of their own on free ports (tests/cluster_servers.py, tests/kamailio_support.py):
# Debian's redis-server, PostgreSQL and Kamailio, installed here when missing
servers:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	{ [ -x /usr/lib/postgresql/15/bin/initdb ] || command -v initdb >/dev/null 2>&1; } || missing="$$missing postgresql"; \
	{ command -v kamailio >/dev/null 2>&1 || [ -x /usr/sbin/kamailio ]; } || missing="$$missing kamailio"; \
	if [ -n "$$missing" ]; then echo "installing$$missing (apt)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi

test: install $(SER_STAMP) servers
	CALLFORK_SERIALIZERS_PYTHON=$(CURDIR)/$(SERIALIZERS)/bin/python $(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS)

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(SERIALIZERS) var *.egg-info
