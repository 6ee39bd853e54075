"""``python -m affordance_grounding.bag``: the same as the ``affordance_bag`` command."""

from affordance_grounding.bag.cli import main

raise SystemExit(main())
