"""Print kaudit's requirements from pyproject.toml, one per line (run by ci/build-image).

Usage: requirements.py run|build PYPROJECT

Why: ci/build-image downloads wheels with the host's pip, which knows this machine's index,
proxy certificates and constraints, and the image installs them without network; the lists come
from pyproject.toml so that they are written down once. `run` is the dependencies plus the
`test` extra (so that pytest can run inside the container); `build` is what building kaudit
itself needs ([build-system] requires).
"""

from __future__ import annotations

import sys
import tomllib

kind, path = sys.argv[1], sys.argv[2]
with open(path, "rb") as f:
    pyproject = tomllib.load(f)
if kind == "run":
    project = pyproject["project"]
    requirements = list(project.get("dependencies", []))
    requirements += project.get("optional-dependencies", {}).get("test", [])
elif kind == "build":
    requirements = list(pyproject.get("build-system", {}).get("requires", ["setuptools", "wheel"]))
else:
    sys.exit(f"requirements.py: unknown kind {kind!r} (expected run or build)")
print("\n".join(requirements))
