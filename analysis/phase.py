"""`python -m analysis.phase METRICS [--json]`: the command line of the phase-transition detector.

The detector itself is tina.phase (training's early stop uses it; tina never imports analysis):
import it from there. This module is only the documented command."""

if __name__ == "__main__":
    import sys

    from tina.phase import main

    sys.exit(main())
