import sys

from hubembed.cli import run

sys.exit(run())
