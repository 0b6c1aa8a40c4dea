"""The command launcher: the process that starts every contained command (stdlib only).

The engine starts one per process (``confinement.Launcher``) as ``python -I -S launcher.py``;
it never imports puraify, so it starts in a few milliseconds. At start it enters a user and
mount namespace of its own and makes its whole view of the filesystem read-only (one
``mount_setattr`` over every mount). Then it waits for requests on the socket it was given.

For each command it forks a child that takes a mount, PID and (unless the step may reach the
network) network namespace of its own, and builds the command's view:

- fresh, size-capped ``/tmp``, ``/var/tmp`` and ``/dev/shm``;
- the workspace (and any directory the operator lists as writable) bound writable, at its own
  path, even where that path lies in a hidden or fresh directory;
- every path to hide (the engine's home and config, the other projects' workspaces) covered by
  an empty read-only directory, or ``/dev/null`` for a file.

That child forks the command's first process, which is PID 1 of the new namespace: when it
ends, the kernel ends every process it started, ``setsid()`` or not. It mounts a ``/proc`` of
its namespace, enters one more user namespace (so the command holds no privilege over the
mounts it sees and cannot undo them), sets no_new_privs and the resource limits, and runs the
program. The child reports the program's exit as its own; the launcher reports it to the
engine. When the engine goes away (its end of the socket closes), the launcher kills every
command it started and exits.

Frames on the socket: a 4-byte big-endian length, then a JSON object; a request to run carries
the command's stdin, stdout and stderr as file descriptors (SCM_RIGHTS) with its first bytes.

Its argv: the socket's descriptor, the engine's uid and gid, and the path of ``pyseccomp``
(the libseccomp binding; the launcher runs without site-packages).
``python launcher.py --probe DIR UID GID SECCOMP`` sets everything up and runs ``true`` confined, with DIR as
the workspace: exit 0 when this system supports the whole of it, else 1 and the reason.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import errno
import importlib.util
import json
import os
import resource
import selectors
import signal
import socket
import stat
import struct
import sys
from collections.abc import Sequence
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MOUNT_ATTR_RDONLY = 0x1
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
SYS_MOUNT_SETATTR = 442  # these: the same number on every architecture (asm-generic)
SYS_OPEN_TREE, SYS_MOVE_MOUNT = 428, 429
OPEN_TREE_CLONE, AT_EMPTY_PATH = 1, 0x1000
MOVE_MOUNT_F_EMPTY_PATH, MOVE_MOUNT_T_EMPTY_PATH = 0x4, 0x40
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
MAX_FRAME = 64 * 1024 * 1024
SETUP_FAILED = 126  # a child's exit when it could not build the command's view

_libc = ctypes.CDLL(None, use_errno=True)
_LIMITS = {
    "data": resource.RLIMIT_DATA,
    "cpu": resource.RLIMIT_CPU,
    "nofile": resource.RLIMIT_NOFILE,
    "nproc": resource.RLIMIT_NPROC,  # counted in its own user namespace: its processes only
}


_RULES: Any = None  # the commands' filter, built once; each command loads it


def load_seccomp(path: str) -> None:
    """Load the libseccomp binding from ``path`` (no site-packages here) and build the
    commands' filter with it (``ImportError``/``OSError`` if it cannot)."""
    global _RULES
    spec = importlib.util.spec_from_file_location("pyseccomp", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"no module at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _RULES = _filter(module)


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def _map_user(inner_uid: int, outer_uid: int, inner_gid: int, outer_gid: int) -> None:
    """Map one user and group into the user namespace this process has just entered."""
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{inner_uid} {outer_uid} 1")
    _write("/proc/self/gid_map", f"{inner_gid} {outer_gid} 1")


def enter(uid: int, gid: int) -> None:
    """The launcher's own namespaces: root of a user namespace mapped to the engine's user,
    every mount of its view private and read-only."""
    _unshare(CLONE_NEWUSER | CLONE_NEWNS)
    _map_user(0, uid, 0, gid)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    attr = _MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
    _check(
        _libc.syscall(
            SYS_MOUNT_SETATTR,
            AT_FDCWD,
            b"/",
            AT_RECURSIVE,
            ctypes.byref(attr),
            ctypes.sizeof(attr),
        ),
        "mount_setattr /",
    )


def _within(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
#: In its /proc: read-only (kernel settings a process the kernel sees as root could write) ...
_PROC_READ_ONLY = ("sys", "sysrq-trigger", "irq", "bus", "fs")
#: ... and hidden (kernel memory, keys, timers and devices).
_PROC_HIDDEN = ("kcore", "keys", "kmsg", "timer_list", "sched_debug", "acpi", "scsi", "asound")


def _scratch(path: str, size: int, flags: int = 0) -> None:
    _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | flags, f"size={size},mode=1777")


def _dev(tmp_bytes: int) -> None:
    """A /dev of its own: the harmless devices, bound from the real one, and nothing else."""
    sources = {
        name: os.open(f"/dev/{name}", os.O_PATH)
        for name in _DEVICES
        if os.path.exists(f"/dev/{name}")
    }
    _mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=65536,mode=755")
    for name, fd in sources.items():
        with open(f"/dev/{name}", "w"):
            pass
        _mount(f"/proc/self/fd/{fd}", f"/dev/{name}", None, MS_BIND)
        os.close(fd)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0")):
        os.symlink(target, f"/dev/{name}")
    os.symlink("/proc/self/fd/1", "/dev/stdout")
    os.symlink("/proc/self/fd/2", "/dev/stderr")
    os.mkdir("/dev/shm")
    os.mkdir("/dev/pts")
    _mount(None, "/dev", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, "size=65536")
    _scratch("/dev/shm", tmp_bytes)


def _view(request: dict[str, Any]) -> None:
    """Build a command's filesystem view in the mount namespace this process has just entered
    (see the module's docstring)."""
    writable: list[str] = [request["workspace"], *request.get("writable", ())]
    writable = [p for p in writable if os.path.isdir(p)]
    sources = {p: os.open(p, os.O_PATH | os.O_DIRECTORY) for p in writable}
    tmp_bytes = int(request["tmp_bytes"])
    # fresh, empty and capped: scratch space, and where daemons keep their sockets
    for path in ("/tmp", "/var/tmp", "/run"):
        if os.path.isdir(path) and not os.path.islink(path):
            _scratch(path, tmp_bytes)
    if os.path.isdir("/var/run") and not os.path.islink("/var/run"):
        _scratch("/var/run", tmp_bytes)
    _dev(tmp_bytes)
    # hidden directories that hold a writable path come first (outermost first), so the
    # binds land on top; what lies in one hidden already is not there to hide again
    entries = sorted(request.get("hide", ()), key=lambda e: len(e["path"]))
    hide = [e["path"] for e in entries]
    outer = [p for p in hide if any(_within(w, p) and w != p for w in writable)]
    gone: list[str] = ["/tmp", "/var/tmp", "/run", "/var/run", "/dev"]  # replaced above
    for entry in entries:
        if entry["path"] in outer:
            target = _hidden_target(entry, gone, [])
            if target is not None:
                _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, "size=65536,mode=755")
                gone.append(entry["path"])
    for path, fd in sources.items():
        os.makedirs(path, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV)
        os.close(fd)
    for path in outer:
        if os.path.ismount(path):
            _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    for entry in entries:
        if entry["path"] in outer or entry["path"] in writable:
            continue
        target = _hidden_target(entry, gone, writable)
        if target is None:
            continue
        if stat.S_ISDIR(os.stat(target).st_mode):
            _mount("tmpfs", target, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4096,mode=755")
        else:
            _null_over(int(target.rsplit("/", 1)[1]))
        gone.append(entry["path"])


def _null_over(fd: int) -> None:
    """Put a read-only ``/dev/null`` over the file ``fd`` is (made read-only before it is
    attached, and attached to that very file: no name is looked up again)."""
    tree = _libc.syscall(SYS_OPEN_TREE, AT_FDCWD, b"/dev/null", OPEN_TREE_CLONE | os.O_CLOEXEC)
    if tree < 0:
        _check(-1, "open_tree /dev/null")
    try:
        attr = _MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
        _check(
            _libc.syscall(
                SYS_MOUNT_SETATTR, tree, b"", AT_EMPTY_PATH, ctypes.byref(attr), ctypes.sizeof(attr)
            ),
            "mount_setattr /dev/null",
        )
        flags = MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH
        _check(_libc.syscall(SYS_MOVE_MOUNT, tree, b"", fd, b"", flags), "move_mount")
    finally:
        os.close(tree)


def _hidden_target(entry: dict[str, Any], gone: list[str], writable: list[str]) -> str | None:
    """Where to mount over a hidden path: its descriptor's place in this namespace, once it is
    certain that it is still what the engine holds (same device and inode); ``None`` when it
    lies in something replaced or hidden already. Anything else (it moved, it is gone, it
    is another file now) is an error: the command does not start."""
    path = entry["path"]
    if any(_within(path, g) for g in gone) and not any(_within(path, w) for w in writable):
        return None
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW)
    except FileNotFoundError:
        if entry.get("id") is None:
            return None  # it never was: nothing to hide
        raise OSError(errno.ENOENT, f"{path} moved; it cannot be hidden, so nothing runs") from None
    found = os.fstat(fd)
    if entry.get("id") is not None and [found.st_dev, found.st_ino] != list(entry["id"]):
        raise OSError(errno.EEXIST, f"{path} is not what it was; it cannot be hidden")
    if stat.S_ISLNK(found.st_mode):
        raise OSError(errno.ELOOP, f"{path} is a symbolic link; it cannot be hidden")
    return f"/proc/self/fd/{fd}"  # open for the command's life: mounts land on this very file


