"""The intermediate representation: a small lambda calculus in A-normal form.

Every operand is a variable; a statement binds fresh variables:

    def    f := Function(params, body)        a closure; its body is never reduced before a call
    call   y, io' := f(x1..xn; io)            f a closure (beta) or a host callable (delta / dispatch)
    pack   p := (x1..xn)                      tuple/list; components may still be pending (partial data)
    unpack (y1..ym) := p                      projection
    prim   y := <host value>                  str, int, None, host callables, intrinsics
    global y := NAME                          looked up in the host namespace at instantiation
    global? y := NAME                         a *soft* lookup: a missing name is an error only if used

(`task` exists only at run time: a dispatched external call.) `io` is the implicit token the
translator threads through calls that may print, so output appears in program order while nothing
else is ordered by statements; calls that cannot print carry no token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["BREAK", "CONTINUE", "NORMAL", "RETURN", "Call", "Def", "Function", "Global", "Op", "Pack", "Prim",
           "Stmt", "Unbound", "Unpack", "Var", "finalize", "pretty"]

# The kinds of a completion record `(kind, value, *carried)`: how a block that can exit early (a loop
# body with break/continue, a branch with `return`) ended. The translator builds these records
# (control.py); the runtime's `%is_normal`, `%loop_again` and `%loop_exit` intrinsics read them.
NORMAL, RETURN, BREAK, CONTINUE = 0, 1, 2, 3


@dataclass(frozen=True, slots=True, eq=False)
class Var:
    id: int
    name: str = ""

    def __repr__(self) -> str:
        return f"{self.name}{self.id}" if self.name and not self.name.startswith("%") else f"v{self.id}"


class Stmt:
    __slots__ = ()
    line: int | None


@dataclass(frozen=True, slots=True, eq=False)
class Prim(Stmt):
    out: Var
    value: Any
    line: int | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Global(Stmt):
    """`out := NAME` from the host namespace. A *hard* lookup is a name the program reads: missing, it
    is a NameError at once (as in Python, even if the value goes unused). A *soft* one is the
    translator's own, for a name carried out of a branch or loop (an SSA join, a loop state, a
    completion record) that may never have been assigned: missing, it fails only where it is used."""

    out: Var
    name: str
    line: int | None = None
    soft: bool = False


@dataclass(frozen=True, slots=True, eq=False)
class Pack(Stmt):
    out: Var
    items: tuple[Var, ...]
    kind: str = "tuple"          # "tuple" | "list": how it looks when handed to Python
    line: int | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Unpack(Stmt):
    outs: tuple[Var, ...]
    src: Var
    line: int | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Call(Stmt):
    out: Var
    fn: Var
    args: tuple[Var, ...]
    kwnames: tuple[str, ...] = ()      # the last len(kwnames) args are keyword arguments
    io_in: Var | None = None
    io_out: Var | None = None
    line: int | None = None
    name: str = ""                     # the callee as written ("llm", "xs.append"), for records and errors


@dataclass(eq=False, slots=True)
class Function:
    """A closure's code: the contract between the translator (which fills the first group of fields)
    and the runtime (which reads them, and caches its template in `compiled`).

    Slotted, so nothing can be attached to a Function outside this declaration: every field the
    runtime reads is listed here with its meaning, and a type checker can follow each use."""

    name: str
    params: tuple[Var, ...]
    body: list[Stmt]
    ret: Var
    io_in: Var
    io_out: Var
    ndefaults: int = 0
    line: int | None = None
    free: tuple[Var, ...] = ()          # variables captured from the enclosing scope, in a fixed order
    # the parameters as Python names them (keyword arguments, signatures, messages); defaults to the
    # parameter variables' names
    param_names: tuple[str, ...] = ()
    # a program's (`compile_program`) top-level names, in the order its value pack carries them after
    # the value: `ret` is (value, *exports); empty for any other function
    exports: tuple[str, ...] = ()
    # the file of an `@epic` function (library code, whose calls are not the user's own lines); None
    # for the program being run and for functions nested in another (they inherit their parent's)
    filename: str | None = None
    compiled: Any = field(default=None, repr=False)   # the runtime's template, built once (graph.template_of)

    def __post_init__(self) -> None:
        if not self.param_names:
            self.param_names = tuple(p.name for p in self.params)


@dataclass(frozen=True, slots=True, eq=False)
class Def(Stmt):
    out: Var
    fn: Function
    defaults: tuple[Var, ...] = ()
    line: int | None = None


def finalize(fn: Function) -> None:
    """Compute the variables a function captures: used but not bound inside it (in first-use order,
    which is the order the runtime lays out a closure's captured cells)."""
    defined: set[Var] = set(fn.params) | {fn.io_in}
    used: list[Var] = []
    for s in fn.body:
        match s:
            case Prim(out) | Global(out):
                defined.add(out)
            case Pack(out, items):
                defined.add(out)
                used.extend(items)
            case Unpack(outs, src):
                defined.update(outs)
                used.append(src)
            case Call(out, f, args, _, io_in, io_out):
                defined.add(out)
                if io_out is not None:
                    defined.add(io_out)
                used.append(f)
                used.extend(args)
                if io_in is not None:
                    used.append(io_in)
            case Def(out, inner, defaults):
                defined.add(out)
                used.extend(inner.free)
                used.extend(defaults)
    used.extend([fn.ret, fn.io_out])
    seen: dict[Var, None] = {}
    for v in used:
        if v not in defined:
            seen.setdefault(v)
    fn.free = tuple(seen)


def _fmt_value(v: Any) -> str:
    name = getattr(v, "epic_name", None)
    if name:
        return name
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def pretty(fn: Function, indent: int = 0) -> str:
    """One binding per line, nested functions indented: how tests and the trace show programs."""
    pad = "  " * indent
    params = ", ".join(map(repr, fn.params))
    lines = [f"{pad}fun {fn.name}({params}; {fn.io_in!r}) captures ({', '.join(map(repr, fn.free))}):"]
    inner = pad + "  "
    for s in fn.body:
        match s:
            case Prim(out, value):
                lines.append(f"{inner}{out!r} := {_fmt_value(value)}")
            case Global(out, name, _, soft):
                lines.append(f"{inner}{out!r} := global{'?' if soft else ''} {name}")
            case Pack(out, items, kind):
                br = "[]" if kind == "list" else "()"
                lines.append(f"{inner}{out!r} := {br[0]}{', '.join(map(repr, items))}{br[1]}")
            case Unpack(outs, src):
                lines.append(f"{inner}({', '.join(map(repr, outs))}) := {src!r}")
            case Call(out, f, args, kwnames, io_in, io_out):
                pos = [repr(a) for a in args[: len(args) - len(kwnames)]]
                kws = [f"{k}={a!r}" for k, a in zip(kwnames, args[len(args) - len(kwnames):], strict=True)]
                io = f"; {io_in!r}" if io_in is not None else ""
                lhs = f"{out!r}, {io_out!r}" if io_out is not None else repr(out)
                lines.append(f"{inner}{lhs} := {f!r}({', '.join(pos + kws)}{io})")
            case Def(out, f, _):
                lines.append(f"{inner}{out!r} :=")
                lines.append(pretty(f, indent + 2))
    lines.append(f"{inner}return {fn.ret!r}; {fn.io_out!r}")
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Op:
    """A reference to an evaluator intrinsic (`add`, `getitem`, `fold`, ...), bound by the runtime.

    The translator only names intrinsics, so `lang` never imports `runtime`."""

    name: str

    @property
    def epic_name(self) -> str:
        return f"%{self.name}"


@dataclass(frozen=True, slots=True)
class Unbound:
    """The value of a local name read before any assignment reached it (Python's UnboundLocalError)."""

    name: str

    @property
    def epic_name(self) -> str:
        return f"<unbound {self.name}>"
