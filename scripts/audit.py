"""Known-vulnerability audit of the pinned dependencies (`make audit`, run by CI).

pip-audit resolves requirements.txt and requirements-dev.txt and asks PyPI's vulnerability data about each pinned
version. Some package mirrors serve only PyPI's project-level JSON (the latest release), not the versioned endpoint
pip-audit asks for, so pip-audit then skips every package. For a skipped package whose pin IS the latest release,
the project-level `vulnerabilities` list describes exactly that version, so it is used; any other skipped package is
reported as not audited. Exit 1 on any known vulnerability, and when a package could not be audited: a package
nobody checked is not a passed audit. `AUDIT_STRICT=false` reports those without failing (for a mirror that lacks
the data; .ci/run says why it uses it).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ("requirements-dev.lock",)  # every installed package, pinned and hashed (it includes the runtime)
PYPI_PROJECT = "https://pypi.org/pypi/{name}/json"
SKIPPED_VERSION = re.compile(r"\(([^()\s]+)\)\s*$")  # pip-audit's skip reason ends with "(<version>)"


@dataclass
class Audit:
    """Outcome per package: audited by pip-audit, audited as the latest release, or not audited."""

    vulnerabilities: dict[str, list[str]] = field(default_factory=dict)
    by_pip_audit: list[str] = field(default_factory=list)
    by_latest_release: list[str] = field(default_factory=list)
    not_audited: dict[str, str] = field(default_factory=dict)


def run_pip_audit() -> list[dict[str, object]]:
    """pip-audit's JSON list of dependencies (each with `vulns` or a `skip_reason`)."""
    pip_audit = str(Path(sys.executable).with_name("pip-audit"))
    command = [pip_audit, "--format", "json", "--progress-spinner", "off", "--require-hashes", "--disable-pip"]
    for name in REQUIREMENTS:
        command += ["-r", str(REPO_ROOT / name)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode not in (0, 1):  # 1 means "vulnerabilities found": the JSON says which
        raise SystemExit(f"pip-audit failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    dependencies: list[dict[str, object]] = json.loads(done.stdout)["dependencies"]
    return dependencies


def latest_release_vulnerabilities(name: str, version: str) -> list[str] | None:
    """Vulnerability ids when `version` is the latest release on PyPI; None when that cannot be told."""
    try:
        response = requests.get(PYPI_PROJECT.format(name=name), timeout=20)
        response.raise_for_status()
        project = response.json()
    except (requests.RequestException, ValueError):
        return None
    if project.get("info", {}).get("version") != version:
        return None
    return [str(vuln.get("id")) for vuln in project.get("vulnerabilities", [])]


def audit() -> Audit:
    """Audit every resolved dependency, falling back to the latest-release data where pip-audit skipped."""
    result = Audit()
    for dependency in run_pip_audit():
        name, reason = str(dependency["name"]), str(dependency.get("skip_reason", ""))
        version = str(dependency.get("version") or next(iter(SKIPPED_VERSION.findall(reason)), "?"))
        label = f"{name}=={version}"
        if "skip_reason" not in dependency:
            result.by_pip_audit.append(label)
            ids = [str(vuln["id"]) for vuln in dependency.get("vulns", [])]  # type: ignore[attr-defined]
        else:
            found = latest_release_vulnerabilities(name, version)
            if found is None:
                result.not_audited[label] = reason
                continue
            result.by_latest_release.append(label)
            ids = found
        if ids:
            result.vulnerabilities[label] = ids
    return result


def main() -> int:
    result = audit()
    for label, ids in sorted(result.vulnerabilities.items()):
        print(f"VULNERABLE {label}: {', '.join(ids)}")
    for label, reason in sorted(result.not_audited.items()):
        print(f"not audited {label}: {reason}")
    audited = len(result.by_pip_audit) + len(result.by_latest_release)
    total = audited + len(result.not_audited)
    print(
        f"audit: {audited}/{total} packages audited ({len(result.by_pip_audit)} by pip-audit, "
        f"{len(result.by_latest_release)} as PyPI's latest release), {len(result.vulnerabilities)} vulnerable"
    )
    if result.vulnerabilities:
        return 1
    if result.not_audited and os.environ.get("AUDIT_STRICT", "true") != "false":
        print(f"audit: FAILED, {len(result.not_audited)} packages not audited (AUDIT_STRICT=false only reports)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
