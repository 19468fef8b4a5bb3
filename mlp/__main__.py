"""`python -m mlp ...` is the `mlp` command."""
import sys

from mlp.cli.startup import exit_quietly_on_interrupt

exit_quietly_on_interrupt()
from mlp.cli import main  # noqa: E402  (after the start-up signal handling)

sys.exit(main())
