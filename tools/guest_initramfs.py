"""The x86_64 guests' root file system, as an initramfs built from this machine's files.

tools/test_kernels.py boots Debian's kernels with this as their only root: the
guest unpacks it into a tmpfs, so no file is read over 9p while the suites run.
Sharing the host's root over 9p (virtme-ng's way, ``--root 9p``) made every
``import`` a string of 9p round trips under emulation: ``python -m trio_uring``
took from 30 s to 4 minutes there, against 11 s in the arm64 guest, whose root
is an initramfs (.ci/arm64/run.sh).

Three archives, concatenated (the kernel unpacks concatenated cpio archives in
order):

- the userland (cached by its inputs): the venv's Python (its prefix, less the
  stdlib's tests and its own site-packages), the venv less what the suites never
  import (docs, plotting, linters), the shared libraries those load (``ldd``), a
  static busybox for the shell and its tools, ``ldconfig``, and the few /etc files
  name lookups read.  Every file keeps its host path, so the venv's absolute paths
  hold inside;
- the kernel's modules the guest loads (virtio-rng, and 9p for the results
  folder), decompressed and listed in load order (the guest has no kmod);
- this checkout (``git ls-files``) at its host path, /init (tools/guest_init.sh)
  and the run's arguments.

Results come out through one 9p folder, the run's output folder, mounted
writable at its host path: kernel_guest.py writes there as it does under
virtme-ng.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: top-level packages of the venv the guest never imports (the kernel set and
#: trio's suite), left out to keep the archive small; a dist-info stays
UNUSED = {
    "matplotlib", "mpl_toolkits", "numpy", "numpy.libs", "pillow.libs", "PIL", "fontTools", "babel",
    "sphinx", "sphinxcontrib", "alabaster", "docutils", "mypy", "mypyc", "ruff", "pip",
    "kiwisolver", "contourpy", "pandas", "scipy", "lxml",
}  # fmt: skip
#: the kernel's modules the guest loads: entropy, and the results folder's 9p
MODULES = ["virtio_pci", "virtio-rng", "9p", "9pnet_virtio"]
#: libraries loaded with dlopen(3)
DLOPENED = ["libgcc_s.so.1"]
#: /etc files the C library and Python read (name lookups, users, services)
ETC = ["passwd", "group", "hosts", "nsswitch.conf", "services", "protocols", "ld.so.conf", "ld.so.conf.d", "host.conf"]


class Tree:
    """A set of host paths to archive, each with every directory and symlink on its way."""

    def __init__(self) -> None:
        self.paths: dict[str, None] = {}

    def add(self, path: str | Path) -> None:
        path = os.path.abspath(path)
        if path in self.paths or not os.path.lexists(path):
            return
        parts = Path(path).parts
        for i in range(2, len(parts) + 1):
            prefix = str(Path(*parts[:i]))
            self.paths[prefix] = None
            if os.path.islink(prefix):
                # a symlink is archived as one, and what it points to as well;
                # a path through it is archived at its real place
                target = os.path.join(os.path.dirname(prefix), os.readlink(prefix))
                self.add(os.path.join(target, *parts[i:]))
                return

    def add_tree(self, top: Path, skip: Iterable[str] = ()) -> None:
        skipped = set(skip)
        self.add(top)
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if d not in skipped]
            for name in dirnames + filenames:
                if name not in skipped:
                    self.add(os.path.join(dirpath, name))

    def add_binary(self, path: str | Path) -> None:
        """A file, and the shared libraries ``ldd`` says it loads."""
        self.add(path)
        proc = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=False)
        for m in re.finditer(r"(?:=> )?(/\S+) \(0x", proc.stdout):
            self.add(m.group(1))

    def cpio(self, into: Path) -> None:
        # directories first is not needed: the kernel creates an entry's parents
        names = "\n".join(p.lstrip("/") for p in sorted(self.paths)).encode() + b"\n"
        tmp = into.with_suffix(".tmp")
        with tmp.open("wb") as out:
            subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], input=names, cwd="/", stdout=out, check=True)
        tmp.rename(into)


def cpio_dir(top: Path, into: Path) -> None:
    """An archive of ``top``'s contents, paths relative to it."""
    tmp = into.with_suffix(".tmp")
    with tmp.open("wb") as out:
        find = subprocess.run(["find", "."], cwd=top, capture_output=True, check=True).stdout
        subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], input=find, cwd=top, stdout=out, check=True)
    tmp.rename(into)


