"""Write this repository's .github/workflows/{plan,comment,apply,report}.yml from the templates that
`tuneform init` ships, rendered as init renders them for a release of this version (tuneform==X).
tests/test_workflows.py checks that they match; run this after editing a template or the version."""

from __future__ import annotations

from pathlib import Path

import tuneform
from tuneform.core.distribution import InstallSpec
from tuneform.runfile.scaffold import render_workflow

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "src" / "tuneform" / "templates" / "init" / ".github" / "workflows"


def release_spec() -> InstallSpec:
    """What init writes when this version was installed from the package index."""
    return InstallSpec(f"tuneform=={tuneform.__version__}", "", "index")


def main() -> None:
    for template in sorted(TEMPLATES.glob("*.yml")):
        target = ROOT / ".github" / "workflows" / template.name
        target.write_text(render_workflow(template.read_text(encoding="utf-8"), release_spec()), encoding="utf-8")
        print(f"wrote {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
