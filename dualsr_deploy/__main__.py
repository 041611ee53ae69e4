"""``python -m dualsr_deploy`` works like ``dualsr``."""

from dualsr_deploy.cli.main import main

main()
