"""`newsletter doctor`: what a send relies on, checked first; changes nothing."""

from __future__ import annotations

import json
import sys

import click

from .base import main, pass_state

_LABELS = {"ok": "ok", "warn": "warn", "fail": "FAIL"}


def _nameserver(_ctx, _param, value: str | None):
    if value is None:
        return None
    from ..doctor import resolver_for

    try:
        return resolver_for(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not IP, IP:PORT or [IPv6]:PORT") from None


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.option("--nameserver", metavar="IP[:PORT]", callback=_nameserver,
              help="Ask this DNS server (e.g. the domain's own, before new records have spread).")
@pass_state
def doctor(state, as_json: bool, nameserver) -> None:
    """Check the sender identity, DKIM, the SES account (sandbox, quota), the feedback loop's
    queue and configuration set, the archive and the unsubscribe endpoint, and the From domain's
    SPF, DKIM and DMARC records: one line each, with the fix. Changes nothing; exits 1 if any
    check fails (a DNS lookup that cannot be made is only a warning)."""
    from ..doctor import run_checks

    findings = run_checks(state.config, resolver=nameserver)
    failed = sum(finding.status == "fail" for finding in findings)
    if as_json:
        click.echo(json.dumps([finding.to_dict() for finding in findings], ensure_ascii=False, indent=2))
    else:
        for finding in findings:
            fix = f"; fix: {finding.fix}" if finding.fix and finding.status != "ok" else ""
            click.echo(f"{_LABELS[finding.status]:<5} {finding.check}: {finding.detail}{fix}")
        warned = sum(finding.status == "warn" for finding in findings)
        click.echo(f"doctor: {len(findings) - failed - warned} ok, {warned} warning(s), {failed} failed")
    if failed:
        sys.exit(1)
