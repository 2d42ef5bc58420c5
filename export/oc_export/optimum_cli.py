"""`python -m oc_export.optimum_cli export onnx --task text-generation-with-past --model DIR OUT`

optimum's own command line, run in this process after our OnnxConfig is registered for every supported model type
(`TasksManager.create_register("onnx", overwrite_existing=True)`): the plain optimum CLI cannot take a custom
config, but through the registry it picks ours and writes the same graph as `oc_export export` (all hidden
states, fp32). It writes only what optimum writes (no manifest, no goldens).
"""

from __future__ import annotations

import sys

from . import compat
from . import onnx_config


def main(argv=None) -> None:
    compat.install()
    onnx_config.register()
    from optimum.commands.optimum_cli import main as optimum_main

    sys.argv = ["optimum-cli", *(sys.argv[1:] if argv is None else argv)]
    optimum_main()


if __name__ == "__main__":
    main()
