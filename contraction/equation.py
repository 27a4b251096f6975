"""Parse and validate einsum equations against operand shapes.

``parse_equation("bixj,bjyk->bixyk", [(B, χ, 2, χ), (B, χ, 2, χ)])`` returns an
:class:`Equation` with the ellipsis expanded into explicit letters and the implicit output
(no ``->``) made explicit, so every later stage (planning, FLOP counting, execution) sees
one unambiguous form. Every problem is reported as a ``ValueError`` that names it.

Rules, matching ``torch.einsum`` except where noted:

- index labels are ASCII letters; whitespace is ignored; ``...`` may appear once per term;
- without ``->`` the output is the ellipsis followed by the labels that appear exactly once,
  in ASCII order (upper case first), as in numpy and torch;
- a label repeated inside one term (``'ii->i'``) takes a diagonal; its sizes must agree;
- a label's size must be the same in every operand. Unlike ``torch.einsum`` a size-1 axis does
  not broadcast against a larger one: in a fixed-shape hot path such a mismatch is a bug.
"""
from __future__ import annotations

import string
from dataclasses import dataclass

_LETTERS = string.ascii_letters


@dataclass(frozen=True)
class Equation:
    """An explicit, validated einsum equation.

    Attributes:
        inputs: one label string per operand, ellipsis expanded.
        output: output labels.
        sizes: label -> dimension.
    """

    inputs: tuple[str, ...]
    output: str
    sizes: dict

    @property
    def explicit(self) -> str:
        """The equation as ``'ab,bc->ac'`` with no ellipsis and an explicit output."""
        return ",".join(self.inputs) + "->" + self.output


def _split_term(term: str, where: str) -> tuple[str, str, bool]:
    """Split a term into (labels before ``...``, labels after, has ellipsis)."""
    if term.count("...") > 1:
        raise ValueError(f"{where} {term!r} has more than one ellipsis '...'")
    if "..." in term:
        head, tail = term.split("...")
        has_ellipsis = True
    else:
        head, tail, has_ellipsis = term, "", False
    for ch in head + tail:
        if ch not in _LETTERS:
            raise ValueError(
                f"{where} {term!r} contains {ch!r}: index labels must be ASCII letters "
                "(and at most one '...')"
            )
    return head, tail, has_ellipsis


def parse_equation(equation: str, shapes) -> Equation:
    """Validate ``equation`` against ``shapes`` (one tuple of ints per operand).

    Raises:
        ValueError: the equation does not parse, the number of terms differs from the number
            of operands, a term's rank differs from its operand's, an index has two sizes, or
            an output label is repeated or absent from the inputs.
    """
    if not isinstance(equation, str):
        raise ValueError(f"equation must be a string, got {type(equation).__name__}")
    shapes = [tuple(int(d) for d in s) for s in shapes]
    if not shapes:
        raise ValueError(f"equation {equation!r}: contract needs at least one operand")
    eq = "".join(equation.split())
    if eq.count("->") > 1:
        raise ValueError(f"equation {equation!r} does not parse: more than one '->'")
    lhs, arrow, rhs = eq.partition("->")
    if "-" in lhs or ">" in lhs or "-" in rhs or ">" in rhs:
        raise ValueError(f"equation {equation!r} does not parse: stray '-' or '>'")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise ValueError(
            f"equation {equation!r} has {len(terms)} input term(s) but "
            f"{len(shapes)} operand(s) were given"
        )
    if "," in rhs:
        raise ValueError(f"equation {equation!r} does not parse: ',' in the output")

    split = [_split_term(t, f"input term {k}") for k, t in enumerate(terms)]
    used = {ch for head, tail, _ in split for ch in head + tail}
    spare = [ch for ch in _LETTERS if ch not in used]

    # Ellipsis axes are right-aligned across operands (as in broadcasting), so the j-th axis
    # from the right of every ellipsis gets the same label.
    n_ellipsis = 0
    for k, ((head, tail, has_e), shape) in enumerate(zip(split, shapes)):
        n_named = len(head) + len(tail)
        if has_e:
            if len(shape) < n_named:
                raise ValueError(
                    f"equation {equation!r}: operand {k} has {len(shape)} dimension(s) but "
                    f"term {terms[k]!r} names {n_named}"
                )
            n_ellipsis = max(n_ellipsis, len(shape) - n_named)
        elif len(shape) != n_named:
            raise ValueError(
                f"equation {equation!r}: operand {k} has {len(shape)} dimension(s) "
                f"{shape} but term {terms[k]!r} has {n_named} index label(s)"
            )
    if n_ellipsis > len(spare):
        raise ValueError(f"equation {equation!r}: too many ellipsis dimensions to label")
    ellipsis_labels = "".join(spare[:n_ellipsis])

    inputs = []
    for (head, tail, has_e), shape in zip(split, shapes):
        n_e = len(shape) - len(head) - len(tail) if has_e else 0
        inputs.append(head + ellipsis_labels[n_ellipsis - n_e:] + tail)

    sizes: dict = {}
    first_seen: dict = {}
    for k, (term, shape) in enumerate(zip(inputs, shapes)):
        for axis, (ch, dim) in enumerate(zip(term, shape)):
            if ch in sizes and sizes[ch] != dim:
                k0, axis0 = first_seen[ch]
                raise ValueError(
                    f"equation {equation!r}: index {ch!r} has size {sizes[ch]} in operand "
                    f"{k0} (axis {axis0}) but size {dim} in operand {k} (axis {axis}); "
                    "contract does not broadcast, expand the operand explicitly"
                )
            sizes.setdefault(ch, dim)
            first_seen.setdefault(ch, (k, axis))

    if arrow:
        head, tail, has_e = _split_term(rhs, "output")
        if has_e and n_ellipsis == 0 and not any(s[2] for s in split):
            raise ValueError(f"equation {equation!r}: '...' in the output but not in any input")
        output = head + (ellipsis_labels if has_e else "") + tail
        for ch in output:
            if output.count(ch) > 1:
                raise ValueError(f"equation {equation!r}: output index {ch!r} is repeated")
            if ch not in sizes:
                raise ValueError(
                    f"equation {equation!r}: output index {ch!r} does not appear in any input"
                )
    else:
        counts: dict = {}
        for term in inputs:
            for ch in term:
                counts[ch] = counts.get(ch, 0) + 1
        once = sorted(ch for ch, c in counts.items() if c == 1 and ch not in ellipsis_labels)
        output = ellipsis_labels + "".join(once)

    return Equation(inputs=tuple(inputs), output=output, sizes=sizes)
