"""``python -m ropekit ...`` (and ``torchrun --nproc_per_node N -m ropekit study ...``): the ``ropekit`` CLI."""

from ropekit.cli import main

raise SystemExit(main())
