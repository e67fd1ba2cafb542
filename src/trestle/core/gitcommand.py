"""What a git command line runs besides git: its subcommands, its own programs
(``/usr/lib/git-core/git-push``), and the configuration, options and environment that
name a command git runs through the shell (``-c core.sshCommand=…``, ``rebase -x …``,
``GIT_PAGER=…``).

Pure: no IO.
"""

from __future__ import annotations

import re

# git 2.39's commands (``git --list-cmds=main,nohelpers``) and common add-ons: a
# subcommand outside this list is an alias or a ``git-NAME`` program found on the path,
# and what either runs cannot be read from the command line
GIT_COMMANDS = frozenset(
    [
        "add",
        "am",
        "annotate",
        "apply",
        "archive",
        "bisect",
        "blame",
        "branch",
        "bugreport",
        "bundle",
        "cat-file",
        "check-attr",
        "check-ignore",
        "check-mailmap",
        "check-ref-format",
        "checkout",
        "checkout-index",
        "cherry",
        "cherry-pick",
        "citool",
        "clean",
        "clone",
        "column",
        "commit",
        "commit-graph",
        "commit-tree",
        "config",
        "count-objects",
        "credential",
        "credential-cache",
        "credential-store",
        "daemon",
        "describe",
        "diagnose",
        "diff",
        "diff-files",
        "diff-index",
        "diff-tree",
        "difftool",
        "fast-export",
        "fast-import",
        "fetch",
        "fetch-pack",
        "filter-branch",
        "fmt-merge-msg",
        "for-each-ref",
        "for-each-repo",
        "format-patch",
        "fsck",
        "fsck-objects",
        "gc",
        "get-tar-commit-id",
        "grep",
        "gui",
        "hash-object",
        "help",
        "hook",
        "http-backend",
        "http-fetch",
        "http-push",
        "imap-send",
        "index-pack",
        "init",
        "init-db",
        "instaweb",
        "interpret-trailers",
        "lfs",
        "log",
        "ls-files",
        "ls-remote",
        "ls-tree",
        "mailinfo",
        "mailsplit",
        "maintenance",
        "merge",
        "merge-base",
        "merge-file",
        "merge-index",
        "merge-octopus",
        "merge-one-file",
        "merge-ours",
        "merge-recursive",
        "merge-recursive-ours",
        "merge-recursive-theirs",
        "merge-resolve",
        "merge-subtree",
        "merge-tree",
        "mergetool",
        "mktag",
        "mktree",
        "multi-pack-index",
        "mv",
        "name-rev",
        "notes",
        "p4",
        "pack-objects",
        "pack-redundant",
        "pack-refs",
        "patch-id",
        "pickaxe",
        "prune",
        "prune-packed",
        "pull",
        "push",
        "quiltimport",
        "range-diff",
        "read-tree",
        "rebase",
        "receive-pack",
        "reflog",
        "remote",
        "repack",
        "replace",
        "request-pull",
        "rerere",
        "reset",
        "restore",
        "rev-list",
        "rev-parse",
        "revert",
        "rm",
        "send-email",
        "send-pack",
        "shortlog",
        "show",
        "show-branch",
        "show-index",
        "show-ref",
        "sparse-checkout",
        "stage",
        "stash",
        "status",
        "stripspace",
        "submodule",
        "subtree",
        "svn",
        "switch",
        "symbolic-ref",
        "tag",
        "unpack-file",
        "unpack-objects",
        "update-index",
        "update-ref",
        "update-server-info",
        "upload-archive",
        "upload-pack",
        "var",
        "verify-commit",
        "verify-pack",
        "verify-tag",
        "version",
        "whatchanged",
        "worktree",
        "write-tree",
    ]
)

