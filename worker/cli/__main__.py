"""``python -m worker.cli``, as the tests and worker/services.py run it."""

from worker.cli.app import main

main()
