"""The dry run's transport: keeps what would have been sent, opens no network connection.

It writes the first few recipients' messages as `.eml` files (open them in a mail client, or
parse them back), and the first message of each further edition, and a CSV manifest of every
recipient with their edition and the size of their message, streamed row by row so a list of any
length costs the same memory.
"""

from __future__ import annotations

import csv
from pathlib import Path

from .base import OutgoingMessage, SendQuota, SendResult

MANIFEST_NAME = "manifest.csv"


class OutboxTransport:
    """One instance per run: it owns the run's manifest file (so a dry run uses one worker)."""

    name = "outbox"

    def __init__(self, folder: Path, *, samples: int = 3):
        self.folder = Path(folder)
        self.samples = samples
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in self.folder.glob("*.eml"):  # a sample from an earlier run would mislead
            stale.unlink()
        self.manifest_path = self.folder / MANIFEST_NAME
        self.sample_paths: list[Path] = []
        self._sampled_editions: set[str] = set()
        self.count = 0
        self._manifest_file = self.manifest_path.open("w", newline="", encoding="utf-8")
        self._manifest = csv.writer(self._manifest_file)
        self._manifest.writerow(["number", "recipient", "issue_id", "edition", "bytes", "sample"])

    def send(self, message: OutgoingMessage) -> SendResult:
        self.count += 1
        sample = ""
        if len(self.sample_paths) < self.samples or message.edition not in self._sampled_editions:
            path = self.folder / f"{self.count:04d}-{message.recipient}.eml"
            path.write_bytes(message.raw)
            self.sample_paths.append(path)
            self._sampled_editions.add(message.edition)
            sample = path.name
        self._manifest.writerow([self.count, message.recipient, message.issue_id, message.edition, len(message.raw),
                                 sample])
        return SendResult(message_id=None)

    def quota(self) -> SendQuota:
        return SendQuota(max_send_rate=float("inf"), max_24h_send=-1, sent_last_24h=0, source="outbox")

    def close(self) -> None:
        self._manifest_file.close()