def userland(cache: Path, python: Path) -> Path:
    """The cached archive of the venv, its Python, their libraries and the tools."""
    venv = python.parent.parent
    # real paths: the tree archives a path through a symlink at its real place
    prefix = Path(os.path.realpath(sysconfig_of(python, "base_prefix")))
    site = Path(os.path.realpath(sysconfig_of(python, "purelib")))
    stdlib = Path(os.path.realpath(sysconfig_of(python, "stdlib")))
    listing = sorted(p.name for p in site.iterdir())
    key = hashlib.sha256(
        repr((str(python), str(prefix), listing, Path(__file__).read_bytes(), sys.version)).encode()
    ).hexdigest()[:16]
    into = cache / f"userland-{key}.cpio"
    if into.exists():
        return into
    for old in cache.glob("userland-*.cpio"):
        old.unlink()
    tree = Tree()
    # the interpreter's prefix: bin/, the stdlib less its tests, the shared libpython
    for entry in (prefix / "bin").iterdir():
        if entry.name.startswith("python"):
            tree.add(entry)
    for lib in (prefix / "lib").glob("libpython*"):
        tree.add(lib)
    tree.add_tree(stdlib, skip={"test", "idlelib", "tkinter", "turtledemo", "site-packages", "ensurepip"})
    # the venv, less what is never imported
    tree.add(venv / "pyvenv.cfg")
    tree.add_tree(venv / "bin")
    tree.add_tree(site, skip=UNUSED | {n for n in listing if "__mypyc" in n})
    tree.add(python)
    binaries = [os.path.realpath(python)]
    for root in (stdlib / "lib-dynload", site):
        binaries += [str(p) for p in root.rglob("*.so*") if p.is_file() and tree_has(tree, p)]
    for b in binaries:
        tree.add_binary(b)
    # libraries loaded with dlopen, which ldd does not list: glibc's unwinder
    # (pthread_exit, thread cancellation)
    ld_cache = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    for soname in DLOPENED:
        m = re.search(rf"^\s*{re.escape(soname)} \(libc6,x86-64\) => (\S+)$", ld_cache, re.M)
        if m:
            tree.add(m.group(1))
    # tools: a static busybox (the shell, mount, insmod, ip), ldconfig (ctypes'
    # find_library reads the cache it writes)
    busybox = shutil.which("busybox")
    if busybox is None or not is_static(busybox) or not os.path.exists("/bin/busybox"):
        raise SystemExit("the guests need a static busybox: apt-get install busybox-static (or busybox)")
    tree.add(busybox)
    tree.add("/bin/busybox")  # /init's interpreter (through /bin -> usr/bin where /usr is merged)
    for top in ("/bin", "/sbin", "/lib", "/lib64"):
        tree.add(top)
    tree.add("/sbin/ldconfig")
    for name in ETC:
        if os.path.isdir(f"/etc/{name}"):
            tree.add_tree(Path(f"/etc/{name}"))
        else:
            tree.add(f"/etc/{name}")
    tree.cpio(into)
    return into


def is_static(path: str) -> bool:
    proc = subprocess.run(["ldd", path], capture_output=True, text=True, check=False)
    return "not a dynamic" in proc.stdout + proc.stderr


def tree_has(tree: Tree, path: Path) -> bool:
    return os.path.abspath(path) in tree.paths


