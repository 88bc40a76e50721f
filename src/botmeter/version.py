"""botmeter's version, in a module of its own so that any layer can name it without importing the package."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("botmeter")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
