"""The list's backup: continuous replication of the SQLite database to S3 with Litestream, a
lease so that one machine at a time writes it, and restore on any machine (docs/new-editor.md).

    with Replication(config, "sync") as replication:   # session.py: lease, Litestream, watch
        ...                                             # write the list
        replication.caught_up()                         # S3 has it: now say it is done
    restore(config, at=None, force=False)               # restore.py
    replica_status(config)                              # for `subscribers stats`, `doctor`
"""

from .restore import ReplicaStatus, RestoredList, replica_status, restore
from .session import Replication

__all__ = ["ReplicaStatus", "Replication", "RestoredList", "replica_status", "restore"]
