"""`uno eval`'s pure core: scenario files -> simulated feedback logs -> metrics -> report.json and plots.

scenario.py loads and validates scenarios, checks.py checks rules and rewrites answers, simuser.py plays
the user, metrics.py scores answers, report.py writes report.json, two PNG plots and a rich table.
`--quick` uses the small assets/eval/quick.json scenario (see scenario.py). No model is needed here.
"""
