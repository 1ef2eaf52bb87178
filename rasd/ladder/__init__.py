"""The repair ladder: classify faults (pure), escalate over history, act, and remember."""
