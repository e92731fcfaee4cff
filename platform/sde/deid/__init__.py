"""De-identification of source data: pseudonyms, generalisation, free-text scrubbing."""
