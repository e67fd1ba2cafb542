"""Files opened beneath the workspace, with no window between check and use.

Resolving a path and then opening it leaves a gap: a process the model started
(``run_command``) can swap a directory for a symlink to ``/`` in between, and the
open lands outside. Here every open is relative to a file descriptor of the workspace
and is itself the check:

- on Linux 5.6+, ``openat2`` with ``RESOLVE_BENEATH``: the kernel follows symlinks
  only while they stay beneath the workspace, and fails the open otherwise;
- elsewhere, each component is opened with ``O_NOFOLLOW`` from its parent's
  descriptor: a symlink anywhere in the path is refused.

What was opened is then judged by its descriptor, not its name: its real path
(``/proc/self/fd``) must not be in ``.git`` or ``.trestle`` at any depth or case, a
file read must be a regular file (a FIFO would hang a read, a device never end) with
one link (a hard link may be a name for a file outside), and a write replaces the
file through its directory's descriptor.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import secrets
import stat
import sys
from collections.abc import Collection, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path, PurePosixPath

PROTECTED = frozenset({".git", ".trestle"})  # compared in lower case, at any depth
_SYS_OPENAT2 = 437  # the same on every Linux architecture
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_BENEATH = 0x08
_READ_CHUNK = 1 << 16


class Refused(Exception):
    """The path may not be used; the message says why, in the model's terms."""


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_openat2_works: bool | None = None if sys.platform.startswith("linux") else False


def _openat2(dir_fd: int, path: str, flags: int, mode: int) -> int | None:
    """``openat2(..., RESOLVE_BENEATH)``; None where the kernel has no such call."""
    global _openat2_works
    if _openat2_works is False:
        return None
    libc = _libc()
    # openat2 is strict: a mode without O_CREAT is an error, not ignored
    mode = mode if flags & os.O_CREAT else 0
    how = _OpenHow(flags | os.O_CLOEXEC, mode, _RESOLVE_BENEATH | _RESOLVE_NO_MAGICLINKS)
    fd = int(
        libc.syscall(
            _SYS_OPENAT2,
            ctypes.c_int(dir_fd),
            ctypes.c_char_p(os.fsencode(path)),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
    )
    if fd >= 0:
        _openat2_works = True
        return fd
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EPERM) and _openat2_works is None:
        _openat2_works = False  # no openat2 here (or a seccomp filter forbids it)
        return None
    if err == errno.EXDEV:
        raise Refused("it leads outside the workspace (through a symlink or '..')")
    raise OSError(err, os.strerror(err), path)


@functools.cache
def _libc() -> ctypes.CDLL:
    # loaded once: each load makes a new class for its functions, a tenth of a read
    return ctypes.CDLL(None, use_errno=True)


@functools.cache
def _has_proc_fds() -> bool:
    return Path("/proc/self/fd").is_dir()


