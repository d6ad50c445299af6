#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A FUSE passthrough whose calls block on demand: a shared volume that stalls like a hard NFS mount.

    stallfs.py serve BACKING MOUNTPOINT CTLSOCK [READY_FIFO]
        Mounts BACKING at MOUNTPOINT (foreground) and serves every call from BACKING. Control
        commands arrive on the Unix socket CTLSOCK; SIGUSR1 stalls and SIGUSR2 resumes as well.
        When READY_FIFO is given, "ready" (or "error: ...") is written to it once the kernel has
        initialised the mount, so that a test waits on a pipe, not on a sleep.
    stallfs.py ctl CTLSOCK COMMAND [ARG...]
        Sends one command and prints the reply; exit status 0 when the reply starts with "ok".

Commands:
    stall            from now on every call blocks until resume (calls already past the gate
                     finish); the reply comes once the mode is set
    resume           blocked calls go on, new calls are served; an armed trigger is dropped
    eio              every call (and every blocked one) fails with EIO: a volume that is gone
    status           mode, number of calls blocked now and their operations, calls served
    stall-at OP SUFFIX
                     arm a trigger: the next OP call (getattr, open, create, write, fsync,
                     rename, readdir, ...) on a path ending in SUFFIX stalls the volume, that
                     call included; a test stalls at an exact point of the library's work
    wait-blocked N [SECONDS]
                     wait until at least N calls are blocked in the gate (default 30 s); "ok" with
                     their operations, or "timeout" with how many were

