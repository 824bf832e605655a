"""Which Drive files count as an export's own (core/engine/matching.py), case by case."""

from __future__ import annotations

from core.backends.drive import DriveFile
from core.engine.matching import by_prefix, naming_for, pick

TIF = naming_for("image", "GeoTIFF")
T0 = 1_700_000_000.0  # when EE accepted the export


def f(title: str, created: float | None = T0 + 60, folder: str = "F") -> DriveFile:
    return DriveFile(f"id-{title}-{folder}-{created}", title, 10, "md5", (folder,), created)


def titles(files: list[DriveFile]) -> list[str]:
    return sorted(x.title for x in files)


def test_only_the_formats_own_names_and_shards_carry_the_prefix() -> None:
    listing = [f("p.tif"), f("p.TIF"), f("p.txt"), f("p.tif.bak"), f("p-0000000000-0000000256.tif"),
               f("p-0000000000-00000.tif"), f("p-0000000000-0000000000.csv"), f("q.tif")]
    found = by_prefix(listing, TIF)
    assert titles(found["p"]) == ["p-0000000000-0000000256.tif", "p.tif"]
    assert titles(found["q"]) == ["q.tif"]
    assert set(found) == {"p", "q", "p-0000000000-00000"}
    assert naming_for("table", "CSV").prefix_of("p.csv") == "p"
    assert naming_for("table", "CSV").prefix_of("p-0000000000-0000000000.csv") == \
        "p-0000000000-0000000000"  # tables are never sharded


def test_stale_files_and_other_folders_are_not_the_exports() -> None:
    stale, elsewhere, undated, mine = (f("p.tif", T0 - 1), f("p.tif", folder="G"),
                                       f("p.tif", None), f("p.tif"))
    found = pick([stale, elsewhere, undated, mine], {"F"}, T0)
    assert found.files == [mine] and not found.clashes
    assert set(found.others) == {stale, elsewhere, undated}
    assert "left alone" in found.report("eebatch")


def test_two_candidates_of_one_name_are_a_clash_never_a_guess() -> None:
    a, b = f("p.tif"), f("p.tif", T0 + 5)
    found = pick([a, b], {"F"}, T0)
    assert found.files == [] and found.clashes == {"p.tif": [a, b]}
    assert "name clash" in found.report("eebatch") and "2 files named p.tif" in found.report("x")


def test_a_single_file_beside_shards_is_a_clash() -> None:
    """EE writes one file or shards, never both: one of them is someone else's."""
    shards = [f("p-0000000000-0000000000.tif"), f("p-0000000000-0000000256.tif")]
    found = pick([*shards, f("p.tif")], {"F"}, T0)
    assert found.files == [] and set(found.clashes) == {"p.tif", *(s.title for s in shards)}
    assert titles(pick(shards, {"F"}, T0).files) == titles(shards)
