"""A user's table recipe, as the `python` recipe imports it: three features per unit."""

import ee


def features(geometry, start, end, n=3):  # type: ignore[no-untyped-def]
    return ee.FeatureCollection([
        ee.Feature(geometry, {"k": i, "label": f"f{i}", "start": start, "share": i / 4})
        for i in range(n)])
