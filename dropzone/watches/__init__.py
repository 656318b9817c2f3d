"""Watches: what turns a source's observations into ledger entries, one module per kind.

- :mod:`dropzone.watches.bucket`: :class:`BucketWatch`, one poll of a bucket prefix merged into
  the ledger page by page;
- :mod:`dropzone.watches.folder`: :class:`FolderWatch`, a watched folder's files (uploaded,
  synced or mounted) recorded as the objects they stand for;
- :mod:`dropzone.watches.first_start`: whether a watch's first start in this ledger is really
  its first, which decides what becomes the baseline.

A watch knows its source and the ledger; it never calls Ark: the submitter takes it from there.
"""
