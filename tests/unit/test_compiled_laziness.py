"""The compiled modules hand no generator expression to anything lazy (``tables.native``,
"Generator expressions are lists"): mypyc builds one whole as a list before it is iterated, so
a consumer that stops early (a merge, a ``for`` that breaks, a caller taking the first items)
would still have read everything. Allowed: the consumers that read it all anyway, and the
builtins mypyc short-circuits."""

from __future__ import annotations

import ast

from tables.native import MODULES, ROOT

#: Callables that consume their argument whole (so a list costs nothing more), and ``any``,
#: ``all``, ``sum`` and ``next``, which mypyc compiles as loops that stop where Python's would.
WHOLE_OR_SHORT_CIRCUITED = frozenset({
    "any", "all", "sum", "next", "min", "max", "sorted", "list", "tuple", "set", "frozenset",
    "dict", "join", "extend", "update", "union", "observe_many",
})


def lazy_uses(source: str) -> list[str]:
    """``line: expression`` of each generator expression not handed to one of
    :data:`WHOLE_OR_SHORT_CIRCUITED`."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.GeneratorExp):
            continue
        argument: ast.AST = node
        if isinstance(parents.get(node), ast.Starred):  # f(*(... for ...)): unpacked whole
            argument = parents[node]
        call = parents.get(argument)
        name = None
        if isinstance(call, ast.Call) and argument in call.args:
            func = call.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if name not in WHOLE_OR_SHORT_CIRCUITED:
            found.append(f"{node.lineno}: {ast.get_source_segment(source, node)}")
    return found


def test_no_compiled_module_hands_a_generator_expression_to_a_lazy_consumer() -> None:
    lazy = {module: uses for module in MODULES
            if (uses := lazy_uses((ROOT / module).read_text()))}
    assert lazy == {}


def test_the_check_finds_what_the_history_merge_did() -> None:
    merge = ("merged = heapq.merge(((key, False, value) for key, value in stored), pending)\n"
             "first = next(x for x in merged)\n"
             "window = itertools.islice((row for row in stored), 3)\n")
    assert [use.split(":")[0] for use in lazy_uses(merge)] == ["1", "3"]
