"""The Python grader's sandbox process (`graders/sandbox.py` starts it). Standard library only:
it runs as `python -I -S <this file>`, inside new network, mount, PID, IPC and UTS namespaces
made by util-linux's `unshare`, as their root, and before it runs a line of the grader it:

1. builds a new root on a tmpfs: the system's `/usr` (with `/bin`, `/lib` … as on the host),
   Python's own installation and the grader packages (`/packages`), each bound read-only,
   nosuid and nodev; `/dev/null`, `/dev/zero`, `/dev/urandom`; its own `/proc`; a size-limited
   tmpfs `/tmp` for a working directory. The data directory, the other organizations' files,
   the server's code and settings are not in it;
2. `chroot`s into it, takes no new privileges (`PR_SET_NO_NEW_PRIVS`), and becomes `nobody`
   when it was started as the real root (started by another user, it is that user, mapped to
   root in its own user namespace, and sees the same root);
3. limits itself: address space (RLIMIT_AS), processes (RLIMIT_NPROC), file size, open files,
   no core files; CPU time per grade (RLIMIT_CPU; the parent also keeps a wall-clock limit and
   kills the whole namespace when it passes).

Then it answers requests on its stdin/stdout (4-byte big-endian length + JSON): the first
carries the source, each later one a sample and an item. The grader's prints go nowhere."""

import ctypes
import json
import math
import numbers
import os
import resource
import select
import signal
import struct
import sys
import time
import traceback

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC = 32, 4096, 16384
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
SIGKILL = 9
NOBODY = 65534
MAX_DETAILS = 4000

libc = ctypes.CDLL(None, use_errno=True)


def mount(source, target, fstype, flags, data=None):
    if libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags, data and data.encode()):
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {source} on {target}: {os.strerror(errno)}")


def bind_read_only(source, target):
    mount(source, target, None, MS_BIND | MS_REC)
    mount("none", target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def place(root, path, like):
    """`path` inside `root`, made like `like` (a folder, or an empty file to bind a file on)."""
    inside = root + path
    os.makedirs(os.path.dirname(inside), mode=0o755, exist_ok=True)
    if os.path.isdir(like):
        os.makedirs(inside, mode=0o755, exist_ok=True)
    elif not os.path.exists(inside):
        open(inside, "w").close()
    return inside


def build_root(config):
    root = config["root"]
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=755")
    for path in config["system"]:  # /usr, and /bin → usr/bin style links as the host has them
        if os.path.islink(path):
            os.symlink(os.readlink(path), root + path)
        elif os.path.isdir(path):
            bind_read_only(path, place(root, path, path))
    for path in config["python"]:
        bind_read_only(path, place(root, path, path))
    os.makedirs(root + "/packages", mode=0o755)
    for name, path in config["packages"].items():
        bind_read_only(path, place(root, "/packages/" + name, path))
    for device in ("/dev/null", "/dev/zero", "/dev/urandom"):
        mount(device, place(root, device, device), None, MS_BIND)
    os.makedirs(root + "/proc", mode=0o555)
    mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.makedirs(root + "/tmp", mode=0o777)
    mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={config['disk_bytes']},mode=1777")
    os.chroot(root)
    os.chdir("/tmp")


def confine(config):
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0):
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if config["drop_to_nobody"]:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    # `unshare --kill-child` asked the kernel to kill this process when `unshare` dies, and
    # changing user cleared that: asked again (before "ready", so the parent, which stops a
    # sandbox by killing `unshare`, cannot have done so yet).
    libc.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)
    resource.setrlimit(resource.RLIMIT_AS, (config["memory_bytes"], config["memory_bytes"]))
    resource.setrlimit(resource.RLIMIT_NPROC, (config["processes"], config["processes"]))
    resource.setrlimit(resource.RLIMIT_FSIZE, (config["disk_bytes"], config["disk_bytes"]))
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.path.append("/packages")  # after the standard library, all `-I -S` leaves on the path


def read_message(channel, idle_seconds):
    if not select.select([channel], [], [], idle_seconds)[0]:
        return None  # idle: the parent's grader has no more items for now
    header = os.read(channel, 4)
    if len(header) < 4:
        return None  # the parent is gone
    size = struct.unpack(">I", header)[0]
    body = b""
    while len(body) < size:
        chunk = os.read(channel, size - len(body))
        if not chunk:
            return None
        body += chunk
    return json.loads(body)


def send(channel, message):
    body = json.dumps(message).encode()
    os.write(channel, struct.pack(">I", len(body)) + body)


class OutOfTime(BaseException):
    """Raised in the grader when it has used its CPU time (SIGXCPU at RLIMIT_CPU's soft limit;
    the hard limit, seconds later, kills a grader that catches it)."""


def out_of_time(signum, frame):
    raise OutOfTime


def grade(namespace, source, request, seconds):
    """{"reward": x}, or {"error": details}: an exception, or a result that is not a number."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    budget = math.ceil(used.ru_utime + used.ru_stime + seconds)
    resource.setrlimit(resource.RLIMIT_CPU, (budget, budget + 5))
    try:
        if "grade" not in namespace:
            exec(compile(source, "grader.py", "exec"), namespace)
        result = namespace["grade"](request["sample"], request["item"])
    except OutOfTime:
        return {"error": f"The grader did not return within {seconds:g} seconds."}
    except BaseException as error:  # SystemExit and KeyboardInterrupt too: the grader's, not ours
        lines = traceback.format_exception(type(error), error, error.__traceback__.tb_next)  # from the grader's frame
        return {"error": "".join(lines)[-MAX_DETAILS:]}
    if isinstance(result, bool) or not isinstance(result, numbers.Real):
        return {"error": f"grade() returned {type(result).__name__} {str(result)[:200]!r}, not a float."}
    try:
        reward = float(result)
    except (OverflowError, ValueError):
        reward = math.nan
    if not math.isfinite(reward):
        return {"error": f"grade() returned {str(result)[:200]}, not a finite float."}
    return {"reward": reward}


def main():
    config = json.loads(sys.argv[1])
    requests, replies = os.dup(0), os.dup(1)
    build_root(config)
    confine(config)
    quiet = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(quiet, fd)
    signal.signal(signal.SIGXCPU, out_of_time)
    send(replies, {"ready": True})
    start = read_message(requests, config["idle_seconds"])
    if start is None:
        return
    namespace = {"__name__": "grader"}
    while (request := read_message(requests, config["idle_seconds"])) is not None:
        started = time.perf_counter()
        reply = grade(namespace, start["source"], request, config["seconds"])
        send(replies, {**reply, "seconds": time.perf_counter() - started})


if __name__ == "__main__":
    main()
