"""The start-up hook of ``trio-uring run`` needs two files at the top of
site-packages, which pyproject.toml alone cannot place: the ``.pth`` file
that ``site`` executes at every interpreter start, and the module it imports
(a copy of ``trio_uring/_startup.py``, see that module's docstring).

``build_py`` writes both next to the packages: into ``build_lib`` for a wheel
(whose root is site-packages), and for an editable install (PEP 660, what
``make venv`` does) into the unpacked editable wheel, which setuptools' own
``editable_wheel`` exposes as the ``install`` command's ``install_lib`` (it
writes data and scripts there the same way).  Everything else is in
pyproject.toml.
"""

from __future__ import annotations

import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH_NAME = "trio_uring-startup.pth"
PTH_LINE = "import os; 'TRIO_URING_RUN' in os.environ and __import__('_trio_uring_startup').activate()\n"
MODULE_NAME = "_trio_uring_startup.py"
MODULE_SOURCE = os.path.join("trio_uring", "_startup.py")


class build_py_with_startup_hook(build_py):
    def run(self) -> None:
        super().run()
        target = self._hook_dir()
        self.mkpath(target)
        with open(os.path.join(target, PTH_NAME), "w") as f:
            f.write(PTH_LINE)
        self.copy_file(MODULE_SOURCE, os.path.join(target, MODULE_NAME))

    def _hook_dir(self) -> str:
        if getattr(self, "editable_mode", False):
            return str(self.get_finalized_command("install").install_lib)
        return str(self.build_lib)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = list(super().get_outputs(include_bytecode))
        if not getattr(self, "editable_mode", False):
            outputs += [os.path.join(self.build_lib, PTH_NAME), os.path.join(self.build_lib, MODULE_NAME)]
        return outputs


setup(cmdclass={"build_py": build_py_with_startup_hook})