While stalled, the caller of a blocked call waits in the kernel (fuse's request_wait_answer) for
our answer: the same as a process on a hard NFS mount whose server is down. As there, SIGKILL (or
any fatal signal) ends the caller; no other signal frees it. Every kernel cache is
off (attr_timeout=0, entry_timeout=0, negative_timeout=0): each lookup and stat reaches us.
Inode numbers are the backing files' (use_ino), stable across lookups as an NFS fileid is.
Linux >= 6.14 could bound a FUSE request (fs.fuse.max_request_timeout); 0 (the default) does not.
"""
import ctypes
import errno
import os
import signal
import socket
import sys
import threading



def FuseOSError(e):
    """fusepy answers any OSError with its errno."""
    return OSError(e, os.strerror(e))


def caller_killed(tid):
    """Has thread `tid` a SIGKILL pending (killed, or dying of a fatal signal, which the kernel
    turns into SIGKILL for every thread)?"""
    try:
        with open("/proc/%d/status" % tid) as f:
            for line in f:
                if line.startswith(("SigPnd:", "ShdPnd:")) and \
                        int(line.split()[1], 16) & (1 << (signal.SIGKILL - 1)):
                    return True
    except OSError:
        return True  # gone already
    return False


class Gate:
    """run | stall | eio, and who waits. One condition variable: a mode change wakes everyone.

    A blocked call is killable, as on a hard NFS mount (TASK_KILLABLE): when the kernel forwards
    an interrupt (FUSE_INTERRUPT, libfuse's -o intr) and the caller has a SIGKILL pending, the
    call fails with EINTR and the caller dies; other signals leave it blocked. Without this, a
    FUSE request the server has taken cannot be abandoned by the kernel: a killed process could
    not exit before the volume came back, which no hard NFS mount does."""

    def __init__(self, interrupted=None, context=None):
        self.cv = threading.Condition()
        self.mode = "run"
        self.blocked = {}  # thread id -> "op path"
        self.served = 0
        self.killed = 0
        self.interrupted = interrupted  # libfuse's fuse_interrupted(), for this thread's call
        self.context = context          # fusepy's fuse_get_context(): (uid, gid, caller tid)
        self.trigger = None             # (op, path suffix) that stalls the volume

    def enter(self, op, path):
        with self.cv:
            if self.trigger and op == self.trigger[0] and path.endswith(self.trigger[1]):
                self.trigger = None
                self.mode = "stall"
            if self.mode == "stall":
                me = threading.get_ident()
                self.blocked[me] = "%s %s" % (op, path)
                self.cv.notify_all()  # wait-blocked watches the count
                try:
                    while self.mode == "stall":
                        # checked every 50 ms: libfuse flags an interrupt, it does not wake us
                        self.cv.wait(0.05 if self.interrupted else None)
                        if self.interrupted and self.interrupted() and \
                                caller_killed(self.context()[2]):
                            self.killed += 1
                            raise FuseOSError(errno.EINTR)
                finally:
                    del self.blocked[me]
            if self.mode == "eio":
                raise FuseOSError(errno.EIO)
            self.served += 1

    def set(self, mode):
        with self.cv:
            self.mode = mode
            self.cv.notify_all()

    def arm(self, op, suffix):
        with self.cv:
            self.trigger = (op, suffix) if op else None

    def status(self):
        with self.cv:
            return "mode=%s%s blocked=%d served=%d killed=%d ops=%s" % (
                self.mode, " armed=%s:%s" % self.trigger if self.trigger else "",
                len(self.blocked), self.served, self.killed,
                ",".join(sorted(self.blocked.values())) or "-")

    def wait_blocked(self, n, timeout):
        with self.cv:
            ok = self.cv.wait_for(lambda: len(self.blocked) >= n, timeout)
        return ("ok " if ok else "timeout ") + self.status()


# Operations that are never gated: the mount's own lifecycle.
UNGATED = ("init", "destroy")


class StallFS:
    use_ns = True

    def __init__(self, backing, gate, ready):
        self.root = os.path.realpath(backing)
        self.gate = gate
        self.ready = ready
        self.ready_sent = False

    def __call__(self, op, path, *args):
        if op not in UNGATED:
            self.gate.enter(op, path)
        if not hasattr(self, op):
            raise FuseOSError(errno.ENOSYS)
        return getattr(self, op)(path, *args)

    def _p(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    # lifecycle
    def init(self, path):
        self.tell_ready("ready")

    def tell_ready(self, what):
        self.ready_sent = True
        if self.ready:
            with open(self.ready, "w") as f:
                f.write(what + "\n")

    # metadata
    def access(self, path, amode):
        if not os.access(self._p(path), amode):
            raise FuseOSError(errno.EACCES)

    def getattr(self, path, fh=None):
        st = os.fstat(fh) if fh is not None else os.lstat(self._p(path))
        keys = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_ino", "st_dev",
                "st_blocks", "st_blksize")
        d = {k: getattr(st, k) for k in keys}
        d["st_atime"], d["st_mtime"], d["st_ctime"] = st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns
        return d

    def chmod(self, path, mode):
        os.chmod(self._p(path), mode)

    def chown(self, path, uid, gid):
        os.lchown(self._p(path), uid, gid)

    def utimens(self, path, times=None):
        os.utime(self._p(path), ns=times, follow_symlinks=False) if times else \
            os.utime(self._p(path), follow_symlinks=False)

    def readlink(self, path):
        return os.readlink(self._p(path))

    def statfs(self, path):
        sv = os.statvfs(self._p(path))
        return {k: getattr(sv, k) for k in ("f_bavail", "f_bfree", "f_blocks", "f_bsize",
                                            "f_favail", "f_ffree", "f_files", "f_flag",
                                            "f_frsize", "f_namemax")}

    # namespace
    def mknod(self, path, mode, dev):
        os.mknod(self._p(path), mode, dev)

    def mkdir(self, path, mode):
        os.mkdir(self._p(path), mode)

    def rmdir(self, path):
        os.rmdir(self._p(path))

    def unlink(self, path):
        os.unlink(self._p(path))

    def symlink(self, target, source):
        os.symlink(source, self._p(target))

    def link(self, target, source):
        os.link(self._p(source), self._p(target))

    def rename(self, old, new):
        os.rename(self._p(old), self._p(new))

    # directories
    def opendir(self, path):
        return 0

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._p(path))

    def releasedir(self, path, fh):
        return 0

    def fsyncdir(self, path, datasync, fh):
        fd = os.open(self._p(path), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # files: the backing descriptor is the FUSE file handle
    def create(self, path, mode, fi=None):
        return os.open(self._p(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)

    def open(self, path, flags):
        # O_DIRECT is the caller's wish about the page cache of this mount, not of the backing
        # filesystem (which may not support it)
        return os.open(self._p(path), (flags & ~os.O_DIRECT) | os.O_CLOEXEC)

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        return os.pwrite(fh, data, offset)

    def truncate(self, path, length, fh=None):
        if fh is not None:
            os.ftruncate(fh, length)
        else:
            os.truncate(self._p(path), length)

    def flush(self, path, fh):
        return 0

    def fsync(self, path, datasync, fh):
        (os.fdatasync if datasync else os.fsync)(fh)

    def release(self, path, fh):
        os.close(fh)


def control_loop(sock, gate):
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=control_one, args=(conn, gate), daemon=True).start()


def control_one(conn, gate):
    with conn:
        words = conn.makefile("r").readline().split()
        cmd = words[0] if words else ""
        if cmd in ("stall", "resume", "eio"):
            gate.set({"stall": "stall", "resume": "run", "eio": "eio"}[cmd])
            if cmd == "resume":
                gate.arm(None, None)
            reply = "ok " + gate.status()
        elif cmd == "stall-at" and len(words) == 3:
            gate.arm(words[1], words[2])
            reply = "ok " + gate.status()
        elif cmd == "status":
            reply = "ok " + gate.status()
        elif cmd == "wait-blocked" and len(words) >= 2:
            reply = gate.wait_blocked(int(words[1]), float(words[2]) if len(words) > 2 else 30.0)
        else:
            reply = "error: unknown command %r" % " ".join(words)
        conn.sendall((reply + "\n").encode())


def signal_loop(gate):
    while True:
        sig = signal.sigwait({signal.SIGUSR1, signal.SIGUSR2})
        gate.set("stall" if sig == signal.SIGUSR1 else "run")


def serve(backing, mountpoint, ctlsock, ready=None):
    gate = Gate()
    fs = StallFS(backing, gate, ready)
    sock = None
    try:
        try:
            import fusepy
        except ImportError:  # Debian's python3-fusepy installs fusepy.py; pip's fusepy, fuse.py
            import fuse as fusepy
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(ctlsock)
        sock.listen(16)
        # SIGUSR1/SIGUSR2 are taken by one thread with sigwait: libfuse's loop holds the main
        # thread in C, where Python signal handlers would never run. Threads inherit the mask.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGUSR2})
        threading.Thread(target=control_loop, args=(sock, gate), daemon=True).start()
        threading.Thread(target=signal_loop, args=(gate,), daemon=True).start()
        lib = fusepy._libfuse
        lib.fuse_interrupted.restype = ctypes.c_int
        gate.interrupted = lib.fuse_interrupted
        gate.context = fusepy.fuse_get_context
        # intr: the kernel's interrupts reach fuse_interrupted(); libfuse also signals the
        # worker thread, with SIGURG here (ignored by default) so as not to touch SIGUSR1
        fusepy.FUSE(fs, mountpoint, foreground=True, nothreads=False, fsname="stallfs",
                    subtype="stallfs", big_writes=True, max_write=131072, max_read=131072,
                    attr_timeout=0, entry_timeout=0, negative_timeout=0, use_ino=True,
                    intr=True, intr_signal=int(signal.SIGURG))
        if not fs.ready_sent:
            raise RuntimeError("the mount of %s failed (see above)" % mountpoint)
    except BaseException as e:
        if ready and not fs.ready_sent:  # a reader waits on the FIFO: tell it
            fs.tell_ready("error: %s" % e)
        raise
    finally:
        if sock:
            os.unlink(ctlsock)


def ctl(ctlsock, words):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(ctlsock)
    s.sendall((" ".join(words) + "\n").encode())
    reply = s.makefile("r").readline().strip()
    print(reply)
    return 0 if reply.startswith("ok") else 1


def main(argv):
    if len(argv) >= 4 and argv[1] == "serve":
        serve(*argv[2:6])
        return 0
    if len(argv) >= 4 and argv[1] == "ctl":
        return ctl(argv[2], argv[3:])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
