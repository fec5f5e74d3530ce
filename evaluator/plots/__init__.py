"""A run's plots, computed on the trusted side from bounded summaries of its scored rows.

`stats` summarises rows while scoring streams them (in the scoring child; numpy only), `binning` turns
the summaries into points (k-row bins for participants, full resolution for managers), `render` draws
them with matplotlib's SVG backend, and `build.publish_plots` stores both variants beside metrics.json.
NOTE: nothing is imported here, so the scoring child (and the API, which reads the stored plots) does not
load matplotlib.
"""

PARTICIPANT, EXACT = "participant", "exact"  # the two variants: k-row bins, and full resolution for managers
