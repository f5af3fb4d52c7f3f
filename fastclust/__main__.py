"""`python -m fastclust`: the command line."""
from .cli import main

raise SystemExit(main())
