"""The Job pane: a form over a job file. Every change is checked by the same rules as
`eebatch new` (core.spec.parse_spec; each problem shows under its field), the plan is previewed
live (units, pixels, bytes, Drive, a map), and Start saves the file and creates the session.
The TOML is the file's own document (tomlkit) with the fields' values set in it, so keys the
form does not show, the user's comments and layout are kept.

For a newcomer: the essential fields come first and the rest sit under a collapsed "more"; an
empty field shows its default as a placeholder, what to type shows under the focused field;
Start and the plan stay in sight (a summary line on top, or the whole plan beside the fields
when the form is wide)."""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import tomlkit
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.compose import compose
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.events import DescendantFocus
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Button, Collapsible, Input, Label, Select, Static
from textual.worker import get_current_worker
from tomlkit.exceptions import TOMLKitError

from core.batches import BY, MAX_SIZE
from core.limits import BOUNDS
from core.problems import Problem
from core.recipes import RECIPES
from core.routes import BATCH, MAX_DIRECT_REQUESTS, ROUTES
from core.spec import LimitsSpec, SpecError, parse_spec

if TYPE_CHECKING:
    from core.plan import Plan

TEMPLATE = """\
[job]
name = "my-job"

[region]
bbox = [-124.5, 32.5, -114.0, 42.0]

[grid]
size = 1

[time]
start = 2023-06-01
end = 2023-09-01

[recipe]
name = "composite"

[export]
folder = "eebatch"
scale = 30

[limits]
max_tasks = 10
drive_budget = "10 GB"

[backend]
kind = "earthengine"
"""


@dataclass(frozen=True)
class Field:
    key: str  # section.key as problems name it
    label: str
    kind: str  # str, number, int, date, size, region, list, dict, bool
    default: str = ""  # what an empty field means: shown as its placeholder, like a value
    hint: str = ""  # what to type: a dim line under the field while it has focus, and a tooltip


FIELDS = (
    Field("job.name", "name", "str", hint="names the session and the files: letters, digits, "
          "- _ ."),
    Field("job.output_dir", "output dir", "str", "output/NAME",
          hint="where the downloaded files go, relative to the job file"),
    Field("region", "region", "region",
          hint="west, south, east, north in degrees — or a GeoJSON, GeoPackage or Shapefile"),
    Field("grid.size", "tile size", "number",
          hint="tile edge: degrees on EPSG:4326, metres on a projected grid CRS"),
    Field("grid.crs", "grid CRS", "str", "EPSG:4326", hint="the CRS the tiles are cut in"),
    Field("time.start", "start", "date", "none: all dates", hint="first day, YYYY-MM-DD"),
    Field("time.end", "end", "date", "none", hint="the day after the last, YYYY-MM-DD"),
    Field("time.step", "step", "str", "one period",
          hint="period length: \"16 days\", \"1 month\", \"1 year\"…"),
    Field("export.folder", "Drive folder", "str", "eebatch",
          hint="Drive folder name (found by name at any depth)"),
    Field("export.scale", "scale (m)", "number", "30", hint="metres per pixel"),
    Field("export.crs", "export CRS", "str", "EPSG:4326", hint="the CRS of the exported files"),
    Field("limits.max_tasks", "max tasks", "int", "10",
          hint=f"EE tasks running and queued at once ({BOUNDS['max_tasks'].text})"),
    Field("limits.drive_budget", "Drive budget", "size", "10 GB",
          hint="Drive space eebatch may fill with exports not yet downloaded"),
    Field("limits.direct_requests", "direct requests", "int", str(LimitsSpec.direct_requests),
          hint=f"direct and auto routes: requests to EE at once "
               f"({BOUNDS['direct_requests'].text}; EE allows {MAX_DIRECT_REQUESTS} a project, "
               "shared with your other scripts)"),
    Field("backend.project", "EE project", "str",
          hint="your Google Cloud project id (backend earthengine)"),
    Field("backend.url", "emulator URL", "str",
          hint="http://127.0.0.1:PORT of an `eebatch emulator` (backend emulator)"),
    # [batches] (core/batches.py): which keys apply depends on batches.by
    Field("batches.size", "batch size", "int",
          hint=f"by count: images in each batch (1-{MAX_SIZE:,})"),
    Field("batches.count", "batch count", "int", "from images",
          hint="by count: batches in each period (or give images)"),
    Field("batches.images", "images", "int", "none",
          hint="by count: the collection's size; count = images ÷ size"),
    Field("batches.step", "batch step", "str",
          hint="by date: a batch every \"16 days\", \"1 month\"…"),
)
BATCH_KEYS = ("batches.size", "batches.count", "batches.images", "batches.step")
NO_BATCHES = "none"  # batches.by's choice for a job without [batches]
BATCH_KEYS_OF = {"count": BATCH_KEYS[:3], "date": BATCH_KEYS[3:]}  # the keys each by takes
SAVE = Field("save", "save as", "str", hint="the job file Start writes, then runs")
SELECTS = {
    "recipe.name": Field("recipe.name", "recipe", "str", "composite"),  # hint: _recipe_hint
    "export.destination": Field("export.destination", "destination", "str", "drive",
                                "drive: downloaded, then deleted from Drive; asset or gcs"),
    "backend.kind": Field("backend.kind", "backend", "str", "emulator",
                          "earthengine (needs a project) or the built-in emulator (needs its URL)"),
    "batches.by": Field("batches.by", "batches by", "str", NO_BATCHES,
                        "none, count (so many images a batch) or date (a step)"),
    # core/routes.py
    "export.route": Field("export.route", "route", "str", BATCH,
                          "batch: export tasks, files via Drive (a few at a time)\n"
                          "direct: computed interactively, no task slot, no Drive\n"
                          "auto: direct where a unit fits, batch for the rest"),
}
FIELD = {f.key: f for f in (*FIELDS, SAVE, *SELECTS.values())}
SELECT_OPTIONS = {"recipe.name": list(RECIPES), "export.destination": ["drive", "asset", "gcs"],
                  "backend.kind": ["earthengine", "emulator"],
                  "batches.by": [NO_BATCHES, *BY], "export.route": list(ROUTES)}
