"""ClickHouse: a server (``clickhouse://``) or the embedded engine (``chdb://``), one store for both."""