def sysconfig_of(python: Path, name: str) -> str:
    """A path of the venv's Python (not necessarily the one running this)."""
    code = f"import sys, sysconfig; print(sys.{name} if hasattr(sys, {name!r}) else sysconfig.get_path({name!r}))"
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def modules(cache: Path, kernel_root: Path, release: str) -> tuple[Path, list[str]]:
    """The modules the guest loads, decompressed, and their insmod order."""
    into = cache / f"modules-{release}.cpio"
    order_file = cache / f"modules-{release}.order"
    if into.exists() and order_file.exists():
        return into, order_file.read_text().split()
    moddir = kernel_root / "lib" / "modules" / release
    if not (moddir / "modules.dep").exists():
        subprocess.run(["depmod", "-b", str(kernel_root), release], check=True)
    builtin = (moddir / "modules.builtin").read_text()
    order: list[str] = []
    stage = cache / f"modules-{release}.d"
    shutil.rmtree(stage, ignore_errors=True)
    for name in MODULES:
        if re.search(rf"/{re.escape(name)}\.ko$", builtin, re.M):
            continue
        out = subprocess.run(
            ["modprobe", "-d", str(kernel_root), "-S", release, "--show-depends", name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for line in out.splitlines():
            words = line.split()
            if len(words) < 2 or words[0] != "insmod":
                continue
            src = Path(words[1])
            rel = src.relative_to(moddir)
            # at /lib's real place: an archived directory "lib" would replace
            # the symlink lib -> usr/lib of a merged /usr
            dest = stage / os.path.realpath("/lib").lstrip("/") / "modules" / release / rel
            plain = str(dest).removesuffix(".xz").removesuffix(".zst")
            guest_path = "/" + str(Path(plain).relative_to(stage))
            if guest_path in order:
                continue
            Path(plain).parent.mkdir(parents=True, exist_ok=True)
            if src.suffix == ".xz":
                Path(plain).write_bytes(subprocess.run(["xz", "-dc", str(src)], capture_output=True, check=True).stdout)
            elif src.suffix == ".zst":
                Path(plain).write_bytes(
                    subprocess.run(["zstd", "-dc", str(src)], capture_output=True, check=True).stdout
                )
            else:
                shutil.copyfile(src, plain)
            order.append(guest_path)
    stage.mkdir(parents=True, exist_ok=True)
    cpio_dir(stage, into)
    shutil.rmtree(stage)
    order_file.write_text("\n".join(order) + "\n")
    return into, order


def checkout(
    work: Path, site: Path, outdir: Path, guest_cmd: list[str], module_order: list[str], env: dict[str, str]
) -> Path:
    """This checkout at its host path, /init and the run's settings."""
    top = work / "top"
    shutil.rmtree(top, ignore_errors=True)
    dest = top / str(REPO).lstrip("/")
    dest.mkdir(parents=True)
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    # Not a symlink to a folder (a worktree's .venv -> another checkout's):
    # the userland archive has the venv, and a symlink copied here would
    # let the writes below land in the host's own venv.
    files = [
        f for f in listed if f and not (os.path.islink(REPO / os.fsdecode(f)) and (REPO / os.fsdecode(f)).is_dir())
    ]
    subprocess.run(["cpio", "-0", "-pdm", "--quiet", str(dest)], input=b"\0".join(files), cwd=REPO, check=True)
    # The venv's editable install maps trio_uring to the checkout it was made
    # from; inside, it maps to this one (what a child started with a clean
    # environment imports, and trio's suite, whose script is not in the
    # checkout's top folder).  Written at the file's real path, the one the
    # userland archive has.
    for finder in Path(os.path.realpath(site)).glob("__editable__*trio_uring*finder.py"):
        text = re.sub(
            r"(['\"]trio_uring['\"]: ['\"])[^'\"]*(['\"])", rf"\g<1>{REPO / 'trio_uring'}\g<2>", finder.read_text()
        )
        target = top / str(finder).lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if not os.path.realpath(target).startswith(os.path.realpath(top) + os.sep):
            raise SystemExit(f"refusing to write {finder}'s copy outside the archive's folder {top}")
        target.write_text(text)
    init = top / "init"
    shutil.copyfile(REPO / "tools" / "guest_init.sh", init)
    init.chmod(0o755)
    (top / str(outdir).lstrip("/")).mkdir(parents=True, exist_ok=True)
    settings = {
        "GUEST_REPO": str(REPO),
        "GUEST_OUT": str(outdir),
        "GUEST_MODULES": " ".join(module_order),
        "GUEST_CMD": shlex.join(guest_cmd),
        **env,
    }
    (top / "guest.env").write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in settings.items()))
    for d in ("proc", "sys", "dev", "tmp", "run", "root", "mnt"):
        (top / d).mkdir(exist_ok=True)
    (top / "tmp").chmod(0o1777)
    dev = top / "dev"
    # the kernel opens /dev/console before /init mounts devtmpfs
    for name, major, minor in (("console", 5, 1), ("null", 1, 3)):
        if not (dev / name).exists():
            os.mknod(dev / name, 0o600 | stat.S_IFCHR, os.makedev(major, minor))
    into = work / "top.cpio"
    cpio_dir(top, into)
    return into


def build(
    cache: Path, work: Path, python: Path, kernel_root: Path, release: str, outdir: Path, guest_cmd: list[str]
) -> Path:
    """The whole initramfs for one run: userland + modules + checkout, concatenated."""
    cache.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    base = userland(cache, python)
    mods, order = modules(cache, kernel_root, release)
    top = checkout(work, Path(sysconfig_of(python, "purelib")), outdir, guest_cmd, order, {})
    initrd = work / "initrd.cpio"
    with initrd.open("wb") as out:
        for part in (base, mods, top):
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
    shutil.rmtree(work / "top", ignore_errors=True)
    return initrd
