"""One version source: every copy in the deployment files equals `backend.__version__`, and a release rewrites all."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from backend import __version__
from scripts import version
from scripts.devservices import REPO_ROOT


def test_every_copy_is_the_source_version() -> None:
    assert version.current() == __version__
    assert version.stale_copies() == []


def copy_release_files(target: Path) -> Path:
    for path in [*version.COPIES, version.CHANGELOG]:
        (target / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / path, target / path)
    return target


def test_a_stale_copy_is_named(tmp_path: Path) -> None:
    root = copy_release_files(tmp_path)
    kustomization = root / "deploy/k8s/base/kustomization.yaml"
    kustomization.write_text(kustomization.read_text().replace(f'newTag: "{__version__}"', 'newTag: "0.9.9"'))
    assert version.stale_copies(root) == ["deploy/k8s/base/kustomization.yaml: 0.9.9"]


def test_set_writes_every_copy_and_opens_the_release_in_the_changelog(tmp_path: Path) -> None:
    root = copy_release_files(tmp_path)
    version.set_version("7.8.9", root, today="2027-01-02")
    assert version.current(root) == "7.8.9"
    assert version.stale_copies(root) == []
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    images = [service.get("image", "") for service in compose["services"].values()]
    assert "sqal-backend:${SQAL_VERSION:-7.8.9}" in images
    changelog = (root / "CHANGELOG.md").read_text()
    assert changelog.index("## [Unreleased]") < changelog.index("## [7.8.9] - 2027-01-02")


def test_changelog_follows_keep_a_changelog() -> None:
    text = (REPO_ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## [Unreleased]" in text
    assert f"## [{__version__}] - " in text, "the current version has no release section"
