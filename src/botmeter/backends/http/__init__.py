"""The remote Meter's backend: batches sent to a collector (``botmeter serve``) over HTTP."""
