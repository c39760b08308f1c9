#!/usr/bin/env python3
"""Boot Debian's real kernels under qemu and run trio_uring's suites inside them.

    python tools/test_kernels.py                      # every kernel in KERNELS, every suite (KERNEL_SET of ours)
    python tools/test_kernels.py 6.1 -- tests         # all of our suite (hours under TCG)
    python tools/test_kernels.py 6.1 --suites report,ours -- tests/test_socket.py -k listener
    python tools/test_kernels.py --smoke              # what `make test` runs (each kernel, quick files)
    python tools/test_kernels.py linux-image-6.1.0-28-amd64-unsigned   # any package, by name

Kernels come from Debian's package registry: ``apt-get download`` of a
``linux-image-*-amd64-unsigned`` package, unpacked with ``dpkg-deb -x`` into a
cache outside the repository (``~/.cache/trio_uring/kernels``, or
``$TRIO_URING_KERNEL_CACHE``).  apt runs with a private configuration in that
cache (its own sources list, package lists and archive cache, passed with
``-o Dir::...``), so the machine's apt setup is never changed: the private
sources list has the same URI and keyring as the machine's Debian entry, with
the suites ``bookworm bookworm-updates bookworm-backports bullseye`` (6.12
is in bookworm-backports, 5.10 in bullseye).

Each kernel boots under qemu with an initramfs as its only root
(tools/guest_initramfs.py): this machine's venv, its Python, the shared
libraries they load, a static busybox and this checkout, each at its host
path, unpacked into the guest's tmpfs, and /init (tools/guest_init.sh).  The
run's output folder in the cache is shared into the guest over 9p, writable,
which is how results come out; inside, tools/kernel_guest.py runs the suites
and writes results.json there.  ``--root 9p`` boots the older way instead:
virtme-ng (installed from PyPI into its own venv in the cache) shares the
host's whole root read-only over 9p, which under emulation made every Python
start a long string of 9p round trips (``python -m trio_uring`` took 30 s to
4 minutes, against 9 s from the initramfs).  KVM is used only if a KVM guest
boots (``--accel auto`` tries it first); on machines where nested KVM hangs,
TCG emulation is used.

Adding a kernel: add its version and package name (a glob picks the newest
matching package) to KERNELS, or name the package on the command line.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import guest_initramfs  # tools/, this script's folder, is first on sys.path

REPO = Path(__file__).resolve().parent.parent

#: version label -> Debian package (a glob: the newest match is used)
KERNELS = {
    "5.10": "linux-image-5.10.0-30-amd64-unsigned",  # Debian 11 (bullseye), below the floor
    "6.1": "linux-image-6.1.0-*-amd64-unsigned",  # Debian 12 (bookworm)
    "6.12": "linux-image-6.12.*+deb12-amd64-unsigned",  # Debian 13's series (bookworm-backports)
}
SUITES = ("bookworm", "bookworm-updates", "bookworm-backports", "bullseye")
ALL_SUITES = ("report", "ours", "trio")

#: `make test`'s bounded run: each of the three kernels, the report, the core
#: files, and the tests whose expectations depend on the kernel (each asks it
#: at run time).  On 5.10, below the floor, the guest runs the floor tests
#: instead (the refusal and install(fallback=True)).
SMOKE_KERNELS = ["6.1", "6.12", "5.10"]
SMOKE_TESTS = [
    "tests/test_ring.py",
    "tests/test_manager.py",
    "tests/test_socket.py::test_a_listener_garbage_collected_without_close_stops_listening",
    "tests/test_socket.py::test_many_receives_completing_at_once_exceed_the_buffer_ring",
    "tests/test_files.py::test_io_goes_through_the_ring_not_threads",
    "tests/test_files.py::test_cached_data_is_read_without_a_READ_and_under_faults_with_one",
    "tests/test_fileops.py::test_cancel_openat_waiting_for_a_lease",
    "tests/test_sendfile.py::test_cancel_before_anything_is_sent",
    "tests/test_sendfile.py::test_cancel_after_some_is_sent_reports_it",
    "tests/test_support.py::test_memlock_zero",
    "tests/test_support.py::test_memlock_small_limit_shrinks_the_ring",
]
#: What "ours" runs when no pytest arguments are given: the whole suite less
#: the files that spend their time starting Python processes and pytest
#: sessions (benchmark harness runs, launcher, workers, deploy, examples, the
#: pytest plugin in a child, anyio's pytester runs, the version checks).
#: Under TCG on a 2-core host `python -m trio_uring` took from 30 s to 4 minutes, so those
#: files alone would take hours; the kernel paths they drive are the ones the
#: remaining files drive in-process, and they run natively and under every
#: kernel profile (make test-profiles).  ``-- tests`` runs everything.
KERNEL_SET = [
    "tests",
    "--ignore-glob=tests/test_bench*.py",
    *(
        f"--ignore=tests/{name}.py"
        for name in (
            "test_pytest_faults",
            "test_pytest_plugin",
            "test_launcher",
            "test_workers",
            "test_deploy",
            "test_examples",
            "test_anyio",
            "test_testing",
            "test_trio_versions",
            "test_typing_usage",
        )
    ),
]
#: where the smoke run runs trio's suite on trio_uring too (about 5 minutes
#: under TCG): Debian 12's kernel, the one most servers run
SMOKE_TRIO = {"6.1"}
#: the smoke run's bound per kernel (boot, report and the files above take 1.5
#: minutes under TCG on a quiet 2-core machine, trio's suite 5 more)
SMOKE_TIMEOUT = 20 * 60

#: the machine's Debian entry, if its sources file cannot be read
DEFAULT_URI = "http://deb.debian.org/debian"
DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def log(msg: str) -> None:
    print(f"[test-kernels] {msg}", flush=True)


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "trio_uring" / "kernels"
    return Path(os.environ.get("TRIO_URING_KERNEL_CACHE", default))


# ---- apt, privately ----------------------------------------------------------------------


def debian_entry() -> tuple[str, str]:
    """URI and keyring of the machine's main Debian entry (deb822 or one-line format)."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = dict(
                line.split(":", 1) for line in stanza.splitlines() if ":" in line and not line.startswith("#")
            )
            fields = {k.strip(): v.strip() for k, v in fields.items()}
            uri = fields.get("URIs", "")
            if uri.rstrip("/").endswith("/debian") and "bookworm" in fields.get("Suites", "").split():
                return uri.split()[0], fields.get("Signed-By", DEFAULT_KEYRING)
    return DEFAULT_URI, DEFAULT_KEYRING


