"""Example models: a stochastic SIR epidemic (``sir``) and a synthetic model with lognormal task
durations for tests and benchmarks (``synthetic``)."""
