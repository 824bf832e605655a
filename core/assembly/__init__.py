"""The assembled product: what a researcher wants of thousands of verified files. A mosaic per
period (a GDAL VRT over every tile and split part, its quicklook PNG, a Cloud-Optimized
GeoTIFF on request) for an image recipe; one merged table (CSV and Parquet) per job for a
table recipe. rasters.py and tables.py make them from files; products.py says which files
make which product, from the session store, and where each lands."""
