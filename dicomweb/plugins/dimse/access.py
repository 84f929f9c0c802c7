"""Who may do what: the known peers table, and the rule for callers not in it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ...settings import DimsePeer, Settings
from .policy import DimsePolicy

Action = Literal["store", "query", "retrieve"]
ANONYMOUS = "anonymous"
NOT_AUTHORIZED = 0x0124  # PS3.7 C.5: Refused: Not Authorized


@dataclass(frozen=True)
class AccessRules:
    peers: dict[str, DimsePeer]
    accept_unknown: bool
    # The policy engine's view of each caller (authorization on); None: callers act as the system.
    policy: DimsePolicy | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessRules:
        return cls({p.ae_title: p for p in settings.dimse_peers}, settings.dimse_accept_unknown)

    def known(self, ae_title: str) -> bool:
        return ae_title.strip() in self.peers

    def admits(self, ae_title: str) -> bool:
        """Whether an association from ``ae_title`` is accepted at all."""
        return self.accept_unknown or self.known(ae_title)

    def allows(self, ae_title: str, action: Action) -> bool:
        peer = self.peers.get(ae_title.strip())
        if peer is None:
            return self.accept_unknown
        return bool(getattr(peer, action))

    def principal(self, ae_title: str) -> str:
        peer = self.peers.get(ae_title.strip())
        return (peer.principal or peer.ae_title) if peer is not None else ANONYMOUS

    def destination(self, ae_title: str) -> DimsePeer | None:
        """Where a C-MOVE destination or a storage commitment requester listens; only known peers."""
        return self.peers.get(ae_title.strip())
