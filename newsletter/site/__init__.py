"""The archive: each issue's web page at the URL the email links to, an index page with the
subscribe form, and an Atom feed, published to a folder and (optionally) an S3 bucket.

    pages.py       the files, built from data (no I/O)
    targets.py     where they go: FolderTarget, S3Target (only what changed)
    publishing.py  `newsletter publish` and the check a send makes before it starts
"""

from .publishing import PublishReport, check_published, publish

__all__ = ["PublishReport", "check_published", "publish"]