class Apt:
    """apt-get and apt-cache with a configuration of their own under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "lists" / "partial").mkdir(parents=True, exist_ok=True)
        (root / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        (root / "sources.list.d").mkdir(exist_ok=True)
        uri, keyring = debian_entry()
        sources = root / "sources.list"
        # one line per suite: a one-line entry names a single suite, then components
        self.sources_text = "".join(f"deb [signed-by={keyring}] {uri} {suite} main\n" for suite in SUITES)
        sources.write_text(self.sources_text)
        self.options = [
            f"-oDir::Etc::SourceList={sources}",
            f"-oDir::Etc::SourceParts={root / 'sources.list.d'}",
            f"-oDir::State::Lists={root / 'lists'}",
            f"-oDir::Cache={root}",
            f"-oDir::Cache::Archives={root / 'archives'}",
            # the private folders are root's; apt's sandbox user could not write them
            "-oAPT::Sandbox::User=root",
        ]

    def run(self, tool: str, *args: str, cwd: Path | None = None) -> str:
        cmd = [tool, "-q", *self.options, *args]
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}")
        return proc.stdout

    def update_if_stale(self, max_age: float = 86400.0) -> None:
        stamp = self.root / "updated"
        fresh = stamp.exists() and time.time() - stamp.stat().st_mtime < max_age
        if fresh and stamp.read_text() == self.sources_text:
            return
        log(f"apt-get update (private lists in {self.root}; suites {' '.join(SUITES)})")
        self.run("apt-get", "update")
        stamp.write_text(self.sources_text)

    def resolve(self, pattern: str) -> str:
        """The newest package whose name matches the glob ``pattern``."""
        if not any(c in pattern for c in "*?["):
            return pattern
        regex = fnmatch.translate(pattern)
        names = [
            line.split(" - ")[0]
            for line in self.run("apt-cache", "search", "--names-only", "^linux-image-").splitlines()
        ]
        matches = [n for n in names if re.match(regex, n)]
        if not matches:
            raise SystemExit(f"no package matches {pattern}")

        def key(name: str) -> list[int]:
            return [int(x) for x in re.findall(r"\d+", name)]

        return max(matches, key=key)

    def download(self, package: str, into: Path) -> Path:
        into.mkdir(parents=True, exist_ok=True)
        found = list(into.glob(f"{package}_*.deb"))
        if not found:
            log(f"apt-get download {package}")
            self.run("apt-get", "download", package, cwd=into)
            found = list(into.glob(f"{package}_*.deb"))
        if not found:
            raise SystemExit(f"apt-get download {package} left no .deb in {into}")
        return found[0]


@dataclass
class Kernel:
    label: str
    package: str
    image: Path
    release: str


def unpack(deb: Path, into: Path) -> Kernel | None:
    """``dpkg-deb -x`` once; the kernel image and its modules' release."""
    done = into / ".unpacked"
    if not done.exists():
        shutil.rmtree(into, ignore_errors=True)
        into.mkdir(parents=True)
        log(f"dpkg-deb -x {deb.name}")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(into)], check=True)
        done.touch()
    images = sorted(into.glob("boot/vmlinuz-*"))
    if not images:
        return None
    release = images[0].name[len("vmlinuz-") :]
    return Kernel("", "", images[0], release)


