"""Programs that run another program: how each one names the command it launches.

A launcher's own options are read getopt-style (``-qc CMD`` is ``-q -c CMD``, ``-n5`` is
``-n 5``, ``--opt=value``); an option the table does not know may or may not take a
value, so both readings are kept and each is followed. What a launcher runs is one of:

- words: the rest of its words are a program and its arguments (``nice -n 5 git push``);
- a line: a string a shell runs (``su -c 'git push'``, ``watch 'git push'``);
- unknown: it runs something it reads at run time (``su`` alone starts a shell reading
  its input), which the policy then asks a human about;
- nothing: it only looks something up (``command -v git``, ``taskset -p 42``).

Pure: no IO.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from trestle.core.shellparse import Word

_SHELL_BARE = "starts a shell that reads the commands it runs from its input"


@dataclass(frozen=True)
class Launcher:
    """How one launcher names its command.

    Attributes:
        values: options that take a value.
        flags: options that take none (anything in neither set may take one: both read).
        positional: words between the options and the command (a timeout's duration, a
            lock file, a new root).
        numeric: the positional words are there only when they start with a digit
            (``chrt``'s priority may be left out).
        strings: options whose value is a command line a shell runs.
        argv: options after which the rest of the words are the command (``--args``).
        quiet: options with which it runs no command (``command -v``, ``taskset -p``).
        joined: its command words are joined with spaces and run by a shell (``watch``).
        splits: options whose value is split into words that come before the rest
            (``env -S``).
        assignments: ``NAME=value`` words may come before the command (``env``).
        permute: its options may come after its other words, so ``strings`` are looked
            for anywhere (``su root -c …``, ``script log -c …``).
        bare: why it cannot be followed when no command is named (``su`` starts a shell
            reading its input), or None when it then runs nothing.
    """

    values: frozenset[str] = frozenset()
    flags: frozenset[str] = frozenset()
    positional: int = 0
    numeric: bool = False
    strings: frozenset[str] = frozenset()
    argv: frozenset[str] = frozenset()
    quiet: frozenset[str] = frozenset()
    joined: bool = False
    splits: frozenset[str] = frozenset()
    assignments: bool = False
    permute: bool = False
    bare: str | None = None


@dataclass(frozen=True)
class Launch:
    """One reading of what a launcher runs (see the module docstring)."""

    kind: Literal["words", "line", "unknown", "nothing"]
    words: tuple[Word, ...] = ()
    line: Word | None = None
    reason: str = ""


def _set(text: str) -> frozenset[str]:
    return frozenset(text.split())


# fmt: off
LAUNCHERS: dict[str, Launcher] = {
    "command": Launcher(flags=_set("-p"), quiet=_set("-v -V")),
    "builtin": Launcher(),
    "exec": Launcher(values=_set("-a"), flags=_set("-c -l")),
    "nice": Launcher(values=_set("-n --adjustment")),
    "nohup": Launcher(),
    "time": Launcher(values=_set("-f -o --format --output"),
                     flags=_set("-p -v -a -q --portability --verbose --append --quiet")),
    "setsid": Launcher(flags=_set("-c -f -w --ctty --fork --wait")),
    "stdbuf": Launcher(values=_set("-i -o -e --input --output --error")),
    "ionice": Launcher(values=_set("-c -n -p -P -u --class --classdata --pid --pgid --uid"),
                       flags=_set("-t --ignore")),
    "chronic": Launcher(flags=_set("-e -v")),
    "unbuffer": Launcher(flags=_set("-p")),
    "busybox": Launcher(),
    "toybox": Launcher(),
    "doas": Launcher(values=_set("-u -C"), flags=_set("-n -L -s"),
                     bare=_SHELL_BARE),
    "sudo": Launcher(
        values=_set("-u -g -h -p -C -D -r -t -U -T --user --group --host --prompt --chdir"
                    " --role --type --other-user --close-from --command-timeout"),
        flags=_set("-A -b -E -H -i -k -K -l -n -P -S -s -v -B -N --askpass --background"
                   " --preserve-env --set-home --login --reset-timestamp --non-interactive"
                   " --preserve-groups --stdin --shell"),
        quiet=_set("-l -v -k -K -V --list --validate --version"), bare=_SHELL_BARE),
    "timeout": Launcher(values=_set("-s -k --signal --kill-after"),
                        flags=_set("-v -f --preserve-status --foreground --verbose"),
                        positional=1),
    "xargs": Launcher(
        values=_set("-a -d -E -e -I -i -L -l -n -P -s --arg-file --delimiter --eof"
                    " --max-lines --max-args --max-procs --max-chars --replace"
                    " --process-slot-var"),
        flags=_set("-0 -o -p -r -t -x --null --open-tty --interactive --no-run-if-empty"
                   " --verbose --exit")),
    "env": Launcher(values=_set("-u --unset -C --chdir -P"),
                    flags=_set("-i -0 -v --ignore-environment --null --debug"),
                    splits=_set("-S --split-string"), assignments=True),
    "taskset": Launcher(values=frozenset(), flags=_set("-a -c --all-tasks --cpu-list"),
                        positional=1, quiet=_set("-p --pid")),
    "chrt": Launcher(values=_set("-T -P -D --sched-runtime --sched-period --sched-deadline"),
                     flags=_set("-a -b -d -f -i -o -r -R -v -m --all-tasks --batch --deadline"
                                " --fifo --idle --other --rr --reset-on-fork --verbose"),
                     positional=1, numeric=True, quiet=_set("-p --pid -m --max")),
    "flock": Launcher(values=_set("-w -E --timeout --wait --conflict-exit-code"),
                      flags=_set("-s -e -x -u -n -o -F --shared --exclusive --unlock"
                                 " --nonblock --nb --close --no-fork --verbose"),
                      positional=1, strings=_set("-c --command")),
    "watch": Launcher(values=_set("-n --interval -q --equexit"),
                      flags=_set("-b -c -C -d -e -g -p -r -t -w --beep --color --no-color"
                                 " --differences --errexit --chgexit --precise --no-rerun"
                                 " --no-title --no-wrap -x --exec"),
                      joined=True),  # with -x it runs the words, which read the same
    "script": Launcher(values=_set("-E -I -O -B -T -m -o --echo --log-in --log-out --log-io"
                                   " --log-timing --logging-format --output-limit"),
                       flags=_set("-a -e -f -q --append --return --flush --force --quiet"),
                       strings=_set("-c --command"), positional=1, permute=True,
                       bare=_SHELL_BARE),
    "su": Launcher(values=_set("-s -g -G -w --shell --group --supp-group"
                               " --whitelist-environment"),
                   flags=_set("- -l -m -p -f -P --login --preserve-environment --pty"),
                   strings=_set("-c -C --command --session-command"), positional=1,
                   permute=True, bare=_SHELL_BARE),
    "runuser": Launcher(values=_set("-u -g -G -s -w --user --group --supp-group --shell"
                                    " --whitelist-environment"),
                        flags=_set("- -l -m -p -f -P --login --preserve-environment --pty"),
                        strings=_set("-c --command --session-command"), permute=True,
                        bare=_SHELL_BARE),
    "sg": Launcher(strings=_set("-c"), positional=1, joined=True, bare=_SHELL_BARE),
    "setpriv": Launcher(values=_set("--reuid --regid --groups --inh-caps --ambient-caps"
                                    " --bounding-set --securebits --pdeathsig --selinux-label"
                                    " --apparmor-profile --reset-env --ruid --euid --rgid"
                                    " --egid"),
                        flags=_set("-d --dump --no-new-privs --nnp --clear-groups"
                                   " --keep-groups --init-groups --reset-env")),
    "prlimit": Launcher(values=_set("-p --pid -o --output"),
                        flags=_set("--noheadings --raw --verbose")),
    "firejail": Launcher(flags=_set("--noprofile --quiet --private --net=none"),
                         bare=_SHELL_BARE),
    # flatpak-spawn --host runs its command on the host, outside the flatpak
    "flatpak-spawn": Launcher(flags=_set("--host --clear-env --watch-bus --latest-pid"
                                         " --no-network --sandbox")),
    "proot": Launcher(values=_set("-r -b -w -q -k --rootfs --bind --mount --cwd --qemu"
                                  " --kernel-release"),
                      flags=_set("-0 -i -v -R -S --root-id --kill-on-exit"),
                      bare=_SHELL_BARE),
    "systemd-run": Launcher(values=_set("-p -E -u -M -H -G --property --setenv --unit"
                                        " --machine --host --slice --description"
                                        " --working-directory --uid --gid --nice"
                                        " --on-active --on-calendar --timer-property"),
                            flags=_set("-t -P -S -q -r -d --user --system --scope --pty"
                                       " --pipe --wait --shell --quiet --remain-after-exit"
                                       " --same-dir --collect --no-block --no-ask-password"),
                            bare=_SHELL_BARE),
    "nsenter": Launcher(values=_set("-t -S -G -w -d --target --setuid --setgid --wd --wdns"),
                        flags=_set("-a -m -u -i -n -p -U -C -T -r -F -Z --all --mount --uts"
                                   " --ipc --net --pid --user --cgroup --time --root"
                                   " --no-fork --preserve-credentials --follow-context"),
                        bare=_SHELL_BARE),
    "unshare": Launcher(values=_set("-S -G -R -w --setuid --setgid --root --wd --propagation"
                                    " --map-user --map-group --map-users --map-groups"
                                    " --kill-child"),
                        flags=_set("-m -u -i -n -p -U -C -T -f -r -c --mount --uts --ipc --net"
                                   " --pid --user --cgroup --time --fork --map-root-user"
                                   " --map-current-user --mount-proc --keep-caps"),
                        bare=_SHELL_BARE),
    "chroot": Launcher(values=_set("--userspec --groups"), flags=_set("--skip-chdir"),
                       positional=1, bare=_SHELL_BARE),
    "strace": Launcher(values=_set("-e -o -p -P -s -S -u -a -b -E -I -O -X --trace"
                                   " --output --signal --string-limit --user --env"),
                       flags=_set("-c -C -d -D -f -ff -F -h -i -k -n -q -qq -r -t -tt -ttt"
                                  " -T -v -V -w -x -xx -y -yy -z -Z")),
    "ltrace": Launcher(values=_set("-e -o -p -s -u -a -n -x -L --output --align --indent"
                                   " --library"),
                       flags=_set("-b -c -C -d -f -h -i -r -S -t -tt -ttt -T -V -w")),
    "caffeinate": Launcher(values=_set("-t -w"), flags=_set("-d -i -m -s -u")),
    "proxychains": Launcher(values=_set("-f"), flags=_set("-q")),
    "proxychains4": Launcher(values=_set("-f"), flags=_set("-q")),
    "torsocks": Launcher(values=_set("-u -p -a -P --user --pass --address --port"),
                         flags=_set("-i -d -q --isolate --shell")),
    "torify": Launcher(),
    "numactl": Launcher(values=_set("-C -N -m -i -p --physcpubind --cpunodebind --membind"
                                    " --interleave --preferred"),
                        flags=_set("-a -l -s -H --all --localalloc --show --hardware")),
    "cpulimit": Launcher(values=_set("-l -p -e -m --limit --pid --exe"),
                         flags=_set("-v -z -i -k -r --verbose --lazy --include-children")),
    "fakeroot": Launcher(values=_set("-l -s -i -b --lib --faked"), flags=_set("-u -h -v")),
    "faketime": Launcher(values=_set("-m -f -p"), positional=1),
    "catchsegv": Launcher(),
    "valgrind": Launcher(flags=_set("-q -v --quiet --verbose")),
    "dbus-run-session": Launcher(values=_set("--config-file --dbus-daemon")),
    "xvfb-run": Launcher(values=_set("-n -s -e -f -p -w --server-num --server-args"
                                     " --error-file --auth-file --xauth-protocol --wait"),
                         flags=_set("-a --auto-servernum")),
    "cgexec": Launcher(values=_set("-g"), flags=_set("--sticky")),
    "chpst": Launcher(values=_set("-u -U -b -e -/ -n -l -L -m -d -o -p -f -c -r -t"),
                      flags=_set("-v -P -0 -1 -2")),
    "setuidgid": Launcher(positional=1),
    "envuidgid": Launcher(positional=1),
    "envdir": Launcher(positional=1),
    "softlimit": Launcher(values=_set("-m -a -d -s -l -f -c -o -p -t -r")),
    "dumb-init": Launcher(values=_set("-r --rewrite"), flags=_set("-c -v --single-child")),
    "tini": Launcher(values=_set("-p -e"), flags=_set("-s -g -v -w -l")),
    "ssh-agent": Launcher(values=_set("-a -E -P -t -O"), flags=_set("-c -s -D -d -k")),
    "pkexec": Launcher(values=_set("--user"), flags=_set("--disable-internal-agent"),
                       bare=_SHELL_BARE),
    "newgrp": Launcher(bare=_SHELL_BARE),
    "screen": Launcher(values=_set("-S -c -e -h -p -s -t -T -Logfile"),
                       flags=_set("-d -m -D -R -L -a -A -q -U -O -l -ln -dm -dmS -fn -fa"),
                       quiet=_set("-ls -list -wipe -r -x -X -v"), bare=_SHELL_BARE),
    "gdb": Launcher(values=_set("-ex -iex -x -ix -eval-command --eval-command -command"
                                " --command -init-command -init-eval-command -p -pid --pid"
                                " -cd --cd -d -directory -s -symbols -e -exec -se -c -core"
                                " -tty"),
                    flags=_set("-batch --batch -q -quiet --quiet -nx --nx -n -nh"),
                    argv=_set("--args")),
    "uvx": Launcher(values=_set("--from --with -p --python")),
    "npx": Launcher(values=_set("-p --package"), flags=_set("-y --yes --no -q --quiet"),
                    strings=_set("-c --call")),
    "bunx": Launcher(),
    "sem": Launcher(values=_set("-j --jobs --id --timeout"),
                    flags=_set("--fg --bg --wait -u --ungroup")),
    "nix-shell": Launcher(values=_set("-p --packages -A --attr -I --arg --argstr"),
                          flags=_set("--pure -i"), strings=_set("--run --command"),
                          permute=True, bare=_SHELL_BARE),
    # subcommands that launch: 'uv run …' and the like
    "uv run": Launcher(values=_set("--with --python -p --directory --project --package"
                                   " --extra --group --env-file"),
                       flags=_set("--no-sync --frozen --locked --isolated --all-extras -q")),
    "uv tool": Launcher(values=_set("--from --with -p --python")),  # 'uv tool run …'
    "poetry run": Launcher(),
    "pipenv run": Launcher(),
    "pdm run": Launcher(),
    "hatch run": Launcher(),
    "rye run": Launcher(),
    "conda run": Launcher(values=_set("-n --name -p --prefix --cwd"),
                          flags=_set("--live-stream --no-capture-output -v")),
    "mamba run": Launcher(values=_set("-n --name -p --prefix --cwd")),
    "micromamba run": Launcher(values=_set("-n --name -p --prefix --cwd")),
    "bundle exec": Launcher(values=_set("--gemfile"), flags=_set("--keep-file-descriptors")),
    "direnv exec": Launcher(positional=1),
    "mise exec": Launcher(), "mise x": Launcher(), "asdf exec": Launcher(),
    "opam exec": Launcher(values=_set("--switch")),
    "npm exec": Launcher(values=_set("-p --package -w --workspace"),
                         flags=_set("-y --yes --no -q --quiet"), strings=_set("-c --call")),
    "npm x": Launcher(values=_set("-p --package"), strings=_set("-c --call")),
    "pnpm exec": Launcher(), "pnpm dlx": Launcher(), "yarn exec": Launcher(),
    "yarn dlx": Launcher(), "bun x": Launcher(), "bun run": Launcher(),
    "nix develop": Launcher(argv=_set("-c --command"), permute=True, bare=_SHELL_BARE),
    "nix shell": Launcher(argv=_set("-c --command"), permute=True, bare=_SHELL_BARE),
    "ip netns": Launcher(positional=1),  # 'ip netns exec NS …'
    "ip vrf": Launcher(positional=1),
    "git bisect": Launcher(),  # 'git bisect run …'
    "git submodule": Launcher(flags=_set("-q --quiet --recursive"),
                              joined=True),  # 'git submodule foreach …'
}
# fmt: on

# a subcommand key launches only with this word: 'ip netns exec', 'git bisect run'
LAUNCHING_SUBCOMMANDS = {"ip netns": "exec", "ip vrf": "exec", "git bisect": "run",
                         "git submodule": "foreach", "uv tool": "run"}  # fmt: skip

_MAX_READINGS = 16


# programs that run a command line given as an option's value (``rsync -e CMD``); the
# options are matched as written, ``--opt=CMD`` and ``-oCMD`` too
COMMAND_OPTIONS: dict[str, frozenset[str]] = {
    "rsync": _set("-e --rsh --rsync-path"),
    "tar": _set("-I --use-compress-program --to-command --info-script --new-volume-script -F"),
    "zip": _set("-TT --unzip-command"),
    "man": _set("-P --pager"),
    "less": _set("--lesskey-src"),
    "ssh": _set("-o"),  # -o ProxyCommand=CMD, -o LocalCommand=CMD
    "scp": _set("-o -S"),
    "sftp": _set("-o -S"),
    "git-upload-pack": frozenset(),
    "rg": _set("--pre"),  # runs the program on each file it searches
}
# ssh options (given with -o) whose value is a command it runs on this machine
SSH_COMMANDS = frozenset({"proxycommand", "localcommand", "knownhostscommand"})
# tmux subcommands that run a shell command, and screen options that send commands
_TMUX_RUNS = _set(
    "new-session new new-window neww split-window splitw respawn-pane respawnp"
    " respawn-window respawnw run-shell run if-shell if pipe-pane pipep display-popup popup"
    " send-keys send source-file source"
)


def runs_unseen(name: str, rest: list[Word]) -> str | None:
    """Why ``tmux`` or ``screen`` runs something this reader does not follow, or None."""
    values = [w.value for w in rest]
    if name == "tmux" and any(v in _TMUX_RUNS for v in values):
        return "tmux runs a command in a session it starts or talks to"
    if name == "screen" and "-X" in values:
        return "screen sends commands to a session"
    return None


def launcher_key(name: str, rest: list[Word]) -> tuple[str, list[Word]] | None:
    """The table key for ``name`` and the words after the key, or None if not a launcher.

    ``uv --quiet run …`` is keyed ``'uv run'`` (options before the subcommand are
    skipped); ``ip netns exec NS …`` is ``'ip netns'`` with its words ``NS …``.
    """
    if name in LAUNCHERS:
        return name, rest
    i = next((j for j, w in enumerate(rest) if not w.value.startswith("-")), len(rest))
    key = f"{name} {rest[i].value}" if i < len(rest) else ""
    if key not in LAUNCHERS:
        return None
    after = rest[i + 1 :]
    needed = LAUNCHING_SUBCOMMANDS.get(key)
    if needed is None:
        return key, after
    if not after or after[0].value != needed:
        return None
    return key, after[1:]


def parallel_launches(rest: list[Word]) -> list[Launch]:
    """What GNU ``parallel`` runs: its command with each argument after ``:::``, or each
    argument itself when it names no command; arguments read from files or its input
    are unknown."""
    seps = (":::", "::::", ":::+", "::::+")
    end = next((i for i, w in enumerate(rest) if w.value in seps), len(rest))
    i = 0
    while i < end and rest[i].value.startswith("-"):
        value = rest[i].value
        i += 2 if value in _PARALLEL_VALUES else 1
    command, sources = rest[i:end], rest[end:]
    if any(w.value.startswith("::::") for w in sources):
        return [Launch("unknown", reason="parallel runs arguments it reads from a file")]
    arguments = [w for w in sources if w.value not in seps]
    if not command:
        if not sources:
            return [Launch("unknown", reason="parallel runs the commands on its input")]
        return [Launch("line", line=w) for w in arguments]
    joined = " ".join(w.raw for w in command)
    dynamic = any(w.dynamic for w in command)
    lines = [f"{joined} {w.raw}" if "{" not in joined else joined for w in arguments]
    return [Launch("line", line=Word(raw=t, value=t, dynamic=dynamic))
            for t in lines or [joined]]  # fmt: skip


_PARALLEL_VALUES = _set(
    "-j --jobs -P -S --sshlogin -a --arg-file -d --delimiter -I --replace -n --max-args -N"
    " -L --max-lines -E --eof --colsep -C --joblog --results --res --tmpdir --timeout"
    " --delay --retries --workdir --wd --env --tag-string --load --memfree --basefile --bf"
    " --return --transfer-file --tf --halt --termseq --sshdelay --block --recstart --recend"
)


def launches(key: str, rest: list[Word]) -> list[Launch]:
    """Every reading of what launcher ``key`` runs with the words ``rest``."""
    spec = LAUNCHERS[key]
    readings: list[Launch] = []
    _read(spec, rest, 0, readings)
    if len(readings) > _MAX_READINGS:
        why = f"{key} has options it may or may not take values for"
        return [Launch("unknown", reason=why)]
    return list(dict.fromkeys(readings))


def _read(spec: Launcher, rest: list[Word], i: int, out: list[Launch]) -> None:
    """Read options from ``rest[i]`` on, forking on an option the table does not know."""
    if len(out) > _MAX_READINGS:
        return
    if spec.permute:
        found = _string_anywhere(spec, rest)
        if found is not None:
            out.append(found)
            return
    while i < len(rest):
        value = rest[i].value
        if value == "--":
            i += 1
            break
        if not value.startswith("-") or (value == "-" and "-" not in spec.flags):
            break
        if value in spec.quiet:
            out.append(Launch("nothing"))
            return
        if value in spec.argv:
            out.append(_words(spec, rest[i + 1 :]))
            return
        if value in spec.strings:
            out.append(_line(rest, i + 1))
            return
        if value in spec.splits:
            out.append(_split(rest[i + 1 : i + 2], rest[i + 2 :]))
            return
        key, eq, attached = value.partition("=")
        if value.startswith("--") or value in spec.flags or value in spec.values:
            if key in spec.strings and eq:
                out.append(Launch("line", line=Word(raw=attached, value=attached)))
                return
            if key in spec.splits and eq:
                out.append(_split([Word(raw=attached, value=attached)], rest[i + 1 :]))
                return
            if key in spec.quiet:
                out.append(Launch("nothing"))
                return
            if key in spec.values and not eq:
                i += 2
            elif key in spec.values or key in spec.flags or eq:
                i += 1
            else:  # a long option we do not know: with a value, and without
                _read(spec, rest, i + 2, out)
                i += 1
            continue
        if value[1:].isdigit():  # 'nice -5': an old-style number
            i += 1
            continue
        step = _short(spec, rest, i, out)
        if step is None:
            return
        i = step
    _after_options(spec, rest[i:], out)


def _short(spec: Launcher, rest: list[Word], i: int, out: list[Launch]) -> int | None:
    """Read one bundle of short options (``-qc``); the next index, or None when done."""
    value = rest[i].value
    for j, letter in enumerate(value[1:], start=2):
        option = "-" + letter
        tail = value[j:]
        if option in spec.quiet:
            out.append(Launch("nothing"))
            return None
        if option in spec.strings:
            if tail:
                out.append(Launch("line", line=Word(raw=tail, value=tail)))
            else:
                out.append(_line(rest, i + 1))
            return None
        if option in spec.argv:
            out.append(_words(spec, rest[i + 1 :]))
            return None
        if option in spec.splits:
            head = [Word(raw=tail, value=tail)] if tail else rest[i + 1 : i + 2]
            out.append(_split(head, rest[i + 1 + (not tail) :]))
            return None
        if option in spec.values:
            return i + 1 if tail else i + 2
        if option not in spec.flags:  # unknown: it takes the rest (or the next word), or not
            _read(spec, rest, i + 1 if tail else i + 2, out)
    return i + 1


def _after_options(spec: Launcher, rest: list[Word], out: list[Launch]) -> None:
    if spec.assignments:
        while rest and "=" in rest[0].value and not rest[0].value.startswith("="):
            rest = rest[1:]
    skip = 0
    while skip < spec.positional and skip < len(rest):
        if spec.numeric and not rest[skip].value[:1].isdigit():
            break
        skip += 1
    if skip < spec.positional and not spec.numeric:
        out.append(_bare(spec))
        return
    rest = rest[skip:]
    if rest and rest[0].value in spec.strings:  # 'flock FILE -c CMD'
        out.append(_line(rest, 1))
        return
    out.append(_words(spec, rest))


def _words(spec: Launcher, words: list[Word]) -> Launch:
    if not words:
        return _bare(spec)
    if spec.joined:
        raw = " ".join(w.raw for w in words)
        return Launch("line", line=Word(raw=raw, value=raw, dynamic=any(w.dynamic for w in words)))
    return Launch("words", words=tuple(words))


def _bare(spec: Launcher) -> Launch:
    return Launch("nothing") if spec.bare is None else Launch("unknown", reason=spec.bare)


def _split(head: list[Word], tail: list[Word]) -> Launch:
    """``env -S STRING ARGS``: the string's words, then the arguments (read as a line)."""
    if not head:
        return Launch("unknown", reason="a split option without its string")
    words = [head[0], *tail]
    raw = " ".join([head[0].value, *(w.raw for w in tail)])
    return Launch("line", line=Word(raw=raw, value=raw, dynamic=any(not w.literal for w in words)))


def _line(rest: list[Word], i: int) -> Launch:
    if i >= len(rest):
        return Launch("unknown", reason="a command option without its command")
    return Launch("line", line=rest[i])


def _string_anywhere(spec: Launcher, rest: list[Word]) -> Launch | None:
    """``-c CMD`` anywhere among the words (a launcher whose options may come last)."""
    for i, word in enumerate(rest):
        value = word.value
        if value == "--":
            return None
        key, eq, attached = value.partition("=")
        if key in spec.strings and value.startswith("--") and eq:
            return Launch("line", line=Word(raw=attached, value=attached))
        if value in spec.strings:
            return _line(rest, i + 1)
        if value in spec.argv:
            return _words(spec, rest[i + 1 :])
        if value.startswith("-") and not value.startswith("--") and len(value) > 2:
            for j, letter in enumerate(value[1:], start=2):
                if "-" + letter in spec.values:
                    break
                if "-" + letter in spec.strings:
                    tail = value[j:]
                    return (
                        Launch("line", line=Word(raw=tail, value=tail))
                        if tail
                        else _line(rest, i + 1)
                    )
    return None
