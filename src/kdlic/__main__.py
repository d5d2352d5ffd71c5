import sys

from kdlic.cli import main

sys.exit(main())
