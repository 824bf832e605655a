"""The worker: admission, submit, monitor, download, cleanup, retry, split, commands."""