def _walk_open(dir_fd: int, path: str, flags: int, mode: int) -> int:
    """Component by component, no symlink followed anywhere."""
    parts = [p for p in PurePosixPath(path).parts if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise Refused("it leads outside the workspace ('..')")
    fd = os.dup(dir_fd)
    try:
        for part in parts[:-1]:
            child = _open_component(fd, part, os.O_RDONLY | os.O_DIRECTORY, 0)
            os.close(fd)
            fd = child
        if not parts:
            return os.open(".", flags | os.O_CLOEXEC, mode, dir_fd=fd)
        return _open_component(fd, parts[-1], flags, mode)
    finally:
        os.close(fd)


def _open_component(dir_fd: int, name: str, flags: int, mode: int) -> int:
    try:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP or (
            exc.errno == errno.ENOTDIR and os.path.islink(f"/proc/self/fd/{dir_fd}/{name}")
        ):
            raise Refused(f"{name!r} is a symlink, which is not followed here") from None
        raise


def open_beneath(root_fd: int, path: str, flags: int, mode: int = 0o666) -> int:
    """A descriptor for ``path`` (relative) opened beneath ``root_fd``; raises
    :class:`Refused` for a path that would leave it, OSError for the usual reasons."""
    if PurePosixPath(path).is_absolute():
        raise Refused("it is absolute; give it relative to the workspace")
    if "\0" in path:
        raise Refused("it contains a NUL character")
    fd = _openat2(root_fd, path or ".", flags, mode)
    return fd if fd is not None else _walk_open(root_fd, path or ".", flags, mode)


def open_without_links(root_fd: int, path: str, flags: int, mode: int = 0o666) -> int:
    """A descriptor for ``path`` (relative) opened beneath ``root_fd`` with no link
    followed at all, even one that stays beneath it; :class:`Refused` for a link or
    ``..`` on the way."""
    if PurePosixPath(path).is_absolute() or "\0" in path:
        raise Refused("it is absolute, or holds a NUL character")
    return _walk_open(root_fd, path or ".", flags, mode)


def is_real_dir(path: str | Path) -> bool:
    """Whether ``path`` is a directory itself: a symlink to one is not (it could lead
    anywhere a step pointed it)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def protected_part(relative: str) -> str | None:
    """The ``.git`` or ``.trestle`` component of ``relative``, at any depth or case."""
    for part in PurePosixPath(relative).parts:
        if part.lower() in PROTECTED:
            return part
    return None


def where(root: Path, fd: int) -> str:
    """Where ``fd`` really is, relative to ``root`` (``.`` for the root itself)."""
    real = os.readlink(f"/proc/self/fd/{fd}") if _has_proc_fds() else None
    if real is None:  # no /proc: the component walk followed no link, the name is true
        return "."
    return os.path.relpath(real, root)


@contextmanager
def opened(root: Path, path: str, flags: int = os.O_RDONLY, *, links: bool = True) -> Iterator[int]:
    """``path`` opened beneath ``root`` and checked: not in a protected directory.
    ``root`` is the workspace's real path (``ToolContext.root``), as every function
    here takes it: what was opened is named relative to it. With ``links`` false, no
    link is followed on the way, even one that stays beneath (:class:`Refused`)."""
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        open_it = open_beneath if links else open_without_links
        fd = open_it(root_fd, path, flags)
    finally:
        os.close(root_fd)
    try:
        inside = where(root, fd)
        part = protected_part(inside)
        if part is not None:
            raise Refused(f"it is inside {part!r}, which no tool reads or writes")
        yield fd
    finally:
        os.close(fd)


def exists_beneath(root: Path, path: str) -> bool:
    """Whether ``path`` is there beneath ``root``. A directory on the way that a link
    leads out of raises :class:`Refused` (``ln -s /root dist``: ``dist/...`` answered what
    exists where the sandbox hides it). A link out as the last part is there, and where
    it leads is not looked at: a virtualenv's ``bin/python`` is one, and whether what a
    link names outside exists tells nothing."""
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            os.close(open_beneath(root_fd, path, os.O_PATH | os.O_CLOEXEC))
            return True
        except Refused:
            parent, name = os.path.split(path)
            folder = open_beneath(root_fd, parent or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                info = os.stat(name, dir_fd=folder, follow_symlinks=False)
            finally:
                os.close(folder)
            if not stat.S_ISLNK(info.st_mode):
                raise
            return True
    except (FileNotFoundError, NotADirectoryError):
        return False
    finally:
        os.close(root_fd)


def read_regular(root: Path, path: str, limit: int, *, links: bool = True) -> bytes:
    """The bytes of a regular file beneath ``root``, at most ``limit`` of them (with
    ``links`` false, reached through no link: see :func:`opened`).

    Raises:
        Refused: not a regular file (a FIFO, device, socket or directory), a file with
            more than one name (a hard link may lead outside), or protected.
        FileNotFoundError: no such file.
    """
    with opened(root, path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY, links=links) as fd:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", path)
        if not stat.S_ISREG(info.st_mode):
            raise Refused("it is not a regular file (a FIFO, device or socket)")
        if info.st_nlink > 1:
            raise Refused(
                f"it is a hard link ({info.st_nlink} names for one file), which may be a "
                "file outside the workspace"
            )
        if info.st_size > limit:
            raise Refused(f"it is {info.st_size} bytes, more than {limit}")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, _READ_CHUNK)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)[:limit]


def write_replacing(
    root: Path, path: str, data: bytes, kept: Collection[Path] = (), *, links: bool = True
) -> bool:
    """Replace ``path`` beneath ``root`` with ``data`` atomically (readers see the old
    file or the new one), creating missing directories; keep an existing file's mode.
    Returns whether the file existed. Raises :class:`Refused` as :func:`opened` does
    (with ``links`` false, for any link on the way), and for a file in ``kept`` (real
    paths) where the directory opened really is: a link in the workspace on the way,
    planted or swapped in after the caller judged the path by name, would otherwise
    carry this unconfined write onto it."""
    parent, name = os.path.split(path.rstrip("/"))
    if not name or name in (".", ".."):
        raise Refused("it names a directory, not a file")
    if protected_part(path) is not None:
        raise Refused(f"it is inside {protected_part(path)!r}, which no tool reads or writes")
    make_dirs(root, parent)
    with opened(root, parent or ".", os.O_RDONLY | os.O_DIRECTORY, links=links) as dir_fd:
        try:
            old = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            old = None
        if old is not None and stat.S_ISDIR(old.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", path)
        # the directory opened, by its descriptor (without /proc no link was followed)
        here = Path(os.readlink(f"/proc/self/fd/{dir_fd}")) if _has_proc_fds() else root / parent
        if kept and here / name in kept:
            raise Refused(
                "it is a plan file or its python: code, which no step may change: the next "
                "run of that plan would obey what a step wrote"
            )
        fd, named = _new_file(dir_fd, f".{name[:100]}.{secrets.token_hex(4)}.trestle-tmp")
        tmp = named or ""
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                if old is not None and stat.S_ISREG(old.st_mode):
                    os.fchmod(out.fileno(), stat.S_IMODE(old.st_mode))
                if named is not None:
                    # names within one directory descriptor: a swap of the parent cannot
                    # move the rename elsewhere; a symlink named ``name`` is replaced,
                    # not followed
                    os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                else:
                    _name_written(out.fileno(), dir_fd, name)
        finally:
            if tmp:
                with suppress(FileNotFoundError):
                    os.unlink(tmp, dir_fd=dir_fd)
        return old is not None


# how often a written file is named again when another write of the same file took its
# temporary name from under it (each such write replaced the file itself: one wins)
_RENAMES = 5


def _name_written(fd: int, dir_fd: int, name: str) -> None:
    """Put the written, unnamed file ``fd`` at ``name`` in ``dir_fd``, in one step as
    readers see it: named first at ``.NAME.trestle-tmp``, then renamed over ``name``.
    The temporary name is the same for every write of ``name``: a process killed
    between the two (a driver's SIGKILL) left it in the workspace, and the next write
    of the file (its step or tool call run again on resume) takes it over; under a
    random name it stayed for ever, and a later ``git add -A`` took it along. A link
    or file a step left at that name is unlinked, never followed."""
    tmp = f".{name[:100]}.trestle-tmp"
    for _ in range(_RENAMES):
        try:
            os.link(f"/proc/self/fd/{fd}", tmp, dst_dir_fd=dir_fd)
        except FileExistsError:  # a killed writer's, a step's, or a write beside this one
            try:
                os.unlink(tmp, dir_fd=dir_fd)
            except (IsADirectoryError, PermissionError):
                raise Refused(f"a directory stands at its temporary name {tmp!r}") from None
            except FileNotFoundError:
                pass
            continue
        try:
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            return
        except FileNotFoundError:  # a write beside this one unlinked it: name it again
            continue
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
    raise Refused(f"other writes of the file kept taking its temporary name {tmp!r}")


def _new_file(dir_fd: int, tmp: str) -> tuple[int, str | None]:
    """A file to write in the directory ``dir_fd``, and its name: none where the
    kernel and the file system allow (``O_TMPFILE``), so that a process killed while
    writing (a driver's SIGKILL, an OOM kill) leaves nothing behind (see
    :func:`_name_written`); else ``tmp``, which such a process leaves."""
    flags = os.O_WRONLY | os.O_CLOEXEC
    if hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd"):
        with suppress(OSError):  # not supported here (EOPNOTSUPP, EISDIR): named
            return os.open(".", flags | os.O_TMPFILE, 0o666, dir_fd=dir_fd), None
    return os.open(tmp, flags | os.O_CREAT | os.O_EXCL, 0o666, dir_fd=dir_fd), tmp


def make_dirs(root: Path, parent: str) -> None:
    """Create the missing directories of ``parent``, each beneath the one before."""
    built = ""
    for part in PurePosixPath(parent).parts:
        if part in ("", "."):
            continue
        built = f"{built}/{part}" if built else part
        head, name = os.path.split(built)
        flags = os.O_RDONLY | os.O_DIRECTORY
        with opened(root, head or ".", flags) as dir_fd, suppress(FileExistsError):
            os.mkdir(name, dir_fd=dir_fd)


def scan(root: Path, path: str) -> list[tuple[str, bool]]:
    """The entries of directory ``path`` beneath ``root``: (name, is a directory, not
    following links), protected ones left out, read through the directory's descriptor."""
    with opened(root, path or ".", os.O_RDONLY | os.O_DIRECTORY) as fd, os.scandir(fd) as entries:
        found = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
    return sorted((n, d) for n, d in found if n.lower() not in PROTECTED)
