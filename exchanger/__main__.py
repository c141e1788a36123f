import sys

from exchanger.cli import main

sys.exit(main())
