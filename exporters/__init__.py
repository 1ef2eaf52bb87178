"""Exporters: turn rasd's snapshot into other systems' formats (Prometheus today)."""