def fetch(apt: Apt, label: str, pattern: str) -> Kernel:
    package = apt.resolve(pattern)
    deb = apt.download(package, cache_dir() / "debs")
    kernel = unpack(deb, cache_dir() / "unpacked" / package)
    if kernel is None:
        raise SystemExit(f"{package} has no boot/vmlinuz-*")
    modules = kernel.image.parent.parent / "lib" / "modules" / kernel.release
    if not modules.is_dir():
        raise SystemExit(f"{package} has no lib/modules/{kernel.release} (a usr-merged package?)")
    return Kernel(label, package, kernel.image, kernel.release)


# ---- qemu, through virtme-ng ----------------------------------------------------------------


def ensure_tools(root: str) -> Path | None:
    """qemu and the archive tools from the distribution; for ``--root 9p``,
    virtme-ng from PyPI (its own venv), whose path is returned."""
    needed = [("qemu-system-x86", "qemu-system-x86_64"), ("kmod", "depmod")]
    if root == "initramfs":
        needed += [("cpio", "cpio"), ("busybox-static", "busybox"), ("xz-utils", "xz")]
    missing = [p for p, exe in needed if not shutil.which(exe)]
    if missing:
        if os.geteuid() != 0:
            raise SystemExit(f"install {' '.join(missing)} (apt-get install {' '.join(missing)})")
        log(f"apt-get install {' '.join(missing)}")
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], check=True)
    if root != "9p":
        return None
    venv = cache_dir() / "vng-venv"
    vng = venv / "bin" / "vng"
    if not vng.exists():
        log(f"installing virtme-ng into {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "virtme-ng"], check=True)
    return vng


def guest_command(
    vng: Path | None, kernel: Kernel, accel: str, outdir: Path, guest: list[str], args: argparse.Namespace
) -> list[str]:
    if vng is None:
        return qemu_command(kernel, accel, outdir, guest, args)
    return vng_command(vng, kernel, accel, outdir, guest, args)


def vng_command(
    vng: Path, kernel: Kernel, accel: str, outdir: Path, guest: list[str], args: argparse.Namespace
) -> list[str]:
    cmd = [
        str(vng),
        "--run",
        str(kernel.image),
        "--force-9p",
        "--memory",
        args.memory,
        "--cpus",
        str(args.cpus),
        "--verbose",
        "--rwdir",
        str(outdir),
        "--cwd",
        str(REPO),
        "--exec",
        shlex.join(guest),
    ]
    if accel == "tcg":
        cmd.insert(3, "--disable-kvm")
    return cmd


def qemu_command(kernel: Kernel, accel: str, outdir: Path, guest: list[str], args: argparse.Namespace) -> list[str]:
    """qemu with the initramfs root (tools/guest_initramfs.py) and the output folder over 9p."""
    initrd = guest_initramfs.build(
        cache_dir() / "initramfs",
        cache_dir() / "initramfs" / f"run-{kernel.release}",
        REPO / ".venv" / "bin" / "python",
        kernel.image.parent.parent,
        kernel.release,
        outdir,
        guest,
    )
    machine = ["-accel", "kvm", "-cpu", "host"] if accel == "kvm" else ["-accel", "tcg,thread=multi", "-cpu", "max"]
    return [
        "qemu-system-x86_64",
        *machine,
        "-smp",
        str(args.cpus),
        "-m",
        args.memory,
        "-nographic",
        "-no-reboot",
        "-device",
        "virtio-rng-pci",
        "-virtfs",
        f"local,path={outdir},mount_tag=out,security_model=none",
        "-kernel",
        str(kernel.image),
        "-initrd",
        str(initrd),
        "-append",
        "console=ttyS0 rdinit=/init panic=-1 quiet tsc=reliable",
    ]


def boot(cmd: list[str], console: Path, timeout: float) -> tuple[int | None, float]:
    """Run the VM, its console into ``console``, our guest's lines echoed; kill it at the timeout."""
    start = time.monotonic()
    with console.open("w") as out:
        proc = subprocess.Popen(
            ["nice", "-n", "10", *cmd],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
            # vng starts virtme-run and virtme-ng-init from its venv's bin
            env={**os.environ, "PATH": f"{Path(cmd[0]).parent}:{os.environ['PATH']}"},
        )
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), True)
        deadline = start + timeout
        code: int | None = None
        # The deadline holds while the guest prints nothing too (a suite
        # that runs for an hour prints no line until it ends): a timer kills
        # the VM's process group, which ends the loop below.
        watchdog = threading.Timer(timeout, _kill_group, (proc.pid,))
        watchdog.daemon = True
        watchdog.start()
        try:
            for line in proc.stdout:
                out.write(line)
                out.flush()
                if "[guest]" in line:
                    print("    " + line[line.index("[guest]") :].rstrip(), flush=True)
                if time.monotonic() > deadline:
                    break
            try:
                code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                _kill_group(proc.pid)
            if proc.wait() < 0 or code is None:
                out.write(f"\n[test-kernels] killed after {timeout:.0f} s\n")
    return code, time.monotonic() - start


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, 9)


