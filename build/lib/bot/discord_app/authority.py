"""Who may run the operators' commands: the application's owner or team, and BOT_ADMIN_IDS.

Models are shared by every server, so a server's administrators are not operators.
"""

from __future__ import annotations

from collections.abc import Iterable

import discord


class Operators:
    def __init__(self, admin_ids: Iterable[int] = ()) -> None:
        self._ids: set[int] = set(admin_ids)

    def learn(self, info: discord.AppInfo) -> None:
        """Add the application's team members, or its owner, as Discord reports them."""
        if info.team:
            self._ids.update(m.id for m in info.team.members)
        elif info.owner:
            self._ids.add(info.owner.id)

    def allows(self, user: discord.abc.User) -> bool:
        return user.id in self._ids
