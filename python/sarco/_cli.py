"""The `sarco` console script of the pip package: runs the native sarco program (bundled in the
wheel, or found as sarco.batch.find_cli says) with the same arguments and exit code."""
import os
import sys


def main():
    from .batch import find_cli
    try:
        exe = find_cli()
    except FileNotFoundError as e:
        print(f"sarco: {e}", file=sys.stderr)
        return 1
    lib = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bin")
    if os.path.isdir(lib):  # the bundled program finds the bundled plug-ins through the library path
        os.environ["LD_LIBRARY_PATH"] = lib + os.pathsep + os.environ.get("LD_LIBRARY_PATH", "")
    os.execv(exe, [exe] + sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
