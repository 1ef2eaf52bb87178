"""One module per exported section of the snapshot, node_exporter style: each ``collect()``
builds fresh metric families from plain snapshot data and is isolated by the collector."""
