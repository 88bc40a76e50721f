"""The embedded default: one DuckDB file, its rollups kept on write, and the SQL that reads it."""