def _proc() -> None:
    """A /proc of its PID namespace, with the kernel's settings read-only and its secrets
    hidden (as container runtimes do)."""
    try:
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:  # no /proc of its own: it gets none rather than the engine's
        _mount("tmpfs", "/proc", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4096")
        return
    for name in _PROC_READ_ONLY:
        path = f"/proc/{name}"
        if os.path.exists(path):
            _mount(path, path, None, MS_BIND | MS_REC)
            _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    for name in _PROC_HIDDEN:
        path = f"/proc/{name}"
        if os.path.isdir(path):
            _mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4096")
        elif os.path.exists(path):
            _mount("/dev/null", path, None, MS_BIND)


#: Denied to a command (EPERM): making namespaces, mounting, and kernel interfaces a
#: sandboxed program has no use for; the sandbox could otherwise be undone from inside (a
#: user namespace of its own can mount cgroup hierarchies, for one).
_DENIED = (
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount",
    "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr", "bpf", "perf_event_open",
    "keyctl", "add_key", "request_key", "kexec_load", "kexec_file_load", "init_module",
    "finit_module", "delete_module", "swapon", "swapoff", "acct", "quotactl", "userfaultfd",
    "open_by_handle_at", "name_to_handle_at", "setxattr", "lsetxattr", "fsetxattr",
    "iopl", "ioperm", "syslog",
)  # fmt: skip
_NAMESPACES = (
    CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWIPC,
    0x04000000,  # CLONE_NEWUTS
    0x02000000,  # CLONE_NEWCGROUP
    0x00000080,  # CLONE_NEWTIME
)  # fmt: skip
_SET_ID = 0o6000  # S_ISUID | S_ISGID: a file the engine's user would run as its owner
#: (syscall, index of its mode argument): refused when the mode sets either bit
_MODES = (
    ("chmod", 1), ("fchmod", 1), ("fchmodat", 2), ("fchmodat2", 2), ("open", 2),
    ("openat", 3), ("creat", 1), ("mknod", 1), ("mknodat", 2),
)  # fmt: skip


def _filter(seccomp: Any) -> Any:
    """The command's system call filter (libseccomp): what ``_DENIED`` names, namespaces by
    ``clone`` (``clone3``, whose flags it cannot read, answers ENOSYS: libc falls back to
    ``clone``), and setuid or setgid modes. Everything else is allowed."""
    rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    refuse = seccomp.ERRNO(errno.EPERM)

    def add(action: Any, name: str, *args: Any) -> None:
        # a system call this kernel or library does not know is one nobody can make
        with contextlib.suppress(ValueError, RuntimeError, OSError):
            rules.add_rule(action, name, *args)

    for name in _DENIED:
        add(refuse, name)
    for flag in _NAMESPACES:
        add(refuse, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    add(seccomp.ERRNO(errno.ENOSYS), "clone3")
    add(seccomp.ERRNO(errno.ENOSYS), "openat2")
    for name, index in _MODES:
        for bit in (0o4000, 0o2000):
            add(refuse, name, seccomp.Arg(index, seccomp.MASKED_EQ, bit, bit))
    return rules


def _exec(request: dict[str, Any], fds: list[int], parent: int, errors: int) -> None:
    """The command's first process (PID 1 of its namespace): never returns. ``parent`` is
    the read end of a pipe only its parent holds open: at end of file, the parent is gone."""
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")
    os.set_blocking(parent, False)
    try:
        if os.read(parent, 1) == b"":  # the child that started it is gone already
            os._exit(SETUP_FAILED)
    except BlockingIOError:
        pass
    os.close(parent)
    _proc()
    uid, gid = request["uid"], request["gid"]
    _unshare(CLONE_NEWUSER)
    _map_user(uid, 0, gid, 0)
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl")
    for target, fd in enumerate(fds):
        os.dup2(fd, target, inheritable=True)
    os.chdir(request["cwd"])
    # nothing of the launcher's (other commands' descriptors among them) reaches the program
    os.closerange(3, errors)
    os.closerange(errors + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    for name, value in request.get("limits", {}).items():
        resource.setrlimit(_LIMITS[name], (int(value), int(value)))
    _RULES.load()
    os.execve(request["program"], request["argv"], request["env"])  # noqa: S606 (argv, no shell)


def _child(request: dict[str, Any], fds: list[int], errors: int, launcher: int) -> int:
    """The child the launcher forks for one command: builds its view, starts its first
    process, and returns what to exit with (the program's own exit).

    It ends the command when told to (SIGTERM: the step's timeout or cancel, the engine or the
    launcher gone) by killing its first process, PID 1 of its namespace, which takes every
    other process of the namespace with it; the program cannot opt out of that."""
    first = 0

    def end(signum: int, frame: object) -> None:
        if first:
            os.kill(first, signal.SIGKILL)
        else:  # not started yet: nothing to end but this
            os._exit(128 + signal.SIGTERM)

    signal.signal(signal.SIGTERM, end)
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0), "prctl")
    if os.getppid() != launcher:  # the launcher is gone already
        return SETUP_FAILED
    os.setsid()
    for default in (signal.SIGINT, signal.SIGPIPE, signal.SIGCHLD):
        signal.signal(default, signal.SIG_DFL)
    network = 0 if request.get("network") else CLONE_NEWNET
    _unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | network)
    _view(request)
    me = os.getpid()
    alive, holder = os.pipe()
    first = os.fork()
    if first == 0:
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.close(holder)
            _exec(request, fds, alive, errors)
        except BaseException as exc:
            _report(errors, f"cannot start {request['argv'][0]}: {exc}")
        os._exit(SETUP_FAILED)
    os.close(alive)
    for fd in set(fds):
        os.close(fd)
    os.close(errors)
    while True:
        try:
            _, status = os.waitpid(first, 0)
            break
        except ChildProcessError:
            return SETUP_FAILED
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):  # end the same way, so the launcher sees the signal
        number = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        signal.signal(number, signal.SIG_DFL)
        os.kill(me, number)
        return 128 + number
    return os.waitstatus_to_exitcode(status)


