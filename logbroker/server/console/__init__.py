"""The web console (``--console-port``): see :mod:`logbroker.server.console.app`."""
