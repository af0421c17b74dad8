"""The boundary between the two sides, kept by a test rather than by habit: the image's code
(smray.entrypoints, smray.ray_bootstrap) never imports the workstation's (smray.workstation), and the
shared modules import neither side. Lazy imports inside functions count too."""

import ast
from pathlib import Path

from smray.entrypoints import dispatch

PACKAGE = Path(__file__).parents[2] / "src" / "smray"
IMAGE = ("entrypoints", "ray_bootstrap")
WORKSTATION = ("workstation",)


def side(module: str) -> str:
    top = module.split(".")[1] if "." in module else ""
    return "image" if top in IMAGE else "workstation" if top in WORKSTATION else "shared"


def imports(source: Path) -> set[str]:
    """Every smray module a file imports, `from smray.x import y` counted as both smray.x and smray.x.y."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {name for name in found if name == "smray" or name.startswith("smray.")}


def crossings(package: Path = PACKAGE) -> list[str]:
    allowed = {
        "image": {"image", "shared"},
        "shared": {"shared"},
        "workstation": {"workstation", "shared", "image"},
    }
    found = []
    for source in sorted(package.rglob("*.py")):
        module = ".".join(source.relative_to(package.parent).with_suffix("").parts)
        found += [
            f"{module} imports {name}"
            for name in sorted(imports(source))
            if name != "smray" and side(name) not in allowed[side(module)]
        ]
    return found


def test_the_image_never_imports_the_workstation_and_shared_modules_import_neither_side():
    assert crossings() == []


def test_the_check_sees_a_lazy_import_across_the_boundary(tmp_path):
    probe = tmp_path / "smray" / "entrypoints" / "modes" / "_lazy_probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("def f():\n    from smray.workstation import local_workflow\n")
    assert crossings(tmp_path / "smray") == [
        "smray.entrypoints.modes._lazy_probe imports smray.workstation",
        "smray.entrypoints.modes._lazy_probe imports smray.workstation.local_workflow",
    ]


def test_the_dispatch_table_and_the_modes_folder_list_the_same_modes():
    folder = {p.stem.replace("_", "-") for p in (PACKAGE / "entrypoints" / "modes").glob("[!_]*.py")}
    assert set(dispatch.MODES) == folder
    for mode in dispatch.MODES.values():  # each names its module rightly (it is imported only when run)
        assert mode.parser().prog == f"smray-entrypoint {mode.name}"
