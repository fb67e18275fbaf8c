# Two commands do all the set-up (see README):
#   make up     install, train the default model if the store has none, then serve it
#   make test   install, then run the test suite (what CI runs)
# torch is pinned and installed first: a looser spec would pull several GB of CUDA wheels.

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.plaudit-installed

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[train,postgres,dev]'
	touch $(STAMP)

.PHONY: install up test
install: $(STAMP)

up: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/plaudit up

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest
