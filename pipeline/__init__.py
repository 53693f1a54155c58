"""Everything around the model: params, data sources, alignment, shards, tracking, flows, the report."""