def kvm_boots(vng: Path | None, kernel: Kernel, args: argparse.Namespace) -> bool:
    """Does a KVM guest reach our command within 60 s? (Nested KVM hangs on some hosts.)"""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    outdir = cache_dir() / "runs" / "kvm-probe"
    shutil.rmtree(outdir, ignore_errors=True)
    outdir.mkdir(parents=True)
    cmd = guest_command(vng, kernel, "kvm", outdir, ["sh", "-c", f"echo ok > {outdir}/ok"], args)
    boot(cmd, outdir / "console.log", 60)
    return (outdir / "ok").exists()


# ---- the run ---------------------------------------------------------------------------------


def run_kernel(
    vng: Path | None, kernel: Kernel, accel: str, args: argparse.Namespace, pytest_args: list[str]
) -> dict[str, Any]:
    suites = args.suites + (["trio"] if args.smoke and kernel.label in SMOKE_TRIO and "trio" not in args.suites else [])
    outdir = cache_dir() / "runs" / kernel.release
    shutil.rmtree(outdir, ignore_errors=True)
    outdir.mkdir(parents=True)
    guest = [
        str(REPO / ".venv" / "bin" / "python"),
        str(REPO / "tools" / "kernel_guest.py"),
        "--out",
        str(outdir),
        "--suites",
        ",".join(suites),
        f"--trio-args={args.trio_args}",
        "--",
        *pytest_args,
    ]
    cmd = guest_command(vng, kernel, accel, outdir, guest, args)
    log(
        f"booting {kernel.package} ({kernel.release}) under {accel.upper()}, root {args.root}: "
        f"suites {','.join(suites)}"
    )
    code, elapsed = boot(cmd, outdir / "console.log", args.timeout)
    results_file = outdir / "results.json"
    if results_file.exists():
        results: dict[str, Any] = json.loads(results_file.read_text())
    else:
        tail = (outdir / "console.log").read_text(errors="replace").splitlines()[-30:]
        log(f"no results from {kernel.release} (vng exit {code}); console tail:\n" + "\n".join(tail))
        results = {"suites": [], "error": f"no results (vng exit {code}, {elapsed:.0f} s)"}
    if not results.get("done") and not results.get("error"):
        results["error"] = f"the guest did not finish (vng exit {code}, {elapsed:.0f} s; see {outdir}/console.log)"
        ours_done = any(suite["suite"].startswith("ours") for suite in results["suites"])
        if not ours_done and (partial := partial_counts(outdir / "ours.log")):
            results["error"] += f"; our suite so far (ours.log): {partial}"
    results.update(kernel=kernel.label, package=kernel.package, release=kernel.release, boot_seconds=elapsed)
    return results


