"""Builds the optional C fast path for track calls; botmeter falls back to pure Python without it."""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    # A missing compiler must not stop the install: the pure-Python recorder does the same job, slower.
    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001
            print(f"botmeter: C fast path not built ({exc}); using the pure-Python recorder")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            print(f"botmeter: C fast path not built ({exc}); using the pure-Python recorder")


setup(
    ext_modules=[
        Extension(
            "botmeter._fastpath",
            ["src/botmeter/_fastpath.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
