"""The release version: `backend.__version__` is its one source; the deployment files carry copies of it as image
tags (compose and Kubernetes cannot import Python), written by this script and checked by a test.

    python -m scripts.version              # print the version
    python -m scripts.version check        # exit 1 naming every copy that differs
    python -m scripts.version set 1.1.0    # write the new version everywhere, CHANGELOG's Unreleased becomes 1.1.0
"""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime
from pathlib import Path

from scripts.devservices import REPO_ROOT

SOURCE = Path("backend/__init__.py")
SEMVER = r"\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?"
# file -> pattern whose group 1 is a copy of the version
COPIES: dict[Path, str] = {
    SOURCE: rf'^__version__ = "({SEMVER})"$',
    Path("deploy/k8s/base/kustomization.yaml"): rf'^    newTag: "({SEMVER})"$',
    Path("deploy/k8s/overlays/production/kustomization.yaml"): rf'^    newTag: "({SEMVER})"$',
    Path("docker-compose.yml"): rf"\$\{{SQAL_VERSION:-({SEMVER})\}}",
}
CHANGELOG = Path("CHANGELOG.md")


def current(root: Path = REPO_ROOT) -> str:
    """The version in the one source."""
    match = re.search(COPIES[SOURCE], (root / SOURCE).read_text(encoding="utf-8"), re.M)
    if match is None:
        raise SystemExit(f"no __version__ in {SOURCE}")
    return match.group(1)


def stale_copies(root: Path = REPO_ROOT) -> list[str]:
    """`file: found` for every copy that is not the source's version (or is missing)."""
    version, stale = current(root), []
    for path, pattern in COPIES.items():
        found = re.findall(pattern, (root / path).read_text(encoding="utf-8"), re.M)
        if not found:
            stale.append(f"{path}: no version found")
        stale.extend(f"{path}: {copy}" for copy in found if copy != version)
    return stale


def set_version(new: str, root: Path = REPO_ROOT, today: str | None = None) -> None:
    """Write `new` into the source and every copy; open CHANGELOG's Unreleased section as `new`."""
    if not re.fullmatch(SEMVER, new):
        raise SystemExit(f"not a semantic version: {new!r}")
    for path, pattern in COPIES.items():
        file = root / path
        text = file.read_text(encoding="utf-8")
        file.write_text(re.sub(pattern, lambda m: m.group(0).replace(m.group(1), new), text, flags=re.M), "utf-8")
    changelog = root / CHANGELOG
    date = today or datetime.now(UTC).date().isoformat()
    text = changelog.read_text(encoding="utf-8")
    if "## [Unreleased]" not in text:
        raise SystemExit(f"{CHANGELOG} has no [Unreleased] section to release")
    changelog.write_text(text.replace("## [Unreleased]", f"## [Unreleased]\n\n## [{new}] - {date}", 1), "utf-8")


def main(argv: list[str]) -> int:
    if not argv:
        print(current())
        return 0
    if argv[0] == "check":
        stale = stale_copies()
        for line in stale:
            print(f"version copy differs from {SOURCE} ({current()}): {line}", file=sys.stderr)
        return 1 if stale else 0
    if argv[0] == "set" and len(argv) == 2:
        set_version(argv[1])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
