"""The web dashboard: the page, its assets and its panels' data (SPEC §6)."""