def partial_counts(log: Path) -> str:
    """What a stopped guest's pytest log (``-v``, written as it ran) had recorded."""
    if not log.exists():
        return ""
    counts: dict[str, int] = {}
    for m in re.finditer(
        r"^\S+::\S.* (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)\b", log.read_text(errors="replace"), re.M
    ):
        counts[m.group(1).lower()] = counts.get(m.group(1).lower(), 0) + 1
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))


def table(all_results: list[dict[str, Any]]) -> str:
    rows = [("kernel", "suite", "result", "passed", "failed", "skipped", "time")]
    for r in all_results:
        label = f"{r['kernel']} ({r['release']})"
        if r.get("error"):
            rows.append((label, "-", "ERROR: " + r["error"], "", "", "", f"{r['boot_seconds']:.0f} s"))
        for s in r["suites"]:
            rows.append(
                (
                    label,
                    s["suite"],
                    s["result"],
                    str(s.get("passed", "")),
                    str(s.get("failed", "")),
                    str(s.get("skipped", "")),
                    f"{s['seconds']:.0f} s",
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kernels", nargs="*", help=f"version labels ({', '.join(KERNELS)}) or package names")
    parser.add_argument("--suites", default=",".join(ALL_SUITES), help="report,ours,trio (default: all)")
    parser.add_argument("--smoke", action="store_true", help="each kernel: the report and a few quick files")
    parser.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto")
    parser.add_argument(
        "--root",
        choices=["initramfs", "9p"],
        default="initramfs",
        help="the guest's root: an initramfs of the venv, its Python and this checkout "
        "(tools/guest_initramfs.py; default), or the host's root shared over 9p by virtme-ng (slow under TCG)",
    )
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--memory", default="4G")
    parser.add_argument("--timeout", type=float, default=3 * 3600, help="seconds per kernel before the VM is killed")
    parser.add_argument("--json", type=Path, help="also write every kernel's results here")
    parser.add_argument(
        "--trio-args",
        default="--only uring",
        help="arguments for tests/conformance/run.py in the guest, one string (default '--only uring': "
        "trio's suite on trio_uring, failing on any failure but the allowed one; '' adds the stock run "
        "and compares, which doubles the time under TCG)",
    )
    parser.add_argument(
        "--collect", nargs="+", type=Path, metavar="JSON", help="only print the table of earlier runs' --json files"
    )
    args, pytest_args = parser.parse_known_args()
    if pytest_args and pytest_args[0] == "--":
        pytest_args = pytest_args[1:]
    if args.smoke:
        args.kernels = args.kernels or SMOKE_KERNELS
        pytest_args = pytest_args or SMOKE_TESTS
        if args.suites == ",".join(ALL_SUITES):
            args.suites = "report,ours"
        args.timeout = min(args.timeout, SMOKE_TIMEOUT)
    pytest_args = pytest_args or KERNEL_SET
    args.suites = args.suites.split(",")
    if args.collect:
        print(table([r for path in args.collect for r in json.loads(path.read_text())]))
        return 0
    if not (REPO / ".venv" / "bin" / "python").exists():
        raise SystemExit("no .venv: run `make venv` first (the guest runs the host's .venv)")

    vng = ensure_tools(args.root)
    apt = Apt(cache_dir() / "apt")
    apt.update_if_stale()
    wanted = args.kernels or list(KERNELS)
    kernels = [fetch(apt, w, KERNELS.get(w, w)) for w in wanted]

    accel = args.accel
    if accel == "auto":
        # asked once per host kernel: a KVM guest that hangs costs a minute
        probe = cache_dir() / f"kvm-boots-{os.uname().release}"
        if not probe.exists():
            probe.write_text("kvm" if kvm_boots(vng, kernels[0], args) else "tcg")
        accel = probe.read_text()
        log(f"accelerator: {accel}" + ("" if accel == "kvm" else f" (a KVM guest does not boot here; {probe})"))

    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True).stdout
    all_results = []
    started = time.monotonic()
    for kernel in kernels:
        all_results.append(run_kernel(vng, kernel, accel, args, pytest_args))
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(
        f"\n{stamp}, commit {commit.strip() or '?'}, {accel.upper()}, pytest args: {' '.join(pytest_args) or 'tests'}\n"
    )
    print(table(all_results))
    print(f"\n{len(kernels)} kernel(s) in {time.monotonic() - started:.0f} s under {accel.upper()}")
    if args.json:
        args.json.write_text(json.dumps(all_results, indent=2))
    ok = all(not r.get("error") and all(s["result"] == "ok" for s in r["suites"]) for r in all_results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
