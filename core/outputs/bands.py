"""Band names beside each GeoTIFF, where GDAL (and so rasterio and QGIS) reads them as band
descriptions: a PAM sidecar, `NAME.tif.aux.xml`.

Earth Engine's GeoTIFFs carry no band names, so `SR_B4 SR_B3 SR_B2 NDVI` become "Band 1..4".
The names go into the sidecar rather than the file itself so that the GeoTIFF stays
byte-identical to what EE wrote: its MD5 can always be checked against Drive's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from xml.etree import ElementTree as ET


def sidecar(tif: Path) -> Path:
    return tif.with_name(tif.name + ".aux.xml")


def write_band_names(tif: Path, names: Sequence[str]) -> Path:
    """Write (atomically) the PAM sidecar naming the bands of `tif`, 1-based as GDAL counts."""
    root = ET.Element("PAMDataset")
    for n, name in enumerate(names, start=1):
        band = ET.SubElement(root, "PAMRasterBand", band=str(n))
        ET.SubElement(band, "Description").text = name
    ET.indent(root)
    path = sidecar(tif)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=False)
    os.replace(tmp, path)
    return path


def read_band_names(tif: Path) -> list[str]:
    """The band names a sidecar gives, in band order ([] without one)."""
    path = sidecar(tif)
    if not path.exists():
        return []
    bands = ET.parse(path).getroot().findall("PAMRasterBand")
    ordered = sorted(bands, key=lambda b: int(b.get("band", "0")))
    return [b.findtext("Description") or "" for b in ordered]