def _report(fd: int, message: str) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, message.encode("utf-8", "replace")[:4000])


def send(sock: socket.socket, message: dict[str, Any], fds: Sequence[int] = ()) -> None:
    body = json.dumps(message).encode()
    frame = struct.pack(">I", len(body)) + body
    sent = sock.sendmsg(
        [frame], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    )
    if sent < len(frame):
        sock.sendall(frame[sent:])


def receive(sock: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    """One frame and the descriptors that came with it; ``None`` when the peer is gone."""
    header, fds = b"", []
    while len(header) < 4:
        data, ancillary, _, _ = sock.recvmsg(4 - len(header), socket.CMSG_SPACE(3 * 4))
        if not data:
            return None
        header += data
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += array.array("i", payload[: len(payload) - len(payload) % 4]).tolist()
    (length,) = struct.unpack(">I", header)
    body = bytearray()
    left = length
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            return None
        left -= len(chunk)
        if length <= MAX_FRAME:
            body += chunk
    if length > MAX_FRAME:  # read past, so the next frame is read whole: this one is refused
        return {"refused": f"a frame of {length} bytes is past the limit"}, fds
    return json.loads(body), fds


class _Launcher:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.selector = selectors.DefaultSelector()
        self.selector.register(sock, selectors.EVENT_READ)
        self.running: dict[int, tuple[str, int, int]] = {}  # pidfd -> (id, pid, error pipe)

    def start(self, request: dict[str, Any], fds: list[int]) -> int:
        """Fork the child for ``request``; its pid."""
        errors_read, errors_write = os.pipe2(os.O_CLOEXEC)
        me = os.getpid()
        pid = os.fork()
        if pid == 0:
            code = SETUP_FAILED
            try:
                self.sock.close()
                os.close(errors_read)
                code = _child(request, fds, errors_write, me)
            except BaseException as exc:
                _report(errors_write, f"cannot contain the command: {exc}")
            os._exit(code)
        for fd in set(fds):
            os.close(fd)
        os.close(errors_write)
        os.set_blocking(errors_read, False)
        pidfd = os.pidfd_open(pid)
        self.running[pidfd] = (request["id"], pid, errors_read)
        self.selector.register(pidfd, selectors.EVENT_READ)
        return pid

    def reap(self, pidfd: int) -> None:
        ident, pid, errors = self.running.pop(pidfd)
        self.selector.unregister(pidfd)
        os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        try:
            error = os.read(errors, 4000).decode("utf-8", "replace")
        except BlockingIOError:
            error = ""
        os.close(errors)
        reply: dict[str, Any] = {"id": ident, "exit": os.waitstatus_to_exitcode(status)}
        if error:
            reply["error"] = error
        send(self.sock, reply)

    def kill(self, ident: str) -> None:
        for _, (other, pid, _) in list(self.running.items()):
            if other == ident:
                os.kill(pid, signal.SIGTERM)  # the child kills the command's first process

    def serve(self) -> None:
        send(self.sock, {"ready": True})
        while True:
            for key, _ in self.selector.select():
                if key.fileobj is self.sock:
                    frame = receive(self.sock)
                    if frame is None:
                        return
                    message, fds = frame
                    if "refused" in message:
                        for fd in set(fds):
                            os.close(fd)
                    elif message.get("kill"):
                        self.kill(message["kill"])
                    else:
                        try:
                            pid = self.start(message, fds)
                        except OSError as exc:  # no fork, no pipe: this command fails alone
                            for fd in set(fds):
                                os.close(fd)
                            reply = {"id": message["id"], "exit": SETUP_FAILED, "error": str(exc)}
                            send(self.sock, reply)
                        else:
                            send(self.sock, {"id": message["id"], "pid": pid})
                else:
                    self.reap(int(key.fd))

    def stop(self) -> None:
        for _, pid, _ in self.running.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def _probe(directory: str, uid: int, gid: int) -> int:
    """Run ``true`` confined, every step as a command would (a hidden directory holding the
    workspace, a hidden file, limits); 0 when it all works."""
    hidden = os.path.join(directory, "hidden")
    workspace = os.path.join(hidden, "workspace")
    os.makedirs(workspace)
    with open(os.path.join(directory, "secret"), "w"):
        pass
    enter(uid, gid)
    errors_read, errors_write = os.pipe2(os.O_CLOEXEC)
    null = os.open(os.devnull, os.O_RDWR)
    request = {
        "id": "probe",
        "program": "/bin/true" if os.path.exists("/bin/true") else "/usr/bin/true",
        "argv": ["true"],
        "env": {},
        "cwd": workspace,
        "workspace": workspace,
        "hide": [
            {"path": p, "id": [os.lstat(p).st_dev, os.lstat(p).st_ino]}
            for p in (hidden, os.path.join(directory, "secret"))
        ],
        "tmp_bytes": 1 << 20,
        "limits": {"nofile": 64, "nproc": 64},
        "uid": uid,
        "gid": gid,
    }
    me = os.getpid()
    pid = os.fork()
    if pid == 0:
        code = SETUP_FAILED
        try:
            os.close(errors_read)
            code = _child(request, [null, null, null], errors_write, me)
        except BaseException as exc:
            _report(errors_write, str(exc))
        os._exit(code)
    os.close(errors_write)
    _, status = os.waitpid(pid, 0)
    error = os.read(errors_read, 4000).decode("utf-8", "replace")
    if status != 0 or error:
        print(error or f"exit status {status}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[1] == "--probe":
        try:
            load_seccomp(argv[5])
            return _probe(argv[2], int(argv[3]), int(argv[4]))
        except (OSError, ImportError, AttributeError) as exc:
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
    sock = socket.socket(fileno=int(argv[1]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the engine decides when it ends
    launcher = _Launcher(sock)
    try:
        load_seccomp(argv[4])
        enter(int(argv[2]), int(argv[3]))
    except (OSError, ImportError, AttributeError) as exc:
        send(sock, {"ready": False, "error": str(exc)})
        return 1
    try:
        launcher.serve()
    finally:
        launcher.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
