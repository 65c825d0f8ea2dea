"""An example model package that lives beside its study file (examples/studies/own-model/)."""
