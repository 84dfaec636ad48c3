"""The ``logbroker`` command line: click commands that parse options and call the library."""

from logbroker.cli.main import main as main
