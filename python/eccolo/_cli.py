"""The ``eccolo`` command installed by pip: runs the C program installed
inside the package, with the package's demo model as the default model."""
import os
import sys

from ._lib import NATIVE


def main():
    exe = os.path.join(NATIVE, "eccolo")
    if not os.path.exists(exe):
        sys.stderr.write("eccolo: error: the eccolo program is not installed beside the package (%s): reinstall "
                         "with pip install .\n" % exe)
        return 2
    demo = os.path.join(NATIVE, "models", "demo")
    if not os.environ.get("ECCOLO_DEFAULT_MODEL") and os.path.isdir(demo):
        os.environ["ECCOLO_DEFAULT_MODEL"] = demo
    os.execv(exe, [exe] + sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
