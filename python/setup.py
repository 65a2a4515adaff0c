"""Build hook: puts libkvstore_c.so into the package.

The library comes from $KVSTORE_C_LIB when set (an already built one, e.g. the test suite's debug
build), else from `swift build -c release --product kvstore_c` in the repository this directory
belongs to. Metadata lives in pyproject.toml.
"""
import os
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

REPO = Path(__file__).resolve().parent.parent
LIB = "libkvstore_c.so"


def library() -> Path:
    given = os.environ.get("KVSTORE_C_LIB")
    if given:
        path = Path(given)
        if not path.is_file():
            raise SystemExit(f"KVSTORE_C_LIB={given} is not a file")
        return path
    if not (REPO / "Package.swift").is_file():
        raise SystemExit(f"no Package.swift in {REPO}: set KVSTORE_C_LIB to a built {LIB}")
    cmd = ["swift", "build", "-c", "release", "--product", "kvstore_c"]
    print("building the library:", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)
    bin_dir = subprocess.run(cmd + ["--show-bin-path"], cwd=REPO, check=True, capture_output=True, text=True).stdout
    return Path(bin_dir.strip()) / LIB


class BuildPyWithLibrary(build_py):
    def run(self):
        super().run()
        target = Path(self.build_lib) / "kvstore" / LIB
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(library(), target)


class PlatformDistribution(Distribution):
    """The wheel carries a native library: tag it for this platform."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildPyWithLibrary}, distclass=PlatformDistribution)
