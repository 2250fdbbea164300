"""The archive: each issue's web page at the URL the email links to, an index page with the
subscribe form, and an Atom feed, published to a folder and (optionally) an S3 bucket.

    pages.py       the files, built from data (no I/O)
    targets.py     where they go: FolderTarget, S3Target (only what changed)
    publishing.py  `newsletter publish`
"""

from .publishing import PublishReport, publish

__all__ = ["PublishReport", "publish"]
