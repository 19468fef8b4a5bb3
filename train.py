#!/usr/bin/env python3
"""Train one NumPy MLP on Fashion-MNIST or MNIST — the program W&B sweep agents launch.

    python train.py -o nadam -nhl 4 -sz 128 -a ReLU
    python train.py --help          # the full flag table

Everything lives in the `mlp` package; this file only hands it the command line.
"""
import sys

if __name__ == "__main__":
    from mlp.cli.startup import exit_quietly_on_interrupt
    exit_quietly_on_interrupt()          # before the imports: an early Ctrl-C exits 130, quietly
    from mlp.cli import train_main
    sys.exit(train_main())
