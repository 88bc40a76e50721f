"""The backends: one folder each, holding a store and its query engine (see ``botmeter.store``)."""
