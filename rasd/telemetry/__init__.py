"""Telemetry: per-GPU health pollers, the power sampler, the Xid event thread, detectors."""
