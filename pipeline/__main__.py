"""``python -m pipeline``: the command line (see ``pipeline.cli.main``)."""

import logging
import os
import sys

from pipeline.cli import main

code = main()
# pyarrow's C++ runtime can abort while the interpreter tears down ("terminate called without an active
# exception", SIGABRT, exit 134) after a command has finished and written all its output: 2 of 50 `read`
# processes in one run of tests/test_read.py under load. The command is done and nothing of the project
# runs at exit, so the output is flushed and the process ends without that teardown.
logging.shutdown()
for stream in (sys.stdout, sys.stderr):
    try:
        stream.flush()
    except (OSError, ValueError):  # a closed pipe: nothing left to deliver
        pass
os._exit(code if isinstance(code, int) else 1)
