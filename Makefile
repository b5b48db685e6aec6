# The two commands of the README. Each one does all of the set-up first.
.PHONY: demo test setup
PY := .venv/bin/python

demo:
	scripts/bootstrap.sh
	.venv/bin/omnibatch demo --out demo-out

test:
	scripts/bootstrap.sh --test
	$(PY) -m pytest
