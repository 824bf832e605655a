"""Adapters on the real clients: earthengine-api for Earth Engine, pydrive2 for Drive.

The same adapters talk to Google and to the emulator; only the URL and the credentials differ.
"""
