"""A/B comparison of two models (or one model before and after a change) from what is already stored.

`stats` holds the statistics on plain numbers; `metrics` turns two `Side`s (the records of each arm, as
arrays) into the list of compared metrics with one multiplicity correction over all of them; `load` reads a
`Side` from the database; `render` prints it as text, JSON or a self-contained HTML page. The CLI
(`watchkeeper compare`) and the guardrail alert rule are thin callers of these.
"""
