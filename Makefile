# rvweb: `make run` starts the whole stack on the embedded default; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt | md5sum | cut -c1-12)
CHROMIUM ?= /usr/bin/chromium
SSHD ?= /usr/sbin/sshd

.PHONY: run test lint bench chromium sshd

$(STAMP): requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

run: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py bootstrap
	$(BIN)/python manage.py runstack

chromium:
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's chromium for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "the browser tests need Chromium at $(CHROMIUM): run 'sudo apt-get install chromium' (or set CHROMIUM)"; exit 1; \
	  fi; \
	fi

# The SFTP tests and benchmarks start their own OpenSSH server on 127.0.0.1 (never the system's).
sshd:
	@if [ ! -x "$(SSHD)" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's OpenSSH server for the SFTP tests (it is not started as a service)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server >/dev/null; \
	  else \
	    echo "the SFTP tests need OpenSSH's sshd at $(SSHD): run 'sudo apt-get install openssh-server' (or set SSHD)"; exit 1; \
	  fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	RVWEB_DATA_DIR=$${RVWEB_DATA_DIR:-$(CURDIR)/var/test} $(BIN)/mypy transfers/engine transfers/kinds transfers/jobs.py transfers/groups.py transfers/run_context.py transfers/downloads.py transfers/recorder.py transfers/services.py transfers/execution.py transfers/ledger.py transfers/locks.py transfers/tasks.py transfers/farm transfers/farm_events.py transfers/accounts.py transfers/notifications.py transfers/samples.py transfers/job_filters.py transfers/job_form.py transfers/job_views.py transfers/progress.py transfers/kiosks.py transfers/dashboard.py transfers/dashboard_views.py transfers/dashboard_hub.py transfers/audit.py transfers/teams.py transfers/manifest_work.py transfers/manifest_browse.py transfers/transfer_tasks transfers/transmitter_install.py transfers/management/commands/install_transmitter.py transfers/metrics.py transfers/workers.py transfers/budget.py transfers/placement.py transfers/budget_views.py transfers/worker_views.py tests/servers tests/bench/sftp.py tests/bench/s3.py tests/bench/remote.py tests/bench/workers.py tests/bench/worker_upload.py
	RVWEB_DATA_DIR=$${RVWEB_DATA_DIR:-$(CURDIR)/var/test} $(BIN)/python manage.py makemigrations --check --dry-run >/dev/null || (echo "models changed without a migration: run manage.py makemigrations"; exit 1)

# Tests keep their own data dir (test database file, embedded Redis socket) apart from `make run`'s.
test: $(STAMP) chromium sshd lint
	RVWEB_DATA_DIR=$${RVWEB_DATA_DIR:-$(CURDIR)/var/test} RVWEB_QUEUE=rvweb-test RVWEB_CHANNEL_PREFIX=rvweb-test RVWEB_CHROMIUM=$(CHROMIUM) RVWEB_SSHD=$(SSHD) $(BIN)/python -m pytest $(PYTEST_ARGS)

# Figures with ratios against cp, a stat walk and the SDK's own functions; never fails the build.
bench: $(STAMP) sshd
	$(BIN)/python -m tests.bench $(BENCH_ARGS)
