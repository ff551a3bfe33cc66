"""The EPIC Jupyter kernel: IPython's kernel with the `%%epic` magics loaded.

    python -m epic_kernel.kernel -f {connection_file}     (what the kernelspec runs; see install.py)

It stays a Python kernel (`language_info.name == "python"`) so highlighting, completion and
nbconvert's python exporter keep working; only its identity and start-up differ. In a stock
Python kernel `%load_ext epic_kernel` gives the same magics.

This module imports ipykernel: the core (`epic_kernel` itself) never imports it.
"""

from __future__ import annotations

import logging
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
        Hints(self.shell).install()


HINT = ("EPIC kernel: a cell that starts with %%epic runs as an epic program, every independent llm() "
        "call in parallel, with a live view of the calls (%%epic? lists the options; tutorials: "
        "`make lab`). Other cells are plain Python.")
NAME_HINT = ("hint: {name}() is an epic builtin: it exists inside %%epic cells. Start the cell with "
             "%%epic (on a line of its own) to run it as an epic program.")


_EPIC_NAMES = ("llm", "sot", "tot24", "answer_with_tools", "answer_all", "lines", "emit_event")


class Hints:
    """What a notebook never shows otherwise: the kernel banner (only consoles print it). The
    first cell of a session that does not use %%epic gets one line saying %%epic exists, and a
    NameError for an epic builtin (`llm`, `sot`, ...) in a plain cell says where it lives."""

    def __init__(self, shell: Any):
        self.shell = shell
        self.shown = False

    def install(self) -> None:
        self.shell.events.register("pre_run_cell", self.pre_run_cell)
        self.shell.events.register("post_run_cell", self.post_run_cell)

    def pre_run_cell(self, info: Any) -> None:
        if self.shown:
            return
        self.shown = True
        cell = getattr(info, "raw_cell", "") or ""
        if "epic" not in cell and cell.strip():
            print(HINT)

    def post_run_cell(self, result: Any) -> None:
        err = getattr(result, "error_in_exec", None)
        if isinstance(err, NameError) and getattr(err, "name", None):
            from .runtime.context import BUILTINS

            if err.name in BUILTINS or err.name in _EPIC_NAMES:
                print(NAME_HINT.format(name=err.name))


LOOPBACK = ("127.0.0.1", "localhost", "::1")
TCP_NOTE = "Kernel is running over TCP without encryption"


class _LoopbackNote(logging.Filter):
    """Drops ipykernel's start-up warning about unencrypted TCP, for a kernel bound to loopback only:
    nothing leaves the machine there, and the note would be the one line a clean kernel writes to
    stderr. A kernel listening on any other address keeps the warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(TCP_NOTE)


def main(argv: list[str] | None = None) -> None:
    """Launch the kernel (argv as ipykernel takes it: `-f CONNECTION_FILE`)."""
    from ipykernel.kernelapp import IPKernelApp

    class EpicKernelApp(IPKernelApp):
        def init_sockets(self) -> None:
            if self.transport == "tcp" and self.ip in LOOPBACK:
                self.log.addFilter(_LoopbackNote())
            super().init_sockets()

    EpicKernelApp.launch_instance(argv=argv, kernel_class=EpicKernel)


if __name__ == "__main__":
    main()
