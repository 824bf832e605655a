"""The eebatch dashboard: wiring only. A thread polls the session's store and posts coalesced
snapshots; the panes show them; commands go to the store's command table, where the worker (in
this process or another) picks them up. The UI never touches the network."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar, Protocol

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Container, Horizontal, Vertical
from textual.events import Resize
from textual.screen import Screen
from textual.theme import Theme
from textual.widgets import Footer
from textual.worker import get_current_worker

from core.limits import BOUNDS, MAX_TASKS
from core.routes import DIRECT
from core.states import ACTIVE, CMD_DONE, CMD_ERROR, FAILED, SETTLED
from core.store import DatabaseError, Store, StoreError
from tui.messages import CommandRequest, PollFailed, ShowUnit, SnapshotReady
from tui.new_session import create_or_notify
from tui.reader import Snapshot, StoreReader
from tui.routes import direct_text, job_route
from tui.screens.confirm import ConfirmScreen
from tui.screens.details import DetailsScreen
from tui.screens.help import HelpScreen
from tui.screens.job import JobScreen
from tui.screens.quit import QuitChoice, QuitScreen
from tui.screens.results import ResultsScreen
from tui.widgets.drive_meter import DriveMeter
from tui.widgets.event_log import EventLog
from tui.widgets.header import HeaderState, StatusHeader
from tui.widgets.job_form import JobForm
from tui.widgets.tasks_pane import TasksPane, TaskTable
from tui.widgets.tile_map import TileMap
from tui.widgets.tiles_pane import TilesPane

# textual-dark with an accent and a warning that stay themselves at 16 colours (TERM=xterm):
# its orange, used for both, becomes the same bright red as errors there. Purple maps to
# magenta and gold to yellow; blue, green and the error red are kept.
THEME = Theme(name="eebatch", primary="#0178D4", secondary="#004578", accent="#c678dd",
              warning="#e0c050", error="#ba3c5b", success="#4EBF71", foreground="#e0e0e0",
              dark=True)

NARROW = 110  # below this many columns the panes stack and the Job form opens as a modal


class RunningWorker(Protocol):
    error: BaseException | None

    def is_alive(self) -> bool: ...
    def stop(self) -> None: ...
    def join(self, timeout: float | None = None) -> None: ...




class EEBatchApp(App[Path | None]):
    """The dashboard on one session. `poll_interval=None` polls only when asked (tests,
    screenshots): `poll_now()` reads the store on the event loop, deterministically."""

    CSS_PATH = "app.tcss"
    TITLE = "eebatch"
    AUTO_FOCUS = "#map"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark,f1", "help", "Help"),
        Binding("p", "pause", "Pause"),
        Binding("plus,equals_sign", "max_tasks(1)", "more tasks",
                group=Binding.Group("Tasks", compact=True), key_display="+"),
        Binding("minus", "max_tasks(-1)", "fewer tasks",
                group=Binding.Group("Tasks", compact=True), key_display="-"),
        Binding("e", "job", "Job"),
        Binding("v", "results", "Results", show=False),
        Binding("1", "focus_pane('#map')", "Tiles", show=False),
        Binding("2", "focus_pane('#tasks')", "Tasks", show=False),
        Binding("3", "focus_pane('#log')", "Log", show=False),
        Binding("z", "maximize", "Maximise pane", show=False),
        Binding("ctrl+r", "refresh_now", "Refresh now", show=False),
        # Binding the palette to any key drops Textual's own ctrl+p: bind both. ctrl+p takes
        # priority as Textual's does; `:` must still type into the filter and the job form.
        Binding("ctrl+p", "command_palette", "Commands", show=False, priority=True),
        Binding("colon", "command_palette", "Commands", show=False),
    ]

    def __init__(self, session_path: Path | str, *, poll_interval: float | None = 0.5,
                 worker: RunningWorker | None = None, mouse: bool = True,
                 start_worker: Callable[[], RunningWorker | None] | None = None,
                 can_detach: bool = True) -> None:
        """`start_worker` starts a worker in this process when a command is sent to a
        session that has none (a finished one, opened without); `can_detach` says whether a
        headless worker can take over on quit (not when the backend lives in this process)."""
        super().__init__()
        self.session_path = Path(session_path)
        self.poll_interval = poll_interval
        self.worker = worker
        self._start_worker = start_worker
        self.can_detach = can_detach
        self.detached: int | None = None  # pid of the headless worker that took over
        self.mouse = mouse
        self.ui_store = Store(self.session_path)  # UI-thread reads (details); never writes
        self.session_id = self.ui_store.id
        self.header_state = HeaderState(session=self.ui_store.id)
        self.settings: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self._sync_reader: StoreReader | None = None
        self._applied = threading.Event()
        self._wake = threading.Event()
        self._command_lock = threading.Lock()
        self._command_store: Store | None = None
        self.polls = 0  # snapshots applied (tests wait on it)
        self._keys_state: tuple[bool | None, ...] = ()
        self._error_told = False

    # -- layout --------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="header")
        with Horizontal(id="body"):
            yield Vertical(id="job-pane")
            yield from self._panes()
        yield Footer()

    def _panes(self) -> ComposeResult:
        with Container(id="main"):
            yield TilesPane(id="tiles-pane")
            with Vertical(id="drive-pane") as drive:
                drive.border_title = "Drive"
                yield DriveMeter(id="drive")
            log = EventLog(id="log")
            log.border_title = "Log"
            yield log
            yield TasksPane(id="tasks-pane")

    def on_mount(self) -> None:
        self.register_theme(THEME)
        self.theme = THEME.name
        self.title = f"eebatch · {self.session_id}"
        self.query_one("#job-pane").border_title = f"Job · {self.ui_store.job_path.name}"
        self.header_state.route = job_route(self.ui_store.job_text)
        self.query_one(TilesPane).set_route(self.header_state.route, self._tile_routes)
        self.query_one(TasksPane).set_route(
            direct_text(self.ui_store.job_text) if self.header_state.route == DIRECT else None)
        self._narrow(self.size.width)
        self._show_header()
        if self.poll_interval is None:
            self.call_after_refresh(self.poll_now)
        else:
            self._poll_loop()
        if self.worker is not None or self._start_worker is not None:
            self._check_worker()
            self.set_interval(1.0, self._check_worker)

    def on_resize(self, event: Resize) -> None:
        if event.size.width < NARROW and self.query_one("#job-pane").display:
            self._close_job()  # no room beside the panes: `e` opens it as a modal
        self._narrow(event.size.width)

    def _narrow(self, width: int) -> None:
        """Stack the panes when the room left for them is narrow (the Job pane takes some)."""
        pane = self.query_one("#job-pane")
        room = width - (pane.styles.width.value if pane.display and pane.styles.width else 0)
        self.screen.set_class(room < NARROW, "-narrow")


    def on_unmount(self) -> None:
        self._wake.set()
        self._applied.set()
        if self._sync_reader is not None:
            self._sync_reader.close()
        self.ui_store.close()

    # -- reading the store ---------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="poll", exit_on_error=False,
          description="read the session store")
    def _poll_loop(self) -> None:
        worker = get_current_worker()
        reader = StoreReader(self.session_path)
        interval = self.poll_interval or 0.5
        try:
            while not worker.is_cancelled:
                try:
                    snapshot = reader.poll()
                except (DatabaseError, StoreError) as exc:  # locked, vanished, damaged: say so
                    self.post_message(PollFailed(str(exc)))
                    worker.cancelled_event.wait(5.0)
                    continue
                if not snapshot.empty:
                    self._applied.clear()
                    self.post_message(SnapshotReady(snapshot))
                    # Coalesce: read again only once the UI has applied this one.
                    while not self._applied.wait(0.2) and not worker.is_cancelled:
                        pass
                self._wake.wait(interval)
                self._wake.clear()
        finally:
            reader.close()

    def poll_now(self, *, check_alive: bool = True) -> None:
        """Read the store on the event loop and apply what changed (tests, screenshots)."""
        if self._sync_reader is None:
            self._sync_reader = StoreReader(self.session_path)
        self.apply_snapshot(self._sync_reader.poll(check_alive=check_alive))

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        try:
            self.apply_snapshot(message.snapshot)
        finally:
            self._applied.set()

    def on_poll_failed(self, message: PollFailed) -> None:
        self.notify(message.error, title="cannot read the session", severity="error",
                    timeout=8)

    def apply_snapshot(self, snap: Snapshot) -> None:
        tiles = self.query_one(TilesPane)
        table = self.query_one(TaskTable)
        with self.batch_update():
            if snap.map_init is not None:
                tiles.map.load(snap.map_init)
            if snap.unit_changes:
                tiles.map.apply_changes(snap.unit_changes)
            if snap.counts is not None:
                self.counts = snap.counts
                tiles.set_counts(snap.counts)
                self._show_outcome(snap)
            if snap.tasks or snap.tasks_removed:
                table.sync(snap.tasks, snap.tasks_removed)
            if snap.events:
                self.query_one(EventLog).add_events(snap.events)
            if snap.settings is not None:
                self._settings_changed(snap.settings)
            if snap.status is not None:
                self.header_state.status = snap.status
                self._show_drive()
            if snap.worker_alive is not None and self.worker is None:
                self.header_state.worker = ("attached" if snap.worker_alive
                                            else "finished" if self.finished else "none")
            if snap.commands_pending is not None:
                self.header_state.commands_pending = snap.commands_pending
            self._command_results(snap)
            self._show_header()
        self.polls += 1
        # The footer rebuilds itself on every refresh_bindings: only when a key's state moved.
        keys = (self.check_action("max_tasks", (1,)), self.check_action("max_tasks", (-1,)))
        if keys != self._keys_state:
            self._keys_state = keys
            self.refresh_bindings()

    def _show_outcome(self, snap: Snapshot) -> None:
        """Finished, the Drive pane says what the job made (and back to Drive on a retry)."""
        self.query_one(DriveMeter).show_outcome(snap.outcome)
        self.query_one("#drive-pane").border_title = "Output" if snap.outcome else "Drive"

    def _settings_changed(self, settings: dict[str, Any]) -> None:
        old = self.settings
        self.settings = settings
        # The user's last +/-/p wins until the worker has applied it.
        if settings.get("max_tasks") == self.header_state.max_tasks or (
                old.get("max_tasks") != settings.get("max_tasks")):
            self.header_state.max_tasks = None
        if settings.get("paused") == self.header_state.paused or (
                old.get("paused") != settings.get("paused")):
            self.header_state.paused = None
        self.header_state.settings = settings
        self._show_drive()

    def _show_drive(self) -> None:
        budget = self.settings.get("drive_budget")
        self.query_one(DriveMeter).update_status(self.header_state.status,
                                                 int(budget) if budget else None)

    def _command_results(self, snap: Snapshot) -> None:
        done = [c for c in snap.commands_done if c.state == CMD_DONE]
        for c in snap.commands_done:
            if c.state == CMD_ERROR:
                what = f"{c.verb} {c.unit}" if c.unit else c.verb
                self.notify(c.result or "the worker gave no reason", title=f"{what}: not done",
                            severity="error", timeout=10)
        if len(done) > 3:
            self.notify(f"{len(done)} commands done", timeout=3)
        else:
            for c in done:
                what = f"{c.verb} {c.unit}" if c.unit else c.verb
                self.notify(c.result or CMD_DONE, title=what, timeout=3)

    def _show_header(self) -> None:
        self.header_state.counts = self.counts
        if self.worker is not None:
            self.header_state.worker = self._worker_state()
        self.query_one(StatusHeader).show(self.header_state)

    @property
    def finished(self) -> bool:
        """Every unit settled: no worker is needed (until a retry)."""
        return bool(self.counts) and all(s in SETTLED for s, n in self.counts.items() if n)

    def _worker_state(self) -> str:
        assert self.worker is not None
        if self.worker.error is not None:
            return "error"
        return "here" if self.worker.is_alive() else "stopped"

    def _check_worker(self) -> None:
        if self.worker is None:
            return
        state = self._worker_state()
        if state == "error" and not self._error_told and self.worker is not None:
            self._error_told = True  # once, with the reason: the header keeps saying it
            self.notify(f"{self.worker.error}", severity="error", timeout=60,
                        title="the worker stopped")
        if state != self.header_state.worker:
            self.header_state.worker = state
            self._show_header()

    def action_refresh_now(self) -> None:
        if self.poll_interval is None:
            self.poll_now()
        else:
            self._wake.set()

    # -- commands ------------------------------------------------------------------------------

    @on(CommandRequest)
    def _command_request(self, request: CommandRequest) -> None:
        if not request.confirm:
            self.send_command(request.verb, request.units, request.arg)
            return
        units = request.units
        what = units[0] if len(units) == 1 else f"{len(units)} tasks"
        detail = "" if len(units) == 1 else ", ".join(units[:20]) + (
            f" and {len(units) - 20} more" if len(units) > 20 else "")
        detail = (detail + "\n" if detail else "") + (
            "The EE task is cancelled and the unit is not retried until you press r.")

        def answered(yes: bool | None) -> None:
            if yes:
                self.send_command(request.verb, units, request.arg)
                self.query_one(TaskTable).clear_marks()

        self.push_screen(ConfirmScreen(f"{request.verb.capitalize()} {what}?", detail,
                                       yes=request.verb.capitalize()), answered)

    def send_command(self, verb: str, units: Iterable[str] = (), arg: Any = None) -> None:
        if self.worker is None and self._start_worker is not None and (
                self.header_state.worker in ("none", "finished")):
            # A session opened without a worker (it had nothing to do) gets one for this.
            self.worker = self._start_worker()
            self._show_header()
        self._post_commands(verb, list(units), arg)

    @work(thread=True, group="commands", exit_on_error=False, description="post commands")
    def _post_commands(self, verb: str, units: list[str], arg: Any) -> None:
        """Insert into the command table off the event loop (a write may wait for the
        worker's transaction). Bad commands are refused by the store with a reason."""
        errors: list[str] = []
        sent = 0
        with self._command_lock:
            for unit in units or [None]:
                try:
                    if self._command_store is None:
                        self._command_store = Store(self.session_path)
                    self._command_store.post_command(verb, unit, arg)
                    sent += 1
                except StoreError as exc:
                    errors.append(str(exc))
                except DatabaseError as exc:
                    errors.append(f"the store refused the command: {exc}")
        if errors:
            self.notify("\n".join(errors[:5]) + (f"\n… {len(errors) - 5} more"
                                                  if len(errors) > 5 else ""),
                        title=f"{verb}: not sent", severity="error", timeout=10)
        if sent and self.header_state.worker in ("none", "stopped", "error"):
            self.notify("no worker runs on this session: the command waits until one starts "
                        f"(eebatch run {self.session_id})", severity="warning", timeout=8)
        self._wake.set()

    def action_pause(self) -> None:
        paused = self.header_state.paused
        if paused is None:
            paused = bool(self.settings.get("paused"))
        self.header_state.paused = not paused
        self.send_command("resume" if paused else "pause")
        self._show_header()

    def action_max_tasks(self, delta: int) -> None:
        current = self.header_state.max_tasks or int(self.settings.get("max_tasks") or 1)
        wanted = BOUNDS[MAX_TASKS].clamp(current + delta)
        if wanted == current:
            return
        self.header_state.max_tasks = wanted
        self.send_command("set", arg={"key": "max_tasks", "value": wanted})
        self._show_header()
        self._keys_state = ()
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "max_tasks":
            if self.header_state.route == DIRECT:
                return False  # a direct job sends no export task: nothing to set
            current = self.header_state.max_tasks or int(self.settings.get("max_tasks") or 1)
            delta = int(parameters[0])  # type: ignore[call-overload]
            return True if BOUNDS[MAX_TASKS].holds(current + delta) else None
        return True

    # -- details, panes, help ------------------------------------------------------------------

    @on(TileMap.Selected)
    def _tile_selected(self, event: TileMap.Selected) -> None:
        model = self.query_one(TileMap).model
        if model is None:
            return
        tile = model.tile_ids[event.tile]
        self.push_screen(DetailsScreen(f"Tile {tile}", self.ui_store, tile=tile))

    def _tile_routes(self, tile: str) -> list[tuple[str, str, str]]:
        return [(u["period"], u["route"], u["state"]) for u in self.ui_store.units_of_tile(tile)]

    @on(ShowUnit)
    def _show_unit(self, event: ShowUnit) -> None:
        if event.unit is not None:
            self.push_screen(DetailsScreen(f"Unit {event.unit}", self.ui_store,
                                           unit=event.unit))

    def action_focus_pane(self, selector: str) -> None:
        self.screen.minimize()
        self.query_one(selector).focus()

    def action_maximize(self) -> None:
        if self.screen.maximized is not None:
            self.screen.minimize()
        else:
            self.screen.action_maximize()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_results(self) -> None:
        self.push_screen(ResultsScreen(self.session_path, f"Results · {self.session_id}"))

    # -- quitting -------------------------------------------------------------------------------

    def live_work(self) -> int:
        """Units the worker in this app has in EE or downloading (0 without one)."""
        if self.worker is None or not self.worker.is_alive():
            return 0
        return sum(self.counts.get(s, 0) for s in ACTIVE)

    async def action_quit(self) -> None:
        """Quit at once, unless quitting would leave live work unwatched: then ask."""
        live = self.live_work()
        if not live:
            self.exit()
            return

        def answered(choice: QuitChoice) -> None:
            if choice == "stop":
                self.exit()  # the launcher stops the worker after its current step
            elif choice == "detach":
                self.notify("handing the session to a headless worker…", timeout=30)
                self._detach()

        self.push_screen(QuitScreen(live, self.session_id, self.can_detach), answered)

    @work(thread=True, exclusive=True, group="detach", exit_on_error=False,
          description="hand the session to a headless worker")
    def _detach(self) -> None:
        """Stop the worker here (it releases the session's lock), start `eebatch run SESSION
        --headless` detached, and quit once it holds the lock."""
        from tui.headless import spawn_headless

        assert self.worker is not None
        self.worker.stop()
        self.worker.join(120)
        if self.worker.is_alive():
            self.notify("the worker did not stop within 2 minutes; still here",
                        severity="error", timeout=10)
            return
        process = spawn_headless(self.session_path, self.session_id)
        deadline = time.monotonic() + 60
        while not Store.worker_lock_held(self.session_path):
            if process.poll() is not None or time.monotonic() > deadline:
                self.notify(f"the headless worker did not start (see {self.session_id}.log "
                            "in the log dir); the session waits for `eebatch run "
                            f"{self.session_id}`", severity="error", timeout=30)
                return
            time.sleep(0.1)
        self.detached = process.pid
        self.call_from_thread(self.exit)

    # -- the Job pane ---------------------------------------------------------------------------

    def action_job(self) -> None:
        """The job as a form: a pane on the left on a wide terminal, a modal on a narrow one."""
        pane = self.query_one("#job-pane", Vertical)
        if pane.display:
            self._close_job()
            return
        text, path = self.ui_store.job_text, self.ui_store.job_path
        if self.size.width < NARROW:
            self.push_screen(JobScreen(text, path), self._job_started)
            return
        if not pane.children:
            pane.mount(JobForm(text, path, id="job-form"))
        pane.display = True
        self._narrow(self.size.width)
        self.call_after_refresh(self._focus_job)

    def _focus_job(self) -> None:
        for box in self.query("#job-pane Input"):
            box.focus()
            break

    def _close_job(self) -> None:
        self.query_one("#job-pane", Vertical).display = False
        self._narrow(self.size.width)
        self.query_one(TileMap).focus()

    @on(JobForm.Close)
    def _job_form_close(self) -> None:
        self._close_job()

    @on(JobForm.Start)
    def _job_form_start(self, event: JobForm.Start) -> None:
        self._job_started(event.path)

    def _job_started(self, path: Path | None) -> None:
        if path is None:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._create_session(path)

        self.push_screen(ConfirmScreen(
            f"Start a new session from {path.name}?",
            f"The dashboard switches to it. {self.session_id} keeps its state; its worker in "
            f"this app stops (eebatch open {self.session_id} resumes it).", yes="Start"),
            answered)

    @work(thread=True, exclusive=True, group="create", exit_on_error=False,
          description="create a session")
    def _create_session(self, path: Path) -> None:
        new = create_or_notify(self, path)
        if new is not None:
            self.call_from_thread(self.exit, new)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Results", "Each period's mosaic and quicklook, the merged table, "
                            "what is still missing", self.action_results)
        yield SystemCommand("Pause or resume", "Stop or restart submitting new tasks",
                            self.action_pause)
        yield SystemCommand("More tasks at once", "max_tasks + 1",
                            lambda: self.action_max_tasks(1))
        yield SystemCommand("Fewer tasks at once", "max_tasks - 1",
                            lambda: self.action_max_tasks(-1))
        yield SystemCommand("Next failed tile", "Move the map's cursor to the next failed tile",
                            lambda: self.query_one(TileMap).action_next_failed(1))
        yield SystemCommand("Fit the map", "Zoom so that every tile shows",
                            lambda: self.query_one(TileMap).action_fit())
        yield SystemCommand("Filter tasks", "Show only tasks matching a text",
                            lambda: self.query_one(TasksPane).open_filter())
        yield SystemCommand("Retry every failed task", "Post a retry for each failed unit",
                            self._retry_all_failed)
        yield SystemCommand("Refresh now", "Read the session store now", self.action_refresh_now)

    def _retry_all_failed(self) -> None:
        table = self.query_one(TaskTable)
        units = [u for u, t in table.tasks.items() if t.state == FAILED]
        if units:
            self.send_command("retry", units)
        else:
            self.notify("no failed task", timeout=3)

