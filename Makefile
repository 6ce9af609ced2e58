# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
INSTALLED := $(VENV)/.installed

.PHONY: demo test bench

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e ".[segment,train,cli,dask,test]"
	touch $@

demo: $(INSTALLED)
	$(VENV)/bin/python examples/demo.py

test: $(INSTALLED)
	$(VENV)/bin/python -m pytest -q

bench: $(INSTALLED)
	$(VENV)/bin/python benchmarks/compare.py --limit 40 --csv out/compare.csv
