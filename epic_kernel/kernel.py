"""The EPIC Jupyter kernel: IPython's kernel with the `%%epic` magics loaded.

    python -m epic_kernel.kernel -f {connection_file}     (what the kernelspec runs; see install.py)

It stays a Python kernel (`language_info.name == "python"`) so highlighting, completion and
nbconvert's python exporter keep working; only its identity and start-up differ. In a stock
Python kernel `%load_ext epic_kernel` gives the same magics.

This module imports ipykernel: the core (`epic_kernel` itself) never imports it.
"""

from __future__ import annotations

from typing import Any

import traitlets
from ipykernel.ipkernel import IPythonKernel

from . import __version__

__all__ = ["EpicKernel", "main"]


class EpicKernel(IPythonKernel):
    implementation = "epic"
    implementation_version = __version__
    language_info = {**IPythonKernel.language_info}      # still "python"

    @traitlets.default("help_links")                     # a List trait: override its default
    def _help_links_default(self) -> list[dict[str, str]]:
        base = IPythonKernel.class_traits()["help_links"].default()
        return [*base, {"text": "epic-kernel", "url": "https://pypi.org/project/epic-kernel/"}]

    @property
    def banner(self) -> str:
        return (f"EPIC {__version__}: %%epic cells run every independent LLM/tool call in parallel "
                f"(%%epic? for help)\n" + super().banner)

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)                        # self.shell exists from here on
        self.shell.extension_manager.load_extension("epic_kernel")


def main(argv: list[str] | None = None) -> None:
    """Launch the kernel (argv as ipykernel takes it: `-f CONNECTION_FILE`)."""
    from ipykernel.kernelapp import IPKernelApp

    IPKernelApp.launch_instance(argv=argv, kernel_class=EpicKernel)


if __name__ == "__main__":
    main()