# A newcomer's fields, in the order they think of them; the rest sit under "more".
# "params" stands for the recipe's required parameters (its optional ones go under "more").
ESSENTIAL = (("Where", ("region", "grid.size")),
             ("When", ("time.start", "time.end", "time.step")),
             ("What", ("recipe.name", "params")),
             ("Output", ("job.name", "export.destination", "export.folder", "export.scale",
                         "save")),
             ("Run on", ("backend.kind", "backend.project", "backend.url")))
MORE = (("Files and CRSs", ("job.output_dir", "grid.crs", "export.crs")),
        ("Recipe options", ("more-params",)),
        ("Limits and route", ("limits.max_tasks", "limits.drive_budget", "export.route",
                              "limits.direct_requests")),
        ("Batches", ("batches.by", *BATCH_KEYS)))
WIDE = 96  # a form at least this wide shows the plan beside the fields
DEBOUNCE = 0.3  # seconds after the last keystroke before the job is checked
_NUM = r"\s*(-?[\d.]+)\s*"
_BBOX = re.compile(rf"^\s*\[?{_NUM},{_NUM},{_NUM},{_NUM}\]?\s*\Z")
_WARNING = re.compile(r"^\s*(?:⚠|warning\b:?)\s*(.*)$", re.IGNORECASE)


def field_id(key: str) -> str:
    return "f-" + key.replace(".", "-").replace("_", "-")


def _inline(value: Any) -> str:
    """A value as TOML inline text (for list and table parameters)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_inline(v)}" for k, v in value.items()) + "}"
    return tomlkit.item(value).as_string()


def _same(old: Any, new: Any) -> bool:
    """The same TOML value (1 and 1.0 alike, true and 1 not): a field left as it was keeps the
    file's own text for it."""
    if isinstance(old, list) and isinstance(new, list):
        return len(old) == len(new) and all(map(_same, old, new))
    if isinstance(old, dict) and isinstance(new, dict):
        return old.keys() == new.keys() and all(_same(old[k], new[k]) for k in old)
    if isinstance(old, bool) or isinstance(new, bool):
        return type(old) is type(new) and old == new
    if isinstance(old, int | float) and isinstance(new, int | float):
        return old == new
    return type(old) is type(new) and old == new


def _plain(item: Any) -> Any:
    """A tomlkit value as Python's (tomlkit gives true and false as plain bools already)."""
    return item.unwrap() if hasattr(item, "unwrap") else item


