"""The phase-transition detector lives in tina/phase.py (training's early stop and checkpoint choice
use it, and tina never imports analysis); analysis re-exports it for notebooks and reports."""

from tina.phase import (CLIPPED_KEY, ENTROPY_KEY, FORMAT_KEY, LENGTH_KEY, ZERO_STD_KEY,  # noqa: F401
                        best_checkpoint, detect, main, no_signal_streak, saved_steps)

if __name__ == "__main__":
    import sys

    sys.exit(main())
