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
    r"|web\.browser|alias\..+"
)
# configuration that brings in more configuration or allows transports that run commands
_UNREAD_KEYS = re.compile(r"include\.path|includeif\..+|protocol\..*allow")

# environment variables whose value is a command git (or a pager) runs
ENV_COMMANDS = frozenset({
    "GIT_SSH_COMMAND", "GIT_SSH", "GIT_PAGER", "PAGER", "GIT_EDITOR", "EDITOR", "VISUAL",
    "GIT_SEQUENCE_EDITOR", "GIT_EXTERNAL_DIFF", "GIT_ASKPASS", "SSH_ASKPASS",
    "GIT_PROXY_COMMAND", "MANPAGER", "BROWSER",
})  # fmt: skip
# environment variables that configure git in ways the command line does not show
_ENV_UNREAD = re.compile(
    r"GIT_CONFIG(_COUNT|_PARAMETERS|_GLOBAL|_SYSTEM|_KEY_\d+|_VALUE_\d+)?|GIT_EXEC_PATH"
    r"|GIT_TEMPLATE_DIR"
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
    if _COMMAND_KEYS.fullmatch(key):
        if key.startswith("alias.") and not value.startswith("!"):
            return "unknown", f"git runs an alias defined on its command line ({setting})"
        return "run", value.removeprefix("!")
    return "", None


def environment_command(name: str) -> str | None:
    """Why the variable ``name`` makes a git command unreadable, or None."""
    if _ENV_UNREAD.fullmatch(name):
        return f"git takes configuration from the variable {name}"
    return None
