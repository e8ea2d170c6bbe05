"""One Jupyter kernel per test process for the notebook runs, reset before each notebook.

Why: a notebook's fresh kernel spends about 6 s of CPU before its first cell does any work
(ipykernel, then TensorFlow, tf_keras, tfmot, pandas and matplotlib imported anew); the ten
notebook runs of ``make test`` paid that ten times. Here each test process (xdist worker)
starts one kernel and runs its notebooks in it one after another; ``make reproduce`` and
``tinyopt run`` still give every notebook a kernel of its own.

What a notebook sees is what a fresh kernel gives it, except for the modules already imported:
before each notebook the kernel's namespace is emptied (``%reset -f``: every name a notebook or
an earlier one defined, imports included, so a notebook that forgets an import still fails)
and the names of a fresh kernel's namespace put back (``__spec__``, ``In`` ...),
the working directory set to the repository (as ``make`` runs notebooks), the warning filters
put back as they were at the kernel's start, matplotlib's figures closed and Keras' global
state cleared (``clear_session``: the layer-name counters, so an earlier notebook's models do
not rename this one's layers). The notebooks seed their own random state (their ``seed``
parameter). A kernel that died is replaced by a new one.
"""
from __future__ import annotations

import atexit
from contextlib import contextmanager
from pathlib import Path

_RESET = """\
%reset -f
import gc as _gc, os as _os, sys as _sys, warnings as _warnings
_fresh = _sys.modules["__tinyopt_test_kernel__"]
globals().update({{k: v for k, v in _fresh.names.items() if k not in globals()}})
_os.chdir({cwd!r})
_warnings.filters[:] = _fresh.filters
if "matplotlib.pyplot" in _sys.modules:
    _sys.modules["matplotlib.pyplot"].close("all")
if "tf_keras" in _sys.modules:
    _sys.modules["tf_keras"].backend.clear_session()
_gc.collect()
del _gc, _os, _sys, _warnings, _fresh
"""
# run once at the kernel's start: the warning filters and the namespace a fresh kernel has,
# kept in a module of their own (``%reset -f`` leaves sys.modules alone). The namespace is the
# kernel's ``__main__``: ``%reset -f`` also deletes names such as ``__spec__``, which
# multiprocessing's spawn reads from ``__main__`` (notebook 10 runs the interpreters in child
# processes), so the reset puts back every name of the fresh namespace it removed.
_START = """\
import sys as _sys, types as _types, warnings as _warnings
_sys.modules["__tinyopt_test_kernel__"] = _types.SimpleNamespace(
    filters=list(_warnings.filters),
    names={k: v for k, v in globals().items() if k not in ("_sys", "_types", "_warnings")})
del _sys, _types, _warnings
"""


class SharedKernel:
    """A lazily started ``python3`` kernel that :meth:`notebook` resets for each notebook."""

    def __init__(self, cwd: Path):
        self.cwd = Path(cwd)
        self.km = None

    def _run(self, code: str, what: str) -> None:
        kc = self.km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=120)
            reply = kc.execute_interactive(code, timeout=300, output_hook=lambda msg: None)
        finally:
            kc.stop_channels()
        content = reply["content"]
        if content["status"] != "ok":
            raise RuntimeError(f"the tests' notebook kernel failed to {what}: "
                               f"{content.get('ename')}: {content.get('evalue')}")

    @contextmanager
    def notebook(self):
        """The kernel manager to hand to papermill (``km=``) for one notebook, its kernel alive
        and reset; afterwards the channels of the clients papermill made are closed (a client
        of a kernel manager it does not own is left open by nbclient).

        Yields:
            A started ``jupyter_client.KernelManager`` papermill will not shut down.

        Raises:
            RuntimeError: the reset code failed in the kernel.
        """
        if self.km is not None and not self.km.is_alive():
            self.shutdown()
        if self.km is None:
            self.km = _manager_class()(kernel_name="python3")
            self.km.start_kernel(cwd=str(self.cwd))
            self._run(_START, "start")
        self._run(_RESET.format(cwd=str(self.cwd)), "reset between notebooks")
        self.km.clients.clear()
        try:
            yield self.km
        finally:
            for kc in self.km.clients:
                kc.stop_channels()

    def shutdown(self) -> None:
        """Stop the kernel (if any); the next :meth:`notebook` starts a new one."""
        if self.km is not None:
            try:
                self.km.shutdown_kernel(now=True)
            finally:
                self.km = None


def _manager_class():
    """A ``KernelManager`` that keeps the clients it makes (``clients``), so that their
    channels can be closed after each notebook."""
    from jupyter_client.manager import KernelManager

    class TrackingKernelManager(KernelManager):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.clients: list = []

        def client(self, **kwargs):
            kc = super().client(**kwargs)
            self.clients.append(kc)
            return kc
    return TrackingKernelManager


_KERNEL: SharedKernel | None = None


def shared_kernel(cwd: Path) -> SharedKernel:
    """This process's :class:`SharedKernel` (started at first use, stopped at exit)."""
    global _KERNEL
    if _KERNEL is None:
        _KERNEL = SharedKernel(cwd)
        atexit.register(_KERNEL.shutdown)
    return _KERNEL
