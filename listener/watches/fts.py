"""Pure: a watch query as the FTS5 query `Store.search` takes, so `listener search` and the
watches read one language (words, "phrases", prefix*, AND / OR / NOT, parentheses, NEAR/n).

The query is parsed by `watches.query.parse_query` (errors point at a 0-based position with a
caret, as for a watch) and written back with FTS5's syntax: every term a quoted phrase of
the watch's folded tokens (FTS5's unicode61 tokenizer folds accents and case the same way
on its side), `a NOT b` for an AND's excluded terms, and `a NEAR/n b` as FTS5's
`NEAR("a" "b", n - 1)` (at most n - 1 tokens between, either order). A chain
`a NEAR/3 b NEAR/5 c` becomes both pairs' NEARs ANDed; an OR inside a NEAR becomes the OR of
each pair of terms.
"""

from __future__ import annotations

from itertools import product

from listener.errors import QuerySyntaxError
from listener.watches.query import And, Near, Node, Not, Or, Term, parse_query

_NOT_ALONE = "search cannot find items by what they lack alone: add a term to look for"


def to_fts_query(text: str) -> str:
    """Parse `text` as a watch query and return the equivalent FTS5 MATCH expression;
    QuerySyntaxError (with the position) when it does not parse or FTS5 cannot say it."""
    query = parse_query(text)
    return _compile(query.root, text)


def _compile(node: Node, text: str) -> str:
    if isinstance(node, Term):
        return _phrase(node)
    if isinstance(node, Or):
        for child in node.children:
            if isinstance(child, Not):
                raise QuerySyntaxError(_NOT_ALONE, text, child.position)
        return "(" + " OR ".join(_compile(child, text) for child in node.children) + ")"
    if isinstance(node, And):
        wanted = [child for child in node.children if not isinstance(child, Not)]
        unwanted = [child.child for child in node.children if isinstance(child, Not)]
        if not wanted:
            raise QuerySyntaxError(_NOT_ALONE, text, node.position)
        expression = "(" + " AND ".join(_compile(child, text) for child in wanted) + ")"
        for child in unwanted:
            expression = f"({expression} NOT {_compile(child, text)})"
        return expression
    if isinstance(node, Near):
        pairs = [
            "("
            + " OR ".join(
                f"NEAR({_phrase(a)} {_phrase(b)}, {distance - 1})"
                for a, b in product(_terms(left), _terms(right))
            )
            + ")"
            for left, right, distance in zip(
                node.operands[:-1], node.operands[1:], node.distances, strict=True
            )
        ]
        return pairs[0] if len(pairs) == 1 else "(" + " AND ".join(pairs) + ")"
    raise QuerySyntaxError(_NOT_ALONE, text, node.position)


def _terms(node: Term | Or) -> list[Term]:
    if isinstance(node, Term):
        return [node]
    found: list[Term] = []
    for child in node.children:
        if isinstance(child, Term | Or):
            found += _terms(child)
    return found


def _phrase(term: Term) -> str:
    # Tokens are runs of letters and digits: nothing in them needs escaping.
    return '"' + " ".join(term.tokens) + '"' + (" *" if term.prefix else "")
