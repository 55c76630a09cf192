import sys

from hubembed.cli import main

sys.exit(main())
