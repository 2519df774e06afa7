"""Start the book's kernels by forking one process that has already imported torch.

Usage (by ``book/_ext/execute.py``; nothing here is needed to read or run a chapter):

    python book/_ext/forkserver.py serve SOCKET     # the server, started once per build
    python book/_ext/forkserver.py kernel -f FILE   # what a kernel manager launches

Every chapter's kernel is a fresh process that imports ipykernel, torch,
NumPy, matplotlib and the package, and the first
:func:`papers30.seed_everything` makes torch import its compiler stack
(``torch.use_deterministic_algorithms`` sets a flag there). That is four to
five seconds per chapter, over two minutes of CPU for the book, before any
chapter computes anything. The server imports all of it once (not
``matplotlib.pyplot``, which hooks itself into the IPython it finds running), then forks one child per kernel: the child starts ipykernel on the
connection file it is given, in the chapter's directory and environment, with
nothing computed yet (importing modules draws no random numbers and starts
no thread pools), so a chapter's numbers are those of a freshly started
kernel.

The manager (:class:`ForkKernelManager`) launches a small client in place of
``python -m ipykernel_launcher``; the client asks the server for a child,
forwards the signals the manager sends (interrupts), and exits with the
child's status once the server has reaped it. The child's peak resident
memory (``ru_maxrss`` from ``wait4``, in kB) is written to the file named by
``PAPERS30_KERNEL_RSS`` when that is set, since the kernel is no longer a
child of the process that measures it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys

HERE = os.path.abspath(__file__)


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _child(request: dict) -> None:
    """In the forked child: become a kernel on the requested connection file. Never returns."""
    import threading
    import time

    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.path[0] = request["cwd"]  # where ``python -m ipykernel_launcher`` would have put it
    sys.argv = ["ipykernel_launcher", "-f", request["connection_file"]]
    client = request["client"]

    def watch() -> None:  # the client is this kernel's stand-in process: without it, stop
        while True:
            time.sleep(1.0)
            try:
                os.kill(client, 0)
            except ProcessLookupError:
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
    status = 0
    try:
        from ipykernel import kernelapp

        kernelapp.launch_new_instance()
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else 0
    except BaseException:  # noqa: BLE001 - report, then leave like a crashed kernel
        import traceback

        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def serve(path: str) -> None:
    """Import the heavy modules once, then fork a kernel for every request on the Unix socket ``path``."""
    import selectors

    import importlib
    import pkgutil

    # What ipykernel sets before a chapter can import matplotlib, so rcParams read the same backend.
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    import ipykernel.kernelapp  # noqa: F401
    import matplotlib.figure  # noqa: F401 - not pyplot or matplotlib_inline: they hook into a running IPython
    import myst_nb  # noqa: F401 - papers30.display.glue imports it
    import numpy  # noqa: F401
    import torch
    import torch._inductor.config  # noqa: F401 - what torch.use_deterministic_algorithms imports

    import papers30

    for module in pkgutil.walk_packages(papers30.__path__, "papers30."):
        if module.name != "papers30.plotting":  # imports pyplot
            importlib.import_module(module.name)
    if "matplotlib.pyplot" in sys.modules:
        raise RuntimeError("the fork server must not import matplotlib.pyplot")
    del torch
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    print("ready", flush=True)
    parent = os.getppid()
    children: dict[int, socket.socket] = {}
    selector = selectors.DefaultSelector()
    selector.register(server, selectors.EVENT_READ)
    while os.getppid() == parent:  # the build that started the server has not ended
        for _ in selector.select(timeout=0.1):
            conn, _ = server.accept()
            request = json.loads(_read_line(conn))
            pid = os.fork()
            if pid == 0:
                selector.close()
                server.close()
                conn.close()
                _child(request)
            conn.sendall(f"{pid}\n".encode())
            children[pid] = conn
        for pid in list(children):
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                conn = children.pop(pid)
                report = {"status": os.waitstatus_to_exitcode(status), "maxrss": usage.ru_maxrss}
                try:
                    conn.sendall((json.dumps(report) + "\n").encode())
                finally:
                    conn.close()


def kernel(argv: list[str]) -> int:
    """The process a kernel manager launches: get a forked kernel from the server and stand in for it."""
    connection_file = os.path.realpath(argv[argv.index("-f") + 1])
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(os.environ["PAPERS30_FORKSERVER"])
    request = {"connection_file": connection_file, "cwd": os.getcwd(), "env": dict(os.environ),
               "client": os.getpid()}
    conn.sendall((json.dumps(request) + "\n").encode())
    reader = conn.makefile("rb")
    pid = int(reader.readline())

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, forward)
    line = reader.readline()  # the server's report once it has reaped the child
    report = json.loads(line) if line.strip() else {"status": 1, "maxrss": 0}
    rss = os.environ.get("PAPERS30_KERNEL_RSS")
    if rss:
        with open(rss, "w") as out:
            out.write(str(report["maxrss"]))
    return int(report["status"])


def manager_class():
    """A jupyter_client kernel manager that launches :func:`kernel` in place of ipykernel_launcher."""
    from jupyter_client.manager import AsyncKernelManager

    class ForkKernelManager(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
            return [sys.executable, HERE, "kernel", "-f", os.path.realpath(self.connection_file)]

    return ForkKernelManager


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(sys.argv[2])
    elif sys.argv[1:2] == ["kernel"]:
        sys.exit(kernel(sys.argv[2:]))
    else:
        sys.exit(__doc__)