# configuration whose value is a command git runs through the shell
_COMMAND_KEYS = re.compile(
    r"core\.(sshcommand|pager|editor|fsmonitor|askpass|gitproxy|alternaterefscommand)"
    r"|sequence\.editor|diff\.external|credential\.(.+\.)?helper|gpg\.(.+\.)?program"
    r"|pager\..+|diff\..+\.(command|textconv)|merge\..+\.driver|filter\..+\.(clean|smudge"
    r"|process)|remote\..+\.(receivepack|uploadpack|proxy)|uploadpack\.packobjectshook"
    r"|(merge|diff)tool\..+\.cmd|sendemail\..*(cmd|command)|browser\..+\.cmd"
    r"|web\.browser|alias\..+|man\..+\.(cmd|path)"
)
# configuration that brings in more configuration or allows transports that run commands
# (a directory of hooks, a remote helper program found by name)
_UNREAD_KEYS = re.compile(
    r"include\.path|includeif\..+|protocol\..*allow|core\.hookspath|remote\..+\.vcs"
)

# environment variables whose value is a command git (or a pager) runs
ENV_COMMANDS = frozenset({
    "GIT_SSH_COMMAND", "GIT_SSH", "GIT_PAGER", "PAGER", "GIT_EDITOR", "EDITOR", "VISUAL",
    "GIT_SEQUENCE_EDITOR", "GIT_EXTERNAL_DIFF", "GIT_ASKPASS", "SSH_ASKPASS",
    "GIT_PROXY_COMMAND", "MANPAGER", "BROWSER",
})  # fmt: skip
# configuration that changes what a command does unseen: ``git clean`` deletes without
# ``-f``, ``git gc`` expires every reflog and prunes what they kept
_CHANGING_KEYS = re.compile(r"clean\.requireforce|gc\..+|core\.worktree")
# environment variables that configure git in ways the command line does not show (its
# global configuration is read from $HOME and $XDG_CONFIG_HOME: a step can make one)
_ENV_UNREAD = re.compile(
    r"GIT_CONFIG(_COUNT|_PARAMETERS|_GLOBAL|_SYSTEM|_KEY_\d+|_VALUE_\d+)?|GIT_EXEC_PATH"
    r"|GIT_TEMPLATE_DIR|HOME|XDG_CONFIG_HOME|GIT_ALLOW_PROTOCOL|GIT_WORK_TREE"
)

# subcommand options whose value is a command git runs
SUBCOMMAND_COMMANDS: dict[str, frozenset[str]] = {
    "rebase": frozenset({"-x", "--exec"}),
    "difftool": frozenset({"-x", "--extcmd"}),
    "fetch": frozenset({"--upload-pack"}),
    "pull": frozenset({"--upload-pack"}),
    "clone": frozenset({"-u", "--upload-pack"}),
    "ls-remote": frozenset({"--upload-pack"}),
    "fetch-pack": frozenset({"--upload-pack", "--exec"}),
    "archive": frozenset({"--exec"}),
    "push": frozenset({"--receive-pack", "--exec"}),
    "send-pack": frozenset({"--receive-pack", "--exec"}),
    "grep": frozenset({"-O", "--open-files-in-pager"}),
}


# the long options the default ``confirm_commands`` name: git takes any unambiguous start
# of one (``--ha`` for ``--hard``), so the text they are matched against writes such a
# start out (the options whose value is a command are read so by the follower itself)
LONG_OPTIONS: dict[str, tuple[str, ...]] = {
    "reset": ("--hard", "--merge", "--keep"),
    "clean": ("--force", "--interactive"),
    "branch": ("--delete", "--force"),
    "gc": ("--prune",),
}


def spelled_out(sub: str, word: str) -> str:
    """``word`` of git subcommand ``sub`` with a start of one of its
    :data:`LONG_OPTIONS` written out (``--ha`` → ``--hard``, ``--pru=now`` →
    ``--prune=now``); any other word as it is."""
    option, eq, value = word.partition("=")
    if len(option) <= 2 or not option.startswith("--"):
        return word
    for known in LONG_OPTIONS.get(sub, ()):
        if known.startswith(option):
            return f"{known}{eq}{value}"
    return word


