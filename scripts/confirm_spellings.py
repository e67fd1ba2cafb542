"""Write tests/data/confirm_spellings.txt: spellings of commands that must need a human.

Each base command (a push, a publish, a commit, a discard, a delete outside the
workspace) is spelled through every wrapper, program path, git global option, quoting,
chaining and ``sh -c`` nesting below. Run ``python scripts/confirm_spellings.py`` after
changing the lists; tests/test_command_tiers.py reads the file.
"""

from __future__ import annotations

from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "confirm_spellings.txt"

# (program, arguments)
BASES = [
    ("git", "push"),
    ("git", "push origin main"),
    ("git", "push --force origin HEAD"),
    ("git", "commit -m release"),
    ("git", "tag v1.0"),
    ("git", "reset --hard HEAD~1"),
    ("git", "clean -fdx"),
    ("npm", "publish"),
    ("twine", "upload dist/*"),
    ("cargo", "publish"),
    ("docker", "push registry/app:1"),
    ("kubectl", "apply -f k8s.yaml"),
    ("terraform", "destroy -auto-approve"),
    ("rm", "-rf /"),
    ("rm", "-rf ~/project"),
    ("rm", "-rf ../other"),
    ("rm", '-rf "$HOME/x"'),
    ("rm", "/etc/hosts"),
]
WRAPPERS = [
    "",
    "env ",
    "env -i ",
    "env FOO=1 ",
    "env -u HOME -- ",
    "FOO=1 ",
    "FOO=1 BAR='a b' ",
    "command ",
    "exec ",
    "nice ",
    "nice -n 5 ",
    "nohup ",
    "timeout 10 ",
    "timeout -s KILL 5 ",
    "sudo ",
    "sudo -u root ",
    "time ",
    "stdbuf -o0 ",
]
PATHS = ["/usr/bin/{p}", "/usr/local/bin/{p}", "./{p}", "\\{p}", '"{p}"', "'{p}'", "{p}''"]
GIT_GLOBALS = [
    "-C .",
    "-c user.name=x",
    "--git-dir=.git",
    "--work-tree=.",
    "--no-pager",
    "-P",
    "-C sub -c core.pager=cat",
    "--git-dir .git --work-tree .",
]
CHAINS = [
    "make && {c}",
    "true; {c}",
    "false || {c}",
    "ls | {c}",
    "{c} &",
    "({c})",
    "{{ {c}; }}",
    "echo $({c})",
    "echo `{c}`",
    "cd . && {c}",
    "if true; then {c}; fi",
    "{c} 2>&1 | tee out.log",
    "echo x | xargs {c}",
    "find . -maxdepth 0 -exec {c} \\;",
]
NESTINGS = [
    "sh -c '{c}'",
    'bash -c "{c}"',
    "bash -lc '{c}'",
    "dash -c '{c}'",
    "zsh -c '{c}'",
    "/bin/sh -c '{c}'",
    "env sh -c '{c}'",
    "sh -c \"sh -c '{c}'\"",
    "eval '{c}'",
]


def spellings() -> list[str]:
    out: list[str] = []
    for program, args in BASES:
        plain = f"{program} {args}"
        out += [f"{w}{plain}" for w in WRAPPERS]
        out += [f"{p.format(p=program)} {args}" for p in PATHS]
        if program == "git":
            out += [f"git {g} {args}" for g in GIT_GLOBALS]
            sub, _, rest = args.partition(" ")
            out += [f'git "{sub}" {rest}'.strip(), f"git '{sub}' {rest}".strip()]
        out += [c.format(c=plain) for c in CHAINS]
        if "'" not in plain and '"' not in plain:
            out += [n.format(c=plain) for n in NESTINGS]
    return list(dict.fromkeys(out))


if __name__ == "__main__":
    lines = spellings()
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(lines)} spellings written to {OUT}")
