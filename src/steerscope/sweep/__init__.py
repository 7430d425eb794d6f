"""Sweeps over models x methods x sites x coefficients x pairs x seeds x datasets, resumable, with the
validation / test protocol and the baselines every comparison needs."""
