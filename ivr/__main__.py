"""python -m ivr: the IVR operator tools (see ivr.tools)."""
import sys

from ivr.tools import main

sys.exit(main())
