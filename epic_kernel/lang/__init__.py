"""Surface syntax -> IR: parse a Python subset with `ast` and translate it to the lambda calculus."""

from .ir import Function, pretty
from .translate import compile_function, compile_program

__all__ = ["Function", "compile_function", "compile_program", "pretty"]
