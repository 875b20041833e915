"""``python -m ropekit.study`` / ``torchrun --nproc_per_node N -m ropekit.study``: the study CLI."""

from ropekit.commands.study import main

raise SystemExit(main())
