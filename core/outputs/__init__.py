"""What eebatch makes of the verified files: the manifest (and, later, mosaics and tables)."""
