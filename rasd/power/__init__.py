"""Power: analysis of synchronized swings, smoothing decisions, node budget sharing, applying.

Pure cores (analysis, decide, budget, trace) take plain data and the clock as parameters;
``apply`` and ``service`` are the only modules that touch GPU handles.
"""
