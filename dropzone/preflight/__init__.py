"""Preflight: a batch input file checked before Ark sees it, and where the file is read from.

Ark accepts a file and only finds a bad line after the job has started, so dropzone checks each
file first, streaming, in memory bounded by one line.

- :mod:`dropzone.preflight.jsonl`: the checker (pure but for the read): :func:`validate_stream`,
  :func:`validate_path`;
- :mod:`dropzone.preflight.lines`: a byte stream cut into whole lines;
- :mod:`dropzone.preflight.ids`: the custom_id index;
- :mod:`dropzone.preflight.report`: :class:`Report` and :class:`Problem`, the outcome and its
  wording;
- :mod:`dropzone.preflight.readers`: where a watch's file is read from, the bucket or the folder.
"""
