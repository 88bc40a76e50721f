from botmeter.interfaces.cli import run

run()
