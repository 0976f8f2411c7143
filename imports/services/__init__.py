"""The import service: upload, configure, run (in a worker or a command), resume.

The file is parsed in Python (``imports.parsing``) and streamed into a per-import
staging table; everything else is set-based SQL in the database, which alone can
judge duplicates against every pool:

- reading phase: rows go into the staging table with their row numbers (COPY on
  PostgreSQL), in committed chunks; then the rows that repeat an earlier row's code
  are marked, with the row they repeat;
- importing phase, chunk by chunk of row numbers, in one transaction each: rows of
  unknown customers are marked invalid, rows whose code exists in any pool are marked,
  the rest are inserted as coupons (claimed, with a claim event, when the row names a
  customer), the rows not imported are copied to ``ImportRejection``, and the counters
  and the cursor move on. A worker killed anywhere leaves a job that resumes to the
  same final result.

- ``upload``: upload, preview, start, resume;
- ``runner``: the job's run (both phases), cleanup and purge;
- ``staging``: the staging table and the SQL run on it.
"""

from .runner import CHUNK, import_run, import_run_job
from .staging import REJECTIONS_KEPT
from .upload import (
    IMPORT,
    ImportRefused,
    Preview,
    earlier_import_of_same_file,
    import_preview,
    import_resume,
    import_start,
    import_upload,
    job_options,
    local_file,
    max_file_size,
)

__all__ = [
    "CHUNK", "IMPORT", "REJECTIONS_KEPT", "ImportRefused", "Preview", "earlier_import_of_same_file", "import_preview",
    "import_resume", "import_run", "import_run_job", "import_start", "import_upload", "job_options", "local_file",
    "max_file_size",
]
