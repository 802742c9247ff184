"""Numbered SQL migrations ``NNNN_name.sql``, applied in order and tracked by ``PRAGMA user_version``."""
