"""A FUSE file system that loses, on command, everything a power cut would lose.

Files and folders live in memory, each in two versions: what programs see now, and what
a power cut leaves. Only `fsync`/`fdatasync` of a file makes its current bytes durable;
only `fsync` of a folder makes its current entries durable, so a create, a rename, an
unlink or a mkdir is undone by a cut until its folder is fsynced (a file whose name was
never made durable is gone, whatever was fsynced into it). A cut puts every file and
folder back to its durable version.

Run it as a program, `python powercut_fs.py MOUNTPOINT`, and drive it on stdin, one
command a line, each answered on stdout once done:

    cut     unmount, drop everything not durable, mount again   ->  "ready"
    quit    unmount and exit                                    ->  "bye"

It prints "ready" once first mounted. Kill the processes writing to it before a cut: the
cut unmounts the file system, and a real power cut stops them too. Needs /dev/fuse,
libfuse 3 (Debian's `fuse3`) and `mfusepy`; runs as root (or a user allowed to mount FUSE).
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
import subprocess
import sys
import threading
import time
from typing import Any

import mfusepy

_inodes = itertools.count(2)


class _Node:
    """A file or a folder: its current and its durable contents."""

    def __init__(self, mode: int, folder: bool) -> None:
        self.mode = mode
        self.ino = next(_inodes)
        self.folder = folder
        now = time.time_ns()
        self.mtime = self.ctime = self.atime = now
        self.data = bytearray()
        self.durable = b""
        self.entries: dict[str, _Node] = {}
        self.durable_entries: dict[str, _Node] = {}

    def cut(self, seen: set[int]) -> None:
        """Go back to the durable version, and so do the nodes it durably holds."""
        if self.ino in seen:
            return
        seen.add(self.ino)
        self.data = bytearray(self.durable)
        self.entries = dict(self.durable_entries)
        for child in self.entries.values():
            child.cut(seen)


class PowerCutFS(mfusepy.Operations):
    """The file system (see the module docs); one lock serializes every operation."""

    use_ns = True  # times in nanoseconds (mfusepy's floats are deprecated)

    def __init__(self) -> None:
        self.root = _Node(stat.S_IFDIR | 0o755, True)
        self._mutex = threading.Lock()
        self.handles: dict[int, _Node] = {}
        self.next_fh = itertools.count(1)

    # -- helpers --------------------------------------------------------------------------

    def _find(self, path: str) -> _Node:
        node = self.root
        for part in path.split("/"):
            if not part:
                continue
            if not node.folder or part not in node.entries:
                raise mfusepy.FuseOSError(errno.ENOENT)
            node = node.entries[part]
        return node

    def _parent(self, path: str) -> tuple[_Node, str]:
        head, name = os.path.split(path.rstrip("/"))
        parent = self._find(head)
        if not parent.folder:
            raise mfusepy.FuseOSError(errno.ENOTDIR)
        return parent, name

    def _node(self, path: str | None, fh: int | None) -> _Node:
        if fh and fh in self.handles:
            return self.handles[fh]
        if path is None:
            raise mfusepy.FuseOSError(errno.EBADF)
        return self._find(path)

    def _open_handle(self, node: _Node) -> int:
        fh = next(self.next_fh)
        self.handles[fh] = node
        return fh

    def cut(self) -> None:
        """Drop everything not durable (the file system must be unmounted)."""
        with self._mutex:
            self.handles.clear()
            self.root.cut(set())

    # -- operations -----------------------------------------------------------------------

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        with self._mutex:
            node = self._node(path, fh)
            size = len(node.entries) if node.folder else len(node.data)
            return {
                "st_mode": node.mode, "st_ino": node.ino, "st_nlink": 2 if node.folder else 1,
                "st_size": size, "st_uid": os.getuid(), "st_gid": os.getgid(),
                "st_atime": node.atime, "st_mtime": node.mtime, "st_ctime": node.ctime,
                "st_blocks": (size + 511) // 512, "st_blksize": 4096,
            }

    def readdir(self, path: str, fh: int) -> list[str]:
        with self._mutex:
            node = self._find(path)
            return [".", "..", *node.entries]

    def opendir(self, path: str) -> int:
        with self._mutex:
            node = self._find(path)
            if not node.folder:
                raise mfusepy.FuseOSError(errno.ENOTDIR)
            return self._open_handle(node)

    def releasedir(self, path: str | None, fh: int) -> int:
        with self._mutex:
            self.handles.pop(fh, None)
        return 0

    def fsyncdir(self, path: str | None, datasync: int, fh: int) -> int:
        with self._mutex:
            node = self._node(path, fh)
            node.durable_entries = dict(node.entries)
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        with self._mutex:
            parent, name = self._parent(path)
            if name in parent.entries:
                raise mfusepy.FuseOSError(errno.EEXIST)
            parent.entries[name] = _Node(stat.S_IFDIR | (mode & 0o7777), True)
            parent.mtime = time.time_ns()
        return 0

    def rmdir(self, path: str) -> int:
        with self._mutex:
            parent, name = self._parent(path)
            node = parent.entries.get(name)
            if node is None:
                raise mfusepy.FuseOSError(errno.ENOENT)
            if not node.folder:
                raise mfusepy.FuseOSError(errno.ENOTDIR)
            if node.entries:
                raise mfusepy.FuseOSError(errno.ENOTEMPTY)
            del parent.entries[name]
        return 0

    def create(self, path: str, mode: int, flags: int = 0) -> int:
        with self._mutex:
            parent, name = self._parent(path)
            node = parent.entries.get(name)
            if node is None:
                node = _Node(stat.S_IFREG | (mode & 0o7777), False)
                parent.entries[name] = node
                parent.mtime = time.time_ns()
            elif flags & os.O_EXCL:
                raise mfusepy.FuseOSError(errno.EEXIST)
            elif flags & os.O_TRUNC:
                del node.data[:]
            return self._open_handle(node)

    def open(self, path: str, flags: int) -> int:
        with self._mutex:
            node = self._find(path)
            if flags & os.O_TRUNC:
                del node.data[:]
            return self._open_handle(node)

    def release(self, path: str | None, fh: int) -> int:
        with self._mutex:
            self.handles.pop(fh, None)
        return 0

    def flush(self, path: str | None, fh: int) -> int:
        return 0

    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        with self._mutex:
            node = self._node(path, fh)
            return bytes(node.data[offset : offset + size])

    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        with self._mutex:
            node = self._node(path, fh)
            end = offset + len(data)
            if len(node.data) < offset:
                node.data.extend(b"\0" * (offset - len(node.data)))
            node.data[offset:end] = data
            node.mtime = time.time_ns()
            return len(data)

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        with self._mutex:
            node = self._node(path, fh)
            if length < len(node.data):
                del node.data[length:]
            else:
                node.data.extend(b"\0" * (length - len(node.data)))
            node.mtime = time.time_ns()
        return 0

    def fsync(self, path: str | None, datasync: int, fh: int) -> int:
        with self._mutex:
            node = self._node(path, fh)
            node.durable = bytes(node.data)
        return 0

    def unlink(self, path: str) -> int:
        with self._mutex:
            parent, name = self._parent(path)
            if name not in parent.entries:
                raise mfusepy.FuseOSError(errno.ENOENT)
            del parent.entries[name]
        return 0

    def rename(self, old: str, new: str) -> int:
        with self._mutex:
            old_parent, old_name = self._parent(old)
            new_parent, new_name = self._parent(new)
            node = old_parent.entries.get(old_name)
            if node is None:
                raise mfusepy.FuseOSError(errno.ENOENT)
            target = new_parent.entries.get(new_name)
            if target is not None and target.folder and target.entries:
                raise mfusepy.FuseOSError(errno.ENOTEMPTY)
            del old_parent.entries[old_name]
            new_parent.entries[new_name] = node
        return 0

    def chmod(self, path: str | None, mode: int) -> int:
        with self._mutex:
            node = self._find(path or "/")
            node.mode = (node.mode & ~0o7777) | (mode & 0o7777)
        return 0

    def chown(self, path: str | None, uid: int, gid: int) -> int:
        return 0

    def utimens(self, path: str | None, times: tuple[int, int] | None = None) -> int:
        with self._mutex:
            node = self._find(path or "/")
            node.atime, node.mtime = times or (time.time_ns(), time.time_ns())
        return 0

    def access(self, path: str, amode: int) -> int:
        with self._mutex:
            self._find(path)
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        return {"f_bsize": 4096, "f_frsize": 4096, "f_blocks": 1 << 20, "f_bfree": 1 << 19,
                "f_bavail": 1 << 19, "f_files": 1 << 20, "f_ffree": 1 << 19, "f_namemax": 255}


def _unmount(mountpoint: str) -> None:
    for command in (["fusermount3", "-u", mountpoint], ["umount", mountpoint]):
        try:
            if subprocess.run(command, capture_output=True).returncode == 0:
                return
        except FileNotFoundError:
            continue


def _announce_when_mounted(mountpoint: str, word: str) -> None:
    for _ in range(3000):
        if os.path.ismount(mountpoint):
            print(word, flush=True)
            return
        time.sleep(0.01)
    print("error: not mounted", flush=True)


def main(mountpoint: str) -> None:
    """Serve the file system at `mountpoint`, cut by cut, until told to quit."""
    fs = PowerCutFS()
    commands: list[str] = []

    def control() -> None:
        for line in sys.stdin:
            word = line.strip()
            if word in ("cut", "quit"):
                commands.append(word)
                _unmount(mountpoint)
                if word == "quit":
                    return
        commands.append("quit")  # stdin closed: the test went away
        _unmount(mountpoint)

    threading.Thread(target=control, daemon=True).start()
    while True:
        threading.Thread(target=_announce_when_mounted, args=(mountpoint, "ready"),
                         daemon=True).start()
        mfusepy.FUSE(fs, mountpoint, foreground=True, nothreads=False, fsname="powercut")
        if commands and commands[-1] == "quit":
            print("bye", flush=True)
            return
        fs.cut()


if __name__ == "__main__":
    main(sys.argv[1])
