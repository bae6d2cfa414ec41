"""The live status page: static files bundled in the package and the JSON they poll."""
