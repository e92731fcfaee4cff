"""Synthetic identifiable source data (OMOP CDM v5.4 shaped CSV) for ingest and scrubbing."""
