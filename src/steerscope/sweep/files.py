"""The names of the files in a sweep's run folder, and the site recorded for a cell that has none."""

STORE_NAME = "results.sqlite"  # every measured cell (evaluate.store.ResultStore)
FITS_NAME = "fits.json"  # what each fit chose and cost
PROVENANCE_NAME = "provenance.json"  # models, data and package versions
FAILURES_NAME = "failures.json"  # cells that failed, with their errors
NO_SITE = "-"  # the site of a cell measured without a vector (the unsteered and prompting baselines)
