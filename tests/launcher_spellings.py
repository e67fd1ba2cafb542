"""Respellings of commands the default policy asks about: through launchers that run their
arguments, git's own programs and settings, quoting, and interpreters given inline code.
tests/test_command_tiers.py checks every one needs a human."""

from __future__ import annotations

# fmt: off
# commands the default policy asks about: a push, a commit, a publish, a deploy, a
# delete outside the workspace
TIER_BASES = ["git push", "git push origin main", "git commit -m wip", "npm publish",
              "kubectl apply -f k8s.yaml", "rm -rf /"]
# programs that run the words after them as a command: every one must be followed
LAUNCHER_PREFIXES = [
    "taskset 1 ", "taskset 0x3 ", "taskset -c 0 ", "taskset -c 0-1 ", "taskset -a -c 0 ",
    "taskset --cpu-list 0 ", "flock .lk ", "flock -x .lk ", "flock -w 5 .lk ",
    "flock --timeout=5 .lk ", "flock -n /tmp/lk ", "chrt 1 ", "chrt -r 1 ", "chrt -f 10 ",
    "chrt --rr 1 ", "chrt -o 0 ", "chrt -b -R 0 ", "builtin ", "builtin command ",
    "builtin exec ", "xargs -a list.txt ", "xargs --arg-file=list.txt ",
    "xargs -a list.txt -r ", "xargs -I{} ", "xargs -I {} ", "xargs -0 ", "xargs -r -n1 ",
    "xargs -P 4 ", "nice -5 ", "nice --adjustment=5 ", "ionice -c 3 ", "ionice -c3 -n7 ",
    "setsid -f ", "setsid -w ", "stdbuf -oL -eL ", "unbuffer ", "unbuffer -p ", "chronic ",
    "chronic -e ", "busybox ", "busybox env ", "busybox nice ", "sudo -E ", "sudo -n ",
    "sudo -H -u root ", "sudo -- ", "sudo -i ", "doas ", "doas -n ", "doas -u root ",
    "firejail ", "firejail --noprofile ", "firejail --quiet --net=none ", "systemd-run ",
    "systemd-run --user --scope ", "systemd-run -p CPUQuota=10% --wait ",
    "systemd-run --pty -- ", "nsenter -t 1 -m ", "nsenter --target=1 --mount ",
    "unshare -r ", "unshare -n ", "unshare --map-root-user --net ", "unshare -Urn ",
    "chroot / ", "chroot --userspec=1:1 / ", "strace ", "strace -f ",
    "strace -o trace.log -f ", "strace -e trace=execve ", "ltrace ", "ltrace -f ",
    "gdb -batch -ex run --args ", "gdb --args ", "time -p ", "time -v ", "caffeinate ",
    "caffeinate -i ", "proxychains ", "proxychains4 -q ", "proxychains -f p.conf ",
    "torsocks ", "torify ", "runuser -u root -- ", "runuser -u root ",
    "setpriv --reuid=0 ", "setpriv --no-new-privs ", "setpriv --inh-caps=-all ",
    "prlimit --nofile=1024 ", "prlimit --cpu=10:20 ", "exec -a name ", "exec -c ",
    "command -p ", "env -C /tmp ", "env --chdir=. ", "timeout --preserve-status 5 ",
    "timeout -k 1 5 ", "timeout 5s ", "watch ", "watch -n 1 ", "watch -n1 -x ", "watch -g ",
    "nohup nice ", "numactl --cpunodebind=0 ", "cpulimit -l 50 -- ", "fakeroot ",
    "faketime 2020-01-01 ", "catchsegv ", "valgrind ", "valgrind --tool=memcheck ",
    "dbus-run-session -- ", "xvfb-run ", "xvfb-run -a ", "cgexec -g cpu:grp ",
    "ip netns exec ns ", "chpst -u user ", "setuidgid user ", "envdir ./env ",
    "softlimit -m 1000 ", "dumb-init ", "tini -- ", "uv run ", "poetry run ", "pipenv run ",
    "pdm run ", "hatch run ", "conda run -n base ", "bundle exec ", "direnv exec . ",
    "mise exec -- ", "nix develop -c ", "opam exec -- ", "npm exec -- ", "pnpm exec ",
    "npx ", "sem ", "parallel -j1 ", "ssh-agent ", "pkexec ", "sg wheel ",
    # short options bundled, values attached
    "xargs -ra list.txt ", "xargs -0a list.txt ", "nice -n5 ", "timeout -sKILL 5 ",
    "sudo -Eu root ", "ionice -tc3 ", "chrt -v -r 1 ", "flock -xw5 .lk ", "env -iu HOME ",
]
# programs that run a string as a shell command line ({c} is the command)
STRING_LAUNCHERS = [
    "su -c '{c}'", "su root -c '{c}'", "su - root -c '{c}'", "su -s /bin/sh -c '{c}'",
    "runuser -l root -c '{c}'", "script -qc '{c}'", "script -c '{c}' /dev/null",
    "script -q -c '{c}' log.txt", "script --command '{c}' /dev/null", "script -qec '{c}'",
    "flock .lk -c '{c}'", "flock -x .lk --command '{c}'", "watch '{c}'", "watch -n 1 '{c}'",
    "parallel ::: '{c}'", "parallel -j1 ::: '{c}' true", "parallel '{c}' ::: 1",
    "nix-shell --run '{c}'", "npx -c '{c}'", "npm exec -c '{c}'", "sg wheel -c '{c}'",
    "env -S '{c}'", "env --split-string='{c}'", "busybox sh -c '{c}'", "fish -c '{c}'",
    "tcsh -c '{c}'", "csh -c '{c}'", "pwsh -c '{c}'", "pwsh -Command '{c}'",
    "xonsh -c '{c}'", "elvish -c '{c}'", "nu -c '{c}'", "bash -c '{c}' _",
    "bash --norc -c '{c}'", "bash -e -c '{c}'", "bash -xc '{c}'", "bash -o pipefail -c '{c}'",
    "sh -ec '{c}'", "ksh -c '{c}'", "busybox ash -c '{c}'", "xargs -I{{}} sh -c '{c}'",
    "setsid sh -c '{c}'", "time sh -c '{c}'", "builtin eval '{c}'", "sudo -s '{c}'",
    "tmux new-session -d '{c}'", "screen -dm sh -c '{c}'", "expect -c 'spawn {c}'",
    "ssh -o ProxyCommand='{c}' host", "ssh -o PermitLocalCommand=yes -o LocalCommand='{c}' host",
    "rsync -e '{c} #' a host:b", "tar -I '{c} #' -cf x.tar .", "tar -xf x.tar --to-command='{c}'",
    "tar --checkpoint=1 --checkpoint-action=exec='{c}' -cf x.tar .", "zip -T -TT '{c} #' x.zip f",
    "man -P '{c} #' ls", "find . -execdir sh -c '{c}' \\;", "find . -ok {c} \\;",
    "git rebase -x '{c}' HEAD~1", "git rebase --exec='{c}' HEAD~1",
    "git submodule foreach '{c}'", "git submodule foreach --recursive {c}",
    "git bisect run {c}", "git difftool -y -x '{c} #'", "git fetch --upload-pack='{c} #' .",
    "git ls-remote --upload-pack='{c} #' .", "git clone -u '{c} #' . copy",
    "git archive --remote=. --exec='{c} #' HEAD",
    "git -c core.sshCommand='{c} #' fetch origin", "git -c core.pager='{c} #' log",
    "git -c diff.external='{c} #' diff", "git -c core.editor='{c} #' rebase -i HEAD~2",
    "git -c sequence.editor='{c} #' rebase -i HEAD~2", "git -c core.fsmonitor='{c} #' status",
    "git -c credential.helper='!{c} #' fetch", "git -c alias.x='!{c}' x",
    "GIT_SSH_COMMAND='{c} #' git fetch", "GIT_PAGER='{c} #' git log",
    "GIT_EXTERNAL_DIFF='{c} #' git diff", "GIT_EDITOR='{c} #' git commit --amend",
    "PAGER='{c} #' git log", "vim -c '!{c}' -c q", "vim +'!{c}' +q", "vim -es -c '!{c}'",
    "nvim --headless -c '!{c}' -c q", "vi -c '!{c}'", "ex -c '!{c}'",
    "gdb -batch -ex '!{c}'", "gdb -batch -ex 'shell {c}'", "make --eval='x:;{c}' x",
]
# git's own programs and subcommands that push or commit
GIT_SPELLINGS = [
    "git-push", "git-push origin main", "/usr/lib/git-core/git-push",
    "/usr/libexec/git-core/git-push origin main", "./git-push", "git-commit -m wip",
    "/usr/lib/git-core/git-commit -m wip", "env git-push", "sh -c git-push",
    "git subtree push --prefix d origin main", "git subtree push -P d origin main",
    "git -C . subtree push -P d origin main", "git -c alias.x=push x",
    "git -c alias.x='!git push' x", "git -c Alias.X=push x",
    "GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=alias.x GIT_CONFIG_VALUE_0=push git x",
    "GIT_CONFIG_PARAMETERS=\"'alias.x=push'\" git x", "git config alias.x push && git x",
    "git send-pack origin main", "git http-push https://x/ main", "git svn dcommit",
    "git p4 submit", "git lfs push origin main",
]
# quoting, escaping and continuation tricks
QUOTINGS = [
    "'gi''t' pu\"sh\"", "$'git' push", "$'\\x67it' push", "$'\\147it' push", "g\\it p\\ush",
    "\"g\"it push", "git pu\\\nsh", "git \\\npush", "gi\\\nt push", "\"git\" \"push\"",
    "'git'  $'push'", "git $'\\x70ush'", "\"\"git push", "git p''ush", "{ git push; }",
]
# interpreters given inline code (or code on their input) that runs a push
INLINE = [
    "python3 -c \"import os; os.system('git push')\"",
    "python -c 'import subprocess; subprocess.run([\"git\",\"push\"])'",
    "python3 -c \"__import__('os').system('git push')\"",
    "python3 -Ic 'import os;os.system(\"git push\")'",
    "python3 -S -c 'import os;os.system(\"git push\")'",
    "python3 -u -c 'import os;os.system(\"git push\")'",
    "python3 -W ignore -c 'import os;os.system(\"git push\")'",
    "python3 -X utf8 -c 'import os;os.system(\"git push\")'",
    "python3.12 -c 'import os;os.system(\"git push\")'",
    "/usr/bin/python3 -c 'import os;os.system(\"git push\")'",
    "pypy3 -c 'import os;os.system(\"git push\")'",
    "python3 -c \"exec(bytes.fromhex('676974').decode())\"",
    "python3 -c \"getattr(__import__('o'+'s'),'sys'+'tem')('gi'+'t push')\"",
    "python3 -c \"import pty; pty.spawn(['git','push'])\"",
    "python3 -c \"eval(compile('1','x','eval'))\"",
    "python3 -c \"().__class__.__base__.__subclasses__()\"",
    "python3 -c 'import sys; sys.modules[\"os\"].system(\"git push\")'",
    "python3 -c 'from os import system as s; s(\"git push\")'",
    "python3 -c 'open(\"/etc/x\",\"w\")'",
    "python3 -c 'breakpoint()'",
    "python3 -c 'import webbrowser; webbrowser.open(\"x\")'",
    "python3 - <<EOF\nimport os\nos.system('git push')\nEOF",
    "python3 <<EOF\nimport os\nos.system('git push')\nEOF",
    "echo \"import os; os.system('git push')\" | python3",
    "echo \"import os; os.system('git push')\" | python3 -",
    "python3 <<< \"import os; os.system('git push')\"",
    "python3 < payload.py",
    "perl -e 'system(\"git push\")'", "perl -e '`git push`'", "perl -E 'exec \"git\",\"push\"'",
    "perl -MPOSIX -e 'system(\"git push\")'", "perl -ne 'system(\"git push\")' f",
    "perl -e 'qx{git push}'", "perl -pi -e 's/x/`git push`/e' f",
    "echo 'system(\"git push\")' | perl", "ruby -e 'system(\"git push\")'", "ruby -e '`git push`'",
    "node -e \"require('child_process').execSync('git push')\"",
    "node --eval \"require('child_process').execSync('git push')\"",
    "node -p \"require('child_process').execSync('git push')\"",
    "nodejs -e \"require('child_process').execSync('git push')\"",
    "deno eval \"new Deno.Command('git',{args:['push']}).outputSync()\"",
    "bun -e \"Bun.spawnSync(['git','push'])\"",
    "php -r 'system(\"git push\");'", "php -r 'passthru(\"git push\");'",
    "lua -e 'os.execute(\"git push\")'", "luajit -e 'os.execute(\"git push\")'",
    "awk 'BEGIN{system(\"git push\")}'", "gawk 'BEGIN{system(\"git push\")}'",
    "mawk 'BEGIN{system(\"git push\")}'", "awk 'BEGIN{print | \"git push\"}'",
    "awk 'BEGIN{\"git push\" | getline}'", "busybox awk 'BEGIN{system(\"git push\")}'",
    "awk -v x=1 'BEGIN{system(\"git push\")}'", "awk -F: 'BEGIN{system(\"git push\")}' f",
    "gawk 'BEGIN{f=\"sys\" \"tem\"; @f(\"git push\")}'", "awk -e 'BEGIN{system(\"git push\")}'",
    "sed -n '1e git push' f", "sed 's/.*/git push/e' f", "echo x | sed 's/x/git push/e'",
    "sed -e '1e git push' f", "sed --expression='1e git push' f",
    "sed -n -e p -e '1e git push' f", "sed '1!G;h;$e git push' f", "sed -n '/x/{e git push\n}' f",
    "sed 's|x|git push|e' f", "sed 's/x/y/;e git push' f",
    "emacs --batch --eval '(shell-command \"git push\")'",
    "Rscript -e 'system(\"git push\")'", "julia -e 'run(`git push`)'",
    "echo 'exec git push' | tclsh", "osascript -e 'do shell script \"git push\"'",
]
# fmt: on


def respellings() -> list[str]:
    """Every respelling above, each tiered confirm by the default policy."""
    out = [prefix + base for prefix in LAUNCHER_PREFIXES for base in TIER_BASES]
    plain = [b for b in TIER_BASES if " -m " not in b]
    out += [s.format(c=base) for s in STRING_LAUNCHERS for base in plain[:3]]
    out += GIT_SPELLINGS + QUOTINGS + INLINE
    return list(dict.fromkeys(out))
