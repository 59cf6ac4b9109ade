"""`python -m tradebook.cli`: the same entry point as the `tradebook` console script."""
from tradebook.cli import main

main()
