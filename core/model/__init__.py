"""The model room: fit a series (forecaster), keep it (artifact), hold the live ones (store).

    forecaster.py   Prophet and the robust profile model; the one rule for which model a series gets
    artifact.py     the versioned JSON envelope around each series' band and Prophet serialisation
    store.py        ModelStore: series id -> model, swapped atomically by refits
    quality.py      band coverage, MAPE and the EDA summary

Train reports the band's quality; the evaluation pools it over the holdout.
"""
