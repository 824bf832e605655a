"""A user's own recipe module, as the `python` recipe imports it."""

import ee


def ndvi(geometry, start, end, cloud=20):  # type: ignore[no-untyped-def]
    collection = (ee.ImageCollection("LANDSAT/LC08/C02/T1_L2").filterBounds(geometry)
                  .filter(ee.Filter.lt("CLOUD_COVER", cloud)))
    if start:
        collection = collection.filterDate(start, end)
    return collection.median().normalizedDifference(["SR_B5", "SR_B4"]).rename("NDVI")


def not_an_image(geometry, start, end, **args):  # type: ignore[no-untyped-def]
    return 42
