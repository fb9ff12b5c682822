import sys

from aql_agent.cli import main

sys.exit(main())
