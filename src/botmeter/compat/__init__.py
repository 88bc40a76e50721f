"""Drop-in faces of other analytics packages over botmeter: change the import, keep the calls.

``botmeter.compat.dadacat``: the DadaCat SMS bot's ``analytics`` package.
"""
