"""What every SQL backend shares: ``SQLPrinter`` prints a plan (``analyse.plan``) as SQL with bound
parameters from a dialect's spellings; ``SQLEngine`` plans, prints, runs and shapes the result. A SQL
backend subclasses both: a printer that spells (``backends/duckdb/dialect.py``) and an engine that
holds a connection and declares what it keeps (``backends/duckdb/engine.py``)."""