def deletes_by_force(sub: str, words: list[str]) -> bool:
    """Whether ``git branch`` is given both a delete and a force flag, apart (``-d -f``,
    ``--delete --force``): what ``-D`` does."""
    if sub != "branch":
        return False
    shorts = "".join(w[1:] for w in words if w.startswith("-") and not w.startswith("--"))
    longs = {spelled_out(sub, w) for w in words if w.startswith("--")}
    deletes = "d" in shorts or "--delete" in longs
    return deletes and ("f" in shorts or "--force" in longs)


# subcommands that write the work tree: at the paths they are given, or all of it
_PATH_WRITERS = frozenset({"rm", "mv", "restore", "checkout", "merge-file"})
_TREE_WRITERS = frozenset(
    {"apply", "am", "merge", "pull", "rebase", "cherry-pick", "revert", "stash", "switch"}
    | {"clean", "read-tree", "checkout-index", "reset", "sparse-checkout"}
)


def tree_writes(sub: str, words: list[str]) -> list[str]:
    """The workspace paths ``git SUB WORDS`` may write (``"."``: any file), for the
    policy's rules on paths: ``git checkout -- deploy``, ``git restore deploy``, ``git
    rm``, ``git mv``; ``git apply``, ``merge``, ``stash pop``, ``clean``… the tree."""
    named = [w for w in words if not w.startswith("-")]
    branches = any(w in ("-b", "-B", "-c", "-C") for w in words)
    if sub in ("checkout", "switch") and branches and len(named) <= 1:
        return []  # a new branch where it stands: no file changes
    if sub == "worktree":
        return named[1:2] if named[:1] == ["add"] else []
    if sub == "merge-file":
        return [] if any(w in ("-p", "--stdout") for w in words) else named[:1]
    if sub in _TREE_WRITERS:
        if sub == "stash" and words[:1] in (["list"], ["show"]):
            return []
        if sub == "clean" and any(w in ("-n", "--dry-run") for w in words):
            return []
        if sub == "reset" and not any(w.startswith(("--hard", "--merge", "--keep")) for w in words):
            return []  # the index and HEAD only
        return ["."]
    if sub not in _PATH_WRITERS:
        return []
    if "--" in words:
        return words[words.index("--") + 1 :] or ["."]
    # a checkout's first word may be a branch, which rewrites the whole tree
    return [".", *named] if sub == "checkout" or not named else named


def dashed(name: str) -> str | None:
    """``git-push`` (git's own program, by any path) is ``git push``: the subcommand."""
    if name.startswith("git-") and name[4:] in GIT_COMMANDS:
        return name[4:]
    return None


def config_command(setting: str) -> tuple[str, str | None]:
    """For a ``-c key=value`` setting: ('run', command) when git runs ``value`` through
    the shell, ('unknown', why) when what it brings in cannot be read, else ('', None)."""
    key, _, value = setting.partition("=")
    key = key.lower()
    if _UNREAD_KEYS.fullmatch(key):
        return "unknown", f"git takes configuration it cannot read from {setting!r}"
    if _CHANGING_KEYS.fullmatch(key):
        return "unknown", f"git changes what a command does under {setting!r}"
    if _COMMAND_KEYS.fullmatch(key):
        if key.startswith("alias.") and not value.startswith("!"):
            return "unknown", f"git runs an alias defined on its command line ({setting})"
        return "run", value.removeprefix("!")
    return "", None


def config_key_command(key: str) -> str | None:
    """Why ``git config KEY …`` (which writes configuration a later git command obeys)
    needs a human, or None: a key whose value git runs, brings in more configuration,
    or changes what a command does unseen."""
    kind, _ = config_command(f"{key}=x")
    if kind:
        return f"git config sets {key!r}, which a later git command obeys unseen"
    return None


def environment_command(name: str) -> str | None:
    """Why the variable ``name`` makes a git command unreadable, or None."""
    if _ENV_UNREAD.fullmatch(name):
        return f"git takes configuration from the variable {name}"
    return None
