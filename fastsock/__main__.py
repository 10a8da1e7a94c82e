import sys

from fastsock.cli import main

sys.exit(main())
