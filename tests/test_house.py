"""The house rules that keep the project readable, checked on the source tree itself."""
import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
PRODUCT = ("qlam_tn", "models", "experiments", "contraction")
# Names whose underscore attributes are theirs to offer (torch's and the standard library's).
ALLOWED_OWNERS = {"self", "cls", "torch", "np", "os", "sys"}
ALLOWED_ATTRIBUTES = {"_version", "_exit", "_BatchNorm"}
MAX_REACHES = 5


def reaches(tree: ast.AST, path: str):
    """Each ``obj._name`` read of another object's underscore attribute and each
    ``from module import _name`` in one module."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value
            if node.attr in ALLOWED_ATTRIBUTES:
                continue
            if isinstance(owner, ast.Name) and owner.id in ALLOWED_OWNERS:
                continue
            if isinstance(owner, ast.Call) and getattr(owner.func, "id", "") == "super":
                continue
            out.append(f"{path}:{node.lineno} {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom):
            out += [f"{path}:{node.lineno} from {node.module} import {a.name}" for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")]
    return out


def test_the_reach_counter_finds_what_it_should():
    src = ("import m\nfrom m import _hidden\nclass A:\n    def f(self, other):\n"
           "        return self._x + other._y + torch._C + super()._z + m.__doc__\n")
    found = reaches(ast.parse(src), "x.py")
    assert found == ["x.py:2 from m import _hidden", "x.py:5 other._y"]


def test_product_code_rarely_reaches_into_another_objects_underscore_names():
    found = []
    for folder in PRODUCT:
        for path in sorted((ROOT / folder).rglob("*.py")):
            found += reaches(ast.parse(path.read_text()), str(path.relative_to(ROOT)))
    assert len(found) <= MAX_REACHES, "\n".join(found)


def test_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines: results and logs go to docs/"


def test_relative_links_in_the_docs_resolve():
    broken = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            if not (page.parent / target.split("#")[0]).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, "\n".join(broken)


def test_studies_are_config_files_not_shell_ladders():
    assert not list((ROOT / "experiments").rglob("*.sh"))
    assert list((ROOT / "experiments" / "configs").glob("*.toml"))
