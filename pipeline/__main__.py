"""``python -m pipeline``: the command line (see ``pipeline.cli.main``)."""

import os
import sys

from pipeline.cli import main

code = main()
if "deltalake" in sys.modules:
    # deltalake's tokio runtime and pyarrow's thread pools are torn down by static destructors that
    # race at interpreter exit: a few % of processes that used them then abort (SIGABRT, "terminate
    # called without an active exception") after complete output. Everything the command produced
    # is written and flushed by now (files are closed by the handlers), so skip the native teardown.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`read | head`): nothing more can reach it
            pass
    logging_module = sys.modules.get("logging")
    if logging_module is not None:
        logging_module.shutdown()  # flush log handlers (files) as a normal exit would
    os._exit(code)
sys.exit(code)
