"""A plan's ``write:`` step writes in the workspace only, whatever its commands planted
there, as root and as a user.

The write is the driver's own, outside the sandbox. A command before it plants a link
where the write lands: at the temporary file's name the write used
(``.NAME.trestle-tmp``), or on the way to the file. Neither may carry the write (the
plan's text) out of the workspace, into a file of the driver's account.
"""

from __future__ import annotations

import pytest

from test_boundary import Target, UserCli, driver  # noqa: F401 (a fixture)

# what a command plants, then the path the write step names
PLANTS = {
    "a link at the temporary name": ("ln -s {home}/.profile .out.txt.trestle-tmp", "out.txt"),
    "a link on the way": ("ln -s {home} cfg", "cfg/.profile"),
}


@pytest.mark.parametrize("plant", PLANTS)
def test_a_write_step_never_writes_through_a_link_a_command_planted(
    driver: tuple[UserCli, Target],  # noqa: F811
    plant: str,
) -> None:
    cli, target = driver
    home = target.host / "home"
    command, path = PLANTS[plant]
    cli.write(
        "plan.yaml",
        f"""\
        steps:
          - id: plant
            run: "{command.format(home=home)}"
          - id: note
            needs: [plant]
            write: {{path: {path}, content: "echo pwned"}}
        """,
    )
    result = cli("run", "plan.yaml")
    assert not (home / ".profile").exists(), result.stdout + result.stderr
    if plant == "a link at the temporary name":  # the write lands in the workspace
        assert result.returncode == 0, result.stdout + result.stderr
        assert (cli.dir / "out.txt").read_text() == "echo pwned"
        assert not (cli.dir / "out.txt").is_symlink()
    else:
        assert result.returncode != 0
        assert "leads outside the workspace" in result.stdout + result.stderr
