"""A wheel of the tuneform running now, which the hf-jobs backend ships to the job's container.

However tuneform was installed, the job gets the same code:

- TUNEFORM_WHEEL names a prebuilt wheel: that file (an override, e.g. for a patched build);
- a source checkout (editable install, or run from `src/`): built with pip from a copy of the
  source, so the checkout gets no build/ or egg-info folders;
- a regular install (from an index, a wheel file or a VCS URL): repacked from the files the
  distribution's RECORD lists, with RECORD rewritten (sha256 of each file as it is on disk) and
  WHEEL, METADATA and entry points kept. Installer records (INSTALLER, REQUESTED,
  direct_url.json), byte code and the console scripts outside site-packages are left out: pip
  writes them again when it installs the wheel.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from email.parser import HeaderParser
from importlib import metadata
from pathlib import Path, PurePosixPath

import tuneform
from tuneform.backends.protocol import BackendError
from tuneform.core.distribution import NAME

# Files of an installed .dist-info that the installer wrote, not the wheel (PEP 376, PEP 610, PEP 627).
INSTALLER_FILES = ("INSTALLER", "REQUESTED", "direct_url.json", "RECORD")


class WheelError(BackendError):
    """The wheel of this tuneform cannot be built; the message says what to set instead."""


def build_wheel(dest: Path) -> Path:
    """The wheel file (in `dest`) that installs the tuneform running now; see the module doc."""
    dest.mkdir(parents=True, exist_ok=True)
    prebuilt = os.environ.get("TUNEFORM_WHEEL")
    if prebuilt:
        path = Path(prebuilt)
        if not path.is_file():
            raise WheelError(f"TUNEFORM_WHEEL={prebuilt} is not a file: unset it, or point it at a tuneform wheel")
        return Path(shutil.copy2(path, dest))
    package = Path(tuneform.__file__).resolve().parent
    project = package.parent.parent
    if package.parent.name == "src" and (project / "pyproject.toml").is_file():
        return _build_from_source(project, package, dest)
    return repack_installed(package, dest)


def _build_from_source(project: Path, package: Path, dest: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="tuneform-src-") as tmp:
        copy = Path(tmp) / "src"
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (project / name).is_file():
                shutil.copy2(project / name, Path(tmp) / name)
        shutil.copytree(package, copy / "tuneform", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check", "-w", str(dest), tmp]
        # offline with the setuptools at hand first; else let pip fetch the build backend
        done = subprocess.run([*command, "--no-build-isolation", "--no-index"], capture_output=True, text=True)
        if done.returncode != 0:
            done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise WheelError(f"building the tuneform wheel failed: {done.stderr.strip()[-500:]}")
    wheels = sorted(dest.glob(f"{NAME}-*.whl"))
    if not wheels:
        raise WheelError("building the tuneform wheel produced no wheel")
    return wheels[-1]


def repack_installed(package: Path, dest: Path) -> Path:
    """Repack the installed distribution whose RECORD lists `package`/__init__.py into a wheel."""
    fix = "set TUNEFORM_WHEEL to a tuneform wheel, or reinstall tuneform with pip"
    try:
        dist = metadata.distribution(NAME)
    except metadata.PackageNotFoundError:
        raise WheelError(f"tuneform at {package} has no installed distribution metadata: {fix}") from None
    files = [f for f in dist.files or [] if _belongs_in_wheel(f)]
    if not any(Path(str(dist.locate_file(f))).resolve() == package / "__init__.py" for f in files):
        raise WheelError(f"the installed tuneform distribution ({dist.version}) does not list {package}/__init__.py in its RECORD: {fix}")
    wheel_text = dist.read_text("WHEEL")
    if not wheel_text:
        raise WheelError(f"the installed tuneform {dist.version} has no WHEEL file in its .dist-info: {fix}")
    tags = HeaderParser().parsestr(wheel_text).get_all("Tag") or ["py3-none-any"]
    if len(tags) != 1:
        raise WheelError(f"the installed tuneform {dist.version} has several wheel tags {tags}: {fix}")
    dist_info = f"{NAME}-{dist.version}.dist-info"
    target = dest / f"{NAME}-{dist.version}-{tags[0]}.whl"
    record: list[str] = []
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        # the package first and the .dist-info last, RECORD at its very end (the wheel spec's order)
        for entry in sorted(files, key=lambda f: (str(f).startswith(dist_info), str(f))):
            data = Path(str(dist.locate_file(entry))).read_bytes()
            archive.writestr(_zip_info(str(entry)), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{entry},sha256={digest},{len(data)}")
        record.append(f"{dist_info}/RECORD,,")
        archive.writestr(_zip_info(f"{dist_info}/RECORD"), "\n".join(record) + "\n")
    return target


def _belongs_in_wheel(entry: PurePosixPath) -> bool:
    """Files the wheel carries: inside site-packages, no byte code, no installer records."""
    parts = PurePosixPath(str(entry)).parts
    if not parts or parts[0] == ".." or "__pycache__" in parts or entry.suffix == ".pyc":
        return False
    return not (len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] in INSTALLER_FILES)


def _zip_info(name: str) -> zipfile.ZipInfo:
    """A member with a fixed date and plain file mode, so that the same files give the same wheel."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info
