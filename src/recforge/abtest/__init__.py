"""A/B testing: deterministic assignment (`recforge.abtest.assignment`), the exposure log
(`recforge.abtest.exposure`), per-user outcome tables (`recforge.abtest.data`) and the
statistics of an experiment (`recforge.abtest.analysis`).

Kept light: import the submodules directly (``analysis`` needs scipy)."""
