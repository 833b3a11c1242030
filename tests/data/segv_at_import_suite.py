"""A suite file whose import kills the process: discovery must report it, not die with it."""

import os
import signal

os.kill(os.getpid(), signal.SIGSEGV)
