import os
import sys

# "python -m trestle" puts the working directory first on sys.path, and it is usually
# the workspace, which the run's commands write: a module planted there (numpy/, a
# standard module's name) would be run, unconfined, by the driver's next import of that
# name. The trestle command's import path holds no working directory; this one neither.
if sys.path and not sys.flags.safe_path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from trestle.cli.app import entry

entry()
