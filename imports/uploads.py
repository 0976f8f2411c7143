"""Uploads larger than the import limit are stopped while they arrive, not after."""

from django.core.files.uploadhandler import StopUpload, TemporaryFileUploadHandler

from .services import max_file_size


class LimitedUploadHandler(TemporaryFileUploadHandler):
    """Big files go to a temporary file (never memory); beyond the limit the upload
    stops and ``request.upload_too_large`` tells the view why the file is missing."""

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        self.request.upload_too_large = False
        # The body holds the form's other fields too: only a clearly larger one is cut early.
        self.announced_too_large = bool(content_length) and content_length > max_file_size() + 64 * 1024

    def new_file(self, *args, **kwargs):
        if self.announced_too_large:
            self._stop()
        return super().new_file(*args, **kwargs)

    def receive_data_chunk(self, raw_data, start):
        if start + len(raw_data) > max_file_size():
            self._stop()
        return super().receive_data_chunk(raw_data, start)

    def _stop(self):
        self.request.upload_too_large = True
        raise StopUpload(connection_reset=False)


