"""A send: the issue rendered once, one personal message per recipient, handed to a transport.

Two calls, so that the CLI can show what is about to happen and ask before anything goes out:

    plan = prepare_send(issue_path, config, dry_run=False, test_addresses=())
    summary = send_issue(plan, on_result=...)

The modules, imported one way (each only from those above it):

    plan.py     IssueToSend (read and rendered once), SendPlan, SendSummary, Failure; prepare_send
                (read the quota and the ledger as the send will find it)
    quota.py    the daily quota check and the ledger preparation both the plan and the engine use
    copies.py   the dry run and test copies (--to): a plain loop that records nothing
    engine.py   the real send to the list: the ledger, worker threads, the rate limiter, retries
    run.py      send_issue: picks the engine or the plain loop
    status.py   where an issue's send stands, from the ledger (`newsletter status`)
    gates.py    what a send to the list must pass first: its web page, the account's reputation
"""

from .plan import Failure, IssueToSend, SendPlan, SendSummary, prepare_send
from .run import send_issue
from .status import IssueStatus, issue_status

__all__ = [
    "Failure", "IssueStatus", "IssueToSend", "SendPlan", "SendSummary", "issue_status", "prepare_send", "send_issue",
]
