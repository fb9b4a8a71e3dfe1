"""The phase-transition detector lives in tina/phase.py (training's early stop and checkpoint choice
use it, and tina never imports analysis); analysis re-exports it for notebooks and reports."""

from tina.phase import FORMAT_KEY, LENGTH_KEY, best_checkpoint, detect, main, saved_steps  # noqa: F401

if __name__ == "__main__":
    import sys

    sys.exit(main())
