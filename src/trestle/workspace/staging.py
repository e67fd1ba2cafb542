"""A workspace staged into a shadow store without a git process: the index, blobs and
trees written here as git writes them.

Every snapshot staged the workspace with ``git update-index`` and wrote its tree with
``git write-tree``: two processes, 2-5 ms apiece on the 2-core benchmark machine,
two of the three a step's checkpoints ran. Both formats are git's documented ones
(gitformat-index: version 2; gitformat-loose and the tree object's), and a store
laid out as ``git init --bare`` makes it (:func:`trestle.workspace.loose.plain`) has
them written here:

- the index is git's own stat cache: an entry whose stat data still matches the file
  (times, inode, device, mode, owner, size) keeps its blob id, and only the others are
  read. An entry changed in the same tick the index was written may have changed
  again unseen ("racily clean", as git calls it): it is read again, as git does;
- a file is read from a descriptor of its directory, each directory opened beneath the
  workspace with no symlink followed: a directory a step swaps for a symlink meanwhile
  is left out, not read through (git's ``update-index`` refuses such a path too). A
  file that is not a regular file when opened is left out, one that grew past the
  store's bound after the walk saw its size is left out as too large;
- blobs and trees are loose objects (:func:`trestle.workspace.loose.write_object`);
- the index is written to ``<index>.lock`` and renamed over the old one, as git does.

git reads what is written here (a restore's ``read-tree`` and ``checkout-index``, a
diff's ``diff-index``) and writes the index itself then; an index of another version
than 2 or 3, or one that does not parse, is no cache: every file is read.

Pure but for the files it reads and writes; the caller holds the store's lock.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from trestle.workspace import loose

_HEADER = struct.Struct(">4sII")
_ENTRY = struct.Struct(">10I20sH")  # ctime s/ns, mtime s/ns, dev, ino, mode, uid, gid, size
_NAME_MASK = 0x0FFF
_EXTENDED = 0x4000
_WORD = 0xFFFFFFFF
_BILLION = 1_000_000_000
REGULAR, EXECUTABLE, SYMLINK = 0o100644, 0o100755, 0o120000
_TREE_MODE = {REGULAR: b"100644", EXECUTABLE: b"100755", SYMLINK: b"120000"}
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# nonblocking: a FIFO swapped in after the walk opens at once and is then left out
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_CHUNK = 1 << 20
_OPEN_DIRS = 32
# a file gone since the walk, or a directory on its way swapped for a symlink (which
# the open does not follow) or a file: left out, as git leaves a file gone meanwhile;
# any other error (a file the driver may not read) fails the snapshot, as git's does
_GONE = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP})
_FS = (sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())  # as os.fsencode


@dataclass(frozen=True, slots=True)
class Entry:
    """One file as the index holds it: its stat words (as git stores them: 32 bits
    each, the mode git's), its blob's id (20 bytes), its path as bytes, and its record
    in an index file (kept, so an index of thousands of files, one of them changed, is
    written again without packing every entry again)."""

    words: tuple[int, ...]
    oid: bytes
    name: bytes
    record: bytes

    @property
    def mode(self) -> int:
        return self.words[6]


def entry(words: tuple[int, ...], oid: bytes, name: bytes) -> Entry:
    """An entry of ``name`` with its record as version 2 writes it."""
    size = _ENTRY.size + len(name)
    packed = _ENTRY.pack(*words, oid, min(len(name), _NAME_MASK))
    return Entry(words, oid, name, packed + name + b"\0" * (8 - size % 8))


Index = dict[str, Entry]


@dataclass(frozen=True, slots=True)
class Staged:
    """A workspace staged: its index, its root tree's id, the files left out for their
    size (path: size) that the walk had taken, and whether the index differs from the
    one it was staged on (else it need not be written again)."""

    index: Index
    tree: str
    too_large: dict[str, int]
    changed: bool = True


def git_mode(st_mode: int) -> int | None:
    """The mode git records for a file of ``st_mode`` (None: it records no such file)."""
    if stat.S_ISLNK(st_mode):
        return SYMLINK
    if stat.S_ISREG(st_mode):
        return EXECUTABLE if st_mode & stat.S_IXUSR else REGULAR
    return None


def words(st: os.stat_result, mode: int) -> tuple[int, ...]:
    """The stat words an index entry holds for a file of stat ``st``."""
    ctime_s, ctime_ns = divmod(st.st_ctime_ns, _BILLION)
    return (
        ctime_s & _WORD,
        ctime_ns,
        *modified(st),
        st.st_dev & _WORD,
        st.st_ino & _WORD,
        mode,
        st.st_uid & _WORD,
        st.st_gid & _WORD,
        st.st_size & _WORD,
    )


def modified(st: os.stat_result) -> tuple[int, int]:
    """A file's mtime as an index entry holds it (seconds, nanoseconds)."""
    seconds, nanoseconds = divmod(st.st_mtime_ns, _BILLION)
    return seconds & _WORD, nanoseconds


def read_index(data: bytes) -> Index | None:
    """The entries of an index file of version 2 or 3, or None for any other version,
    an entry in a merge's stages, or a file that does not parse."""
    try:
        signature, version, count = _HEADER.unpack_from(data)
    except struct.error:
        return None
    if signature != b"DIRC" or version not in (2, 3):
        return None
    index: Index = {}
    pos = _HEADER.size
    try:
        for _ in range(count):
            *stats, oid, flags = _ENTRY.unpack_from(data, pos)
            if flags & 0x3000:  # a merge stage: not an index this module writes
                return None
            extended = version == 3 and flags & _EXTENDED
            start = pos + _ENTRY.size + (2 if extended else 0)
            end = data.index(b"\0", start)
            name, following = data[start:end], pos + ((end - pos + 8) & ~7)
            if extended:  # its extended flags (git's, never this module's) left out
                index[os.fsdecode(name)] = entry(tuple(stats), oid, name)
            else:
                index[os.fsdecode(name)] = Entry(tuple(stats), oid, name, data[pos:following])
            pos = following
    except (struct.error, ValueError):
        return None
    return index


def index_bytes(index: Index) -> bytes:
    """An index file (version 2) of ``index``'s entries, sorted as git sorts them."""
    named = sorted(index.values(), key=_name)
    body = _HEADER.pack(b"DIRC", 2, len(named)) + b"".join([e.record for e in named])
    return body + hashlib.sha1(body).digest()


def _name(entry: Entry) -> bytes:
    return entry.name


def write_index(path: Path, index: Index) -> os.stat_result:
    """Write ``index`` to the file ``path`` through ``<path>.lock``; the file's stat."""
    loose.replace_locked(path, index_bytes(index))
    return os.stat(path)


def stage(
    git_dir: Path,
    root: Path,
    files: dict[str, os.stat_result],
    cached: Index,
    racy_from: tuple[int, int],
    limit: int | None,
    tree: str = "",
) -> Staged:
    """Stage ``files`` (path: its ``lstat`` in the walk) of workspace ``root``.

    An entry of ``cached`` whose stat words equal the file's is kept unless it is
    racy: its mtime (seconds, nanoseconds) not before ``racy_from``, the cached
    index's own. Every other file is read (at most ``limit`` bytes, if given) and its
    blob written. When every entry is kept and none is gone, ``cached`` is the index,
    and ``tree`` (its tree's id, if known) its tree: no tree is written again.

    Raises:
        OSError: the workspace cannot be opened, or an object cannot be written.
    """
    index: Index = {}
    too_large: dict[str, int] = {}
    read_any = False
    dirs = _Directories(root)
    try:
        for path, st in files.items():
            mode = git_mode(st.st_mode)
            if mode is None:
                continue
            known = cached.get(path)
            if (
                known is not None
                and known.words == words(st, mode)
                and (known.words[2], known.words[3]) < racy_from
            ):
                index[path] = known
                continue
            read_any = True
            read = _read(dirs, path, mode, limit)
            if read is None:
                continue  # gone, or no longer a file or symlink: left out
            if isinstance(read, int):
                too_large[path] = read
                continue
            data, entry_words = read
            oid = loose.write_object(git_dir, b"blob", data)
            index[path] = entry(entry_words, bytes.fromhex(oid), path.encode(*_FS))
    finally:
        dirs.close()
    if tree and not read_any and len(index) == len(cached):
        return Staged(cached, tree, too_large, changed=False)
    return Staged(index, write_trees(git_dir, index), too_large)


def write_trees(git_dir: Path, index: Index) -> str:
    """Write the tree objects of ``index``'s files; the root tree's id."""
    folders: dict[bytes, list[tuple[bytes, bytes, bytes]]] = {b"": []}  # (sort key, mode, id)
    for e in index.values():
        parent, _, name = e.name.rpartition(b"/")
        children = folders.get(parent)
        if children is None:
            children = folders[parent] = []
        children.append((name, _TREE_MODE[e.mode], e.oid))
    for folder in list(folders):  # a directory holding only directories has a tree too
        while folder:
            folder = folder.rpartition(b"/")[0]
            folders.setdefault(folder, [])
    # a directory's tree once its children's are: the deepest first, the root last
    for folder in sorted(folders, key=lambda d: d.count(b"/") if d else -1, reverse=True):
        if not folder:
            break
        oid = bytes.fromhex(loose_tree(git_dir, folders.pop(folder)))
        parent, _, name = folder.rpartition(b"/")
        folders[parent].append((name + b"/", b"40000", oid))
    return loose_tree(git_dir, folders[b""])


def loose_tree(git_dir: Path, entries: Iterable[tuple[bytes, bytes, bytes]]) -> str:
    """Write a tree of ``entries`` (sort key: the name, a directory's with ``/``
    after it, as git orders them; mode; id); its id."""
    content = b"".join(
        mode + b" " + key.removesuffix(b"/") + b"\0" + oid for key, mode, oid in sorted(entries)
    )
    return loose.write_object(git_dir, b"tree", content)


class _Directories:
    """Descriptors of the workspace's directories, each opened from its parent's with no
    symlink followed (the workspace's own path is the user's, and followed). At most
    :data:`_OPEN_DIRS` are held, the least recently used closed first: a first snapshot
    reads every directory, more than a process may have open."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._fds: dict[str, int] = {}  # least recently used first

    def fd(self, folder: str) -> int:
        """A descriptor of the workspace-relative directory ``folder`` ("": the root).

        Opened down from the nearest directory held, one name at a time, in a loop: a
        call per level would recurse as deep as a step nests its directories, and a
        tree 1,500 deep raised ``RecursionError``.
        """
        held = folder
        below: list[str] = []  # the names from ``held`` down to ``folder``, deepest first
        while held and held not in self._fds:
            held, _, name = held.rpartition("/")
            below.append(name)
        fd = self._take(held)
        for name in reversed(below):
            held = f"{held}/{name}" if held else name
            fd = self._take(held, os.open(name, _OPEN_DIR, dir_fd=fd))
        return fd

    def _take(self, folder: str, fd: int | None = None) -> int:
        """Hold ``fd`` as ``folder``'s descriptor (None: the one held, or the root's
        opened), the most recently used; the least recently used beyond
        :data:`_OPEN_DIRS` are closed."""
        if fd is None:
            fd = self._fds.pop(folder, None)
        if fd is None:  # only the root is opened by its path
            fd = os.open(self._root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        while len(self._fds) >= _OPEN_DIRS:
            os.close(self._fds.pop(next(iter(self._fds))))
        self._fds[folder] = fd
        return fd

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def _read(
    dirs: _Directories, path: str, mode: int, limit: int | None
) -> tuple[bytes, tuple[int, ...]] | int | None:
    """The content of the file at ``path`` and its stat words; its size if it is past
    ``limit``; None if it is gone or no longer the kind the walk saw."""
    folder, _, name = path.rpartition("/")
    try:
        dir_fd = dirs.fd(folder)
        if mode == SYMLINK:
            st = os.lstat(name, dir_fd=dir_fd)
            if git_mode(st.st_mode) != SYMLINK:
                return None
            return os.readlink(os.fsencode(name), dir_fd=dir_fd), words(st, SYMLINK)
        fd = os.open(name, _OPEN_FILE, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in _GONE:  # or a directory on the way is now a symlink or a file
            return None
        raise OSError(exc.errno, exc.strerror, path) from None  # unreadable: said
    with os.fdopen(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        now = git_mode(st.st_mode)
        if now is None or now == SYMLINK:
            return None
        if limit is not None and st.st_size > limit:
            return st.st_size
        chunks = []
        size = 0
        while chunk := f.read(_CHUNK):
            chunks.append(chunk)
            size += len(chunk)
            if limit is not None and size > limit:
                return size  # it grew past the bound while read
    return b"".join(chunks), words(st, now)
