"""Where notices go: the targets the operator's ``notify.toml`` names.

The file lives in Trestle's configuration directory, never in a workspace: a step can
write its workspace's ``trestle.toml``, and a webhook it planted there would carry
every approval's details to whoever it named. The configuration directory is hidden
from every sandbox (:mod:`trestle.execution.sandbox`), as the approval key is::

    dashboard_url = "http://127.0.0.1:8765"   # links to the card; else the command

    [targets.team-chat]
    type = "webhook"                           # JSON with a Slack-compatible "text"
    url = "https://hooks.slack.com/services/..."
    events = ["approval", "budget"]            # default: every kind
    groups = ["release"]                       # approvals only these approver groups decide

    [targets.oncall]
    type = "email"
    host = "smtp.example.com"
    port = 587
    starttls = true
    from = "trestle@example.com"
    to = ["oncall@example.com"]
    username = "trestle"
    password_env = "TRESTLE_SMTP_PASSWORD"     # the password is read from here, never stored

    [targets.desk]
    type = "desktop"                           # notify-send, where it is installed
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator

from trestle.core.errors import ConfigError
from trestle.core.notices import NOTICE_KINDS, Notice, NoticeKind
from trestle.core.record import Record
from trestle.formats.policyfile import Where, read_toml_file
from trestle.support.urls import url_problem
from trestle.trust.signing import config_dir

NOTIFY_FILE = "notify.toml"
DESKTOP_TIMEOUT = 10.0  # seconds notify-send may take


class _Target(Record):
    events: tuple[NoticeKind, ...] = NOTICE_KINDS
    groups: tuple[str, ...] = ()  # approver groups ([policy.groups]) this target reaches

    def wants(self, notice: Notice) -> bool:
        """Whether the notice goes here: its kind is one of ``events``; and, for an
        approval that approver rules cover, when ``groups`` is given, one of the groups
        that may decide it is among them. An approval no rule covers (anyone may decide
        it) goes to every target that wants its kind."""
        if notice.kind not in self.events:
            return False
        if self.groups and notice.groups:
            return any(g in notice.groups for g in self.groups)
        return True


# the longest a delivery may be given (an hour): 1e308 overflowed the sender's clock
MOST_TIMEOUT = 3600.0


class WebhookTarget(_Target):
    """A JSON POST; its ``text`` field is what Slack's incoming webhooks show."""

    type: Literal["webhook"]
    url: Annotated[str, Field(pattern=r"^https?://")]
    timeout: Annotated[float, Field(gt=0, le=MOST_TIMEOUT)] = 10.0

    @field_validator("url")
    @classmethod
    def _an_address(cls, url: str) -> str:
        wrong = url_problem(url)
        if wrong is not None:  # the sender crashed on it, and `notify test` with it
            raise ValueError(f"not a server's address: {wrong}")
        return url


class EmailTarget(_Target):
    """A plain-text mail over SMTP (``starttls`` or ``ssl`` when the server asks)."""

    type: Literal["email"]
    host: str
    port: Annotated[int, Field(gt=0, lt=65536)] = 25
    from_: Annotated[str, Field(alias="from")]
    to: Annotated[tuple[str, ...], Field(min_length=1)]
    starttls: bool = False
    ssl: bool = False
    username: str | None = None
    password_env: str | None = None  # the environment variable holding the password
    timeout: Annotated[float, Field(gt=0, le=MOST_TIMEOUT)] = 10.0

    @field_validator("host", "from_", "to")
    @classmethod
    def _one_line(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        for text in (value,) if isinstance(value, str) else value:
            if any(c in text for c in "\r\n\0"):  # a header can hold no line break
                raise ValueError(f"{text!r} holds a line break")
        return value


class DesktopTarget(_Target):
    """``notify-send`` on this machine's desktop."""

    type: Literal["desktop"]


Target = Annotated[WebhookTarget | EmailTarget | DesktopTarget, Field(discriminator="type")]


class NotifySettings(Record):
    dashboard_url: Annotated[str | None, Field(pattern=r"^https?://")] = None
    targets: dict[str, Target] = {}


def notify_path() -> Path:
    """``notify.toml`` in Trestle's configuration directory."""
    return config_dir() / NOTIFY_FILE


def load_settings(path: Path | None = None) -> NotifySettings | None:
    """The operator's notification settings, or None when there is no file; a
    ConfigError naming the file, the line and the field of each problem otherwise
    (read and reported as ``trestle.toml`` is: :mod:`trestle.formats.policyfile`)."""
    path = path or notify_path()
    try:
        path.lstat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    text, raw = read_toml_file(path)
    try:
        return NotifySettings.model_validate(raw)
    except ValidationError as exc:
        raise Where(str(path), text).error(exc, "", NotifySettings) from None
