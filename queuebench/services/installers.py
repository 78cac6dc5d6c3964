"""Install what the servers need from Debian, Maven Central and the Go module proxy.

Each installer is a no-op when its result is already there, so a warm `up` installs nothing
and touches no network. Downloads stay in the usual caches (~/.m2, the Go module cache).
"""

import hashlib
import os
import shutil
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

from queuebench.services.processes import CommandFailed, run

# dpkg allows one apt-get at a time; parallel service starts queue here instead.
_apt_lock = threading.Lock()
_apt_lists_updated = False
# Maven 3.8's local repository is not safe for two builds downloading the same artifact.
_maven_lock = threading.Lock()


def debian_package_installed(package: str) -> bool:
    result = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],
                            capture_output=True, text=True)
    return result.returncode == 0 and result.stdout.strip() == "install ok installed"


def ensure_debian_packages(packages: Sequence[str]) -> None:
    """apt-get install the packages that are missing (needs root; no services are started)."""
    global _apt_lists_updated
    with _apt_lock:
        missing = [package for package in packages if not debian_package_installed(package)]
        if not missing:
            return
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        wait_for_dpkg_lock = ["-o", "DPkg::Lock::Timeout=300"]
        if not _apt_lists_updated:
            run(["apt-get", *wait_for_dpkg_lock, "-q", "update"], env=env)
            _apt_lists_updated = True
        run(["apt-get", *wait_for_dpkg_lock, "-q", "-y", "--no-install-recommends", "install",
             *missing], env=env)


def maven_copy_dependencies(pom: Path, lib_dir: Path) -> None:
    """Copy the pom's runtime jars into lib_dir, unless this very pom was copied there before."""
    marker = lib_dir / ".pom-sha256"
    pom_hash = hashlib.sha256(pom.read_bytes()).hexdigest()
    if marker.is_file() and marker.read_text() == pom_hash:
        return
    if shutil.which("mvn") is None:
        raise CommandFailed("mvn (Maven) is not installed: apt-get install maven")
    shutil.rmtree(lib_dir, ignore_errors=True)  # no jars of an older version left behind
    with _maven_lock:
        run(["mvn", "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
             "-DincludeScope=runtime", f"-DoutputDirectory={lib_dir}"])
    marker.write_text(pom_hash)


def go_binary() -> str:
    """The go command: on PATH, or where the official tarball puts it."""
    found = shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")
    if found is None:
        raise CommandFailed("go is not installed: apt-get install golang-go, or the Go tarball")
    return found


def go_install(package: str, version: str, binary_name: str, install_dir: Path,
               ldflags: str = "") -> Path:
    """Build package@version with `go install` into install_dir, renamed binary_name."""
    target = install_dir / version / binary_name
    if target.is_file():
        return target
    build_dir = install_dir / version / "build"
    shutil.rmtree(build_dir, ignore_errors=True)
    build_dir.mkdir(parents=True)
    run([go_binary(), "install", f"-ldflags={ldflags}", f"{package}@{version}"],
        env={**os.environ, "GOBIN": str(build_dir)})
    # go install names the binary after the package folder ("server"): give it its real name.
    (built,) = build_dir.iterdir()
    built.replace(target)
    build_dir.rmdir()
    return target
