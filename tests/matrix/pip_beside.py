"""pip installs trio_uring beside every trio in the supported range without
changing the user's trio.

In one throwaway venv, for each trio version: ``pip install trio==<version>``
(the user's pin), then ``pip install <trio_uring wheel>`` with dependency
resolution on (as a user would), then check that pip left that trio in place
and that a socketpair round trip under ``trio_uring.run`` ran on io_uring.

    python tests/matrix/pip_beside.py [--trios 0.27.0,0.35.0] [--python 3.11]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import PYTHONS, ROOT, find_python, installed_versions, table
from trios import TRIOS

PROGRAM = """
import trio, trio_uring
async def main():
    a, b = trio.socket.socketpair()
    with a, b:
        await a.send(b"ping")
        data = await b.recv(4)
    stats = trio.lowlevel.current_statistics().io_statistics
    return data, stats.backend, stats.ops_submitted.get("RECV", 0) + stats.ops_submitted.get("POLL_ADD", 0)
print(trio.__version__, *trio_uring.run(main))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trios", default=",".join(TRIOS))
    parser.add_argument("--python", default=PYTHONS[0])
    args = parser.parse_args()
    exe = find_python(args.python)
    if exe is None:
        print(f"Python {args.python} not found")
        return 1
    rows: list[list[str]] = []
    ok = True
    with tempfile.TemporaryDirectory(prefix="pip-beside-") as tmp:
        wheels = Path(tmp) / "wheels"
        subprocess.run([exe, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)], check=True)
        wheel = next(wheels.glob("trio_uring-*.whl"))
        shutil.rmtree(ROOT / "build", ignore_errors=True)
        env = Path(tmp) / "venv"
        subprocess.run([exe, "-m", "venv", str(env)], check=True)
        py = env / "bin" / "python"
        pip = [str(py), "-m", "pip", "--disable-pip-version-check", "-q"]
        for version in args.trios.split(","):
            subprocess.run([*pip, "uninstall", "-y", "trio_uring"], capture_output=True)
            subprocess.run([*pip, "install", f"trio=={version}"], check=True)
            proc = subprocess.run([*pip, "install", str(wheel)], capture_output=True, text=True)
            after = installed_versions(py)
            run = subprocess.run([str(py), "-c", PROGRAM], capture_output=True, text=True, cwd=tmp)
            result = run.stdout.strip() or run.stderr.strip().splitlines()[-1]
            good = proc.returncode == 0 and after.get("trio") == version and "io_uring" in result
            ok = ok and good
            print(f"trio {version}: pip exit {proc.returncode}, trio after {after.get('trio')}: {result}", flush=True)
            rows.append([version, str(proc.returncode), after.get("trio", "-"), result, "yes" if good else "NO"])
    print()
    print(table(["trio pinned", "pip install exit", "trio after", "trio_uring.run round trip", "ok"], rows))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
