"""One failure model: every exception epic-kernel raises on purpose is an EpicException, the old
import paths still name the same classes, and their messages did not change."""

from __future__ import annotations

import importlib
import inspect

import pytest

import epic_kernel.errors as errors
from epic_kernel.errors import EpicException

# (module, name) pairs users may have imported; each must stay importable and be in the one tree
OLD_NAMES = [
    ("epic_kernel", "EpicError"), ("epic_kernel", "EpicInterrupted"), ("epic_kernel", "EpicSyntaxError"),
    ("epic_kernel.llm", "UnsupportedFeature"), ("epic_kernel.llm.base", "UnsupportedFeature"),
    ("epic_kernel.llm.models", "ModelNotAvailable"), ("epic_kernel.llm.errors", "BackendError"),
    ("epic_kernel.llm.errors", "BadRequest"), ("epic_kernel.llm.errors", "AuthError"),
    ("epic_kernel.llm.errors", "RateLimited"), ("epic_kernel.llm.errors", "ServerError"),
    ("epic_kernel.llm.errors", "BackendTimeout"), ("epic_kernel.llm.errors", "BackendConnectionError"),
    ("epic_kernel.llm.errors", "MalformedResponse"), ("epic_kernel.llm.errors", "ConstraintViolation"),
    ("epic_kernel.llm.errors", "ReplayMiss"), ("epic_kernel.llm.replay", "ReplayedError"),
    ("epic_kernel.llm.constrained", "InvalidConstraint"), ("epic_kernel.llm.constrained", "ConstraintIncomplete"), ("epic_kernel.llm.sim", "SimScriptError"),
]


@pytest.mark.parametrize(("module", "name"), OLD_NAMES)
def test_old_names_are_in_the_one_tree(module: str, name: str) -> None:
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, EpicException), f"{module}.{name} is outside the EpicException tree"
    assert cls.__name__ in errors.__doc__, f"{name} is not drawn in epic_kernel/errors.py's tree"


def test_every_class_in_errors_is_drawn_and_exported() -> None:
    classes = {n for n, c in vars(errors).items() if inspect.isclass(c) and issubclass(c, BaseException)}
    assert classes <= set(errors.__all__)
    for n in classes:
        assert n in errors.__doc__, f"{n} is defined in errors.py but not drawn in its docstring tree"


def test_compatible_bases_and_messages() -> None:
    from epic_kernel.llm.constrained import InvalidConstraint
    from epic_kernel.llm.errors import BackendError, ServerError

    assert issubclass(errors.ModelNotAvailable, RuntimeError)        # caught as RuntimeError before
    assert issubclass(InvalidConstraint, ValueError)
    assert issubclass(errors.EpicSyntaxError, SyntaxError)
    e = ServerError("overloaded", model="m", status=503, attempts=3, backend="openai")
    assert isinstance(e, BackendError)
    assert str(e) == "openai model 'm': HTTP 503: overloaded (after 3 attempts)"
    assert str(BackendError("refused")) == "backend: refused"


def test_an_unknown_intrinsic_is_an_internal_error() -> None:
    from epic_kernel.lang.ir import Function, Op, Prim, Var
    from epic_kernel.runtime.graph import Template

    out = Var(1, "x")
    fn = Function("f", (), [Prim(out, Op("no_such_intrinsic"))], out, Var(2), Var(3))
    with pytest.raises(errors.EpicInternalError, match="unknown intrinsic %no_such_intrinsic"):
        Template(fn, {})


# ------------------------------------------------------------------------------ one failure record, one formatter
def test_failure_records_are_built_in_one_place() -> None:
    from epic_kernel.runtime.events import CallRecord
    from epic_kernel.runtime.failures import failure_record

    op = failure_record(ZeroDivisionError("division by zero"), fn="truediv", line=3, filename="f.py")
    assert (op.id, op.state, op.site, op.site_line) == (0, "failed", "f.py:3", 3)
    assert op.result_preview == "ZeroDivisionError: division by zero" and op.end == op.start
    assert failure_record(ValueError("x"), fn="value", line=None, filename="f.py").site == "f.py"
    call = CallRecord(id=4, fn="llm", site_line=9, start=1.0, end=2.0, state="running")
    assert failure_record(RuntimeError("y" * 300), fn="llm", line=9, filename="f.py", rec=call) is call
    assert call.state == "failed" and len(call.result_preview) == 200


def test_the_api_cli_and_notebook_tell_failures_from_one_grouping() -> None:
    from epic_kernel import run
    from epic_kernel.runtime.failures import error_lines, failure_lines, group_failures

    src = "xs = [10 // x for x in [1, 0, 0]]\na, b = [1, 2, 3]\nxs\n"
    with pytest.raises(errors.EpicError) as info:
        run(src, backend="sim", filename="f.py")
    e = info.value
    groups = group_failures(e.failures)
    # the first failure in program order is the error (10 // 0 at the list's second element; the
    # third is after it and never counts); the unpack, found first, is secondary
    assert [(g.line, g.error_type, len(g.records)) for g in groups] == [(1, "ZeroDivisionError", 1), (2, "ValueError", 1)]
    text = str(e).splitlines()
    assert text[0] == "line 1: `xs = [10 // x for x in [1, 0, 0]]` ZeroDivisionError: integer division or modulo " \
                      "by zero (in //)"
    assert text[1:] == ["  the run stopped there", "  also failed before the run stopped:",
                        "    line 2: `a, b = [1, 2, 3]` ValueError: too many values to unpack (expected 2)"]
    lines = failure_lines(e.failures, "f.py", src.splitlines())
    assert lines[:2] == ["f.py:1: ZeroDivisionError: integer division or modulo by zero", "    xs = [10 // x for x in [1, 0, 0]]"]
    assert "    a, b = [1, 2, 3]" in lines
    assert error_lines("EpicError", str(e), color=False)[0] == "EpicError: " + text[0]