def _item(value: Any) -> Any:
    """Tables and arrays of a value written on its key's line, as the form shows them (a
    recipe's table parameter, a list of them), not as [sections] of their own."""
    if isinstance(value, dict):
        table = tomlkit.inline_table()
        table.update({k: _item(v) for k, v in value.items()})
        return table
    if isinstance(value, list):
        array = tomlkit.array()
        array.extend(_item(v) for v in value)
        return array
    return value


def _put(table: Any, name: str, value: Any) -> None:
    """Set (None: remove) a key of a tomlkit table; an unchanged value is left as written."""
    if value is None:
        table.pop(name, None)
    elif name not in table or not _same(_plain(table[name]), value):
        table[name] = _item(value)


def _shown(value: Any, kind: str) -> str:
    if value is None:
        return ""
    if kind == "list" and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(value)
    if kind in ("list", "dict"):
        return _inline(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _parsed(text: str, kind: str) -> Any:
    """Field text -> TOML value. Text that does not parse stays a string, so the job's own
    rules report it ("expected number, got 'abc'")."""
    text = text.strip()
    try:
        if kind == "int":
            return int(text)
        if kind == "number":
            number = float(text)
            return int(number) if number.is_integer() and "." not in text else number
        if kind == "date":
            return dt.date.fromisoformat(text)
        if kind == "size":
            return int(text) if text.isdigit() else text
        if kind == "list":
            if text.startswith("["):
                return tomllib.loads(f"v = {text}")["v"]
            return [part.strip() for part in text.split(",") if part.strip()]
        if kind == "dict":
            return tomllib.loads(f"v = {text}")["v"]
        if kind == "bool":
            return {"true": True, "false": False}.get(text.lower(), text)
    except (ValueError, tomllib.TOMLDecodeError):
        return text
    return text


def _recipe_hint(name: Any) -> str:
    """The chosen recipe's one line of help (core/recipes), or the recipes there are."""
    recipe = RECIPES.get(name) if isinstance(name, str) else None
    return recipe.help if recipe is not None else f"one of {', '.join(RECIPES)}"


def _param_kind(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if list in kinds:
        return "list"
    if dict in kinds:
        return "dict"
    if bool in kinds:
        return "bool"
    if int in kinds and float not in kinds:
        return "int"
    if float in kinds:
        return "number"
    return "str"


def plan_summary(plan: Plan, lines: list[str]) -> Text:
    """The plan in a line that fits a narrow form: units and estimated size, then any warning
    lines of describe_plan (those that start with "warning" or "⚠")."""
    from core.plan_text import size_text  # planning modules load in the check thread

    def count(n: int, what: str, plural: str = "s") -> str:
        return f"{n:,} {what}{plural * (n != 1)}"

    batches = plan.batches  # per period; [] without [batches]
    if not batches:
        per = ""
    elif len(set(batches)) == 1:
        per = f" × {count(batches[0], 'batch', 'es')}"
    else:  # by date, periods of different lengths
        per = f", {count(sum(batches), 'batch', 'es')} in all"
    text = Text.assemble(("Plan  ", "bold"), (count(plan.units, "unit"), "bold"),
                         f" ({count(len(plan.tiles), 'tile')} × "
                         f"{count(len(plan.periods), 'period')}{per}) · "
                         f"~{size_text(plan.est_bytes)}")
    for line in lines:
        warning = _WARNING.match(line)
        if warning:
            text.append("\n⚠ " + warning.group(1), "yellow")
    return text


class JobForm(Vertical):
    """Posts JobForm.Start(path) once the job file is saved and valid; the App creates the
    session (so the same form works in the dashboard and in the session picker)."""

    # Narrow: Start, the status and a one-line plan summary stay on top while the fields and
    # then the full plan scroll below them. Wide (-wide): the full plan sits beside the fields.
    DEFAULT_CSS = """
    JobForm { height: 1fr; }
    JobForm #head { height: auto; padding: 0 1; }
    JobForm #head Button { margin-right: 1; }
    JobForm #status { width: 1fr; height: auto; color: $text-muted; }
    JobForm #summary { height: auto; padding: 0 1; }
    JobForm #body { height: 1fr; }
    JobForm #fields, JobForm #side { height: auto; overflow: hidden; }
    JobForm.-wide #body { layout: horizontal; overflow: hidden; }
    JobForm.-wide #fields { width: 1fr; height: 1fr; overflow-y: auto; }
    JobForm.-wide #side { width: 50; height: 1fr; overflow-y: auto; }
    JobForm.-wide #summary { display: none; }
    JobForm .params, JobForm .field, JobForm .row { height: auto; }
    JobForm .row Label { width: 16; padding: 0 1 0 0; text-align: right; color: $text-muted; }
    JobForm .row Input, JobForm .row Select { width: 1fr; }
    JobForm .hint { color: $text-muted; text-style: italic; padding-left: 16; height: auto;
        display: none; }
    /* a :focus-within rule on .field itself also makes Textual restyle its hint on focus */
    JobForm .field:focus-within { background-tint: $foreground 4%; }
    JobForm .field:focus-within .hint { display: block; }
    JobForm .problem { color: $error; padding-left: 16; height: auto; display: none; }
    JobForm .problem.-shown { display: block; }
    JobForm #general { color: $error; height: auto; display: none; padding: 0 1; }
    JobForm #general.-shown { display: block; }
    JobForm #preview { height: auto; padding: 1 1 0 1; color: $text; }
    JobForm .section { color: $accent; text-style: bold; padding: 1 0 0 1; }
    JobForm #more { padding: 0; margin-top: 1; background: transparent; border-top: none; }
    JobForm #more Contents { padding: 0; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "start", "Start", priority=True),
        Binding("escape", "close", "Close"),
    ]

    class Close(Message):
        """Esc: leave the form (the pane hides, the modal closes)."""

    class Start(Message):
        def __init__(self, path: Path) -> None:
            super().__init__()
            self.path = path

    def __init__(self, text: str, path: Path, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.base_text = text
        self.path = path
        try:
            self.doc: dict[str, Any] = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            self.doc, text = tomllib.loads(TEMPLATE), TEMPLATE
        self.source = text  # the TOML the form writes into, comments and all
        self.recipe = str(self.doc.get("recipe", {}).get("name", "composite"))
        self.problems: list[Problem] = []
        self.valid = False
        self.checked = False  # the last check (and plan preview, when valid) has finished
        self.text = ""
        self._pending: Timer | None = None
        self._labels: dict[str, str] = {}  # field id -> label, to say where problems are

    # -- building ------------------------------------------------------------------------------

    def _value(self, key: str) -> Any:
        if key == "region":
            region = self.doc.get("region", {})
            if "bbox" in region:
                return ", ".join(_shown(v, "number") for v in region["bbox"])
            return region.get("file")
        section, _, name = key.partition(".")
        return self.doc.get(section, {}).get(name)

    def _field(self, f: Field, widget: Input | Select[str], classes: str = "") -> ComposeResult:
        """A labelled field with its hint and its problem lines under it."""
        self._labels[field_id(f.key)] = f.label
        widget.tooltip = f.hint or None
        with Vertical(classes=f"field {classes}".strip()):
            with Horizontal(classes="row"):
                yield Label(f.label)
                yield widget
            if f.hint:
                yield Static(f.hint, classes="hint", markup=False)
            yield Static(classes="problem", id=field_id(f.key) + "-problem", markup=False)

    def _input(self, f: Field) -> ComposeResult:
        yield from self._field(f, Input(_shown(self._value(f.key), f.kind), placeholder=f.default,
                                        id=field_id(f.key), compact=True))

    def _select(self, f: Field) -> ComposeResult:
        options = SELECT_OPTIONS[f.key]
        section, _, name = f.key.partition(".")
        table = self.doc.get(section, {})
        current = table.get(name, f.default) if isinstance(table, dict) else f.default
        if f.key == "recipe.name":
            f = replace(f, hint=_recipe_hint(current))
        choices = options if current in options else [*options, current]
        yield from self._field(f, Select([(o, o) for o in choices], value=current,
                                         allow_blank=False, id=field_id(f.key), compact=True))

    def _param_rows(self, required: bool) -> ComposeResult:
        """The recipe's required parameters (required=True) or its optional ones."""
        info = RECIPES.get(self.recipe)
        if info is None:
            return
        given = self.doc.get("recipe", {})
        for name, param in info.params.items():
            if (name in info.required) != required:
                continue
            kind = _param_kind(param.kind)
            f = Field("recipe." + name, name, kind,
                      "" if required else _shown(param.default, kind) or "none", param.help)
            yield from self._field(f, Input(_shown(given.get(name), kind), placeholder=f.default,
                                            id=field_id(f.key), compact=True), "param")

    def _section(self, keys: tuple[str, ...]) -> ComposeResult:
        for key in keys:
            if key in ("params", "more-params"):
                with Vertical(id=key, classes="params"):
                    yield from self._param_rows(required=key == "params")
            elif key in SELECTS:
                yield from self._select(SELECTS[key])
            else:
                yield from self._input(FIELD[key])

    def compose(self) -> ComposeResult:
        with Horizontal(id="head"):
            yield Button("Start (ctrl+s)", variant="success", id="start", compact=True)
            yield Static(id="status", markup=False)
        yield Static(id="summary", markup=False)
        with VerticalScroll(id="body"):
            with VerticalScroll(id="fields"):
                yield Static(id="general", markup=False)
                for title, keys in ESSENTIAL:
                    yield Static(title, classes="section")
                    yield from self._section(keys)
                # short enough for the form's narrowest pane (about 50 columns)
                with Collapsible(title="more: output dir, CRSs, options, limits, batches",
                                 id="more"):
                    for title, keys in MORE:
                        yield Static(title, classes="section")
                        yield from self._section(keys)
            with VerticalScroll(id="side"):
                yield Static(id="preview", markup=False)

    def on_mount(self) -> None:
        # the fields take focus themselves (and scroll into view), so the containers need not
        for box in self.query("#body, #fields").results(VerticalScroll):
            box.can_focus = False
        self.query_one("#" + field_id("save"), Input).value = str(self.path)
        self.query(Input).first().focus()  # the form opens to be typed into: its first field
        self._show_batch_fields()
        self.revalidate()

    def on_resize(self) -> None:
        wide = self.size.width >= WIDE
        self.set_class(wide, "-wide")
        self.query_one("#side", VerticalScroll).can_focus = wide  # scrolls on its own only then

    def on_descendant_focus(self, event: DescendantFocus) -> None:
        """A field under a collapsed "more" that gets focus (a click on a problem, a test,
        the app) is shown rather than typed into unseen."""
        more = self.query_one("#more", Collapsible)
        if more.collapsed and more.query_one(Collapsible.Contents) in event.widget.ancestors:
            more.collapsed = False

    # -- the TOML the form stands for --------------------------------------------------------

    def build(self) -> str:
        """The job file the form stands for: its own TOML document with the fields' values
        set in it (a field left as it was keeps its text, comments stay where they were)."""
        try:
            doc = tomlkit.parse(self.source)
        except TOMLKitError:  # TOML that tomllib reads and tomlkit not
            doc = tomlkit.document()
            doc.update(self.doc)

        def table(section: str) -> Any:
            if section not in doc:
                doc[section] = tomlkit.table()
            return doc[section]

        def put(key: str, value: Any) -> None:
            section, _, name = key.partition(".")
            if value is None or value == "":
                if section in doc:
                    _put(doc[section], name, None)
            else:
                _put(table(section), name, value)

        # by first: a new [batches] reads as the README writes it
        by = self.query_one("#" + field_id("batches.by"), Select).value
        put("batches.by", by if isinstance(by, str) and by != NO_BATCHES else None)
        for f in FIELDS:
            text = self.query_one("#" + field_id(f.key), Input).value
            if f.key == "region":
                m = _BBOX.match(text)
                if m:
                    region = table("region")
                    _put(region, "file", None)
                    _put(region, "layer", None)
                    _put(region, "bbox", [_parsed(v, "number") for v in m.groups()])
                elif text.strip():
                    region = table("region")
                    _put(region, "bbox", None)
                    _put(region, "file", text.strip())
                continue
            put(f.key, _parsed(text, f.kind) if text.strip() else None)
        for key in [k for k in SELECTS if k != "batches.by"]:
            value = self.query_one("#" + field_id(key), Select).value
            if key == "export.route" and value == BATCH and self._value(key) is None:
                value = None  # the default, not written into a file that did not say it
            put(key, value if isinstance(value, str) else None)
        # greyed batch keys are left out (the file's other keys stay, and are checked)
        for key in set(BATCH_KEYS) - set(self._batch_keys()):
            put(key, None)
        info = RECIPES.get(self.recipe)
        if info is not None:
            for name, param in info.params.items():
                box = self.query("#" + field_id("recipe." + name))
                if box:
                    text = box.first(Input).value
                    put("recipe." + name,
                        _parsed(text, _param_kind(param.kind)) if text.strip() else None)
        if "time" in doc and not doc["time"]:
            del doc["time"]
        for section in [k for k, v in doc.items() if v == {}]:
            del doc[section]
        return doc.as_string()

    def _batch_keys(self) -> tuple[str, ...]:
        """The [batches] keys the chosen `by` takes (all of them for a `by` the form does not
        know, so the job's own check says what is wrong)."""
        by = self.query_one("#" + field_id("batches.by"), Select).value
        if by == NO_BATCHES:
            return ()
        return BATCH_KEYS_OF.get(by, BATCH_KEYS) if isinstance(by, str) else BATCH_KEYS

    def _show_batch_fields(self) -> None:
        """Keys that the chosen `by` does not take mean nothing: greyed, and left out of the
        file."""
        takes = self._batch_keys()
        for key in BATCH_KEYS:
            self.query_one("#" + field_id(key), Input).disabled = key not in takes

    def save_path(self) -> Path:
        text = self.query_one("#" + field_id("save"), Input).value.strip()
        return Path(text).expanduser() if text else self.path

    # -- checking ----------------------------------------------------------------------------

    @on(Input.Changed)
    @on(Select.Changed)
    def _changed(self, event: Input.Changed | Select.Changed) -> None:
        if isinstance(event, Select.Changed) and event.select.id == field_id("recipe.name"):
            value = event.value
            if isinstance(value, str) and value != self.recipe:
                self.recipe = value
                self._show_recipe_hint()
                self._swap_params()
                return
        if isinstance(event, Select.Changed) and event.select.id == field_id("batches.by"):
            self._show_batch_fields()
        self.revalidate()

    def _show_recipe_hint(self) -> None:
        select = self.query_one("#" + field_id("recipe.name"), Select)
        select.tooltip = _recipe_hint(self.recipe)
        field = select.parent.parent if select.parent is not None else None
        if field is not None:
            field.query_one(".hint", Static).update(_recipe_hint(self.recipe))

    def _swap_params(self) -> None:
        for key in ("params", "more-params"):
            box = self.query_one("#" + key, Vertical)
            box.remove_children()
            box.mount_all(compose(self, self._param_rows(required=key == "params")))
        self.call_after_refresh(self.revalidate)

    def revalidate(self) -> None:
        """Check the form a moment after the last keystroke, in a thread: parsing may read a
        region file and count 100,000s of tiles, planning takes longer still."""
        if self._pending is not None:
            self._pending.stop()
        self._pending = self.set_timer(DEBOUNCE, self._check_now)

    @property
    def caught_up(self) -> bool:
        """The last check has finished and was of what the fields say now: no change waits
        for its debounce or its thread. Screenshots and tests wait for this, not for a time."""
        if self._pending is not None or not self.checked:
            return False
        try:
            return self.build() == self.text
        except Exception:  # _check_now showed it as a problem
            return True

    def _check_now(self) -> None:
        self._pending = None
        try:
            self.text = self.build()
        except Exception as exc:  # a value TOML cannot hold; say so instead of failing
            self._show_problems([Problem(self.save_path().resolve(), "job", str(exc))])
            return
        self.checked = False
        self._check(self.text, self.save_path().resolve())

    @work(thread=True, exclusive=True, group="plan", exit_on_error=False,
          description="check and plan the job")
    def _check(self, text: str, path: Path) -> None:
        from core.plan import make_plan, preview
        from core.plan_text import describe_plan

        worker = get_current_worker()
        try:
            spec = parse_spec(text, path)
        except SpecError as exc:
            if not worker.is_cancelled:
                self.app.call_from_thread(self._show_problems, exc.problems)
            return
        if worker.is_cancelled:
            return
        self.app.call_from_thread(self._show_problems, [])
        try:
            plan = make_plan(spec)
            lines = describe_plan(plan)
            summary = lines[:lines.index("")] if "" in lines else lines
            picture = preview(plan, width=44, height=14)
        except Exception as exc:  # a plan the rules let through but cannot be made
            if not worker.is_cancelled:
                self.app.call_from_thread(self._show_problems, [Problem(path, "plan", str(exc))])
            return
        if worker.is_cancelled:
            return
        out = "\n".join(line.replace(str(path), path.name) for line in summary)
        self.app.call_from_thread(self._show_preview, out + "\n\n" + "\n".join(picture),
                                  plan_summary(plan, summary))

    def _show_problems(self, problems: list[Problem]) -> None:
        self.checked = bool(problems)
        self.problems = problems
        self.valid = not problems
        by_field: dict[str, list[str]] = {}
        general: list[str] = []
        ids = [w.id for w in self.query("Input, Select")]
        for problem in problems:
            # the line without its file: the form is the file
            rest = f"{problem.key}: {problem.message}" if problem.key else problem.message
            key = problem.key.strip("[]")
            # the field itself, or its section's first field ([job] is missing -> job.name),
            # which then shows the key as well; a problem of the whole file goes on top
            section = field_id(key.split(".")[0])
            target = key and (next((i for i in ids if i == field_id(key)), None) or next(
                (i for i in ids if i and (i == section or i.startswith(section + "-"))), None))
            if not target:
                general.append(rest)
            else:
                by_field.setdefault(target, []).append(
                    problem.message if target == field_id(key) else rest)
        for box in self.query(".problem").results(Static):
            owner = (box.id or "").removesuffix("-problem")
            lines = by_field.get(owner, [])
            box.update("\n".join(lines))
            box.set_class(bool(lines), "-shown")
        general_box = self.query_one("#general", Static)
        general_box.update("\n".join(general))
        general_box.set_class(bool(general), "-shown")
        status = self.query_one("#status", Static)
        if problems:
            # name where they are: the first may be out of sight on a short terminal
            where = ", ".join(self._labels[i] for i in by_field)
            status.update(Text(f"{len(problems)} problem{'s' * (len(problems) != 1)} to fix "
                               f"before Start{': ' * bool(where)}{where}", "bold"))
            for box in self.query("#summary, #preview").results(Static):
                box.update(Text("Plan  shown once the job is valid", "dim"))
        self.query_one("#start", Button).disabled = bool(problems)
        more = self.query_one("#more", Collapsible)
        hidden = {w.id for w in more.query("Input, Select")}
        if more.collapsed and hidden.intersection(by_field):
            more.collapsed = False  # a problem is never hidden

    def _show_preview(self, text: str, summary: Text) -> None:
        self.checked = True
        if not self.valid:
            return
        self.query_one("#status", Static).update(Text("valid — Start saves the job file and "
                                                      "creates a session", "green"))
        self.query_one("#summary", Static).update(summary)
        self.query_one("#preview", Static).update(text)

    # -- start ---------------------------------------------------------------------------------

    def action_close(self) -> None:
        self.post_message(self.Close())

    @on(Button.Pressed, "#start")
    def _start_pressed(self) -> None:
        self.action_start()

    def action_start(self) -> None:
        try:
            self.text = self.build()
            parse_spec(self.text, self.save_path().resolve())
        except SpecError as exc:
            self._show_problems(exc.problems)
            self.notify("the job has problems: see the red lines", severity="error")
            return
        path = self.save_path()
        try:
            saved = save_job(path, self.text)
        except OSError as exc:
            self.notify(f"cannot write {path}: {exc.strerror}", severity="error")
            return
        if saved:
            self.notify(saved, timeout=5)
        self.post_message(self.Start(path))


def save_job(path: Path, text: str) -> str:
    """Write the job file; keep a different older version as FILE.bak. Returns what it did."""
    if path.exists():
        old = path.read_text(encoding="utf-8")
        try:
            same = tomllib.loads(old) == tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            same = False
        if same:  # nothing changed: keep the user's file as written, comments and all
            return ""
        backup = path.with_suffix(path.suffix + ".bak")
        backup.write_text(old, encoding="utf-8")
        path.write_text(text, encoding="utf-8")
        return f"saved {path} (the previous version is in {backup.name})"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return f"saved {path}"
